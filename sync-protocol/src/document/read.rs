//! One walk over a case document: the typed view, the conflicts, and every schema issue.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use automerge::{ObjId, ObjType, ReadDoc, ScalarValue, Value, ROOT};
use chrono::{DateTime, FixedOffset, NaiveDate};

use super::keys as k;
use super::view::*;
use super::{parse_date, parse_heads, parse_instant, Limits, SCHEMA_VERSION};
use crate::actor::device_of_actor;
use crate::domain::catalogue::Catalogue;
use crate::domain::{
    ActivityKind, CaseStatus, ConcernTag, ConsentState, LetterItem, ObservedChange, UnknownKey, VisitOutcome,
};
use crate::ids::{
    ActivityId, CaseId, DecisionId, DeviceId, EvaluationId, PersonId, PlanActionId, PlanId, ReviewId, StaffId,
};
use crate::validation::{Violation, ViolationCode as Code};

/// What [`read_case`] found: the view (absent only when the document does not even say which
/// case it is) and every schema issue, each a [`Violation`] with its path.
#[derive(Debug, Clone)]
pub struct CaseReading {
    /// The typed case, read as far as the document allows.
    pub view: Option<CaseView>,
    /// Everything that does not conform to schema 1: wrong types, unknown keys, bad dates,
    /// missing fields, oversized text, duplicated containers.
    pub issues: Vec<Violation>,
}

/// Reads a case document at its current heads.
///
/// Tolerant: unknown fields are reported as issues but do not stop the read, and an entity
/// that cannot be read (an activity without a kind, say) is left out of the view and
/// reported. The view is `None` only when `case_id` is missing or invalid.
pub fn read_case<D: ReadDoc>(doc: &D) -> CaseReading {
    let mut reader = Reader { doc, limits: Limits::DEFAULT, issues: Vec::new(), conflicts: Vec::new() };
    let view = reader.root();
    let mut view = view;
    if let Some(view) = view.as_mut() {
        view.conflicts = std::mem::take(&mut reader.conflicts);
        sort_conflicts(&mut view.conflicts);
    }
    CaseReading { view, issues: reader.issues }
}

/// Conflicts in the order of their paths, so that a partial read ([`reread_activities`])
/// and a whole one list them alike.
fn sort_conflicts(conflicts: &mut [Conflict]) {
    conflicts.sort_by(|a, b| a.path.cmp(&b.path));
}

/// Reads `doc` as [`read_case`] would, given `earlier`: the view of the same document at
/// earlier heads, read without issues, when everything written since lies inside the
/// activities `written` (logged, amended or voided; ids as the document spells them).
///
/// Only those activities are read again; every other part of the case is taken from
/// `earlier`, which is what a whole read would find, since nothing else changed. Returns the
/// issues of what was read again (the activities, and their number against the limit).
/// The caller vouches for the precondition; [`crate::validation`] establishes it from the
/// document's own diff.
pub fn reread_activities<D: ReadDoc>(doc: &D, earlier: CaseView, written: &BTreeSet<String>) -> CaseReading {
    let mut view = earlier;
    let mut reader = Reader { doc, limits: Limits::DEFAULT, issues: Vec::new(), conflicts: Vec::new() };
    let under = |path: &str, id: &str| {
        path.strip_prefix("/activities/")
            .and_then(|rest| rest.strip_prefix(id))
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    };
    view.conflicts.retain(|c| !written.iter().any(|id| under(&c.path, id)));
    if let Some(container) = reader.object(&ROOT, k::ACTIVITIES, "/", ObjType::Map, true) {
        let count = doc.keys(&container).count();
        if count > reader.limits.activities {
            let max = reader.limits.activities;
            reader.issue(Code::TooMany, "/activities", format!("{count} entries, at most {max}"));
        }
        for key in written {
            let path = child("/activities", key);
            let id = match ActivityId::from_str(key) {
                Ok(id) => id,
                Err(e) => {
                    reader.issue(Code::InvalidId, &path, e.to_string());
                    continue;
                }
            };
            view.activities.remove(&id);
            // A deleted entry is simply gone, as in a whole read.
            let Some(obj) = reader.object(&container, key, "/activities", ObjType::Map, false) else { continue };
            if let Some(activity) = reader.activity(id, &obj, &path, &view.household) {
                view.activities.insert(id, activity);
            }
        }
    }
    view.conflicts.append(&mut reader.conflicts);
    sort_conflicts(&mut view.conflicts);
    CaseReading { view: Some(view), issues: reader.issues }
}

const ROOT_KEYS: &[&str] = &[
    k::SCHEMA,
    k::CASE_ID,
    k::MUNICIPALITY,
    k::CASE_NUMBER,
    k::OPENED_ON,
    k::REFERRAL_SOURCE,
    k::AREA,
    k::STATUS,
    k::CONSENT,
    k::ASSIGNEES,
    k::HOUSEHOLD,
    k::ACTIVITIES,
    k::REVIEWS,
    k::PLANS,
    k::EVALUATIONS,
    k::DECISIONS,
];
const PERSON_KEYS: &[&str] =
    &[k::NAME, k::KANA, k::SEX, k::BIRTH_DATE, k::RELATION, k::IS_SUBJECT, k::CONCERNS, k::NOTE];
