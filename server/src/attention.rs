//! The attention queue: nothing hidden, nothing lost.
//!
//! Other field systems keep the last write and drop the rest. tsunagi keeps every concurrent
//! value (Automerge does) and, at sync time, in the very transaction that stores a batch,
//! raises an item for a supervisor wherever offline work collided or arrived out of turn:
//!
//! - [`AttentionKind::Conflict`]: a register (status, consent, primary assignee, an
//!   activity's outcome or follow-up date, a household member's fields…) holds concurrent
//!   values — every value is listed with the change that wrote it, the device and staff
//!   member who sent that change, when it was set and when it arrived;
//! - [`AttentionKind::ConcurrentAmendment`]: two devices amended the same text (a narrative,
//!   a note) concurrently; the text merged character by character, and should be read once;
//! - [`AttentionKind::LateEntry`]: an activity arrived after its case was closed or suspended,
//!   or after its counsellor was unassigned, or after the case was merged into another —
//!   accepted and kept, never refused for that;
//! - [`AttentionKind::PossibleDuplicate`]: a household member matches one of another case of
//!   the municipality (same name reading and date of birth);
//! - [`AttentionKind::QuarantinedBatch`]: a refused upload waits for a decision.
//!
//! One open item per case, kind and subject (a path, an activity, the other case, a
//! quarantine id): a later batch updates it rather than raising it twice. A conflict a later
//! change settled is closed automatically (`settled`).

use std::collections::{BTreeMap, BTreeSet};

use automerge::{Automerge, ChangeHash, PatchAction, ReadDoc};
use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde::Serialize;
use serde_json::{json, Value};
use tsunagi_sync::document::{format_instant, keys, CaseView};
use tsunagi_sync::domain::{CaseStatus, Role};
use tsunagi_sync::ids::{CaseId, MunicipalityCode, StaffId, JAPAN};
use uuid::Uuid;

use crate::store::schema::{attention, cases, changes, persons};
use crate::store::{DbConnection, StoreError};

/// What an attention item is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AttentionKind {
    /// 競合: concurrent values in a register.
    Conflict,
    /// 同時編集: a text amended concurrently on two devices.
    ConcurrentAmendment,
    /// 遅れて届いた記録: an activity that arrived after the case was closed or suspended, or
    /// after its counsellor was unassigned.
    LateEntry,
    /// 重複の可能性: a household that may already have a case.
    PossibleDuplicate,
    /// 保留中の送信: a refused upload waiting for a decision.
    QuarantinedBatch,
}

impl AttentionKind {
    /// Every kind.
    pub const ALL: &'static [AttentionKind] = &[
        AttentionKind::Conflict,
        AttentionKind::ConcurrentAmendment,
        AttentionKind::LateEntry,
        AttentionKind::PossibleDuplicate,
        AttentionKind::QuarantinedBatch,
    ];

    /// The stored key.
    pub fn as_key(self) -> &'static str {
        match self {
            AttentionKind::Conflict => "conflict",
            AttentionKind::ConcurrentAmendment => "concurrent_amendment",
            AttentionKind::LateEntry => "late_entry",
            AttentionKind::PossibleDuplicate => "possible_duplicate",
            AttentionKind::QuarantinedBatch => "quarantined_batch",
        }
    }

    /// The Japanese label supervisors see.
    pub fn label(self) -> &'static str {
        match self {
            AttentionKind::Conflict => "競合",
            AttentionKind::ConcurrentAmendment => "同時編集",
            AttentionKind::LateEntry => "遅れて届いた記録",
            AttentionKind::PossibleDuplicate => "重複の可能性",
            AttentionKind::QuarantinedBatch => "保留中の送信",
        }
    }

    /// Parses a stored key.
    pub fn from_key(key: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|k| k.as_key() == key)
    }
}

/// A stored attention item.
#[derive(Debug, Clone, Queryable)]
pub struct AttentionRow {
    /// Its id.
    pub item_id: String,
    /// The municipality of its case.
    pub municipality: String,
    /// The case.
    pub case_id: String,
    /// Its kind's key.
    pub kind: String,
    /// What within the case: a path, an activity id, the other case's id, a quarantine id.
    pub subject: String,
    /// The details, JSON.
    pub detail: String,
    /// When it was raised (or last updated).
    pub raised_at: NaiveDateTime,
    /// The staff member whose sync raised it.
    pub raised_by: Option<String>,
    /// When it was resolved.
    pub resolved_at: Option<NaiveDateTime>,
    /// Who resolved it (none when a later change settled it).
    pub resolved_by: Option<String>,
    /// How, JSON.
    pub resolution: Option<String>,
}

