//! The attention queue of the supervisors' API (`docs/api.md` section 8), see
//! [`crate::attention`]:
//!
//! - `GET /v1/attention`: open (or resolved) items of the cases the caller may see;
//! - `GET /v1/attention/{item_id}`: one item;
//! - `POST /v1/attention/{item_id}/resolve`: a supervisor's decision, by kind.

use actix_web::{web, HttpResponse};
use automerge::transaction::Transactable;
use automerge::ScalarValue;
use chrono::{NaiveDateTime, Utc};
use diesel::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tsunagi_sync::domain::Role;
use tsunagi_sync::ids::{CaseId, JAPAN};
use tsunagi_sync::wire::ApiErrorCode;

use super::support::{self, invalid, not_found, Labelled};
use crate::attention::{self, AttentionKind, AttentionRow};
use crate::auth::AuthenticatedDevice;
use crate::error::ApiFailure;
use crate::startup::AppState;
use crate::store::schema::{attention as attention_table, cases};
use crate::store::visibility::{self, Scope};
use crate::store::{audit, DbConnection, StoreError};
use crate::sync::OnBehalfError;
use tsunagi_sync::ops::CaseReplica;

/// Registers the routes of this module.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/attention", web::get().to(list))
        .route("/v1/attention/{item_id}", web::get().to(one))
        .route("/v1/attention/{item_id}/resolve", web::post().to(resolve));
}

/// The query of `GET /v1/attention`.
#[derive(Debug, Default, Deserialize)]
pub struct AttentionQuery {
    kind: Option<String>,
    area: Option<String>,
    case: Option<String>,
    state: Option<String>,
    after: Option<String>,
    limit: Option<String>,
}

/// One item as answers show it.
#[derive(Debug, Serialize)]
pub struct AttentionItem {
    item_id: String,
    kind: Labelled,
    case_id: String,
    case_number: Option<String>,
    subject: String,
    detail: Value,
    raised_at: String,
    raised_by: Option<String>,
    resolved_at: Option<String>,
    resolved_by: Option<String>,
    resolution: Option<Value>,
}

/// A page of items, oldest first.
#[derive(Debug, Serialize)]
pub struct AttentionPage {
    items: Vec<AttentionItem>,
    next: Option<String>,
}

fn instant(at: NaiveDateTime) -> String {
    tsunagi_sync::document::format_instant(at.and_utc().with_timezone(&JAPAN))
}

fn item(conn: &mut DbConnection, row: AttentionRow) -> Result<AttentionItem, StoreError> {
    let kind = AttentionKind::from_key(&row.kind).unwrap_or(AttentionKind::Conflict);
    let case_number: Option<String> =
        cases::table.find(&row.case_id).select(cases::case_number).first(conn).optional()?.flatten();
    Ok(AttentionItem {
        item_id: row.item_id,
        kind: Labelled::of(kind.as_key(), kind.label()),
        case_id: row.case_id,
        case_number,
        subject: row.subject,
        detail: serde_json::from_str(&row.detail).unwrap_or(Value::Null),
        raised_at: instant(row.raised_at),
        raised_by: row.raised_by,
        resolved_at: row.resolved_at.map(instant),
        resolved_by: row.resolved_by,
        resolution: row.resolution.and_then(|r| serde_json::from_str(&r).ok()),
    })
}

/// Whether the caller may see `row`: its case is visible to them, or (a refused upload of a
/// case the server never stored) it is in their municipality and they oversee all of it.
fn may_see(conn: &mut DbConnection, who: &AuthenticatedDevice, row: &AttentionRow) -> Result<bool, StoreError> {
    if row.municipality != who.municipality.as_str() {
        return Ok(false);
    }
    let Ok(case) = CaseId::parse(&row.case_id) else { return Ok(false) };
    visibility::may_see_upload(conn, support::viewer(who), &case, row.raised_by.as_deref().unwrap_or_default())
}

