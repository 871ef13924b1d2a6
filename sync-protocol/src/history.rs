//! A case's history in words a supervisor understands.
//!
//! Given a case document's changes in the order they were stored, [`HistoryReader`] applies
//! them one by one and describes what each did: the patches between the document before and
//! after the change become typed [`HistoryEvent`]s, each with a sentence in English that
//! names values with their Japanese labels:
//!
//! ```text
//! opened the case
//! logged a visit (家庭訪問): not home (不在), letter left
//! amended the narrative of the visit of 2026-11-04
//! status: outreach (関係性構築) → planning (プラン作成)
//! ```
//!
//! A sentence says what was done, never what was written: no names, narratives, notes,
//! comments or reasons ever appear in one (ids, dates, enumeration labels and codes do).
//! Whatever the describer does not recognise, a field of a newer schema say, becomes a
//! [`HistoryEvent::Changed`] naming the path, so nothing a change did is hidden.
//!
//! Forms (`plans`, `evaluations`, `decisions`) are described by path only, so this module
//! does not depend on their shape.
//!
//! ```
//! use tsunagi_sync::history::describe_history;
//! use tsunagi_sync::ids::{DeviceId, MunicipalityCode, StaffId};
//! use tsunagi_sync::ops::{CaseReplica, NewCase};
//! use tsunagi_sync::domain::CaseStatus;
//! use tsunagi_sync::validation::Actor;
//! use chrono::NaiveDate;
//!
//! let actor = Actor::counsellor(StaffId::new_random(), DeviceId::new_random());
//! let new = NewCase::new(MunicipalityCode::parse("122203").unwrap(), NaiveDate::from_ymd_opt(2026, 11, 2).unwrap());
//! let mut case = CaseReplica::open(new, actor).unwrap();
//! case.set_status(CaseStatus::Outreach).unwrap();
//! let history = describe_history(case.changes_since(&[])).unwrap();
//! assert_eq!(history[0].summary, "opened the case");
//! assert_eq!(history[1].summary, "status: intake (受付) → outreach (関係性構築)");
//! assert_eq!(history[1].device_id, Some(actor.device));
//! ```

use std::collections::BTreeSet;

use automerge::{
    AutoCommit, AutomergeError, Change, ChangeHash, ObjId, Patch, PatchAction, Prop, ReadDoc, ScalarValue, Value, ROOT,
};
use chrono::{DateTime, FixedOffset, NaiveDate};
use serde::Serialize;

use crate::actor::device_of_actor;
use crate::document::{keys as k, parse_date, parse_instant};
use crate::domain::{
    ActivityKind, CaseStatus, ConcernTag, ConsentMethod, ConsentState, ConsultationMode, ConsultationTopic,
    ContactChannel, ContactOutcome, LetterItem, LetterPlace, UnknownKey, VisitOutcome,
};
use crate::ids::{DeviceId, JAPAN};

/// Why a history could not be described.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// Automerge refused to apply a change (a corrupt change, or a bug).
    #[error("cannot apply change {hash}: {source}")]
    Apply {
        /// The change.
        hash: ChangeHash,
        /// Automerge's reason.
        #[source]
        source: Box<AutomergeError>,
    },
}

/// A value of a closed list: its stored key and, when the key is known, its Japanese label.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Labelled {
    /// The key as stored in the document.
    pub key: String,
    /// 日本語の表示名; `null` for a key this version does not know.
    pub label: Option<&'static str>,
}

impl Labelled {
    fn of<T>(key: &str, parse: fn(&str) -> Result<T, UnknownKey>, label: fn(&T) -> &'static str) -> Self {
        Self { key: key.to_owned(), label: parse(key).ok().as_ref().map(label) }
    }

    /// `not home (不在)`: the key in English words, then the label.
    fn phrase(&self) -> String {
        match self.label {
            Some(label) => format!("{} ({label})", english(&self.key)),
            None => english(&self.key),
        }
    }
}

/// Whether `s` looks like a stored key (`[a-z0-9_]`, at most 64 bytes), i.e. not free text.
fn is_key(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// A stored key in English words: `not_home` → `not home`. Anything that is not a key (free
/// text where a key belongs) is not repeated.
fn english(key: &str) -> String {
    match key {
        "sns" => "SNS".to_owned(),
        "met_other" => "met someone else".to_owned(),
        "third_party" => "via a third party".to_owned(),
        "post" => "by post".to_owned(),
        _ if is_key(key) => key.replace('_', " "),
        _ => "another value".to_owned(),
    }
}

/// `a visit`, `an accompaniment`, `information`.
fn with_article(noun: &str) -> String {
    if noun == "information" {
        noun.to_owned()
    } else if noun.starts_with(['a', 'e', 'i', 'o', 'u']) {
        format!("an {noun}")
    } else {
        format!("a {noun}")
    }
}

/// A field of a household member, in words.
fn person_field(key: &str) -> String {
    match key {
        k::KANA => "reading".to_owned(),
        k::BIRTH_DATE => "date of birth".to_owned(),
        k::IS_SUBJECT => "main subject".to_owned(),
        other => english(other),
    }
}

/// A field of an activity, in words.
fn activity_field(key: &str) -> String {
    match key {
        k::STARTED_AT => "start".to_owned(),
        k::ENDED_AT => "end".to_owned(),
        k::FOLLOW_UP_ON => "follow-up".to_owned(),
        k::MET_PERSON_IDS => "people met".to_owned(),
        k::RECORDED_BY => "recorder".to_owned(),
        k::DEVICE_ID => "device".to_owned(),
        other => english(other),
    }
}

/// An activity as a sentence names it: `the visit of 2026-11-04`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActivityRef {
    /// The activity's id.
    pub activity_id: String,
    /// Its kind, when the document says.
    pub activity_kind: Option<Labelled>,
    /// The day it started (in its own offset: the day in Japan).
    pub on: Option<NaiveDate>,
}