const ACTIVITY_COMMON_KEYS: &[&str] = &[
    k::KIND,
    k::STARTED_AT,
    k::ENDED_AT,
    k::RECORDED_BY,
    k::DEVICE_ID,
    k::PLACE,
    k::FOLLOW_UP_ON,
    k::NARRATIVE,
    k::VOIDED,
];

const PLAN_KEYS: &[&str] =
    &[k::ROUND, k::AUTHOR, k::DRAFTED_ON, k::ISSUES, k::GOALS, k::ACTIONS, k::PERIOD_UNTIL, k::NEXT_MONITORING_ON];
const PLAN_ACTION_KEYS: &[&str] = &[k::WHO, k::WHAT, k::FREQUENCY, k::DURATION];
const EVALUATION_KEYS: &[&str] = &[
    k::ROUND,
    k::EVALUATOR,
    k::EVALUATED_ON,
    k::GOAL_ATTAINMENT,
    k::OBSERVED_CHANGES,
    k::OBSERVED_OTHER,
    k::SITUATION,
    k::WISH,
    k::STAFF_OPINION,
];
const DECISION_KEYS: &[&str] = &[
    k::MEETING_ON,
    k::VERDICT,
    k::REFERRED_ON,
    k::DECIDED_ON,
    k::NOTES,
    k::REFERRAL_DESTINATIONS,
    k::REFERRAL_OTHER,
    k::PAST_CONSULTATIONS,
    k::PAST_OTHER,
    k::REMARKS,
    k::RECORDED_BY,
];

/// The catalogue whose referral destination keys decisions may hold: the default one of
/// `DOMAIN.md` (see [`crate::domain::catalogue`]).
fn referral_catalogue() -> &'static Catalogue {
    static CATALOGUE: std::sync::OnceLock<Catalogue> = std::sync::OnceLock::new();
    CATALOGUE.get_or_init(Catalogue::default)
}

/// Parses a member of a decision's `referral_destinations` or `past_consultations`: a referral
/// destination key of the catalogue other than `other` (whose free text has a field of its own,
/// `other_field`).
fn destination_key(key: &str, other_field: &str) -> Result<String, String> {
    if key == k::OTHER {
        return Err(format!("その他 is written as the text of `{other_field}`, not as a member"));
    }
    if referral_catalogue().is_destination(key) {
        Ok(key.to_owned())
    } else {
        Err(format!("{:?} is not a referral destination of the catalogue", key.chars().take(64).collect::<String>()))
    }
}

/// The keys an activity of `kind` may hold besides the common ones.
pub(crate) fn activity_kind_keys(kind: ActivityKind) -> &'static [&'static str] {
    match kind {
        ActivityKind::Visit => &[k::OUTCOME, k::MET_PERSON_IDS, k::LETTER_LEFT],
        ActivityKind::LetterLeft => &[k::LETTER],
        ActivityKind::ContactAttempt => &[k::CHANNEL, k::OUTCOME],
        ActivityKind::Accompaniment => &[k::AGENCY, k::PURPOSE, k::OUTCOME],
        ActivityKind::Information => &[k::INFORMATION, k::INTEREST],
        ActivityKind::Consultation => &[k::MODE, k::TOPICS],
        ActivityKind::Coordination => &[k::AGENCY],
    }
}

struct Reader<'d, D: ReadDoc> {
    doc: &'d D,
    limits: Limits,
    issues: Vec<Violation>,
    conflicts: Vec<Conflict>,
}

fn child(path: &str, key: &str) -> String {
    if path == "/" {
        format!("/{key}")
    } else {
        format!("{path}/{key}")
    }
}

fn scalar_json(value: &ScalarValue) -> serde_json::Value {
    match value {
        ScalarValue::Str(s) => serde_json::Value::String(s.to_string()),
        ScalarValue::Int(i) => (*i).into(),
        ScalarValue::Uint(u) => (*u).into(),
        ScalarValue::F64(f) => {
            serde_json::Number::from_f64(*f).map(serde_json::Value::Number).unwrap_or(serde_json::Value::Null)
        }
        ScalarValue::Boolean(b) => (*b).into(),
        ScalarValue::Timestamp(t) => (*t).into(),
        ScalarValue::Null => serde_json::Value::Null,
        other => serde_json::Value::String(other.to_string()),
    }
}

fn type_name(value: &Value<'_>) -> String {
    match value {
        Value::Object(t) => format!("{t:?}").to_lowercase(),
        Value::Scalar(s) => match s.as_ref() {
            ScalarValue::Str(_) => "string".into(),
            ScalarValue::Int(_) | ScalarValue::Uint(_) | ScalarValue::F64(_) => "number".into(),
            ScalarValue::Boolean(_) => "boolean".into(),
            ScalarValue::Null => "null".into(),
            ScalarValue::Bytes(_) => "bytes".into(),
            ScalarValue::Timestamp(_) => "timestamp".into(),
            ScalarValue::Counter(_) => "counter".into(),
            ScalarValue::Unknown { .. } => "unknown".into(),
        },
    }
}

impl<'d, D: ReadDoc> Reader<'d, D> {
    fn issue(&mut self, code: Code, path: &str, message: impl Into<String>) {
        self.issues.push(Violation::new(code, path, message));
    }

