//! `GET /v1/cases/{case_id}/history` (`docs/api.md` section 7): a case's history in words a
//! supervisor understands — every stored change, oldest first, with who sent it (staff,
//! device), when it arrived, and what it did ([`tsunagi_sync::history`]), paged by the
//! change's sequence number.
//!
//! Supervisors, and counsellors for the cases they may see ([`visibility::may_see`]); a case
//! the caller may not see is `404 not_found`, identical to a case that does not exist.
//! Administrators and meeting tablets get `403`. Every answer writes an audit row
//! (`case.history`) in the same transaction as the read.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use actix_web::{web, HttpResponse};
use automerge::{Change, ChangeHash};
use chrono::{NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};
use tsunagi_sync::domain::Role;
use tsunagi_sync::history::{DescribedEvent, HistoryEvent, HistoryReader};
use tsunagi_sync::ids::{CaseId, JAPAN};

use super::support::{self, not_found};
use crate::auth::AuthenticatedDevice;
use crate::error::ApiFailure;
use crate::startup::AppState;
use crate::store::documents::{self, StoredChange};
use crate::store::{audit, visibility, StoreError};

/// Entries per page unless `limit` says otherwise.
pub const DEFAULT_LIMIT: i64 = 200;
/// The most entries one page holds.
pub const MAX_LIMIT: i64 = 1000;

/// Registers the routes of this module.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/cases/{case_id}/history", web::get().to(history));
}

/// The query of `GET /v1/cases/{case_id}/history`.
#[derive(Debug, Default, Deserialize)]
pub struct HistoryQuery {
    /// Only changes stored after this sequence number (`next` of the previous page).
    after: Option<String>,
    /// Entries per page (1 to [`MAX_LIMIT`], default [`DEFAULT_LIMIT`]).
    limit: Option<String>,
}

/// One stored change, described.
#[derive(Debug, Serialize)]
pub struct HistoryEntry {
    /// Order of arrival on the server (the paging key).
    seq: i64,
    /// When the server stored it.
    received_at: String,
    /// The staff member who sent it (or on whose behalf the server wrote it); `null` for the
    /// server's own changes.
    staff_id: Option<String>,
    /// Their display name, when the account exists.
    staff_name: Option<String>,
    /// The device it came from (or from which the request it answers came).
    device_id: Option<String>,
    /// Whether the server wrote the change itself (case number, assignments, writes made
    /// through this API on someone's behalf) rather than a device.
    by_server: bool,
    /// The change's hash, hex.
    hash: String,
    /// When the change was made, by the writer's own clock (a phone offline for days syncs
    /// late; this is when the counsellor wrote it), if the change says.
    written_at: Option<String>,
    /// What it did.
    events: Vec<DescribedEvent>,
    /// The events' sentences, joined by `; `.
    summary: String,
}

/// A page of a case's history.
#[derive(Debug, Serialize)]
pub struct HistoryPage {
    /// The case.
    case_id: CaseId,
    /// Oldest first.
    entries: Vec<HistoryEntry>,
    /// `after` for the next page, or `null` on the last.
    next: Option<String>,
    /// Display names of the staff members the events name (assignees), by id.
    staff: BTreeMap<String, String>,
}

fn format_instant(at: NaiveDateTime) -> String {
    tsunagi_sync::document::format_instant(at.and_utc().with_timezone(&JAPAN))
}