impl ActivityRef {
    fn noun(&self) -> String {
        self.activity_kind.as_ref().map(|kind| english(&kind.key)).unwrap_or_else(|| "activity".to_owned())
    }

    /// `the visit of 2026-11-04`.
    fn phrase(&self) -> String {
        match self.on {
            Some(on) => format!("the {} of {on}", self.noun()),
            None => format!("the {} {}", self.noun(), self.activity_id),
        }
    }
}

/// The forms a case holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FormKind {
    /// 様式第1号: a plan.
    Plan,
    /// 様式第2号: an evaluation.
    Evaluation,
    /// 様式第2-2号: a meeting decision.
    Decision,
}

impl FormKind {
    fn of_container(key: &str) -> Option<Self> {
        match key {
            k::PLANS => Some(Self::Plan),
            k::EVALUATIONS => Some(Self::Evaluation),
            k::DECISIONS => Some(Self::Decision),
            _ => None,
        }
    }

    /// The form's number: `様式第1号`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Plan => "様式第1号",
            Self::Evaluation => "様式第2号",
            Self::Decision => "様式第2-2号",
        }
    }

    fn noun(&self) -> &'static str {
        match self {
            Self::Plan => "a plan",
            Self::Evaluation => "an evaluation",
            Self::Decision => "a meeting decision",
        }
    }
}

/// One thing a change did to a case.
///
/// Serialised with a `kind` tag (`{"kind": "status_changed", "from": …, "to": …}`). Ids and
/// codes are strings as the document holds them; enumeration values are [`Labelled`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum HistoryEvent {
    /// The change that created the case document.
    CaseOpened {
        /// 相談受付日.
        opened_on: Option<NaiveDate>,
        /// The primary assignee named at opening.
        primary: Option<String>,
        /// The area code given at opening.
        area: Option<String>,
    },
    /// The server assigned the case number (受付番号).
    CaseNumberSet {
        /// The number.
        case_number: String,
    },
    /// The case's status changed.
    StatusChanged {
        /// The status the author saw before.
        from: Option<Labelled>,
        /// The status this change set.
        to: Labelled,
        /// Whether another value was set concurrently (a conflict a supervisor settles).
        conflict: bool,
    },
    /// The area was set (or cleared, `area: null`).
    AreaChanged {
        /// The area code.
        area: Option<String>,
    },
    /// A field of the referral source (紹介元) changed.
    ReferralSourceChanged,
    /// The consent state (本人同意) changed.
    ConsentChanged {
        /// The state the author saw before.
        from: Option<Labelled>,
        /// The state this change set.
        to: Labelled,
        /// The date recorded with it.
        on: Option<NaiveDate>,
        /// How consent was given.
        by: Option<Labelled>,
        /// Whether another value was set concurrently.
        conflict: bool,
    },
    /// The date or method of consent changed, not its state.
    ConsentDetailsChanged,
    /// A primary assignee (主担当者) was set.
    PrimaryAssigned {
        /// The staff member.
        staff_id: String,
        /// The primary the author saw before.
        previous: Option<String>,
        /// Whether another primary was set concurrently.
        conflict: bool,
    },
    /// A staff member joined the other assignees.
    OtherAssigneeAdded {
        /// The staff member.
        staff_id: String,
    },
    /// A staff member left the other assignees.
    OtherAssigneeRemoved {
        /// The staff member.
        staff_id: String,
    },
    /// A household member was added.
    PersonAdded {
        /// The member's id.
        person_id: String,
    },
    /// Fields of a household member were amended (which fields, never their values).
    PersonAmended {
        /// The member's id.
        person_id: String,
        /// The fields, in words (`name`, `date of birth`...).
        fields: Vec<String>,
    },
    /// A household member's note was edited.
    PersonNoteAmended {
        /// The member's id.
        person_id: String,
    },
    /// A concern tag (困難要素) was set on a household member.
    ConcernSet {
        /// The member's id.
        person_id: String,
        /// The tag.
        concern: Labelled,
    },
    /// A concern tag was removed from a household member.
    ConcernRemoved {
        /// The member's id.
        person_id: String,
        /// The tag.
        concern: Labelled,
    },
    /// An activity was logged.
    ActivityLogged {
        /// The activity.
        activity: ActivityRef,
        /// A visit's or contact attempt's outcome.
        #[serde(skip_serializing_if = "Option::is_none")]
        outcome: Option<Labelled>,
        /// Whether a visit left a letter.
        #[serde(skip_serializing_if = "Option::is_none")]
        letter_left: Option<bool>,
        /// A contact attempt's channel.
        #[serde(skip_serializing_if = "Option::is_none")]
        channel: Option<Labelled>,
        /// A consultation's mode.
        #[serde(skip_serializing_if = "Option::is_none")]
        mode: Option<Labelled>,
        /// A consultation's topics.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        topics: Vec<Labelled>,
        /// What a letter left consisted of.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        items: Vec<Labelled>,
        /// Where a letter was left.
        #[serde(skip_serializing_if = "Option::is_none")]
        left_at: Option<Labelled>,
    },
    /// An activity's narrative (経過記録) was edited.
    NarrativeAmended {
        /// The activity.
        activity: ActivityRef,
    },
    /// A visit's or contact attempt's outcome was changed after the fact.
    OutcomeChanged {
        /// The activity.
        activity: ActivityRef,
        /// The new outcome.
        outcome: Labelled,
    },
    /// The follow-up date (次回予定) was set, or cleared (`on: null`).
    FollowUpSet {
        /// The activity.
        activity: ActivityRef,
        /// The date.
        on: Option<NaiveDate>,
    },
    /// A reply to a letter left came in.
    LetterReplyRecorded {
        /// The letter left.
        activity: ActivityRef,
        /// When the reply came.
        on: Option<NaiveDate>,
    },
    /// Other fields of an activity were amended (which fields, never their values).
    ActivityAmended {
        /// The activity.
        activity: ActivityRef,
        /// The fields, in words (`start`, `place`...).
        fields: Vec<String>,
    },
    /// An activity was voided (its reason is in the case record, not here).
    ActivityVoided {
        /// The activity.
        activity: ActivityRef,
    },
    /// A supervisor reviewed an activity (the comment is in the case record, not here).
    ActivityReviewed {
        /// The review's id.
        review_id: String,
        /// The activity reviewed, when the review names one this case has.
        activity: Option<ActivityRef>,
    },
    /// A review's comment was edited.
    ReviewAmended {
        /// The review's id.
        review_id: String,
        /// The activity reviewed.
        activity: Option<ActivityRef>,
    },
    /// A form (plan, evaluation, meeting decision) was added.
    FormAdded {
        /// Which form.
        form: FormKind,
        /// Its id.
        form_id: String,
    },
    /// A form was amended.
    FormAmended {
        /// Which form.
        form: FormKind,
        /// Its id.
        form_id: String,
    },
    /// Anything else: the path that changed, and whether it was removed.
    Changed {
        /// The document path, e.g. `/plans/<id>` or `/some_new_field`.
        path: String,
        /// Whether the value at `path` was removed.
        removed: bool,
    },
    /// The change applied but altered nothing visible (it lost every concurrent write, or
    /// repeated a change already applied).
    NoVisibleChange,
    /// The change depends on changes stored after it; what it did is described with the
    /// change that completes it.
    AwaitingEarlierChanges,
}