    /// The winning scalar at `key`, recording a conflict when there are several.
    fn scalar(&mut self, obj: &ObjId, key: &str, path: &str) -> Option<ScalarValue> {
        let all = self.doc.get_all(obj, key).unwrap_or_default();
        if all.is_empty() {
            return None;
        }
        if all.iter().any(|(v, _)| matches!(v, Value::Object(_))) {
            let found = all.iter().map(|(v, _)| type_name(v)).collect::<Vec<_>>().join(", ");
            self.issue(Code::WrongType, path, format!("expected a plain value, found {found}"));
            return None;
        }
        let winner = match self.doc.get(obj, key) {
            Ok(Some((Value::Scalar(s), _))) => s.into_owned(),
            _ => return None,
        };
        if all.len() > 1 {
            let mut values: Vec<ConflictValue> = Vec::with_capacity(all.len());
            // The value Automerge shows by default first, then the others in op order.
            let mut ordered: Vec<&(Value<'_>, ObjId)> = all.iter().collect();
            ordered.sort_by_key(|(v, _)| match v {
                Value::Scalar(s) if s.as_ref() == &winner => 0,
                _ => 1,
            });
            for (value, id) in ordered {
                if let Value::Scalar(s) = value {
                    let actor = match id {
                        ObjId::Id(_, actor, _) => Some(actor.clone()),
                        ObjId::Root => None,
                    };
                    values.push(ConflictValue {
                        value: scalar_json(s),
                        actor: actor.as_ref().map(|a| a.to_hex_string()).unwrap_or_default(),
                        device_id: actor.as_ref().and_then(device_of_actor),
                    });
                }
            }
            self.conflicts.push(Conflict { path: path.to_owned(), values });
        }
        Some(winner)
    }

    fn string(&mut self, obj: &ObjId, key: &str, path: &str, required: bool) -> Option<String> {
        let path = child(path, key);
        match self.scalar(obj, key, &path) {
            None => {
                if required && !self.has(obj, key) {
                    self.issue(Code::MissingField, &path, "required");
                }
                None
            }
            Some(ScalarValue::Str(s)) => {
                let s = s.to_string();
                if required && s.trim().is_empty() {
                    self.issue(Code::MissingField, &path, "must not be empty");
                }
                Some(s)
            }
            Some(ScalarValue::Null) if !required => None,
            Some(other) => {
                let found = type_name(&Value::Scalar(std::borrow::Cow::Owned(other)));
                self.issue(Code::WrongType, &path, format!("expected a string, found {found}"));
                None
            }
        }
    }

    fn has(&self, obj: &ObjId, key: &str) -> bool {
        matches!(self.doc.get(obj, key), Ok(Some(_)))
    }

    /// A short free text, bounded.
    fn short_text(&mut self, obj: &ObjId, key: &str, path: &str, required: bool) -> Option<String> {
        let s = self.string(obj, key, path, required)?;
        self.bound(&child(path, key), &s, self.limits.short_text_chars);
        Some(s)
    }

    fn bound(&mut self, path: &str, s: &str, max: usize) {
        let n = s.chars().count();
        if n > max {
            self.issue(Code::TooLong, path, format!("{n} characters, at most {max}"));
        }
    }

    fn parsed<T, E: std::fmt::Display>(
        &mut self,
        obj: &ObjId,
        key: &str,
        path: &str,
        required: bool,
        code: Code,
        parse: impl FnOnce(&str) -> Result<T, E>,
    ) -> Option<T> {
        let s = self.string(obj, key, path, required)?;
        match parse(&s) {
            Ok(v) => Some(v),
            Err(e) => {
                self.issue(code, &child(path, key), e.to_string());
                None
            }
        }
    }

    fn enum_<T: FromStr<Err = UnknownKey>>(&mut self, obj: &ObjId, key: &str, path: &str, required: bool) -> Option<T> {
        self.parsed(obj, key, path, required, Code::InvalidEnum, T::from_str)
    }

    fn id<T: FromStr<Err = crate::ids::IdError>>(
        &mut self,
        obj: &ObjId,
        key: &str,
        path: &str,
        required: bool,
    ) -> Option<T> {
        self.parsed(obj, key, path, required, Code::InvalidId, T::from_str)
    }

    fn date(&mut self, obj: &ObjId, key: &str, path: &str, required: bool) -> Option<NaiveDate> {
        self.parsed(obj, key, path, required, Code::InvalidDate, |s| {
            parse_date(s).ok_or("expected a real date as YYYY-MM-DD")
        })
    }

    fn instant(&mut self, obj: &ObjId, key: &str, path: &str, required: bool) -> Option<DateTime<FixedOffset>> {
        self.parsed(obj, key, path, required, Code::InvalidDate, |s| {
            parse_instant(s).ok_or("expected an RFC 3339 instant with offset, e.g. 2026-11-04T10:30:00+09:00")
        })
    }

    /// An integer in `min..=max`.
    fn integer(&mut self, obj: &ObjId, key: &str, path: &str, min: i64, max: i64) -> Option<i64> {
        let path = child(path, key);
        let value = match self.scalar(obj, key, &path) {
            None => {
                if !self.has(obj, key) {
                    self.issue(Code::MissingField, &path, "required");
                }
                return None;
            }
            Some(ScalarValue::Int(i)) => i,
            Some(ScalarValue::Uint(u)) => i64::try_from(u).unwrap_or(i64::MAX),
            Some(_) => {
                self.issue(Code::WrongType, &path, "expected an integer");
                return None;
            }
        };
        if !(min..=max).contains(&value) {
            self.issue(Code::Inconsistent, &path, format!("{value} is outside {min}..={max}"));
            return None;
        }
        Some(value)
    }

    /// The free text of a その他 entry: absent, or a non-blank short text.
    fn other_text(&mut self, obj: &ObjId, key: &str, path: &str) -> Option<String> {
        if self.has(obj, key) {
            self.short_text(obj, key, path, true)
        } else {
            None
        }
    }

    fn boolean(&mut self, obj: &ObjId, key: &str, path: &str) -> Option<bool> {
        let path = child(path, key);
        match self.scalar(obj, key, &path)? {
            ScalarValue::Boolean(b) => Some(b),
            _ => {
                self.issue(Code::WrongType, &path, "expected a boolean");
                None
            }
        }
    }

    /// The container at `key`, which must be of type `ty` and exist exactly once.
    fn object(&mut self, obj: &ObjId, key: &str, path: &str, ty: ObjType, required: bool) -> Option<ObjId> {
        let path = child(path, key);
        let all = self.doc.get_all(obj, key).unwrap_or_default();
        if all.len() > 1 {
            self.issue(
                Code::ContainerRecreated,
                &path,
                format!("{} concurrent values where one container belongs; one would hide the others", all.len()),
            );
        }
        match self.doc.get(obj, key) {
            Ok(Some((Value::Object(t), id))) if t == ty => Some(id),
            Ok(Some((v, _))) => {
                let found = type_name(&v);
                self.issue(Code::WrongType, &path, format!("expected {ty:?}, found {found}").to_lowercase());
                None
            }
            _ => {
                if required {
                    self.issue(Code::MissingField, &path, format!("required {ty:?} container").to_lowercase());
                }
                None
            }
        }
    }

    fn text(&mut self, obj: &ObjId, key: &str, path: &str, max: usize) -> String {
        let Some(id) = self.object(obj, key, path, ObjType::Text, true) else {
            return String::new();
        };
        let text = self.doc.text(&id).unwrap_or_default();
        self.bound(&child(path, key), &text, max);
        text
    }

    fn unknown_keys(&mut self, obj: &ObjId, path: &str, allowed: &[&[&str]]) {
        let unknown: Vec<String> =
            self.doc.keys(obj).filter(|key| !allowed.iter().any(|a| a.contains(&key.as_str()))).collect();
        for key in unknown {
            self.issue(Code::UnknownField, &child(path, &key), "not a field of schema 1");
        }
    }

    /// A set stored as `{member: true}`; members parsed by `parse`.
    fn set<T: Ord, E: std::fmt::Display>(
        &mut self,
        obj: &ObjId,
        key: &str,
        path: &str,
        code: Code,
        parse: impl Fn(&str) -> Result<T, E>,
    ) -> BTreeSet<T> {
        let mut out = BTreeSet::new();
        let Some(set) = self.object(obj, key, path, ObjType::Map, true) else {
            return out;
        };
        let path = child(path, key);
        let members: Vec<String> = self.doc.keys(&set).collect();
        if members.len() > self.limits.set_entries {
            self.issue(Code::TooMany, &path, format!("{} entries, at most {}", members.len(), self.limits.set_entries));
        }
        for member in members {
            let member_path = child(&path, &member);
            match self.scalar(&set, &member, &member_path) {
                Some(ScalarValue::Boolean(true)) => {}
                _ => {
                    self.issue(Code::WrongType, &member_path, "set members map to true");
                    continue;
                }
            }
            match parse(&member) {
                Ok(v) => {
                    out.insert(v);
                }
                Err(e) => self.issue(code, &member_path, e.to_string()),
            }
        }
        out
    }

    /// The entries of an entity map (household, activities, reviews), with parsed ids.
    fn entities<I: FromStr<Err = crate::ids::IdError> + Ord>(
        &mut self,
        container: &ObjId,
        path: &str,
        max: usize,
    ) -> Vec<(I, ObjId, String)> {
        let keys: Vec<String> = self.doc.keys(container).collect();
        if keys.len() > max {
            self.issue(Code::TooMany, path, format!("{} entries, at most {max}", keys.len()));
        }
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            let entry_path = child(path, &key);
            let id = match I::from_str(&key) {
                Ok(id) => id,
                Err(e) => {
                    self.issue(Code::InvalidId, &entry_path, e.to_string());
                    continue;
                }
            };
            if let Some(obj) = self.object(container, &key, path, ObjType::Map, true) {
                out.push((id, obj, entry_path));
            }
        }
        out
    }

