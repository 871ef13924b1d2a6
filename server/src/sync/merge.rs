//! Merging a duplicate case into the case that survives: two phones opened a case for the
//! same household offline, and a supervisor decides they are one.
//!
//! In one transaction, with both document rows locked (in id order, so two merges never
//! deadlock; a case already merged is refused before anything is locked, since a late upload
//! on it holds its row while it locks the survivor):
//!
//! - every household member, activity, review, plan, evaluation and decision of the
//!   duplicate is copied into the survivor's document (same ids, so nothing is doubled when a
//!   merge is retried), and the duplicate's assignees join the survivor's other assignees, as
//!   **one change** by the server's actor on the supervisor's behalf;
//! - the result must read without schema issues;
//! - the duplicate becomes a redirect (`case_redirects`, `cases.merged_into`): nobody sees it
//!   any more, its number and id lead to the survivor, its projections move to the
//!   survivor's; its document stays stored, whole, with its history;
//! - devices that held the duplicate find it on their purge list (`merged`) at their next
//!   sync and receive the survivor if they may see it.
//!
//! Copies take each register's current value; where the duplicate held concurrent values, the
//! others stay in the duplicate's stored history.

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{AutoCommit, Automerge, ObjId, ObjType, ReadDoc, Value, ROOT};
use chrono::Utc;
use diesel::prelude::*;
use serde_json::json;
use tsunagi_sync::document::{keys, read_case, CaseView};
use tsunagi_sync::ids::CaseId;

use super::{Requester, SyncEngine};
use crate::attention::{self, AttentionKind};
use crate::store::documents::{self, Sender};
use crate::store::schema::{
    activities, activity_topics, assignments, case_concerns, case_redirects, cases, persons, reviews,
};
use crate::store::{activity_months, audit, forms, projections, visibility, DbConnection, StoreError};

/// Why a merge was not made. Nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// Either case does not exist or is not visible to the supervisor.
    #[error("no such case")]
    NotFound,
    /// A case cannot be merged into itself.
    #[error("a case cannot be merged into itself")]
    SameCase,
    /// One of the two was merged already.
    #[error("case {0} was already merged into another case")]
    AlreadyMerged(CaseId),
    /// The merged document would not read as a valid case (a bug, or cases of another schema).
    #[error("the merged case would break the document schema: {0}")]
    Invalid(String),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a merge did.
#[derive(Debug, Clone)]
pub struct Merged {
    /// The survivor, after the merge.
    pub survivor: CaseView,
    /// The duplicate's case number, which now leads to the survivor.
    pub duplicate_number: Option<String>,
    /// How many entries (members, activities, reviews, forms) were copied.
    pub copied: usize,
}

fn corrupt(e: automerge::AutomergeError) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

/// Copies the value at `src`/`key` of `from` to `dst`/`key` of `to`, containers deeply.
fn copy(from: &Automerge, src: &ObjId, key: &str, to: &mut AutoCommit, dst: &ObjId) -> Result<(), StoreError> {
    match from.get(src, key).map_err(corrupt)? {
        None => Ok(()),
        Some((Value::Scalar(value), _)) => {
            to.put(dst, key, value.into_owned()).map_err(corrupt)?;
            Ok(())
        }
        Some((Value::Object(ObjType::Text), id)) => {
            let text = from.text(&id).map_err(corrupt)?;
            let obj = to.put_object(dst, key, ObjType::Text).map_err(corrupt)?;
            to.splice_text(&obj, 0, 0, &text).map_err(corrupt)?;
            Ok(())
        }
        Some((Value::Object(ObjType::Map | ObjType::Table), id)) => {
            let obj = to.put_object(dst, key, ObjType::Map).map_err(corrupt)?;
            let keys: Vec<String> = from.keys(&id).collect();
            for k in keys {
                copy(from, &id, &k, to, &obj)?;
            }
            Ok(())
        }
        Some((Value::Object(ObjType::List), id)) => {
            let obj = to.put_object(dst, key, ObjType::List).map_err(corrupt)?;
            for index in 0..from.length(&id) {
                match from.get(&id, index).map_err(corrupt)? {
                    Some((Value::Scalar(value), _)) => {
                        to.insert(&obj, index, value.into_owned()).map_err(corrupt)?;
                    }
                    Some((Value::Object(_), _)) | None => {
                        return Err(StoreError::Corrupt("a list of containers in a case document".into()));
                    }
                }
            }
            Ok(())
        }
    }
}

/// The map at `key` of the root.
fn root_map<D: ReadDoc>(doc: &D, key: &str) -> Result<Option<ObjId>, StoreError> {
    Ok(match doc.get(ROOT, key).map_err(corrupt)? {
        Some((Value::Object(ObjType::Map), id)) => Some(id),
        _ => None,
    })
}