impl HistoryEvent {
    /// The event as a sentence: what was done, with no case content.
    pub fn sentence(&self) -> String {
        let concurrent = |conflict: &bool| if *conflict { " (concurrent with another edit)" } else { "" };
        match self {
            Self::CaseOpened { .. } => "opened the case".to_owned(),
            Self::CaseNumberSet { case_number } => format!("set case number {case_number}"),
            Self::StatusChanged { from, to, conflict } => match from {
                Some(from) if from != to => {
                    format!("status: {} → {}{}", from.phrase(), to.phrase(), concurrent(conflict))
                }
                _ => format!("status: {}{}", to.phrase(), concurrent(conflict)),
            },
            Self::AreaChanged { area: Some(area) } => format!("set area {}", english_code(area)),
            Self::AreaChanged { area: None } => "cleared the area".to_owned(),
            Self::ReferralSourceChanged => "changed the referral source (紹介元)".to_owned(),
            Self::ConsentChanged { to, conflict, .. } => format!("consent: {}{}", to.phrase(), concurrent(conflict)),
            Self::ConsentDetailsChanged => "amended the date or method of consent".to_owned(),
            Self::PrimaryAssigned { staff_id, conflict, .. } => {
                format!("assigned {staff_id} as primary{}", concurrent(conflict))
            }
            Self::OtherAssigneeAdded { staff_id } => format!("added {staff_id} to the other assignees"),
            Self::OtherAssigneeRemoved { staff_id } => format!("removed {staff_id} from the other assignees"),
            Self::PersonAdded { .. } => "added household member".to_owned(),
            Self::PersonAmended { fields, .. } => format!("amended household member's {}", fields.join(", ")),
            Self::PersonNoteAmended { .. } => "amended household member's note".to_owned(),
            Self::ConcernSet { concern, .. } => format!("set concern {} on a household member", concern_name(concern)),
            Self::ConcernRemoved { concern, .. } => {
                format!("removed concern {} from a household member", concern_name(concern))
            }
            Self::ActivityLogged { activity, outcome, letter_left, channel, mode, .. } => {
                let kind = match &activity.activity_kind {
                    Some(kind) => match kind.label {
                        Some(label) => format!("{} ({label})", with_article(&english(&kind.key))),
                        None => with_article(&english(&kind.key)),
                    },
                    None => "an activity".to_owned(),
                };
                let details: Vec<String> =
                    [channel, outcome, mode].into_iter().flatten().map(Labelled::phrase).collect();
                let mut sentence = format!("logged {kind}");
                if !details.is_empty() {
                    sentence.push_str(": ");
                    sentence.push_str(&details.join(", "));
                }
                if *letter_left == Some(true) {
                    sentence.push_str(if details.is_empty() { ": letter left" } else { ", letter left" });
                }
                sentence
            }
            Self::NarrativeAmended { activity } => format!("amended the narrative of {}", activity.phrase()),
            Self::OutcomeChanged { activity, outcome } => {
                format!("changed the outcome of {} to {}", activity.phrase(), outcome.phrase())
            }
            Self::FollowUpSet { activity, on: Some(on) } => {
                format!("set the follow-up of {} to {on}", activity.phrase())
            }
            Self::FollowUpSet { activity, on: None } => format!("cleared the follow-up of {}", activity.phrase()),
            Self::LetterReplyRecorded { activity, on: Some(on) } => {
                format!("recorded a reply on {on} to {}", activity.phrase())
            }
            Self::LetterReplyRecorded { activity, on: None } => format!("recorded a reply to {}", activity.phrase()),
            Self::ActivityAmended { activity, fields } => {
                format!("amended the {} of {}", fields.join(", "), activity.phrase())
            }
            Self::ActivityVoided { activity } => format!("voided {}", activity.phrase()),
            Self::ActivityReviewed { activity: Some(activity), .. } => format!("reviewed {}", activity.phrase()),
            Self::ActivityReviewed { activity: None, .. } => "reviewed an activity".to_owned(),
            Self::ReviewAmended { activity: Some(activity), .. } => {
                format!("amended the review of {}", activity.phrase())
            }
            Self::ReviewAmended { activity: None, .. } => "amended a review".to_owned(),
            Self::FormAdded { form, .. } => format!("added {} ({})", form.noun(), form.label()),
            Self::FormAmended { form, .. } => format!("amended {} ({})", form.noun(), form.label()),
            Self::Changed { path, removed: false } => format!("changed {path}"),
            Self::Changed { path, removed: true } => format!("removed {path}"),
            Self::NoVisibleChange => "made no visible change".to_owned(),
            Self::AwaitingEarlierChanges => "waits for changes it depends on, stored later".to_owned(),
        }
    }