/// The open item of `case` with `kind` and `subject`, if any.
pub fn find_open(
    conn: &mut DbConnection,
    case: &str,
    kind: AttentionKind,
    subject: &str,
) -> Result<Option<AttentionRow>, StoreError> {
    Ok(attention::table
        .filter(attention::case_id.eq(case))
        .filter(attention::kind.eq(kind.as_key()))
        .filter(attention::subject.eq(subject))
        .filter(attention::resolved_at.is_null())
        .first::<AttentionRow>(conn)
        .optional()?)
}

/// One item's id and row, by id.
pub fn find(conn: &mut DbConnection, id: &str) -> Result<Option<AttentionRow>, StoreError> {
    Ok(attention::table.find(id).first::<AttentionRow>(conn).optional()?)
}

/// Raises an item, or updates the detail of the open one with the same case, kind and subject.
#[allow(clippy::too_many_arguments)]
pub fn raise(
    conn: &mut DbConnection,
    municipality: &str,
    case: &str,
    kind: AttentionKind,
    subject: &str,
    detail: &Value,
    by: Option<&StaffId>,
    at: NaiveDateTime,
) -> Result<(), StoreError> {
    let detail = detail.to_string();
    match find_open(conn, case, kind, subject)? {
        Some(open) => {
            if open.detail != detail {
                diesel::update(attention::table.find(&open.item_id)).set(attention::detail.eq(detail)).execute(conn)?;
            }
        }
        None => {
            diesel::insert_into(attention::table)
                .values((
                    attention::item_id.eq(Uuid::new_v4().to_string()),
                    attention::municipality.eq(municipality),
                    attention::case_id.eq(case),
                    attention::kind.eq(kind.as_key()),
                    attention::subject.eq(subject),
                    attention::detail.eq(detail),
                    attention::raised_at.eq(at),
                    attention::raised_by.eq(by.map(|s| s.to_string())),
                ))
                .execute(conn)?;
        }
    }
    Ok(())
}

/// Marks an item resolved. `false`: it was resolved already (nothing changed).
pub fn resolve(
    conn: &mut DbConnection,
    id: &str,
    by: Option<&StaffId>,
    resolution: &Value,
    at: NaiveDateTime,
) -> Result<bool, StoreError> {
    let updated = diesel::update(attention::table.find(id).filter(attention::resolved_at.is_null()))
        .set((
            attention::resolved_at.eq(Some(at)),
            attention::resolved_by.eq(by.map(|s| s.to_string())),
            attention::resolution.eq(Some(resolution.to_string())),
        ))
        .execute(conn)?;
    Ok(updated == 1)
}

/// What a stored batch is checked against.
pub struct Batch<'a> {
    /// The case.
    pub case: &'a CaseId,
    /// Its municipality.
    pub municipality: &'a MunicipalityCode,
    /// The document before the batch (empty for a new case).
    pub before: &'a Automerge,
    /// The document after it.
    pub after: &'a Automerge,
    /// The view after it.
    pub view: &'a CaseView,
    /// The server heads the sending device had seen (`since`); empty when unknown.
    pub since: &'a [ChangeHash],
    /// Who sent it.
    pub staff: &'a StaffId,
    /// Their role.
    pub role: Role,
    /// When it arrived.
    pub at: NaiveDateTime,
    /// The case `case` lives on in, when it was merged away (the batch's work was carried
    /// there).
    pub survivor: Option<&'a CaseId>,
}

/// What the checks need of the case as it was before a batch: read straight from the
/// document (the batch's own view is of the result), without reading the whole case again.
struct Before {
    status: CaseStatus,
    /// The primary and other assignees' staff ids.
    assigned: BTreeSet<String>,
    /// The ids of its activities.
    activities: BTreeSet<String>,
    /// The ids of its household members.
    household: BTreeSet<String>,
}