/// `GET /v1/attention`: supervisors only.
pub async fn list(
    state: web::Data<AppState>,
    who: AuthenticatedDevice,
    query: web::Query<AttentionQuery>,
) -> Result<HttpResponse, ApiFailure> {
    support::require_role(&who, &[Role::Supervisor])?;
    let q = query.into_inner();
    let kind = support::param("kind", &q.kind, |raw| AttentionKind::from_key(raw).ok_or("not an attention kind"))?;
    let case = support::param("case", &q.case, CaseId::parse)?;
    let area = q.area.as_deref().map(str::trim).filter(|a| !a.is_empty()).map(str::to_owned);
    let state_filter = match q.state.as_deref().map(str::trim) {
        None | Some("") | Some("open") => Some(true),
        Some("resolved") => Some(false),
        Some("all") => None,
        Some(_) => return Err(invalid("state", "expected open, resolved or all")),
    };
    let after = q.after.as_deref().map(str::trim).filter(|a| !a.is_empty()).map(str::to_owned);
    let limit = support::limit_param(&q.limit, 100, 500)?;
    let page = support::write(&state, move |conn| -> Result<AttentionPage, ApiFailure> {
        let mut query = attention_table::table
            .filter(attention_table::municipality.eq(who.municipality.as_str()))
            .order((attention_table::raised_at.asc(), attention_table::item_id.asc()))
            .into_boxed();
        match visibility::scope(conn, support::viewer(&who))? {
            Scope::Municipality(_) => {}
            Scope::Cases(ids) => query = query.filter(attention_table::case_id.eq_any(ids)),
        }
        if let Some(kind) = kind {
            query = query.filter(attention_table::kind.eq(kind.as_key()));
        }
        if let Some(case) = case {
            query = query.filter(attention_table::case_id.eq(case.to_string()));
        }
        if let Some(area) = area {
            query = query.filter(
                attention_table::case_id.eq_any(cases::table.filter(cases::area.eq(area)).select(cases::case_id)),
            );
        }
        match state_filter {
            Some(true) => query = query.filter(attention_table::resolved_at.is_null()),
            Some(false) => query = query.filter(attention_table::resolved_at.is_not_null()),
            None => {}
        }
        if let Some(after) = &after {
            // The cursor is an item of a page the caller was shown; anything else would
            // silently restart the listing from the first item.
            let cursor = attention::find(conn, after)?
                .filter(|c| c.municipality == who.municipality.as_str())
                .ok_or_else(|| invalid("after", "not an item of an earlier page (use that page's `next`)"))?;
            query =
                query.filter(attention_table::raised_at.gt(cursor.raised_at).or(
                    attention_table::raised_at.eq(cursor.raised_at).and(attention_table::item_id.gt(cursor.item_id)),
                ));
        }
        let mut rows: Vec<AttentionRow> = query.limit(limit + 1).load(conn).map_err(StoreError::from)?;
        let next = if rows.len() as i64 > limit {
            rows.truncate(limit as usize);
            rows.last().map(|r| r.item_id.clone())
        } else {
            None
        };
        audit_read(conn, &who, rows.iter().map(|r| r.case_id.as_str()))?;
        let items = rows.into_iter().map(|row| item(conn, row)).collect::<Result<Vec<_>, _>>()?;
        Ok(AttentionPage { items, next })
    })
    .await?;
    Ok(support::json(&page))
}

/// Writes one audit row `attention.read` per case whose items are shown: an item carries case
/// content (a conflict's values, a duplicate's match).
fn audit_read<'a>(
    conn: &mut DbConnection,
    who: &AuthenticatedDevice,
    cases: impl Iterator<Item = &'a str>,
) -> Result<(), StoreError> {
    let at = Utc::now().naive_utc();
    let shown: std::collections::BTreeSet<&str> = cases.collect();
    for case in shown.into_iter().filter_map(|c| CaseId::parse(c).ok()) {
        audit::record(conn, at, Some(&who.staff), Some(&who.device), Some(&case), "attention.read", "attention")?;
    }
    Ok(())
}

/// `GET /v1/attention/{item_id}`: supervisors only.
pub async fn one(
    state: web::Data<AppState>,
    who: AuthenticatedDevice,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiFailure> {
    support::require_role(&who, &[Role::Supervisor])?;
    let id = path.into_inner();
    let found = support::write(&state, move |conn| -> Result<Option<AttentionItem>, StoreError> {
        match attention::find(conn, &id)? {
            Some(row) if may_see(conn, &who, &row)? => {
                audit_read(conn, &who, std::iter::once(row.case_id.as_str()))?;
                Ok(Some(item(conn, row)?))
            }
            _ => Ok(None),
        }
    })
    .await?;
    Ok(support::json(&found.ok_or_else(|| not_found("attention item"))?))
}

/// The body of `POST /v1/attention/{item_id}/resolve`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resolution {
    /// For a conflict: the value to keep (one of the item's values).
    #[serde(default)]
    value: Option<Value>,
    /// For a possible duplicate: `dismiss` (not the same household).
    #[serde(default)]
    action: Option<String>,
    /// A note for the record.
    #[serde(default)]
    note: Option<String>,
}

/// Converts a conflict value (a JSON scalar) to what the document stores.
fn scalar(value: &Value) -> Option<ScalarValue> {
    match value {
        Value::String(s) => Some(ScalarValue::Str(s.as_str().into())),
        Value::Bool(b) => Some(ScalarValue::Boolean(*b)),
        Value::Number(n) => n.as_i64().map(ScalarValue::Int).or_else(|| n.as_f64().map(ScalarValue::F64)),
        Value::Null => Some(ScalarValue::Null),
        _ => None,
    }
}