/// `GET /v1/cases/{case_id}/history`.
pub async fn history(
    state: web::Data<AppState>,
    who: AuthenticatedDevice,
    path: web::Path<String>,
    query: web::Query<HistoryQuery>,
) -> Result<HttpResponse, ApiFailure> {
    support::require_role(&who, &[Role::Supervisor, Role::Counsellor])?;
    // A malformed id is simply a case that does not exist.
    let case = CaseId::parse(&path).map_err(|_| not_found("case"))?;
    let q = query.into_inner();
    let after = support::param("after", &q.after, |raw| match raw.parse::<i64>() {
        Ok(seq) if seq >= 0 => Ok(seq),
        _ => Err("not a value of `next` from a previous page"),
    })?
    .unwrap_or(0);
    let limit = support::limit_param(&q.limit, DEFAULT_LIMIT, MAX_LIMIT)?;

    let page = support::write(&state, move |conn| -> Result<Option<HistoryPage>, StoreError> {
        let Some(row) = documents::find(conn, &case)? else { return Ok(None) };
        if !visibility::may_see(conn, support::viewer(&who), &case)? {
            return Ok(None);
        }
        let stored = documents::history(conn, &case)?;
        let doc = documents::load(conn, &row)?;
        let mut by_hash: HashMap<ChangeHash, Change> =
            doc.get_changes(&[]).into_iter().map(|change| (change.hash(), change)).collect();
        let mut take = |stored: &StoredChange| -> Result<Change, StoreError> {
            let hash = <[u8; 32]>::try_from(stored.hash.as_slice()).map(ChangeHash).map_err(|_| {
                StoreError::Corrupt(format!("change {} of case {case} has a malformed hash", stored.seq))
            })?;
            by_hash
                .remove(&hash)
                .ok_or_else(|| StoreError::Corrupt(format!("change {hash} of case {case} is not in its document")))
        };

        let (earlier, rest): (Vec<&StoredChange>, Vec<&StoredChange>) = stored.iter().partition(|c| c.seq <= after);
        let more = rest.len() as i64 > limit;
        let page: Vec<&StoredChange> = rest.into_iter().take(limit as usize).collect();
        let corrupt = |e: tsunagi_sync::history::HistoryError| StoreError::Corrupt(format!("case {case}: {e}"));
        let mut reader = HistoryReader::new();
        let mut skipped = Vec::with_capacity(earlier.len());
        for stored in &earlier {
            skipped.push(take(stored)?);
        }
        reader.skip(skipped).map_err(corrupt)?;
        let mut described = Vec::with_capacity(page.len());
        for stored in &page {
            described.push((*stored, reader.describe(take(stored)?).map_err(corrupt)?));
        }

        let mut mentioned: BTreeSet<String> = BTreeSet::new();
        for (_, description) in &described {
            for event in &description.events {
                match &event.event {
                    HistoryEvent::CaseOpened { primary: Some(staff_id), .. }
                    | HistoryEvent::PrimaryAssigned { staff_id, .. }
                    | HistoryEvent::OtherAssigneeAdded { staff_id }
                    | HistoryEvent::OtherAssigneeRemoved { staff_id } => {
                        mentioned.insert(staff_id.clone());
                    }
                    _ => {}
                }
            }
        }
        let senders: Vec<String> = described.iter().filter_map(|(stored, _)| stored.staff_id.clone()).collect();
        let names = support::staff_names(conn, senders.iter().cloned().chain(mentioned.iter().cloned()))?;

        let next = if more { page.last().map(|c| c.seq.to_string()) } else { None };
        let entries: Vec<HistoryEntry> = described
            .into_iter()
            .map(|(stored, description)| HistoryEntry {
                seq: stored.seq,
                received_at: format_instant(stored.received_at),
                staff_name: stored.staff_id.as_ref().and_then(|id| names.get(id).cloned()),
                staff_id: stored.staff_id.clone(),
                device_id: stored.device_id.clone(),
                by_server: description.device_id.is_none(),
                hash: description.hash,
                written_at: description.written_at.map(tsunagi_sync::document::format_instant),
                events: description.events,
                summary: description.summary,
            })
            .collect();
        let staff = mentioned.into_iter().filter_map(|id| names.get(&id).map(|name| (id, name.clone()))).collect();
        audit::record(
            conn,
            Utc::now().naive_utc(),
            Some(&who.staff),
            Some(&who.device),
            Some(&case),
            "case.history",
            &format!("{} entries after {after}", entries.len()),
        )?;
        Ok(Some(HistoryPage { case_id: case, entries, next, staff }))
    })
    .await?
    .ok_or_else(|| not_found("case"))?;
    Ok(support::json(&page))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn received_at_is_shown_in_japan_time() {
        let at = chrono::NaiveDate::from_ymd_opt(2026, 11, 4).unwrap().and_hms_opt(1, 30, 0).unwrap();
        assert_eq!(format_instant(at), "2026-11-04T10:30:00+09:00");
    }
}