    /// Folds `other` into `self` when both say the same thing about the same record (one
    /// change editing a narrative in several places is one amendment). Returns whether it did.
    fn absorb(&mut self, other: &HistoryEvent) -> bool {
        match (self, other) {
            (Self::PersonAmended { person_id, fields }, Self::PersonAmended { person_id: p, fields: more })
                if person_id == p =>
            {
                for field in more {
                    if !fields.contains(field) {
                        fields.push(field.clone());
                    }
                }
                true
            }
            (Self::ActivityAmended { activity, fields }, Self::ActivityAmended { activity: a, fields: more })
                if activity.activity_id == a.activity_id =>
            {
                for field in more {
                    if !fields.contains(field) {
                        fields.push(field.clone());
                    }
                }
                true
            }
            (this, other) => this == other,
        }
    }
}

/// An area code in a sentence: repeated only when it looks like a code (short, one word).
fn english_code(code: &str) -> String {
    let ok = !code.is_empty()
        && code.chars().count() <= 32
        && code.chars().all(|c| !c.is_whitespace() && !c.is_control() && !matches!(c, '(' | ')' | ';'));
    if ok {
        code.to_owned()
    } else {
        "(an area code)".to_owned()
    }
}

/// A concern tag in a sentence: its Japanese label, as forms name it.
fn concern_name(concern: &Labelled) -> String {
    concern.label.map(str::to_owned).unwrap_or_else(|| english(&concern.key))
}

/// An event with its sentence, as a history lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DescribedEvent {
    /// The event (its fields and `kind` tag, flattened).
    #[serde(flatten)]
    pub event: HistoryEvent,
    /// [`HistoryEvent::sentence`].
    pub sentence: String,
}

/// What one change did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChangeDescription {
    /// The change's hash, hex.
    pub hash: String,
    /// The Automerge actor that wrote it, hex.
    pub actor: String,
    /// The device that wrote it, when the actor is a device actor (`None`: the server).
    pub device_id: Option<DeviceId>,
    /// When the change was made, by the clock of whoever made it (in Japan time), if it says.
    pub written_at: Option<DateTime<FixedOffset>>,
    /// What it did, in document order.
    pub events: Vec<DescribedEvent>,
    /// The sentences of the events joined by `; `.
    pub summary: String,
}

/// Replays a case document's changes and describes each.
///
/// Feed it the changes in the order they were stored (an order in which every change comes
/// after the changes it depends on). [`HistoryReader::skip`] applies changes without
/// describing them, for a page that starts later in the history.
#[derive(Debug)]
pub struct HistoryReader {
    doc: AutoCommit,
}

impl Default for HistoryReader {
    fn default() -> Self {
        Self::new()
    }
}

impl HistoryReader {
    /// A reader over an empty document.
    pub fn new() -> Self {
        Self { doc: AutoCommit::new() }
    }

    /// Applies `changes` without describing them.
    pub fn skip(&mut self, changes: Vec<Change>) -> Result<(), HistoryError> {
        let Some(first) = changes.first().map(Change::hash) else { return Ok(()) };
        self.doc
            .apply_changes(changes)
            .map_err(|source| HistoryError::Apply { hash: first, source: Box::new(source) })?;
        // Index from here on, so each described change is diffed on its own.
        self.doc.update_diff_cursor();
        Ok(())
    }

