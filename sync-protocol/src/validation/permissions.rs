//! Schema of the result plus permissions on what changed.

use std::collections::{BTreeSet, HashMap, HashSet};

use automerge::legacy::{Key as LegacyKey, ObjectId as LegacyObjectId, OpType as LegacyOpType};
use automerge::{Automerge, ChangeHash, ExpandedChange, ObjId, PatchAction, Prop, ReadDoc, ScalarValue, Value, ROOT};

use super::{Acting, Actor, Violation, ViolationCode as Code};
use crate::document::{keys as k, parse_heads, read_case, reread_activities, CaseView};
use crate::domain::{CaseStatus, Role};

/// Validates `doc` (at its current heads) against the state it had at `before`.
///
/// Returns the typed view of the result when everything is allowed, or every violation found
/// (deduplicated, in document order). `before` is empty for a case's first upload. Every hash
/// in `before` must be in `doc`.
pub fn validate_update(doc: &Automerge, before: &[ChangeHash], acting: &Acting) -> Result<CaseView, Vec<Violation>> {
    validate_update_touched(doc, before, acting).map(|(view, _)| view)
}

/// [`validate_update`], also saying what the update wrote ([`Touched`]), from the same diff.
pub fn validate_update_touched(
    doc: &Automerge,
    before: &[ChangeHash],
    acting: &Acting,
) -> Result<(CaseView, Touched), Vec<Violation>> {
    validate_update_from(doc, before, None, acting)
}

/// [`validate_update_touched`], given the view of the document at `before` when the caller
/// has it (read without issues: a stored case). When the update wrote only into activities,
/// only those are read again ([`crate::document::reread_activities`]) instead of the whole
/// case; the result is the same.
pub fn validate_update_from(
    doc: &Automerge,
    before: &[ChangeHash],
    before_view: Option<CaseView>,
    acting: &Acting,
) -> Result<(CaseView, Touched), Vec<Violation>> {
    let batch: Vec<ExpandedChange> =
        if before.is_empty() { Vec::new() } else { doc.get_changes(before).iter().map(|c| c.decode()).collect() };
    validate_batch(doc, before, before_view, acting, &batch)
}

/// [`validate_update_from`], given the changes that were applied after `before` (decoded;
/// none of them already part of the document at `before`), so that they need not be
/// collected from the document again.
pub(super) fn validate_batch(
    doc: &Automerge,
    before: &[ChangeHash],
    before_view: Option<CaseView>,
    acting: &Acting,
    batch: &[ExpandedChange],
) -> Result<(CaseView, Touched), Vec<Violation>> {
    let mut touched = Touched { other: before.is_empty(), ..Touched::default() };
    let mut violations = Vec::new();
    if let Some(missing) = before.iter().find(|h| doc.get_change_by_hash(h).is_none()) {
        return Err(vec![Violation::new(
            Code::NotACase,
            "/",
            format!("the earlier state {missing} is not part of this document"),
        )]);
    }
    let after = doc.get_heads();
    let patches = if before == after.as_slice() { Vec::new() } else { doc.diff(before, &after) };

    let mut checker = Checker {
        doc,
        before,
        acting,
        violations: Vec::new(),
        recorded_by: HashMap::new(),
        new_checked: HashSet::new(),
    };
    // Where the batch's operations write, including those the diff does not show (below).
    let hidden = if before.is_empty() { Vec::new() } else { op_paths(doc, batch) };
    if !patches.is_empty() || !hidden.is_empty() {
        checker.role_may_write();
    }
    let mut shown: HashSet<Vec<String>> = HashSet::new();
    for patch in &patches {
        let mut segs: Vec<String> = patch.path.iter().map(|(_, prop)| prop_string(prop)).collect();
        touched.note(&segs, &patch.action);
        if let PatchAction::PutMap { key, .. }
        | PatchAction::DeleteMap { key }
        | PatchAction::Conflict { prop: Prop::Map(key) }
        | PatchAction::Increment { prop: Prop::Map(key), .. } = &patch.action
        {
            shown.insert(segs.iter().cloned().chain([key.clone()]).collect());
        } else {
            shown.insert(segs.clone());
        }
        match &patch.action {
            PatchAction::PutMap { key, value, .. } => {
                segs.push(key.clone());
                if matches!(value.0, Value::Object(_)) && checker.before_value(&patch.obj, key).is_some() {
                    checker.violate(
                        Code::ContainerRecreated,
                        &segs,
                        "a container already exists here; write into it instead of replacing it",
                    );
                }
                checker.write(&segs, false);
            }
            PatchAction::DeleteMap { key } => {
                segs.push(key.clone());
                if matches!(checker.before_value(&patch.obj, key), Some(Value::Object(_))) {
                    checker.violate(
                        Code::DeletedEntity,
                        &segs,
                        "nothing is deleted from a case; void an activity instead",
                    );
                }
                checker.write(&segs, true);
            }
            PatchAction::Conflict { prop } | PatchAction::Increment { prop, .. } => {
                segs.push(prop_string(prop));
                checker.write(&segs, false);
            }
            _ => checker.write(&segs, false),
        }
    }
    // An operation the diff does not show still wrote: a value that loses to a register
    // already in conflict (it joins the conflict's values), or an edit inside a value that
    // lost. It is judged by where it writes, as a conflict the diff does show is, and counts
    // for what the batch touched.
    for (segs, delete) in hidden {
        match segs {
            None => touched.other = true,
            Some(segs) if !shown.contains(&segs) => {
                touched.note_path(&segs);
                checker.write(&segs, delete);
            }
            Some(_) => {}
        }
    }
    let reading = match before_view {
        Some(earlier) if !touched.other => reread_activities(doc, earlier, &touched.activities),
        _ => read_case(doc),
    };
    violations.extend(reading.issues);
    if let Some(view) = &reading.view {
        checker.closing_rule(view);
    }
    violations.extend(checker.violations);

    let mut seen = BTreeSet::new();
    violations.retain(|v| seen.insert((v.code.as_str(), v.path.clone())));
    match reading.view {
        Some(view) if violations.is_empty() => Ok((view, touched)),
        Some(_) => Err(violations),
        None => {
            if violations.is_empty() {
                violations.push(Violation::new(Code::NotACase, "/", "not a case document"));
            }
            Err(violations)
        }
    }
}