    fn root(&mut self) -> Option<CaseView> {
        let root = ROOT;
        let p = "/";
        self.unknown_keys(&root, p, &[ROOT_KEYS]);
        let schema = match self.scalar(&root, k::SCHEMA, "/schema") {
            Some(ScalarValue::Int(i)) => i,
            Some(ScalarValue::Uint(u)) => i64::try_from(u).unwrap_or(i64::MAX),
            Some(_) => {
                self.issue(Code::WrongType, "/schema", "expected an integer");
                0
            }
            None => {
                self.issue(Code::NotACase, "/schema", "a case document starts with schema: 1");
                0
            }
        };
        if schema > SCHEMA_VERSION {
            self.issue(
                Code::UnsupportedSchema,
                "/schema",
                format!("schema {schema} is newer than {SCHEMA_VERSION}; update tsunagi"),
            );
        } else if schema != SCHEMA_VERSION && schema != 0 {
            self.issue(Code::UnsupportedSchema, "/schema", format!("unknown schema {schema}"));
        }
        let case_id = match self.id::<CaseId>(&root, k::CASE_ID, p, false) {
            Some(id) => Some(id),
            None => {
                self.issue(Code::NotACase, "/case_id", "a case document names its case id");
                None
            }
        };
        let municipality = self.id(&root, k::MUNICIPALITY, p, true);
        let case_number = self.id(&root, k::CASE_NUMBER, p, false);
        let opened_on = self.date(&root, k::OPENED_ON, p, true);
        let area = self.short_text(&root, k::AREA, p, false);
        let status = self.enum_::<CaseStatus>(&root, k::STATUS, p, true).unwrap_or(CaseStatus::Intake);

        let referral_source = match self.object(&root, k::REFERRAL_SOURCE, p, ObjType::Map, true) {
            Some(obj) => {
                let path = "/referral_source";
                self.unknown_keys(&obj, path, &[&[k::KIND, k::NAME, k::REFERRED_ON]]);
                let kind = self.parsed(&obj, k::KIND, path, false, Code::InvalidEnum, |s| {
                    let ok = !s.is_empty()
                        && s.len() <= 64
                        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
                    if ok {
                        Ok(s.to_owned())
                    } else {
                        Err("an intake source key from the catalogue ([a-z0-9_], at most 64 bytes)")
                    }
                });
                ReferralSource {
                    kind,
                    name: self.short_text(&obj, k::NAME, path, false),
                    referred_on: self.date(&obj, k::REFERRED_ON, path, false),
                }
            }
            None => ReferralSource::default(),
        };

        let consent = match self.object(&root, k::CONSENT, p, ObjType::Map, true) {
            Some(obj) => {
                let path = "/consent";
                self.unknown_keys(&obj, path, &[&[k::STATE, k::ON, k::BY]]);
                let state = self.enum_(&obj, k::STATE, path, true).unwrap_or(ConsentState::None);
                let on = self.date(&obj, k::ON, path, false);
                let by = self.enum_(&obj, k::BY, path, false);
                if state == ConsentState::Obtained && on.is_none() {
                    self.issue(Code::MissingField, "/consent/on", "consent obtained needs its date");
                }
                Consent { state, on, by }
            }
            None => Consent { state: ConsentState::None, on: None, by: None },
        };

        let assignees = match self.object(&root, k::ASSIGNEES, p, ObjType::Map, true) {
            Some(obj) => {
                let path = "/assignees";
                self.unknown_keys(&obj, path, &[&[k::PRIMARY, k::OTHERS]]);
                Assignees {
                    primary: self.id(&obj, k::PRIMARY, path, false),
                    others: self.set(&obj, k::OTHERS, path, Code::InvalidId, StaffId::parse),
                }
            }
            None => Assignees::default(),
        };

        let mut household = BTreeMap::new();
        if let Some(obj) = self.object(&root, k::HOUSEHOLD, p, ObjType::Map, true) {
            for (id, person, path) in self.entities::<PersonId>(&obj, "/household", self.limits.household_members) {
                if let Some(person) = self.person(id, &person, &path) {
                    household.insert(id, person);
                }
            }
        }

        let mut activities = BTreeMap::new();
        if let Some(obj) = self.object(&root, k::ACTIVITIES, p, ObjType::Map, true) {
            for (id, activity, path) in self.entities::<ActivityId>(&obj, "/activities", self.limits.activities) {
                if let Some(activity) = self.activity(id, &activity, &path, &household) {
                    activities.insert(id, activity);
                }
            }
        }

        let mut reviews = BTreeMap::new();
        if let Some(obj) = self.object(&root, k::REVIEWS, p, ObjType::Map, true) {
            for (id, review, path) in self.entities::<ReviewId>(&obj, "/reviews", self.limits.reviews) {
                if let Some(review) = self.review(id, &review, &path, &activities) {
                    reviews.insert(id, review);
                }
            }
        }
        let mut plans = BTreeMap::new();
        if let Some(obj) = self.object(&root, k::PLANS, p, ObjType::Map, true) {
            for (id, plan, path) in self.entities::<PlanId>(&obj, "/plans", self.limits.forms) {
                if let Some(plan) = self.plan(id, &plan, &path) {
                    plans.insert(id, plan);
                }
            }
        }

        let mut evaluations = BTreeMap::new();
        if let Some(obj) = self.object(&root, k::EVALUATIONS, p, ObjType::Map, true) {
            for (id, evaluation, path) in self.entities::<EvaluationId>(&obj, "/evaluations", self.limits.forms) {
                if let Some(evaluation) = self.evaluation(id, &evaluation, &path) {
                    evaluations.insert(id, evaluation);
                }
            }
        }

        let mut decisions = BTreeMap::new();
        if let Some(obj) = self.object(&root, k::DECISIONS, p, ObjType::Map, true) {
            for (id, decision, path) in self.entities::<DecisionId>(&obj, "/decisions", self.limits.forms) {
                if let Some(decision) = self.decision(id, &decision, &path) {
                    decisions.insert(id, decision);
                }
            }
        }

        Some(CaseView {
            schema,
            case_id: case_id?,
            municipality,
            case_number,
            opened_on,
            referral_source,
            area,
            status,
            consent,
            assignees,
            household,
            activities,
            reviews,
            plans,
            evaluations,
            decisions,
            conflicts: Vec::new(),
        })
    }