    /// Applies `change` and describes what it did.
    pub fn describe(&mut self, change: Change) -> Result<ChangeDescription, HistoryError> {
        let hash = change.hash();
        let actor = change.actor_id().clone();
        let deps = change.deps().to_vec();
        let first_op = change.start_op().get();
        let ops = first_op..first_op.saturating_add(change.len() as u64);
        let written_at = written_at(change.timestamp());
        self.doc.apply_changes([change]).map_err(|source| HistoryError::Apply { hash, source: Box::new(source) })?;
        let patches = self.doc.diff_incremental();
        let applied = self.doc.get_change_by_hash(&hash).is_some();
        let describer = Describer { doc: &self.doc, deps, actor: actor.clone(), ops };
        let mut events = if applied { describer.events(&patches) } else { vec![HistoryEvent::AwaitingEarlierChanges] };
        if events.is_empty() {
            events.push(HistoryEvent::NoVisibleChange);
        }
        let events: Vec<DescribedEvent> =
            events.into_iter().map(|event| DescribedEvent { sentence: event.sentence(), event }).collect();
        let summary = events.iter().map(|e| e.sentence.as_str()).collect::<Vec<_>>().join("; ");
        Ok(ChangeDescription {
            hash: hash.to_string(),
            actor: actor.to_hex_string(),
            device_id: device_of_actor(&actor),
            written_at,
            events,
            summary,
        })
    }
}

/// A change's timestamp as an instant in Japan: seconds since the epoch (what the field
/// operations write); a value too large for seconds is taken as milliseconds; 0 is "not said".
fn written_at(timestamp: i64) -> Option<DateTime<FixedOffset>> {
    const MILLISECONDS_FROM: i64 = 100_000_000_000; // in seconds, the year 5138
    let seconds = match timestamp {
        t if t <= 0 => return None,
        t if t >= MILLISECONDS_FROM => t / 1000,
        t => t,
    };
    DateTime::from_timestamp(seconds, 0).map(|at| at.with_timezone(&JAPAN))
}

/// Describes every change of a history, oldest first.
pub fn describe_history(changes: impl IntoIterator<Item = Change>) -> Result<Vec<ChangeDescription>, HistoryError> {
    let mut reader = HistoryReader::new();
    changes.into_iter().map(|change| reader.describe(change)).collect()
}

/// What a patch did at its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    /// A value was put; `object` when it is a new container.
    Put { object: bool },
    /// A key was deleted.
    Delete,
    /// A concurrent value appeared at the key.
    Conflict,
    /// Text or a list was edited.
    Edit,
}

/// The entity maps whose entries are records keyed by id.
const ENTITY_CONTAINERS: &[&str] = &[k::HOUSEHOLD, k::ACTIVITIES, k::REVIEWS, k::PLANS, k::EVALUATIONS, k::DECISIONS];

fn prop_string(prop: &Prop) -> String {
    match prop {
        Prop::Map(key) => key.clone(),
        Prop::Seq(index) => index.to_string(),
    }
}

/// The patch's path as keys (ending with the key it wrote, for map patches), and its action.
fn path_and_action(patch: &Patch) -> (Vec<String>, Action) {
    let mut segs: Vec<String> = patch.path.iter().map(|(_, prop)| prop_string(prop)).collect();
    let action = match &patch.action {
        PatchAction::PutMap { key, value, .. } => {
            segs.push(key.clone());
            Action::Put { object: matches!(value.0, Value::Object(_)) }
        }
        PatchAction::DeleteMap { key } => {
            segs.push(key.clone());
            Action::Delete
        }
        PatchAction::Conflict { prop } => {
            segs.push(prop_string(prop));
            Action::Conflict
        }
        PatchAction::Increment { prop, .. } => {
            segs.push(prop_string(prop));
            Action::Put { object: false }
        }
        PatchAction::PutSeq { .. }
        | PatchAction::Insert { .. }
        | PatchAction::SpliceText { .. }
        | PatchAction::DeleteSeq { .. }
        | PatchAction::Mark { .. } => Action::Edit,
    };
    (segs, action)
}

fn path_string(segs: &[&str]) -> String {
    if segs.is_empty() {
        return "/".to_owned();
    }
    segs.iter().fold(String::new(), |mut path, seg| {
        path.push('/');
        path.push_str(seg);
        path
    })
}

fn scalar_string(value: &Value<'_>) -> Option<String> {
    match value {
        Value::Scalar(s) => match s.as_ref() {
            ScalarValue::Str(s) => Some(s.to_string()),
            _ => None,
        },
        Value::Object(_) => None,
    }
}

/// Reads the document just after one change, knowing which operations the change made.
struct Describer<'d> {
    doc: &'d AutoCommit,
    /// The heads the change's author had: "before", as they saw it.
    deps: Vec<ChangeHash>,
    actor: automerge::ActorId,
    /// The change's operation counters.
    ops: std::ops::Range<u64>,
}