/// Copies into `to` every household member, activity, review, plan, evaluation and decision
/// of `from` that `to` does not have (by id: an entry already there is left as it is).
/// Returns how many were copied.
fn carry_entries(from: &Automerge, to: &mut AutoCommit) -> Result<usize, StoreError> {
    let mut copied = 0;
    for container in [keys::HOUSEHOLD, keys::ACTIVITIES, keys::REVIEWS, keys::PLANS, keys::EVALUATIONS, keys::DECISIONS]
    {
        let (Some(src), Some(dst)) = (root_map(from, container)?, root_map(to, container)?) else { continue };
        let entries: Vec<String> = from.keys(&src).collect();
        for entry in entries {
            if to.get(&dst, entry.as_str()).map_err(corrupt)?.is_none() {
                copy(from, &src, &entry, to, &dst)?;
                copied += 1;
            }
        }
    }
    Ok(copied)
}

/// Commits what `to` holds as one change with `message`; returns the changes made after
/// `heads`, the document, and its view — or its schema issues, when it does not read cleanly.
fn commit_and_read(
    to: &mut AutoCommit,
    message: &str,
    heads: &[automerge::ChangeHash],
) -> (Vec<automerge::Change>, Automerge, Result<CaseView, Vec<String>>) {
    to.commit_with(CommitOptions::default().with_message(message).with_time(Utc::now().timestamp()));
    let own = to.get_changes(heads);
    let after = to.document().clone();
    let reading = read_case(&after);
    let view = match reading.view {
        Some(view) if reading.issues.is_empty() => Ok(view),
        _ => Err(reading.issues.iter().map(|v| v.to_string()).collect()),
    };
    (own, after, view)
}

fn is_merged(conn: &mut DbConnection, case: &CaseId) -> Result<bool, StoreError> {
    Ok(projections::merged_into(conn, case)?.is_some())
}

/// Deletes every projection row of `case` but its `cases` row.
fn forget_projections(conn: &mut DbConnection, case: &str) -> Result<(), StoreError> {
    diesel::delete(persons::table.filter(persons::case_id.eq(case))).execute(conn)?;
    diesel::delete(activities::table.filter(activities::case_id.eq(case))).execute(conn)?;
    diesel::delete(activity_topics::table.filter(activity_topics::case_id.eq(case))).execute(conn)?;
    activity_months::refresh_case(conn, case)?;
    diesel::delete(case_concerns::table.filter(case_concerns::case_id.eq(case))).execute(conn)?;
    diesel::delete(reviews::table.filter(reviews::case_id.eq(case))).execute(conn)?;
    diesel::delete(assignments::table.filter(assignments::case_id.eq(case))).execute(conn)?;
    forms::delete_forms(conn, case)
}

impl SyncEngine {
    /// Work that reached `merged` after it was merged away, from a device that had not heard
    /// yet (its batch is stored in `merged`'s document, `doc`): every entry `survivor` lacks is
    /// copied into it, as one change by the server's actor recorded as `sender`'s, and the
    /// survivor is projected — the late visit is in the survivor's record, visit log and
    /// figures. Runs in the caller's transaction, which must [`documents::stamp`] the case they
    /// went to before it commits. Returns that case (`survivor`, or the case it was itself
    /// merged into meanwhile) and whether anything was copied into it.
    ///
    /// If the survivor would not read cleanly with them (it never should: members are copied
    /// with the activities that name them), nothing is copied and the entries stay in the
    /// merged case's stored document, where the late-entry item on the survivor points.
    pub(super) fn carry_into_survivor(
        &self,
        conn: &mut DbConnection,
        doc: &Automerge,
        survivor: &CaseId,
        sender: Sender,
        at: chrono::NaiveDateTime,
    ) -> Result<(CaseId, bool), StoreError> {
        // The survivor may itself have been merged away while this batch waited for its lock:
        // follow the redirects once each row is locked, so the entries land where they live on.
        let mut target = *survivor;
        let mut found = None;
        // Merges form no cycles; the bound only guards a damaged table.
        for _ in 0..64 {
            let Some(row) = documents::lock(conn, &target)? else { return Ok((target, false)) };
            match projections::merged_into(conn, &target)? {
                Some(next) => target = next,
                None => {
                    found = Some(row);
                    break;
                }
            }
        }
        let row = found
            .ok_or_else(|| StoreError::Corrupt(format!("case_redirects: the merges of {survivor} form a cycle")))?;
        let survivor = &target;
        let stored = documents::load(conn, &row)?;
        let heads = stored.get_heads();
        let mut to = AutoCommit::load(&stored.save()).map_err(corrupt)?.with_actor(self.actor.clone());
        let copied = carry_entries(doc, &mut to)?;
        if copied == 0 {
            return Ok((target, false));
        }
        let (own, after, view) = commit_and_read(&mut to, "carry late entries of a merged case", &heads);
        let view = match view {
            Ok(view) => view,
            Err(issues) => {
                tracing::warn!(case = %survivor, issues = issues.len(), "late entries of a merged case not carried");
                return Ok((target, false));
            }
        };
        documents::append_changes(conn, survivor, &own, sender, at)?;
        // Stamped with the commit clock by the caller, with the rest of its transaction.
        documents::write(conn, &row, &after, at)?;
        projections::project(conn, &view, at)?;
        audit::record(
            conn,
            at,
            sender.staff.as_ref(),
            sender.device.as_ref(),
            Some(survivor),
            "case.carried",
            &copied.to_string(),
        )?;
        Ok((target, true))
    }