    /// A form's `round`: an integer from 1 to the number of forms a case may hold.
    fn round(&mut self, obj: &ObjId, path: &str) -> Option<u32> {
        let max = i64::try_from(self.limits.forms).unwrap_or(i64::MAX);
        self.integer(obj, k::ROUND, path, 1, max).and_then(|r| u32::try_from(r).ok())
    }

    fn plan(&mut self, id: PlanId, obj: &ObjId, path: &str) -> Option<Plan> {
        self.unknown_keys(obj, path, &[PLAN_KEYS]);
        let round = self.round(obj, path);
        let author = self.id::<StaffId>(obj, k::AUTHOR, path, true);
        let drafted_on = self.date(obj, k::DRAFTED_ON, path, true);
        let long = self.limits.long_text_chars;
        let issues = self.text(obj, k::ISSUES, path, long);
        let goals = self.text(obj, k::GOALS, path, long);
        let mut actions = BTreeMap::new();
        if let Some(map) = self.object(obj, k::ACTIONS, path, ObjType::Map, true) {
            let apath = child(path, k::ACTIONS);
            for (action_id, row, row_path) in self.entities::<PlanActionId>(&map, &apath, self.limits.plan_actions) {
                if let Some(action) = self.plan_action(action_id, &row, &row_path) {
                    actions.insert(action_id, action);
                }
            }
        }
        let period_until = self.date(obj, k::PERIOD_UNTIL, path, false);
        let next_monitoring_on = self.date(obj, k::NEXT_MONITORING_ON, path, false);
        if let (Some(drafted), Some(until)) = (drafted_on, period_until) {
            if until < drafted {
                self.issue(Code::Inconsistent, &child(path, k::PERIOD_UNTIL), "the plan period ends before the plan");
            }
        }
        Some(Plan {
            id,
            round: round?,
            author: author?,
            drafted_on: drafted_on?,
            issues,
            goals,
            actions,
            period_until,
            next_monitoring_on,
        })
    }