impl Describer<'_> {
    /// The object at a path of map keys, now.
    fn object(&self, segs: &[&str]) -> Option<ObjId> {
        let mut obj = ROOT;
        for seg in segs {
            match self.doc.get(&obj, *seg).ok().flatten()? {
                (Value::Object(_), id) => obj = id,
                _ => return None,
            }
        }
        Some(obj)
    }

    /// The string at `segs` now (the value Automerge shows).
    fn string(&self, segs: &[&str]) -> Option<String> {
        let (last, parents) = segs.split_last()?;
        let obj = self.object(parents)?;
        self.doc.get(&obj, *last).ok().flatten().and_then(|(value, _)| scalar_string(&value))
    }

    fn boolean(&self, segs: &[&str]) -> Option<bool> {
        let (last, parents) = segs.split_last()?;
        let obj = self.object(parents)?;
        match self.doc.get(&obj, *last).ok().flatten()? {
            (Value::Scalar(s), _) => match s.as_ref() {
                ScalarValue::Boolean(b) => Some(*b),
                _ => None,
            },
            _ => None,
        }
    }

    /// The members of a set (`{key: true}`) at `segs`, now.
    fn set(&self, segs: &[&str]) -> Vec<String> {
        self.object(segs).map(|obj| self.doc.keys(&obj).collect()).unwrap_or_default()
    }

    /// The members of a set at `segs`, labelled.
    fn labelled_set<T>(
        &self,
        segs: &[&str],
        parse: fn(&str) -> Result<T, UnknownKey>,
        label: fn(&T) -> &'static str,
    ) -> Vec<Labelled> {
        self.set(segs).iter().map(|key| Labelled::of(key, parse, label)).collect()
    }

    /// The string this change wrote at `segs` (even when a concurrent value wins), else the
    /// value Automerge shows.
    fn written(&self, segs: &[&str]) -> Option<String> {
        let (last, parents) = segs.split_last()?;
        let obj = self.object(parents)?;
        let all = self.doc.get_all(&obj, *last).unwrap_or_default();
        let own = all.iter().find(|(_, id)| match id {
            ObjId::Id(counter, actor, _) => *actor == self.actor && self.ops.contains(counter),
            ObjId::Root => false,
        });
        match own {
            Some((value, _)) => scalar_string(value),
            None => self.string(segs),
        }
    }

    /// Whether Automerge holds concurrent values at `segs`.
    fn conflicted(&self, segs: &[&str]) -> bool {
        let Some((last, parents)) = segs.split_last() else { return false };
        self.object(parents).is_some_and(|obj| self.doc.get_all(&obj, *last).map(|all| all.len() > 1).unwrap_or(false))
    }

    /// The string at `segs` as the change's author saw it before the change.
    fn before(&self, segs: &[&str]) -> Option<String> {
        if self.deps.is_empty() {
            return None;
        }
        let mut obj = ROOT;
        let (last, parents) = segs.split_last()?;
        for seg in parents {
            match self.doc.get_at(&obj, *seg, &self.deps).ok().flatten()? {
                (Value::Object(_), id) => obj = id,
                _ => return None,
            }
        }
        self.doc.get_at(&obj, *last, &self.deps).ok().flatten().and_then(|(value, _)| scalar_string(&value))
    }

    fn activity(&self, id: &str) -> ActivityRef {
        let kind = self.string(&[k::ACTIVITIES, id, k::KIND]);
        ActivityRef {
            activity_id: id.to_owned(),
            activity_kind: kind.as_deref().map(|kind| Labelled::of(kind, ActivityKind::from_key, ActivityKind::label)),
            on: self
                .string(&[k::ACTIVITIES, id, k::STARTED_AT])
                .and_then(|s| parse_instant(&s))
                .map(|at| at.date_naive()),
        }
    }

    /// The activity a review reviews, when this case has it.
    fn reviewed(&self, review: &str) -> Option<ActivityRef> {
        let activity = self.string(&[k::REVIEWS, review, k::ACTIVITY_ID])?;
        self.object(&[k::ACTIVITIES, &activity]).map(|_| self.activity(&activity))
    }

    fn logged(&self, id: &str) -> HistoryEvent {
        let activity = self.activity(id);
        let field = |key: &str| self.string(&[k::ACTIVITIES, id, key]);
        let kind = activity.activity_kind.as_ref().and_then(|kind| ActivityKind::from_key(&kind.key).ok());
        let mut outcome = None;
        let mut letter_left = None;
        let mut channel = None;
        let mut mode = None;
        let mut topics = Vec::new();
        let mut items = Vec::new();
        let mut left_at = None;
        match kind {
            Some(ActivityKind::Visit) => {
                outcome = field(k::OUTCOME).map(|o| Labelled::of(&o, VisitOutcome::from_key, VisitOutcome::label));
                letter_left = self.boolean(&[k::ACTIVITIES, id, k::LETTER_LEFT]);
            }
            Some(ActivityKind::ContactAttempt) => {
                channel = field(k::CHANNEL).map(|c| Labelled::of(&c, ContactChannel::from_key, ContactChannel::label));
                outcome = field(k::OUTCOME).map(|o| Labelled::of(&o, ContactOutcome::from_key, ContactOutcome::label));
            }
            Some(ActivityKind::Consultation) => {
                mode = field(k::MODE).map(|m| Labelled::of(&m, ConsultationMode::from_key, ConsultationMode::label));
                topics = self.labelled_set(
                    &[k::ACTIVITIES, id, k::TOPICS],
                    ConsultationTopic::from_key,
                    ConsultationTopic::label,
                );
            }
            Some(ActivityKind::LetterLeft) => {
                items = self.labelled_set(
                    &[k::ACTIVITIES, id, k::LETTER, k::ITEMS],
                    LetterItem::from_key,
                    LetterItem::label,
                );
                left_at = self
                    .string(&[k::ACTIVITIES, id, k::LETTER, k::LEFT_AT])
                    .map(|p| Labelled::of(&p, LetterPlace::from_key, LetterPlace::label));
            }
            _ => {}
        }
        HistoryEvent::ActivityLogged { activity, outcome, letter_left, channel, mode, topics, items, left_at }
    }

    /// Every event of the change whose patches are `patches`, in document order.
    fn events(&self, patches: &[Patch]) -> Vec<HistoryEvent> {
        let walked: Vec<(Vec<String>, Action)> = patches.iter().map(path_and_action).collect();
        let opened = walked
            .iter()
            .any(|(segs, action)| segs.len() == 1 && segs[0] == k::CASE_ID && matches!(action, Action::Put { .. }));
        // Records created by this change: what is written inside them is part of the creation.
        let created: BTreeSet<(String, String)> = walked
            .iter()
            .filter(|(segs, action)| {
                segs.len() == 2
                    && ENTITY_CONTAINERS.contains(&segs[0].as_str())
                    && *action == Action::Put { object: true }
            })
            .map(|(segs, _)| (segs[0].clone(), segs[1].clone()))
            .collect();

        let mut events: Vec<HistoryEvent> = Vec::new();
        let mut push = |event: HistoryEvent| {
            if !events.iter_mut().any(|e| e.absorb(&event)) {
                events.push(event);
            }
        };
        if opened {
            push(HistoryEvent::CaseOpened {
                opened_on: self.string(&[k::OPENED_ON]).and_then(|s| parse_date(&s)),
                primary: self.string(&[k::ASSIGNEES, k::PRIMARY]),
                area: self.string(&[k::AREA]),
            });
        }
        for (segs, action) in &walked {
            let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
            if let Some(event) = self.event(&segs, *action, opened, &created) {
                push(event);
            }
        }
        // Consent recorded with its date and method is one event.
        if events.iter().any(|e| matches!(e, HistoryEvent::ConsentChanged { .. })) {
            events.retain(|e| !matches!(e, HistoryEvent::ConsentDetailsChanged));
        }
        events
    }

    /// The event one patch contributes, if any.
    fn event(
        &self,
        segs: &[&str],
        action: Action,
        opened: bool,
        created: &BTreeSet<(String, String)>,
    ) -> Option<HistoryEvent> {
        use Action::*;
        let put = matches!(action, Put { .. } | Conflict);
        let is_entity = segs.len() >= 2 && ENTITY_CONTAINERS.contains(&segs[0]);
        if is_entity && segs.len() > 2 && created.contains(&(segs[0].to_owned(), segs[1].to_owned())) {
            // Inside a record this change created: only a new member's concern tags are told.
            return match segs {
                [k::HOUSEHOLD, person, k::CONCERNS, tag] if put => Some(HistoryEvent::ConcernSet {
                    person_id: (*person).to_owned(),
                    concern: Labelled::of(tag, ConcernTag::from_key, ConcernTag::label),
                }),
                _ => None,
            };
        }
        if opened && !is_entity {
            // The case's own fields and containers, written when it was opened.
            return None;
        }
        let generic = || HistoryEvent::Changed { path: path_string(segs), removed: action == Delete };
        let event = match (segs, action) {
            ([k::CASE_NUMBER], Put { object: false } | Conflict) => {
                HistoryEvent::CaseNumberSet { case_number: self.written(segs).unwrap_or_default() }
            }
            ([k::STATUS], Put { object: false } | Conflict) => match self.written(segs) {
                Some(to) => HistoryEvent::StatusChanged {
                    from: self.before(segs).map(|from| Labelled::of(&from, CaseStatus::from_key, CaseStatus::label)),
                    to: Labelled::of(&to, CaseStatus::from_key, CaseStatus::label),
                    conflict: self.conflicted(segs),
                },
                None => generic(),
            },
            ([k::AREA], Put { object: false } | Conflict) => HistoryEvent::AreaChanged { area: self.written(segs) },
            ([k::AREA], Delete) => HistoryEvent::AreaChanged { area: None },
            ([k::REFERRAL_SOURCE, _, ..], _) => HistoryEvent::ReferralSourceChanged,
            ([k::CONSENT, k::STATE], Put { object: false } | Conflict) => match self.written(segs) {
                Some(to) => HistoryEvent::ConsentChanged {
                    from: self
                        .before(segs)
                        .map(|from| Labelled::of(&from, ConsentState::from_key, ConsentState::label)),
                    to: Labelled::of(&to, ConsentState::from_key, ConsentState::label),
                    on: self.string(&[k::CONSENT, k::ON]).and_then(|s| parse_date(&s)),
                    by: self
                        .string(&[k::CONSENT, k::BY])
                        .map(|by| Labelled::of(&by, ConsentMethod::from_key, ConsentMethod::label)),
                    conflict: self.conflicted(segs),
                },
                None => generic(),
            },
            ([k::CONSENT, k::ON | k::BY], _) => HistoryEvent::ConsentDetailsChanged,
            ([k::ASSIGNEES, k::PRIMARY], Put { object: false } | Conflict) => match self.written(segs) {
                Some(staff_id) => HistoryEvent::PrimaryAssigned {
                    staff_id,
                    previous: self.before(segs),
                    conflict: self.conflicted(segs),
                },
                None => generic(),
            },
            ([k::ASSIGNEES, k::OTHERS, staff], Put { object: false } | Conflict) => {
                HistoryEvent::OtherAssigneeAdded { staff_id: (*staff).to_owned() }
            }
            ([k::ASSIGNEES, k::OTHERS, staff], Delete) => {
                HistoryEvent::OtherAssigneeRemoved { staff_id: (*staff).to_owned() }
            }
            ([k::HOUSEHOLD, person], Put { object: true }) => {
                HistoryEvent::PersonAdded { person_id: (*person).to_owned() }
            }
            ([k::HOUSEHOLD, person, k::NOTE, ..], _) => {
                HistoryEvent::PersonNoteAmended { person_id: (*person).to_owned() }
            }
            ([k::HOUSEHOLD, person, k::CONCERNS, tag], Put { object: false } | Conflict) => HistoryEvent::ConcernSet {
                person_id: (*person).to_owned(),
                concern: Labelled::of(tag, ConcernTag::from_key, ConcernTag::label),
            },
            ([k::HOUSEHOLD, person, k::CONCERNS, tag], Delete) => HistoryEvent::ConcernRemoved {
                person_id: (*person).to_owned(),
                concern: Labelled::of(tag, ConcernTag::from_key, ConcernTag::label),
            },
            ([k::HOUSEHOLD, person, field, ..], _) if self.object(&[k::HOUSEHOLD, person]).is_some() => {
                HistoryEvent::PersonAmended { person_id: (*person).to_owned(), fields: vec![person_field(field)] }
            }
            ([k::ACTIVITIES, id], Put { object: true }) => self.logged(id),
            ([k::ACTIVITIES, id, k::NARRATIVE, ..], _) => {
                HistoryEvent::NarrativeAmended { activity: self.activity(id) }
            }
            ([k::ACTIVITIES, id, k::VOIDED, _, ..], Put { .. } | Conflict) => {
                HistoryEvent::ActivityVoided { activity: self.activity(id) }
            }
            ([k::ACTIVITIES, id, k::FOLLOW_UP_ON], Put { object: false } | Conflict) => HistoryEvent::FollowUpSet {
                activity: self.activity(id),
                on: self.written(segs).and_then(|s| parse_date(&s)),
            },
            ([k::ACTIVITIES, id, k::FOLLOW_UP_ON], Delete) => {
                HistoryEvent::FollowUpSet { activity: self.activity(id), on: None }
            }
            ([k::ACTIVITIES, id, k::LETTER, k::REPLY_RECEIVED_ON], Put { object: false } | Conflict) => {
                HistoryEvent::LetterReplyRecorded {
                    activity: self.activity(id),
                    on: self.written(segs).and_then(|s| parse_date(&s)),
                }
            }
            ([k::ACTIVITIES, id, k::OUTCOME], Put { object: false } | Conflict) => {
                let activity = self.activity(id);
                let kind = activity.activity_kind.as_ref().and_then(|kind| ActivityKind::from_key(&kind.key).ok());
                let written = self.written(segs);
                match (kind, written) {
                    (Some(ActivityKind::Visit), Some(o)) => HistoryEvent::OutcomeChanged {
                        activity,
                        outcome: Labelled::of(&o, VisitOutcome::from_key, VisitOutcome::label),
                    },
                    (Some(ActivityKind::ContactAttempt), Some(o)) => HistoryEvent::OutcomeChanged {
                        activity,
                        outcome: Labelled::of(&o, ContactOutcome::from_key, ContactOutcome::label),
                    },
                    _ => HistoryEvent::ActivityAmended { activity, fields: vec![activity_field(k::OUTCOME)] },
                }
            }
            ([k::ACTIVITIES, id, field, ..], _) if self.object(&[k::ACTIVITIES, id]).is_some() => {
                HistoryEvent::ActivityAmended { activity: self.activity(id), fields: vec![activity_field(field)] }
            }
            ([k::REVIEWS, id], Put { object: true }) => {
                HistoryEvent::ActivityReviewed { review_id: (*id).to_owned(), activity: self.reviewed(id) }
            }
            ([k::REVIEWS, id, _, ..], _) if self.object(&[k::REVIEWS, id]).is_some() => {
                HistoryEvent::ReviewAmended { review_id: (*id).to_owned(), activity: self.reviewed(id) }
            }
            ([container, id], Put { object: true }) if FormKind::of_container(container).is_some() => {
                match FormKind::of_container(container) {
                    Some(form) => HistoryEvent::FormAdded { form, form_id: (*id).to_owned() },
                    None => generic(),
                }
            }
            ([container, id, _, ..], _) if FormKind::of_container(container).is_some() => {
                match FormKind::of_container(container) {
                    Some(form) => HistoryEvent::FormAmended { form, form_id: (*id).to_owned() },
                    None => generic(),
                }
            }
            _ => generic(),
        };
        Some(event)
    }
}

#[cfg(test)]
mod tests;