/// What an update wrote, by part of the case: enough for a server to rewrite only the query
/// rows that can have changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Touched {
    /// The ids of the activities written into (logged, amended, voided).
    pub activities: BTreeSet<String>,
    /// Anything else was written (a top-level field, a household member, an assignee, a
    /// review, a form…), or the case is new.
    pub other: bool,
}

impl Touched {
    /// Notes a write at `segs` (the path of the object written and, in a map, the key).
    fn note_path(&mut self, segs: &[String]) {
        match (segs.first().map(String::as_str), segs.get(1)) {
            (Some(k::ACTIVITIES), Some(id)) => {
                self.activities.insert(id.clone());
            }
            _ => self.other = true,
        }
    }

    fn note(&mut self, parents: &[String], action: &PatchAction) {
        let key = match action {
            PatchAction::PutMap { key, .. } | PatchAction::DeleteMap { key } => Some(key.as_str()),
            _ => None,
        };
        match (parents.first().map(String::as_str), parents.get(1), key) {
            (Some(k::ACTIVITIES), Some(id), _) => {
                self.activities.insert(id.clone());
            }
            (Some(k::ACTIVITIES), None, Some(id)) => {
                self.activities.insert(id.to_owned());
            }
            _ => self.other = true,
        }
    }
}

/// The field naming who wrote an entity of `container`: a review's `by`, a plan's `author`,
/// an evaluation's `evaluator`, an activity's or a decision's `recorded_by`.
fn author_field(container: &str) -> &'static str {
    match container {
        k::REVIEWS => k::BY,
        k::PLANS => k::AUTHOR,
        k::EVALUATIONS => k::EVALUATOR,
        _ => k::RECORDED_BY,
    }
}

fn prop_string(prop: &Prop) -> String {
    match prop {
        Prop::Map(key) => key.clone(),
        Prop::Seq(index) => index.to_string(),
    }
}