    fn plan_action(&mut self, id: PlanActionId, obj: &ObjId, path: &str) -> Option<PlanAction> {
        self.unknown_keys(obj, path, &[PLAN_ACTION_KEYS]);
        let who = self.short_text(obj, k::WHO, path, true);
        let what = self.short_text(obj, k::WHAT, path, true);
        let frequency = self.short_text(obj, k::FREQUENCY, path, false).unwrap_or_default();
        let duration = self.short_text(obj, k::DURATION, path, false).unwrap_or_default();
        Some(PlanAction { id, who: who?, what: what?, frequency, duration })
    }

    fn evaluation(&mut self, id: EvaluationId, obj: &ObjId, path: &str) -> Option<Evaluation> {
        self.unknown_keys(obj, path, &[EVALUATION_KEYS]);
        let round = self.round(obj, path);
        let evaluator = self.id::<StaffId>(obj, k::EVALUATOR, path, true);
        let evaluated_on = self.date(obj, k::EVALUATED_ON, path, true);
        let long = self.limits.long_text_chars;
        let goal_attainment = self.text(obj, k::GOAL_ATTAINMENT, path, long);
        let observed_changes =
            self.set(obj, k::OBSERVED_CHANGES, path, Code::InvalidEnum, |key| match ObservedChange::from_key(key) {
                Ok(ObservedChange::Other) => {
                    Err(format!("その他 is written as the text of `{}`, not as a member", k::OBSERVED_OTHER))
                }
                Ok(change) => Ok(change),
                Err(e) => Err(e.to_string()),
            });
        let observed_other = self.other_text(obj, k::OBSERVED_OTHER, path);
        let situation = self.text(obj, k::SITUATION, path, long);
        let wish = self.enum_(obj, k::WISH, path, false);
        let staff_opinion = self.text(obj, k::STAFF_OPINION, path, long);
        Some(Evaluation {
            id,
            round: round?,
            evaluator: evaluator?,
            evaluated_on: evaluated_on?,
            goal_attainment,
            observed_changes,
            observed_other,
            situation,
            wish,
            staff_opinion,
        })
    }