impl Before {
    fn read(doc: &Automerge) -> Before {
        use automerge::{ScalarValue, Value as AmValue, ROOT};
        let map = |obj: &automerge::ObjId, key: &str| match doc.get(obj, key) {
            Ok(Some((AmValue::Object(_), id))) => Some(id),
            _ => None,
        };
        let text = |obj: &automerge::ObjId, key: &str| match doc.get(obj, key) {
            Ok(Some((AmValue::Scalar(s), _))) => match s.as_ref() {
                ScalarValue::Str(s) => Some(s.to_string()),
                _ => None,
            },
            _ => None,
        };
        let keys =
            |key: &str| -> BTreeSet<String> { map(&ROOT, key).map(|obj| doc.keys(&obj).collect()).unwrap_or_default() };
        // As the case view reads it: a missing status is `intake`.
        let status =
            text(&ROOT, keys::STATUS).and_then(|s| CaseStatus::from_key(&s).ok()).unwrap_or(CaseStatus::Intake);
        let mut assigned = BTreeSet::new();
        if let Some(assignees) = map(&ROOT, keys::ASSIGNEES) {
            assigned.extend(text(&assignees, keys::PRIMARY));
            if let Some(others) = map(&assignees, keys::OTHERS) {
                assigned.extend(doc.keys(&others));
            }
        }
        Before { status, assigned, activities: keys(keys::ACTIVITIES), household: keys(keys::HOUSEHOLD) }
    }
}

/// Raises (and settles) the items a stored batch calls for. Runs inside the batch's write
/// transaction, after its changes and projections are written.
pub fn check_batch(conn: &mut DbConnection, batch: &Batch<'_>) -> Result<(), StoreError> {
    let before_view = if batch.before.get_heads().is_empty() { None } else { Some(Before::read(batch.before)) };
    if let Some(survivor) = batch.survivor {
        // Work on a case that was merged away, from a device that had not heard yet: stored in
        // the merged case's document, carried into the survivor's (see
        // `SyncEngine::carry_into_survivor`), and brought to the supervisor on the survivor.
        for activity in batch.view.activities.values() {
            if before_view.as_ref().is_some_and(|b| b.activities.contains(&activity.id.to_string())) {
                continue;
            }
            let detail = late_detail(activity, "case_merged", ("merged_case_id", json!(batch.case)));
            raise(
                conn,
                batch.municipality.as_str(),
                &survivor.to_string(),
                AttentionKind::LateEntry,
                &activity.id.to_string(),
                &detail,
                Some(batch.staff),
                batch.at,
            )?;
        }
        return Ok(());
    }
    conflicts(conn, batch)?;
    if let Some(before_view) = &before_view {
        amendments(conn, batch)?;
        late_entries(conn, batch, before_view)?;
    }
    duplicates(conn, batch, before_view.as_ref())?;
    Ok(())
}

/// Conflicts: one open item per conflicting path, listing every value; items whose path no
/// longer conflicts are settled.
fn conflicts(conn: &mut DbConnection, batch: &Batch<'_>) -> Result<(), StoreError> {
    let case = batch.case.to_string();
    let mut current = BTreeSet::new();
    for conflict in &batch.view.conflicts {
        current.insert(conflict.path.clone());
        let writers = register_writers(batch.after, &conflict.path);
        let mut values = Vec::new();
        for value in &conflict.values {
            // The change that wrote this value: who sent it (the staff member on whose behalf
            // the server wrote it, for the server's own actor), from which device, when it
            // arrived, and the time its author's device gave it.
            let change = writers.iter().find(|(actor, _)| *actor == value.actor).map(|(_, hash)| *hash);
            let stored: Option<(Option<String>, Option<String>, NaiveDateTime)> = match change {
                Some(hash) => changes::table
                    .filter(changes::case_id.eq(&case))
                    .filter(changes::hash.eq(hash.0.to_vec()))
                    .select((changes::staff_id, changes::device_id, changes::received_at))
                    .first(conn)
                    .optional()?,
                None => None,
            };
            let set_at = change
                .and_then(|hash| batch.after.get_change_meta_by_hash(&hash))
                .filter(|meta| meta.timestamp > 0)
                .and_then(|meta| chrono::DateTime::from_timestamp(meta.timestamp, 0))
                .map(|t| format_instant(t.with_timezone(&JAPAN)));
            let (staff, device, arrived) = match stored {
                Some((staff, device, arrived)) => (staff, device, Some(arrived)),
                None => (None, value.device_id.map(|d| d.to_string()), None),
            };
            values.push(json!({
                "value": value.value,
                "staff_id": staff,
                "device_id": device,
                "by_server": value.device_id.is_none(),
                "change": change.map(|h| h.to_string()),
                "set_at": set_at,
                "arrived_at": arrived.map(|t| format_instant(t.and_utc().with_timezone(&JAPAN))),
            }));
        }
        let detail = json!({ "path": conflict.path, "values": values });
        raise(
            conn,
            batch.municipality.as_str(),
            &case,
            AttentionKind::Conflict,
            &conflict.path,
            &detail,
            Some(batch.staff),
            batch.at,
        )?;
    }
    let open: Vec<(String, String)> = attention::table
        .filter(attention::case_id.eq(&case))
        .filter(attention::kind.eq(AttentionKind::Conflict.as_key()))
        .filter(attention::resolved_at.is_null())
        .select((attention::item_id, attention::subject))
        .load(conn)?;
    for (id, path) in open {
        if !current.contains(&path) {
            resolve(conn, &id, None, &json!({ "settled": "a later change left one value" }), batch.at)?;
        }
    }
    Ok(())
}