    /// Merges `duplicate` into `survivor` for supervisor `who`. Blocking.
    pub fn merge_cases(&self, who: &Requester, survivor: &CaseId, duplicate: &CaseId) -> Result<Merged, MergeError> {
        if survivor == duplicate {
            return Err(MergeError::SameCase);
        }
        let at = Utc::now().naive_utc();
        self.db.write(|conn| {
            // A case already merged is refused before anything is locked: a late upload on it
            // holds its row while it locks its survivor, so locking it here first (when its id
            // sorts after the survivor's) could deadlock with that upload. Checked again below,
            // under the locks.
            for case in [survivor, duplicate] {
                if is_merged(conn, case)? {
                    return Err(MergeError::AlreadyMerged(*case));
                }
            }
            // Lock in id order: two merges of the same pair never wait on each other crosswise.
            let (first, second) = if survivor < duplicate { (survivor, duplicate) } else { (duplicate, survivor) };
            let first_row = documents::lock(conn, first)?;
            let second_row = documents::lock(conn, second)?;
            let (Some(first_row), Some(second_row)) = (first_row, second_row) else {
                return Err(MergeError::NotFound);
            };
            let (survivor_row, duplicate_row) =
                if survivor < duplicate { (first_row, second_row) } else { (second_row, first_row) };
            for case in [survivor, duplicate] {
                if is_merged(conn, case)? {
                    return Err(MergeError::AlreadyMerged(*case));
                }
                if !visibility::may_see(conn, who.viewer(), case)? {
                    return Err(MergeError::NotFound);
                }
            }
            if survivor_row.municipality != duplicate_row.municipality {
                return Err(MergeError::NotFound);
            }
            let from = documents::load(conn, &duplicate_row)?;
            let stored = documents::load(conn, &survivor_row)?;
            let heads = stored.get_heads();
            let mut to = AutoCommit::load(&stored.save()).map_err(corrupt)?.with_actor(self.actor.clone());
            let copied = carry_entries(&from, &mut to)?;
            let duplicate_view =
                read_case(&from).view.ok_or_else(|| MergeError::Invalid("the duplicate does not read".into()))?;
            let survivor_before =
                read_case(&stored).view.ok_or_else(|| MergeError::Invalid("the survivor does not read".into()))?;
            if let Some(assignees) = root_map(&to, keys::ASSIGNEES)? {
                if let Some((Value::Object(ObjType::Map), others)) =
                    to.get(&assignees, keys::OTHERS).map_err(corrupt)?
                {
                    let joining = duplicate_view.assignees.primary.iter().chain(duplicate_view.assignees.others.iter());
                    for staff in joining {
                        if !survivor_before.assignees.includes(staff) {
                            to.put(&others, staff.to_string(), true).map_err(corrupt)?;
                        }
                    }
                }
            }
            let (own, after, view) = commit_and_read(&mut to, "merge duplicate case", &heads);
            let view = view.map_err(|issues| MergeError::Invalid(issues.join("; ")))?;
            let duplicate_number = duplicate_view.case_number.map(|n| n.to_string());
            diesel::insert_into(case_redirects::table)
                .values((
                    case_redirects::case_id.eq(duplicate.to_string()),
                    case_redirects::merged_into.eq(survivor.to_string()),
                    case_redirects::municipality.eq(&duplicate_row.municipality),
                    case_redirects::case_number.eq(&duplicate_number),
                    case_redirects::merged_at.eq(at),
                    case_redirects::merged_by.eq(who.staff.to_string()),
                ))
                .execute(conn)
                .map_err(StoreError::from)?;
            forget_projections(conn, &duplicate.to_string())?;
            diesel::update(cases::table.find(duplicate.to_string()))
                .set(cases::merged_into.eq(Some(survivor.to_string())))
                .execute(conn)
                .map_err(StoreError::from)?;
            if !own.is_empty() {
                let sender = Sender { staff: Some(who.staff), device: Some(who.device) };
                documents::append_changes(conn, survivor, &own, sender, at)?;
                documents::update(conn, &survivor_row, &after, at)?;
            }
            projections::project(conn, &view, at)?;
            // The duplicate pair's items are settled by the merge.
            let (s, d) = (survivor.to_string(), duplicate.to_string());
            for (case, other) in [(&s, &d), (&d, &s)] {
                if let Some(item) = attention::find_open(conn, case, AttentionKind::PossibleDuplicate, other)? {
                    attention::resolve(conn, &item.item_id, Some(&who.staff), &json!({ "merged_into": s }), at)?;
                }
            }
            let detail = format!("{d} into {s}");
            audit::record(conn, at, Some(&who.staff), Some(&who.device), Some(survivor), "case.merge", &detail)?;
            audit::record(conn, at, Some(&who.staff), Some(&who.device), Some(duplicate), "case.merged", &detail)?;
            Ok(Merged { survivor: view, duplicate_number, copied })
        })
    }
}