    fn decision(&mut self, id: DecisionId, obj: &ObjId, path: &str) -> Option<Decision> {
        self.unknown_keys(obj, path, &[DECISION_KEYS]);
        let meeting_on = self.date(obj, k::MEETING_ON, path, true);
        let verdict = self.enum_(obj, k::VERDICT, path, true);
        let referred_on = self.boolean(obj, k::REFERRED_ON, path).unwrap_or(false);
        let decided_on = self.date(obj, k::DECIDED_ON, path, true);
        let long = self.limits.long_text_chars;
        let notes = self.text(obj, k::NOTES, path, long);
        let referral_destinations = self
            .set(obj, k::REFERRAL_DESTINATIONS, path, Code::InvalidEnum, |key| destination_key(key, k::REFERRAL_OTHER));
        let referral_other = self.other_text(obj, k::REFERRAL_OTHER, path);
        let past_consultations =
            self.set(obj, k::PAST_CONSULTATIONS, path, Code::InvalidEnum, |key| destination_key(key, k::PAST_OTHER));
        let past_other = self.other_text(obj, k::PAST_OTHER, path);
        let remarks = self.text(obj, k::REMARKS, path, long);
        let recorded_by = self.id::<StaffId>(obj, k::RECORDED_BY, path, true);
        // Any destination written counts here; one that does not read (an unknown key, a
        // blank `referral_other`) is refused on its own.
        let members = match self.doc.get(obj, k::REFERRAL_DESTINATIONS) {
            Ok(Some((Value::Object(ObjType::Map), set))) => self.doc.keys(&set).count(),
            _ => 0,
        };
        if referred_on && members == 0 && !self.has(obj, k::REFERRAL_OTHER) {
            self.issue(
                Code::ReferralWithoutDestination,
                &child(path, k::REFERRAL_DESTINATIONS),
                "a decision that refers the person on names at least one destination (a catalogue key or `referral_other`)",
            );
        }
        Some(Decision {
            id,
            meeting_on: meeting_on?,
            verdict: verdict?,
            referred_on,
            decided_on: decided_on?,
            notes,
            referral_destinations,
            referral_other,
            past_consultations,
            past_other,
            remarks,
            recorded_by: recorded_by?,
        })
    }

    fn person(&mut self, id: PersonId, obj: &ObjId, path: &str) -> Option<Person> {
        self.unknown_keys(obj, path, &[PERSON_KEYS]);
        let name = self.short_text(obj, k::NAME, path, true);
        let kana = self.short_text(obj, k::KANA, path, false);
        let sex = self.short_text(obj, k::SEX, path, false).filter(|s| !s.is_empty()).map(|s| Sex::from_stored(&s));
        let birth_date = self.date(obj, k::BIRTH_DATE, path, false);
        let relation = self.enum_(obj, k::RELATION, path, false);
        let is_subject = self.boolean(obj, k::IS_SUBJECT, path).unwrap_or(false);
        let mut concerns = Concerns::default();
        if let Some(map) = self.object(obj, k::CONCERNS, path, ObjType::Map, true) {
            let cpath = child(path, k::CONCERNS);
            for key in self.doc.keys(&map).collect::<Vec<_>>() {
                let kpath = child(&cpath, &key);
                if key == k::OTHER {
                    if let Some(text) = self.short_text(&map, k::OTHER, &cpath, true) {
                        concerns.other = Some(text);
                    }
                    continue;
                }
                match ConcernTag::from_key(&key) {
                    Ok(tag) => match self.scalar(&map, &key, &kpath) {
                        Some(ScalarValue::Boolean(true)) => {
                            concerns.tags.insert(tag);
                        }
                        _ => self.issue(Code::WrongType, &kpath, "concern tags map to true"),
                    },
                    Err(e) => self.issue(Code::InvalidEnum, &kpath, e.to_string()),
                }
            }
        }
        let note = self.text(obj, k::NOTE, path, self.limits.long_text_chars);
        Some(Person { id, name: name?, kana, sex, birth_date, relation, is_subject, concerns, note })
    }