/// The Automerge actor (hex) and change of each value a register at `path` holds now.
fn register_writers(doc: &Automerge, path: &str) -> Vec<(String, ChangeHash)> {
    let Ok(Some((obj, key))) = register_at(doc, path) else { return Vec::new() };
    doc.get_all(&obj, key)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(_, id)| {
            let actor = match &id {
                automerge::ObjId::Id(_, actor, _) => actor.to_hex_string(),
                automerge::ObjId::Root => return None,
            };
            doc.hash_for_opid(&id).map(|hash| (actor, hash))
        })
        .collect()
}

/// The map holding the register at `path` (a conflict's subject, e.g.
/// `/activities/<id>/outcome`) and the register's key; `None` when the path is empty or a
/// map on it no longer exists.
pub fn register_at<'p, D: ReadDoc>(
    doc: &D,
    path: &'p str,
) -> Result<Option<(automerge::ObjId, &'p str)>, automerge::AutomergeError> {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let Some((last, parents)) = segs.split_last() else { return Ok(None) };
    let mut obj = automerge::ROOT;
    for seg in parents {
        match doc.get(&obj, *seg)? {
            Some((automerge::Value::Object(automerge::ObjType::Map), id)) => obj = id,
            _ => return Ok(None),
        }
    }
    Ok(Some((obj, last)))
}

/// The text objects (narratives, notes, comments…) a range of history edited, by path.
fn text_paths(doc: &Automerge, from: &[ChangeHash], to: &[ChangeHash]) -> BTreeSet<String> {
    let mut paths = BTreeSet::new();
    for patch in doc.diff(from, to) {
        if matches!(patch.action, PatchAction::SpliceText { .. } | PatchAction::DeleteSeq { .. }) {
            let segs: Vec<String> = patch
                .path
                .iter()
                .map(|(_, prop)| match prop {
                    automerge::Prop::Map(key) => key.clone(),
                    automerge::Prop::Seq(index) => index.to_string(),
                })
                .collect();
            paths.insert(format!("/{}", segs.join("/")));
        }
    }
    paths
}

/// Concurrent amendments: texts this batch edited that other devices also edited after the
/// sender's `since` (so without the sender seeing it).
fn amendments(conn: &mut DbConnection, batch: &Batch<'_>) -> Result<(), StoreError> {
    let before_heads = batch.before.get_heads();
    if batch.since.is_empty() || batch.since == before_heads.as_slice() {
        return Ok(());
    }
    if batch.since.iter().any(|h| batch.after.get_change_by_hash(h).is_none()) {
        return Ok(());
    }
    let theirs = text_paths(batch.after, batch.since, &before_heads);
    if theirs.is_empty() {
        return Ok(());
    }
    let ours = text_paths(batch.after, &before_heads, &batch.after.get_heads());
    for path in ours.intersection(&theirs) {
        let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let detail = match segs.as_slice() {
            [keys::ACTIVITIES, id, field] => json!({ "path": path, "activity_id": id, "field": field }),
            [keys::HOUSEHOLD, id, field] => json!({ "path": path, "person_id": id, "field": field }),
            _ => json!({ "path": path }),
        };
        raise(
            conn,
            batch.municipality.as_str(),
            &batch.case.to_string(),
            AttentionKind::ConcurrentAmendment,
            path,
            &detail,
            Some(batch.staff),
            batch.at,
        )?;
    }
    Ok(())
}