/// Writes `value` as the only value of the register at `path` (a conflict's subject): one
/// change that supersedes every concurrent value.
fn settle_register(replica: &mut CaseReplica, path: &str, value: ScalarValue) -> Result<(), OnBehalfError> {
    let doc = replica.doc_mut();
    let Some((obj, last)) = attention::register_at(doc, path).map_err(|e| StoreError::Corrupt(e.to_string()))? else {
        return Err(OnBehalfError::Conflict("the conflict's register no longer exists"));
    };
    doc.put(&obj, last, value).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    doc.commit_with(
        automerge::transaction::CommitOptions::default()
            .with_message("settle conflict")
            .with_time(Utc::now().timestamp()),
    );
    Ok(())
}

/// `POST /v1/attention/{item_id}/resolve`: supervisors only.
///
/// - `conflict`: `{"value": …}` — one of the item's values; the server writes one change, on
///   the supervisor's behalf, that supersedes every concurrent value;
/// - `concurrent_amendment`, `late_entry`: `{}` (or a `note`) — read and acknowledged;
/// - `possible_duplicate`: `{"action": "dismiss"}` — not the same household.
pub async fn resolve(
    state: web::Data<AppState>,
    who: AuthenticatedDevice,
    path: web::Path<String>,
    body: web::Json<Resolution>,
) -> Result<HttpResponse, ApiFailure> {
    support::require_role(&who, &[Role::Supervisor])?;
    let id = path.into_inner();
    let body = body.into_inner();
    if body.note.as_ref().is_some_and(|n| n.chars().count() > 2000) {
        return Err(invalid("note", "at most 2000 characters"));
    }
    let lookup = who.clone();
    let lookup_id = id.clone();
    let row = support::read(&state, move |conn| -> Result<Option<AttentionRow>, StoreError> {
        match attention::find(conn, &lookup_id)? {
            Some(row) if may_see(conn, &lookup, &row)? => Ok(Some(row)),
            _ => Ok(None),
        }
    })
    .await?
    .ok_or_else(|| not_found("attention item"))?;
    if row.resolved_at.is_some() {
        return Err(ApiFailure::new(ApiErrorCode::Conflict, "this item is already resolved"));
    }
    let kind = AttentionKind::from_key(&row.kind).unwrap_or(AttentionKind::Conflict);
    let note = body.note.clone();
    let case = CaseId::parse(&row.case_id).ok();
    let staff = who.staff;
    let device = who.device;
    // Marks the item resolved, in the transaction of whatever the resolution wrote: a
    // supervisor who lost a race to another hears 409 and nothing of theirs is kept.
    let finish = move |conn: &mut DbConnection, resolution: Value| -> Result<AttentionItem, OnBehalfError> {
        let at = Utc::now().naive_utc();
        if !attention::resolve(conn, &id, Some(&staff), &resolution, at)? {
            return Err(OnBehalfError::Conflict("this item is already resolved"));
        }
        audit::record(conn, at, Some(&staff), Some(&device), case.as_ref(), "attention.resolve", &id)?;
        let row = attention::find(conn, &id)?.ok_or_else(|| StoreError::Corrupt("attention item vanished".into()))?;
        Ok(item(conn, row)?)
    };
    let resolution = match kind {
        AttentionKind::Conflict => {
            let chosen = body.value.ok_or_else(|| invalid("value", "choose one of the item's values"))?;
            let detail: Value = serde_json::from_str(&row.detail).unwrap_or(Value::Null);
            let offered = detail["values"].as_array().cloned().unwrap_or_default();
            if !offered.iter().any(|v| v["value"] == chosen) {
                return Err(invalid("value", "not one of the item's values"));
            }
            let value = scalar(&chosen)
                .ok_or_else(|| invalid("value", "a conflict value is a string, number, boolean or null"))?;
            let case = CaseId::parse(&row.case_id).map_err(|_| not_found("attention item"))?;
            let requester = support::requester(&who);
            let engine = state.engine.clone();
            let path = row.subject.clone();
            let resolution = json!({ "chose": chosen, "note": note });
            let ((), resolved) = web::block(move || {
                engine.write_on_behalf_then(
                    &requester,
                    &case,
                    "attention.choose",
                    &path,
                    |replica| settle_register(replica, &path, value),
                    |conn| finish(conn, resolution),
                )
            })
            .await??;
            return Ok(support::json(&resolved));
        }
        AttentionKind::ConcurrentAmendment | AttentionKind::LateEntry => json!({ "acknowledged": true, "note": note }),
        AttentionKind::PossibleDuplicate => match body.action.as_deref() {
            Some("dismiss") => json!({ "dismissed": true, "note": note }),
            _ => return Err(invalid("action", "expected dismiss (merging is `POST /v1/cases/{case_id}/merge`)")),
        },
        AttentionKind::QuarantinedBatch => {
            return Err(invalid("kind", "a quarantined batch is decided at `POST /v1/quarantine/{id}/decision`"));
        }
    };
    let resolved = support::write(&state, move |conn| finish(conn, resolution)).await?;
    Ok(support::json(&resolved))
}