    fn activity(
        &mut self,
        id: ActivityId,
        obj: &ObjId,
        path: &str,
        household: &BTreeMap<PersonId, Person>,
    ) -> Option<Activity> {
        let kind = self.enum_::<ActivityKind>(obj, k::KIND, path, true);
        match kind {
            Some(kind) => self.unknown_keys(obj, path, &[ACTIVITY_COMMON_KEYS, activity_kind_keys(kind)]),
            None => self.unknown_keys(obj, path, &[ACTIVITY_COMMON_KEYS]),
        }
        let started_at = self.instant(obj, k::STARTED_AT, path, true);
        let ended_at = self.instant(obj, k::ENDED_AT, path, false);
        if let (Some(start), Some(end)) = (started_at, ended_at) {
            if end < start {
                self.issue(Code::Inconsistent, &child(path, k::ENDED_AT), "ends before it starts");
            }
        }
        let recorded_by = self.id::<StaffId>(obj, k::RECORDED_BY, path, true);
        let device_id = self.id::<DeviceId>(obj, k::DEVICE_ID, path, true);
        let place = self.enum_(obj, k::PLACE, path, true);
        let follow_up_on = self.date(obj, k::FOLLOW_UP_ON, path, false);
        let narrative = self.text(obj, k::NARRATIVE, path, self.limits.long_text_chars);
        let voided = self.voided(obj, path);
        let details = match kind? {
            ActivityKind::Visit => {
                let outcome = self.enum_::<VisitOutcome>(obj, k::OUTCOME, path, true);
                let met = self.set(obj, k::MET_PERSON_IDS, path, Code::InvalidId, PersonId::parse);
                let met_path = child(path, k::MET_PERSON_IDS);
                for person in &met {
                    if !household.contains_key(person) {
                        self.issue(
                            Code::UnknownPerson,
                            &child(&met_path, &person.to_string()),
                            "not a member of this household",
                        );
                    }
                }
                if outcome == Some(VisitOutcome::Met) && met.is_empty() {
                    self.issue(Code::Inconsistent, &met_path, "a visit that met the household names whom it met");
                }
                let letter_left = self.boolean(obj, k::LETTER_LEFT, path).unwrap_or(false);
                ActivityDetails::Visit { outcome: outcome?, met_person_ids: met, letter_left }
            }
            ActivityKind::LetterLeft => {
                let letter = self.object(obj, k::LETTER, path, ObjType::Map, true)?;
                let lpath = child(path, k::LETTER);
                self.unknown_keys(&letter, &lpath, &[&[k::ITEMS, k::LEFT_AT, k::REPLY_RECEIVED_ON]]);
                let items = self.set(&letter, k::ITEMS, &lpath, Code::InvalidEnum, LetterItem::from_key);
                if items.is_empty() {
                    self.issue(Code::MissingField, &child(&lpath, k::ITEMS), "say what was left");
                }
                let left_at = self.enum_(&letter, k::LEFT_AT, &lpath, true);
                let reply_received_on = self.date(&letter, k::REPLY_RECEIVED_ON, &lpath, false);
                ActivityDetails::LetterLeft { items, left_at: left_at?, reply_received_on }
            }
            ActivityKind::ContactAttempt => {
                let channel = self.enum_(obj, k::CHANNEL, path, true);
                let outcome = self.enum_(obj, k::OUTCOME, path, true);
                ActivityDetails::ContactAttempt { channel: channel?, outcome: outcome? }
            }
            ActivityKind::Accompaniment => {
                let agency = self.short_text(obj, k::AGENCY, path, true);
                let purpose = self.short_text(obj, k::PURPOSE, path, false).unwrap_or_default();
                let outcome = self.short_text(obj, k::OUTCOME, path, false).unwrap_or_default();
                ActivityDetails::Accompaniment { agency: agency?, purpose, outcome }
            }
            ActivityKind::Information => {
                let information = self.short_text(obj, k::INFORMATION, path, true);
                let interest = self.short_text(obj, k::INTEREST, path, false).unwrap_or_default();
                ActivityDetails::Information { information: information?, interest }
            }
            ActivityKind::Consultation => {
                let mode = self.enum_(obj, k::MODE, path, true);
                let topics =
                    self.set(obj, k::TOPICS, path, Code::InvalidEnum, crate::domain::ConsultationTopic::from_key);
                if topics.is_empty() {
                    self.issue(Code::MissingField, &child(path, k::TOPICS), "a consultation has at least one topic");
                }
                ActivityDetails::Consultation { mode: mode?, topics }
            }
            ActivityKind::Coordination => {
                ActivityDetails::Coordination { agency: self.short_text(obj, k::AGENCY, path, true)? }
            }
        };
        Some(Activity {
            id,
            started_at: started_at?,
            ended_at,
            recorded_by: recorded_by?,
            device_id: device_id?,
            place: place?,
            details,
            follow_up_on,
            narrative,
            voided,
        })
    }

    fn voided(&mut self, activity: &ObjId, path: &str) -> Option<Voided> {
        let obj = self.object(activity, k::VOIDED, path, ObjType::Map, true)?;
        let vpath = child(path, k::VOIDED);
        self.unknown_keys(&obj, &vpath, &[&[k::BY, k::AT, k::REASON]]);
        // An empty `voided` map: the activity stands.
        self.doc.keys(&obj).next()?;
        let by = self.id(&obj, k::BY, &vpath, true);
        let at = self.instant(&obj, k::AT, &vpath, true);
        let reason = self.short_text(&obj, k::REASON, &vpath, true);
        Some(Voided { by: by?, at: at?, reason: reason? })
    }

    fn review(
        &mut self,
        id: ReviewId,
        obj: &ObjId,
        path: &str,
        activities: &BTreeMap<ActivityId, Activity>,
    ) -> Option<Review> {
        self.unknown_keys(obj, path, &[&[k::ACTIVITY_ID, k::BY, k::AT, k::COMMENT, k::HEADS]]);
        let activity_id = self.id::<ActivityId>(obj, k::ACTIVITY_ID, path, true);
        if let Some(a) = activity_id {
            if !activities.contains_key(&a) {
                self.issue(
                    Code::Inconsistent,
                    &child(path, k::ACTIVITY_ID),
                    "reviews an activity this case does not have",
                );
            }
        }
        let by = self.id(obj, k::BY, path, true);
        let at = self.instant(obj, k::AT, path, true);
        let comment = self.text(obj, k::COMMENT, path, self.limits.long_text_chars);
        // Optional: reviews written before heads were recorded have none.
        let heads = self.parsed(obj, k::HEADS, path, false, Code::InvalidId, parse_heads).unwrap_or_default();
        Some(Review { id, activity_id: activity_id?, by: by?, at: at?, comment, heads })
    }
}