/// The detail of a late entry: the activity, why it is late, and one more fact.
fn late_detail(activity: &tsunagi_sync::document::Activity, reason: &str, (key, value): (&str, Value)) -> Value {
    let mut detail = json!({
        "activity_id": activity.id,
        "kind": activity.kind().as_key(),
        "started_at": format_instant(activity.started_at),
        "recorded_by": activity.recorded_by,
        "device_id": activity.device_id,
        "reason": reason,
    });
    detail[key] = value;
    detail
}

/// Late entries: activities new in this batch on a case that was closed or suspended, or
/// logged by a counsellor who is no longer assigned. They are stored like any other.
fn late_entries(conn: &mut DbConnection, batch: &Batch<'_>, before: &Before) -> Result<(), StoreError> {
    let reason = match before.status {
        CaseStatus::Closed => Some("case_closed"),
        CaseStatus::Suspended => Some("case_suspended"),
        _ if batch.role == Role::Counsellor && !before.assigned.contains(&batch.staff.to_string()) => {
            Some("not_assigned")
        }
        _ => None,
    };
    let Some(reason) = reason else { return Ok(()) };
    let arrived = batch.at.and_utc().with_timezone(&JAPAN);
    for activity in batch.view.activities.values() {
        if before.activities.contains(&activity.id.to_string()) || activity.started_at > arrived {
            continue;
        }
        let detail = late_detail(activity, reason, ("status", json!(before.status.as_key())));
        raise(
            conn,
            batch.municipality.as_str(),
            &batch.case.to_string(),
            AttentionKind::LateEntry,
            &activity.id.to_string(),
            &detail,
            Some(batch.staff),
            batch.at,
        )?;
    }
    Ok(())
}

/// A name reading as compared for duplicates: without spaces of either width.
fn normalised_kana(kana: &str) -> String {
    kana.chars().filter(|c| !c.is_whitespace() && *c != '\u{3000}').collect()
}

/// Possible duplicates: household members new in this batch whose reading and date of birth
/// match a member of another (not merged) case of the municipality.
fn duplicates(conn: &mut DbConnection, batch: &Batch<'_>, before: Option<&Before>) -> Result<(), StoreError> {
    let case = batch.case.to_string();
    let mut matches: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for person in batch.view.household.values() {
        if before.is_some_and(|b| b.household.contains(&person.id.to_string())) {
            continue;
        }
        let (Some(kana), Some(birth)) = (&person.kana, person.birth_date) else { continue };
        let wanted = normalised_kana(kana);
        if wanted.is_empty() {
            continue;
        }
        let birth = tsunagi_sync::document::format_date(birth);
        let others: Vec<(String, Option<String>)> = persons::table
            .filter(persons::birth_date.eq(&birth))
            .filter(persons::case_id.ne(&case))
            .filter(
                persons::case_id.eq_any(
                    cases::table
                        .filter(cases::municipality.eq(batch.municipality.as_str()))
                        .filter(cases::merged_into.is_null())
                        .select(cases::case_id),
                ),
            )
            .select((persons::case_id, persons::kana))
            .load(conn)?;
        for (other, other_kana) in others {
            if other_kana.as_deref().map(normalised_kana).as_deref() == Some(wanted.as_str()) {
                matches.entry(other).or_default().push(json!({ "person_id": person.id, "birth_date": birth }));
            }
        }
    }
    for (other, people) in matches {
        // One item per pair of cases, whichever side synced first.
        if find_open(conn, &other, AttentionKind::PossibleDuplicate, &case)?.is_some() {
            continue;
        }
        let detail = json!({ "other_case_id": other, "matching_members": people });
        raise(
            conn,
            batch.municipality.as_str(),
            &case,
            AttentionKind::PossibleDuplicate,
            &other,
            &detail,
            Some(batch.staff),
            batch.at,
        )?;
    }
    Ok(())
}

/// Raises the item for a refused upload kept in quarantine.
pub fn quarantined(
    conn: &mut DbConnection,
    municipality: &MunicipalityCode,
    case: &CaseId,
    quarantine_id: &str,
    staff: &StaffId,
    code: &str,
    at: NaiveDateTime,
) -> Result<(), StoreError> {
    let detail = json!({ "quarantine_id": quarantine_id, "code": code, "staff_id": staff });
    raise(
        conn,
        municipality.as_str(),
        &case.to_string(),
        AttentionKind::QuarantinedBatch,
        quarantine_id,
        &detail,
        Some(staff),
        at,
    )
}