/// Where each operation of `batch` writes in `doc` (which holds it): the path of the object it
/// writes into, named as the diff names paths (map keys, list indices), followed by the key
/// when that object is a map; and whether it deletes a map's key. Each once, in batch order. `None` for an object `doc` cannot place
/// (it cannot happen once the changes were applied; whoever meets it must read everything).
/// Objects are placed once each.
fn op_paths(doc: &Automerge, batch: &[ExpandedChange]) -> Vec<(Option<Vec<String>>, bool)> {
    let mut objects: HashMap<String, Option<Vec<String>>> = HashMap::new();
    let (mut paths, mut seen) = (Vec::new(), HashSet::new());
    for change in batch {
        for op in &change.operations {
            let object = match &op.obj {
                LegacyObjectId::Root => Some(Vec::new()),
                LegacyObjectId::Id(id) => objects
                    .entry(id.to_string())
                    .or_insert_with_key(|id| {
                        let (obj, _) = doc.import(id).ok()?;
                        let parents = doc.parents(&obj).ok()?;
                        Some(parents.path().iter().map(|(_, prop)| prop_string(prop)).collect())
                    })
                    .clone(),
            };
            let in_map = matches!(op.key, LegacyKey::Map(_));
            let path = object.map(|mut segs| {
                if let LegacyKey::Map(key) = &op.key {
                    segs.push(key.to_string());
                }
                segs
            });
            // Deleting from a list or text edits it, as the diff's `DeleteSeq` says.
            let entry = (path, in_map && matches!(op.action, LegacyOpType::Delete));
            if seen.insert(entry.clone()) {
                paths.push(entry);
            }
        }
    }
    paths
}

fn path_of(segs: &[String]) -> String {
    if segs.is_empty() {
        "/".to_owned()
    } else {
        segs.iter().fold(String::new(), |mut acc, s| {
            acc.push('/');
            acc.push_str(s);
            acc
        })
    }
}

struct Checker<'a> {
    doc: &'a Automerge,
    before: &'a [ChangeHash],
    acting: &'a Acting,
    violations: Vec<Violation>,
    /// The author field of entities that existed before (see [`author_field`]), by path.
    recorded_by: HashMap<(String, String), Option<String>>,
    /// The new activities whose authorship has been checked.
    new_checked: HashSet<String>,
}

impl Checker<'_> {
    fn violate(&mut self, code: Code, segs: &[String], message: impl Into<String>) {
        self.violations.push(Violation::new(code, path_of(segs), message));
    }

    fn before_value(&self, obj: &ObjId, key: &str) -> Option<Value<'static>> {
        if self.before.is_empty() {
            return None;
        }
        match self.doc.get_at(obj, key, self.before) {
            Ok(Some((value, _))) => Some(value.into_owned()),
            _ => None,
        }
    }

    /// The value at a path of string keys, as it was before.
    fn before_at(&self, segs: &[&str]) -> Option<(Value<'static>, ObjId)> {
        if self.before.is_empty() {
            return None;
        }
        let mut obj = ROOT;
        let mut found = None;
        for (i, seg) in segs.iter().enumerate() {
            let (value, id) = self.doc.get_at(&obj, *seg, self.before).ok().flatten()?;
            if i + 1 < segs.len() {
                if !matches!(value, Value::Object(_)) {
                    return None;
                }
                obj = id.clone();
            }
            found = Some((value.into_owned(), id));
        }
        found
    }

    /// The scalar values at `segs` (a path of map keys) that this batch wrote: the values
    /// Automerge holds now whose operations were not visible before. Concurrent values written
    /// by others earlier are not included, so author checks judge only what this actor wrote.
    fn written_values(&self, segs: &[&str]) -> Vec<String> {
        let Some((last, parents)) = segs.split_last() else { return Vec::new() };
        let mut obj = ROOT;
        for seg in parents {
            match self.doc.get(&obj, *seg) {
                Ok(Some((Value::Object(_), id))) => obj = id,
                _ => return Vec::new(),
            }
        }
        let earlier: Vec<ObjId> = if self.before.is_empty() {
            Vec::new()
        } else {
            self.doc.get_all_at(&obj, *last, self.before).unwrap_or_default().into_iter().map(|(_, id)| id).collect()
        };
        self.doc
            .get_all(&obj, *last)
            .unwrap_or_default()
            .into_iter()
            .filter(|(_, id)| !earlier.contains(id))
            .map(|(value, _)| match value {
                Value::Scalar(s) => match s.as_ref() {
                    ScalarValue::Str(s) => s.to_string(),
                    other => other.to_string(),
                },
                Value::Object(t) => format!("{t:?}"),
            })
            .collect()
    }

    /// Whether every value this batch wrote at `segs` equals `expected`.
    fn written_by(&self, segs: &[&str], expected: &str) -> bool {
        self.written_values(segs).iter().all(|v| v == expected)
    }

    /// The author field (see [`author_field`]) as it was before; `None` when the entity is
    /// new.
    fn author_before(&mut self, container: &str, id: &str) -> Option<String> {
        let key = (container.to_owned(), id.to_owned());
        if let Some(cached) = self.recorded_by.get(&key) {
            return cached.clone();
        }
        let field = author_field(container);
        let author = self.before_at(&[container, id, field]).and_then(|(value, _)| match value {
            Value::Scalar(s) => match s.as_ref() {
                ScalarValue::Str(s) => Some(s.to_string()),
                _ => None,
            },
            _ => None,
        });
        // An entity that existed without a readable author counts as someone else's.
        let author = match author {
            Some(a) => Some(a),
            None if self.before_at(&[container, id]).is_some() => Some(String::new()),
            None => None,
        };
        self.recorded_by.insert(key, author.clone());
        author
    }

    fn actor(&self) -> Option<&Actor> {
        match self.acting {
            Acting::Staff(actor) => Some(actor),
            Acting::Server => None,
        }
    }

    fn role_may_write(&mut self) {
        if let Acting::Staff(actor) = self.acting {
            if matches!(actor.role, Role::MeetingTablet | Role::Administrator) {
                let role = actor.role;
                self.violate(
                    Code::ReadOnlyRole,
                    &[],
                    format!("a {} ({}) reads cases and writes none", role.as_key(), role.label()),
                );
            }
        }
    }

    fn is_new_case(&self) -> bool {
        self.before.is_empty()
    }

    /// Checks one write (put, delete, text edit) at `segs` against the acting role.
    fn write(&mut self, segs: &[String], delete: bool) {
        let Some(first) = segs.first() else { return };
        let first = first.as_str();
        let Some(actor) = self.actor().copied() else {
            // The server's own changes: the case number (once), and assignments an
            // administrator or supervisor made through the server.
            if segs.len() == 1 && first == k::CASE_NUMBER {
                if self.before_at(&[k::CASE_NUMBER]).is_some() {
                    self.violate(Code::ImmutableField, segs, "the case number is assigned once");
                }
            } else if first != k::ASSIGNEES || segs.len() < 2 {
                self.violate(
                    Code::ReadOnlyRole,
                    segs,
                    "the server's own changes only assign the case number and record assignments",
                );
            }
            return;
        };
        if matches!(actor.role, Role::MeetingTablet | Role::Administrator) {
            return; // already refused as a whole
        }
        let staff = actor.staff.to_string();
        match (first, segs.len()) {
            (k::CASE_NUMBER, _) => {
                self.violate(Code::ServerOnlyField, segs, "only the server assigns the case number");
            }
            (k::SCHEMA | k::CASE_ID | k::MUNICIPALITY | k::OPENED_ON, 1) if self.before_at(&[first]).is_some() => {
                self.violate(Code::ImmutableField, segs, "fixed when the case is opened");
            }
            (_, 1) if delete => {
                self.violate(Code::DeletedEntity, segs, "top-level fields of a case are never removed");
            }
            // Setting a top-level register (status, area) or creating the containers of a new case.
            (_, 1) => {}
            (k::ASSIGNEES, _) => {
                if self.is_new_case() {
                    // Whoever opens a case may name its assignees, but a counsellor only
                    // themselves: judged per field, on what this batch wrote.
                    let me = actor.staff.to_string();
                    let own = match segs[1].as_str() {
                        k::PRIMARY => self.written_by(&[k::ASSIGNEES, k::PRIMARY], &me),
                        k::OTHERS => segs.len() == 2 || segs[2] == me,
                        _ => true,
                    };
                    if actor.role == Role::Counsellor && !own {
                        self.violate(
                            Code::SupervisorOnly,
                            segs,
                            "a counsellor opening a case assigns it to themselves only",
                        );
                    }
                } else if actor.role != Role::Supervisor {
                    self.violate(Code::SupervisorOnly, segs, "only a supervisor assigns cases");
                }
            }
            (k::ACTIVITIES, _) => self.activity_write(segs, delete, &actor, &staff),
            (k::REVIEWS, _) => {
                let id = segs[1].as_str();
                match self.author_before(k::REVIEWS, id) {
                    None => {
                        if actor.role != Role::Supervisor {
                            self.violate(Code::SupervisorOnly, &segs[..2], "only supervisors review activities");
                        } else if !self.written_by(&[k::REVIEWS, id, k::BY], &staff) {
                            self.violate(
                                Code::AuthorMismatch,
                                &segs[..2],
                                "a review is written in its author's own name",
                            );
                        } else if segs.len() == 3 && segs[2] == k::HEADS {
                            self.review_heads_known(segs);
                        }
                    }
                    Some(by) if by != staff => {
                        self.violate(Code::AuthorMismatch, &segs[..2], "only its author amends a review");
                    }
                    Some(_) => {
                        if segs.len() >= 3 && matches!(segs[2].as_str(), k::ACTIVITY_ID | k::BY | k::AT | k::HEADS) {
                            self.violate(Code::ImmutableField, segs, "fixed when the review is written");
                        }
                    }
                }
            }
            (k::DECISIONS, _) if actor.role != Role::Supervisor => {
                self.violate(Code::SupervisorOnly, &segs[..2], "only supervisors record meeting decisions");
            }
            (k::PLANS | k::EVALUATIONS | k::DECISIONS, _) => self.form_write(segs, &staff),
            _ => {} // referral source, consent, household: any counsellor or supervisor
        }
    }

    /// A new review's `heads` name only changes this document holds: a review never points
    /// at a version of the case the server cannot show. (A malformed value is a schema issue,
    /// reported by [`read_case`].)
    fn review_heads_known(&mut self, segs: &[String]) {
        let id = segs[1].as_str();
        for value in self.written_values(&[k::REVIEWS, id, k::HEADS]) {
            let Ok(heads) = parse_heads(&value) else { continue };
            if let Some(unknown) = heads.iter().find(|h| self.doc.get_change_by_hash(h).is_none()) {
                self.violate(
                    Code::Inconsistent,
                    segs,
                    format!("names change {unknown}, which this case does not have; a review records heads it saw"),
                );
                return;
            }
        }
    }

    /// A write into a form (plan, evaluation, decision) by a role that may write it.
    ///
    /// A new form is written in its author's own name; its author and round are fixed once
    /// written. Everything else in it (dates, texts, actions, checklists) may be amended.
    fn form_write(&mut self, segs: &[String], staff: &str) {
        let (container, id) = (segs[0].as_str(), segs[1].as_str());
        let author = author_field(container);
        match self.author_before(container, id) {
            None => {
                if !self.written_by(&[container, id, author], staff) {
                    self.violate(Code::AuthorMismatch, &segs[..2], "a new form is written in its author's own name");
                }
            }
            Some(_) => {
                if segs.len() == 3 && (segs[2] == author || segs[2] == k::ROUND) {
                    self.violate(Code::ImmutableField, segs, "fixed when the form is added");
                }
            }
        }
    }

    /// Closing a case requires a meeting decision: when this batch sets `status` to `closed`,
    /// the result must hold a decision whose verdict is `close`.
    fn closing_rule(&mut self, view: &CaseView) {
        // The server's own changes and read-only roles are refused whatever they wrote.
        let writes_cases = self.actor().is_some_and(|a| matches!(a.role, Role::Counsellor | Role::Supervisor));
        if !writes_cases || !self.written_values(&[k::STATUS]).iter().any(|v| v == CaseStatus::Closed.as_key()) {
            return;
        }
        if !view.has_closing_decision() {
            self.violate(
                Code::ClosingWithoutDecision,
                &[k::STATUS.to_owned()],
                "closing a case requires a meeting decision with the verdict `close`",
            );
        }
    }

    fn activity_write(&mut self, segs: &[String], delete: bool, actor: &Actor, staff: &str) {
        let id = segs[1].as_str();
        let device = actor.device.to_string();
        match self.author_before(k::ACTIVITIES, id) {
            // A new activity: logged in the actor's own name, from the actor's own device
            // (checked once per activity, however many of its fields the batch wrote).
            None if !self.new_checked.insert(id.to_owned()) => {}
            None => {
                if !self.written_by(&[k::ACTIVITIES, id, k::RECORDED_BY], staff)
                    || !self.written_by(&[k::ACTIVITIES, id, k::DEVICE_ID], &device)
                {
                    self.violate(
                        Code::AuthorMismatch,
                        &segs[..2],
                        "a new activity records the staff member and device that log it",
                    );
                }
                if !self.written_by(&[k::ACTIVITIES, id, k::VOIDED, k::BY], staff) {
                    self.violate(Code::AuthorMismatch, &segs[..2], "a void is recorded in its author's own name");
                }
            }
            Some(recorded_by) => {
                let Some(field) = segs.get(2).map(String::as_str) else { return };
                match field {
                    k::KIND | k::RECORDED_BY | k::DEVICE_ID => {
                        self.violate(Code::ImmutableField, segs, "fixed when the activity is logged");
                    }
                    _ if !delete && self.settles_conflict(actor, segs) => {}
                    k::VOIDED => self.void_write(segs, delete, actor, staff, &recorded_by),
                    _ => {
                        if recorded_by != staff {
                            self.violate(
                                Code::NotOwnActivity,
                                &segs[..2],
                                "only the counsellor who logged an activity amends it",
                            );
                        }
                    }
                }
            }
        }
    }

    /// Whether this write settles a register of an existing entity that held concurrent
    /// values before: a supervisor puts **one of those values** back as the only one. This is
    /// how a supervisor resolves a `conflict` (an activity's outcome, follow-up date, or a void
    /// recorded twice), whoever wrote the values; it is allowed on registers the author-only
    /// rules would otherwise close to them, and nothing else is.
    fn settles_conflict(&self, actor: &Actor, segs: &[String]) -> bool {
        if actor.role != Role::Supervisor || self.before.is_empty() {
            return false;
        }
        let path: Vec<&str> = segs.iter().map(String::as_str).collect();
        let Some((last, parents)) = path.split_last() else { return false };
        let obj = match parents {
            [] => ROOT,
            _ => match self.before_at(parents) {
                Some((Value::Object(_), id)) => id,
                _ => return false,
            },
        };
        let earlier = self.doc.get_all_at(&obj, *last, self.before).unwrap_or_default();
        if earlier.len() < 2 {
            return false;
        }
        // One value is left, and it is one of those that stood. (Writing the value Automerge
        // showed may keep that value's own operation and remove only the others.)
        match self.doc.get_all(&obj, *last).unwrap_or_default().as_slice() {
            [(now @ Value::Scalar(_), _)] => earlier.iter().any(|(v, _)| v == now),
            _ => false,
        }
    }

    /// A write into an existing activity's `voided` map.
    ///
    /// A void is final: it is never deleted, and once a void is known it is not overwritten.
    /// Two people who void the same activity *concurrently* (both offline) are both kept: the
    /// `voided` fields then hold concurrent values, which surface as a conflict.
    fn void_write(&mut self, segs: &[String], delete: bool, actor: &Actor, staff: &str, recorded_by: &str) {
        let id = segs[1].as_str();
        if recorded_by != staff && actor.role != Role::Supervisor {
            self.violate(Code::NotOwnActivity, &segs[..3], "only its author or a supervisor voids an activity");
            return;
        }
        if delete {
            self.violate(Code::ImmutableField, &segs[..3], "a void is final: it cannot be undone");
            return;
        }
        let Some(field) = segs.get(3).map(String::as_str) else { return };
        if let Some((_, voided)) = self.before_at(&[k::ACTIVITIES, id, k::VOIDED]) {
            // Overwritten in sequence (a value that stood before is gone), not merely
            // concurrent. Only a supervisor settles concurrent voids (`settles_conflict`).
            let earlier = self.doc.get_all_at(&voided, field, self.before).unwrap_or_default();
            let now = self.doc.get_all(&voided, field).unwrap_or_default();
            let all_still_there = earlier.iter().all(|(_, op)| now.iter().any(|(_, kept)| kept == op));
            if !all_still_there {
                self.violate(Code::ImmutableField, &segs[..3], "a void is final: it cannot be changed");
                return;
            }
        }
        if !self.written_by(&[k::ACTIVITIES, id, k::VOIDED, k::BY], staff) {
            self.violate(Code::AuthorMismatch, &segs[..3], "a void is recorded in its author's own name");
        }
    }
}
