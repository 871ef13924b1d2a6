//! The typed read of a case document.

use std::collections::{BTreeMap, BTreeSet};

use automerge::ChangeHash;
use chrono::{DateTime, FixedOffset, NaiveDate};
use serde::Serialize;

use crate::domain::{
    ActivityKind, CaseStatus, ConcernTag, ConsentMethod, ConsentState, ConsultationMode, ConsultationTopic,
    ContactChannel, ContactOutcome, LetterItem, LetterPlace, ObservedChange, PersonWish, Place, PlanVerdict, Relation,
    SexKind, VisitOutcome,
};
use crate::ids::{
    ActivityId, CaseId, CaseNumber, DecisionId, DeviceId, EvaluationId, MunicipalityCode, PersonId, PlanActionId,
    PlanId, ReviewId, StaffId,
};

/// A case as a counsellor or supervisor reads it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CaseView {
    /// Schema version of the document.
    pub schema: i64,
    /// The case's id (the document's identity).
    pub case_id: CaseId,
    /// The municipality the case belongs to.
    pub municipality: Option<MunicipalityCode>,
    /// 受付番号, once the server has assigned it.
    pub case_number: Option<CaseNumber>,
    /// 相談受付日.
    pub opened_on: Option<NaiveDate>,
    /// 紹介元.
    pub referral_source: ReferralSource,
    /// エリア / ブロック, a deployment-defined code.
    pub area: Option<String>,
    /// Where the case stands.
    pub status: CaseStatus,
    /// 本人同意.
    pub consent: Consent,
    /// Who works on the case.
    pub assignees: Assignees,
    /// 世帯: the household members.
    pub household: BTreeMap<PersonId, Person>,
    /// Everything logged in the field, voided ones included.
    pub activities: BTreeMap<ActivityId, Activity>,
    /// Supervisors' reviews of activities.
    pub reviews: BTreeMap<ReviewId, Review>,
    /// Support plans (様式第1号).
    pub plans: BTreeMap<PlanId, Plan>,
    /// Evaluations (様式第2号).
    pub evaluations: BTreeMap<EvaluationId, Evaluation>,
    /// Meeting decisions (様式第2-2号).
    pub decisions: BTreeMap<DecisionId, Decision>,
    /// Every register where Automerge holds concurrent values, for a supervisor to settle.
    pub conflicts: Vec<Conflict>,
}

impl CaseView {
    /// Activities in the order they happened (then by id, for a stable order).
    pub fn activities_by_time(&self) -> Vec<&Activity> {
        let mut all: Vec<&Activity> = self.activities.values().collect();
        all.sort_by_key(|a| (a.started_at, a.id));
        all
    }

    /// The household member marked as the main subject, if any.
    pub fn subject(&self) -> Option<&Person> {
        self.household.values().find(|p| p.is_subject)
    }

    /// Reviews of one activity, oldest first.
    pub fn reviews_of(&self, activity: &ActivityId) -> Vec<&Review> {
        let mut all: Vec<&Review> = self.reviews.values().filter(|r| &r.activity_id == activity).collect();
        all.sort_by_key(|r| (r.at, r.id));
        all
    }

    /// Plans by round, then date drafted (then id, for a stable order).
    pub fn plans_by_round(&self) -> Vec<&Plan> {
        let mut all: Vec<&Plan> = self.plans.values().collect();
        all.sort_by_key(|p| (p.round, p.drafted_on, p.id));
        all
    }

    /// Evaluations by round, then date (then id).
    pub fn evaluations_by_round(&self) -> Vec<&Evaluation> {
        let mut all: Vec<&Evaluation> = self.evaluations.values().collect();
        all.sort_by_key(|e| (e.round, e.evaluated_on, e.id));
        all
    }

    /// Decisions in the order they were taken (then by id).
    pub fn decisions_by_date(&self) -> Vec<&Decision> {
        let mut all: Vec<&Decision> = self.decisions.values().collect();
        all.sort_by_key(|d| (d.decided_on, d.meeting_on, d.id));
        all
    }

    /// Whether a meeting decided to close the case (what closing it requires).
    pub fn has_closing_decision(&self) -> bool {
        self.decisions.values().any(|d| d.verdict == PlanVerdict::Close)
    }
}

/// Where the case came from (紹介元).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReferralSource {
    /// An intake source key from the catalogue (e.g. `community_general_support_center`).
    pub kind: Option<String>,
    /// The referring agency's or person's own name, free text.
    pub name: Option<String>,
    /// 紹介日.
    pub referred_on: Option<NaiveDate>,
}

/// The person's consent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Consent {
    /// none → obtained → possibly withdrawn.
    pub state: ConsentState,
    /// The date of the last change of state.
    pub on: Option<NaiveDate>,
    /// How consent was obtained.
    pub by: Option<ConsentMethod>,
}

/// Who works on the case.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Assignees {
    /// 主担当者.
    pub primary: Option<StaffId>,
    /// The others.
    pub others: BTreeSet<StaffId>,
}

impl Assignees {
    /// Whether `staff` is the primary or one of the others.
    pub fn includes(&self, staff: &StaffId) -> bool {
        self.primary.as_ref() == Some(staff) || self.others.contains(staff)
    }
}

/// Sex as recorded: one of the listed values or the person's own description.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Sex {
    /// 男性 / 女性.
    Listed(SexKind),
    /// Free text.
    Described(String),
}

impl Sex {
    /// The text shown to users.
    pub fn label(&self) -> &str {
        match self {
            Sex::Listed(kind) => kind.label(),
            Sex::Described(text) => text,
        }
    }

    /// The value stored in the document.
    pub fn as_stored(&self) -> &str {
        match self {
            Sex::Listed(kind) => kind.as_key(),
            Sex::Described(text) => text,
        }
    }

    /// Reads a stored value: a listed key, or free text.
    pub fn from_stored(s: &str) -> Sex {
        SexKind::from_key(s).map(Sex::Listed).unwrap_or_else(|_| Sex::Described(s.to_owned()))
    }
}

/// A household member's concern tags (困難要素).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Concerns {
    /// Listed tags (never [`ConcernTag::Other`]: that one is `other`).
    pub tags: BTreeSet<ConcernTag>,
    /// The free text of the その他 tag, if set.
    pub other: Option<String>,
}

/// A household member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Person {
    /// The person's id within the case.
    pub id: PersonId,
    /// 氏名.
    pub name: String,
    /// ふりがな.
    pub kana: Option<String>,
    /// 性別.
    pub sex: Option<Sex>,
    /// 生年月日 (西暦).
    pub birth_date: Option<NaiveDate>,
    /// 続柄 to the main subject.
    pub relation: Option<Relation>,
    /// Whether this is the case's main subject (本人).
    pub is_subject: bool,
    /// 困難要素.
    pub concerns: Concerns,
    /// Free notes on the person.
    pub note: String,
}

/// One thing a counsellor did and logged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Activity {
    /// Made on the device that logged it.
    pub id: ActivityId,
    /// When it started.
    pub started_at: DateTime<FixedOffset>,
    /// When it ended, if recorded.
    pub ended_at: Option<DateTime<FixedOffset>>,
    /// The staff member who logged it.
    pub recorded_by: StaffId,
    /// The device it was logged on.
    pub device_id: DeviceId,
    /// Where it took place.
    pub place: Place,
    /// The fields of its kind.
    pub details: ActivityDetails,
    /// 次回予定.
    pub follow_up_on: Option<NaiveDate>,
    /// 経過記録.
    pub narrative: String,
    /// Set when a wrong entry was voided; voided activities stay visible.
    pub voided: Option<Voided>,
}

impl Activity {
    /// The activity's kind.
    pub fn kind(&self) -> ActivityKind {
        self.details.kind()
    }
}

/// The fields specific to each kind of activity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ActivityDetails {
    /// 家庭訪問.
    Visit {
        /// How it went.
        outcome: VisitOutcome,
        /// The household members met (only when `outcome` is `met`).
        met_person_ids: BTreeSet<PersonId>,
        /// Whether a letter was left.
        letter_left: bool,
    },
    /// 置き手紙.
    LetterLeft {
        /// What was left.
        items: BTreeSet<LetterItem>,
        /// Where.
        left_at: LetterPlace,
        /// When a reply came, if one did.
        reply_received_on: Option<NaiveDate>,
    },
    /// 連絡・接触.
    ContactAttempt {
        /// By what means.
        channel: ContactChannel,
        /// How it went.
        outcome: ContactOutcome,
    },
    /// 同行支援.
    Accompaniment {
        /// Which agency (a catalogue key or its name).
        agency: String,
        /// Why.
        purpose: String,
        /// How it went, free text.
        outcome: String,
    },
    /// 情報提供.
    Information {
        /// What information was given.
        information: String,
        /// The person's interest it was matched to.
        interest: String,
    },
    /// 相談対応.
    Consultation {
        /// In person, by phone...
        mode: ConsultationMode,
        /// What it was about (one consultation can have several topics).
        topics: BTreeSet<ConsultationTopic>,
    },
    /// 関係機関調整.
    Coordination {
        /// Which agency (a catalogue key or its name).
        agency: String,
    },
}

impl ActivityDetails {
    /// The kind these details belong to.
    pub fn kind(&self) -> ActivityKind {
        match self {
            ActivityDetails::Visit { .. } => ActivityKind::Visit,
            ActivityDetails::LetterLeft { .. } => ActivityKind::LetterLeft,
            ActivityDetails::ContactAttempt { .. } => ActivityKind::ContactAttempt,
            ActivityDetails::Accompaniment { .. } => ActivityKind::Accompaniment,
            ActivityDetails::Information { .. } => ActivityKind::Information,
            ActivityDetails::Consultation { .. } => ActivityKind::Consultation,
            ActivityDetails::Coordination { .. } => ActivityKind::Coordination,
        }
    }
}

/// Why and by whom an activity was voided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Voided {
    /// Who voided it.
    pub by: StaffId,
    /// When.
    pub at: DateTime<FixedOffset>,
    /// Why (required).
    pub reason: String,
}

/// A supervisor's review of an activity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Review {
    /// The review's id.
    pub id: ReviewId,
    /// The activity reviewed.
    pub activity_id: ActivityId,
    /// The supervisor.
    pub by: StaffId,
    /// When.
    pub at: DateTime<FixedOffset>,
    /// The comment (may be empty: a plain 確認).
    pub comment: String,
    /// The document heads its author saw when writing it, sorted (hex strings in JSON).
    /// Empty for a review written without them (before tsunagi recorded them).
    pub heads: Vec<ChangeHash>,
}

/// A register where Automerge keeps concurrent values: nothing was lost, and a supervisor
/// should choose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Conflict {
    /// The document path, e.g. `/status` or `/activities/<id>/outcome`.
    pub path: String,
    /// Every concurrent value; the first is the one Automerge shows by default.
    pub values: Vec<ConflictValue>,
}

/// One of a conflict's values and who wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConflictValue {
    /// The value as JSON (a string, number, boolean or null).
    pub value: serde_json::Value,
    /// The Automerge actor that wrote it, hex.
    pub actor: String,
    /// The device that wrote it, when the actor is a device actor.
    pub device_id: Option<DeviceId>,
}

/// A support plan (様式第1号 アウトリーチ等を通じた継続的支援事業のプラン).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// The plan's id.
    pub id: PlanId,
    /// プラン N 回目 (from 1).
    pub round: u32,
    /// Who drafted it (主担当者): the staff member who added the plan.
    pub author: StaffId,
    /// The date of the plan.
    pub drafted_on: NaiveDate,
    /// 解決したい課題.
    pub issues: String,
    /// 支援目標.
    pub goals: String,
    /// The rows of who does what, how often, for how long.
    pub actions: BTreeMap<PlanActionId, PlanAction>,
    /// The end of the plan period.
    pub period_until: Option<NaiveDate>,
    /// 次回モニタリング時期.
    pub next_monitoring_on: Option<NaiveDate>,
}

/// One row of a plan's actions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlanAction {
    /// The row's id.
    pub id: PlanActionId,
    /// Who: the person, the family, or which agency.
    pub who: String,
    /// What.
    pub what: String,
    /// How often (may be empty).
    pub frequency: String,
    /// For how long (may be empty).
    pub duration: String,
}

/// An evaluation (様式第2号 評価シート).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Evaluation {
    /// The evaluation's id.
    pub id: EvaluationId,
    /// The evaluation round (from 1).
    pub round: u32,
    /// Who evaluated: the staff member who added the evaluation.
    pub evaluator: StaffId,
    /// The date of the evaluation.
    pub evaluated_on: NaiveDate,
    /// How far the support goals were attained.
    pub goal_attainment: String,
    /// 見られた変化: the listed changes (never [`ObservedChange::Other`]: that one is
    /// `observed_other`).
    pub observed_changes: BTreeSet<ObservedChange>,
    /// The free text of the その他 change, if checked.
    pub observed_other: Option<String>,
    /// The current situation and the issues that remain.
    pub situation: String,
    /// The person's wish: to close, or to continue.
    pub wish: Option<PersonWish>,
    /// The staff member's opinion.
    pub staff_opinion: String,
}

impl Evaluation {
    /// Every change checked on the form, [`ObservedChange::Other`] included when
    /// `observed_other` is set.
    pub fn checked_changes(&self) -> BTreeSet<ObservedChange> {
        let mut all = self.observed_changes.clone();
        if self.observed_other.is_some() {
            all.insert(ObservedChange::Other);
        }
        all
    }
}

/// A meeting decision (様式第2-2号, at the 重層的支援会議).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// The decision's id.
    pub id: DecisionId,
    /// The date of the meeting.
    pub meeting_on: NaiveDate,
    /// The verdict on the plan.
    pub verdict: PlanVerdict,
    /// For a close: whether the person was referred on to (and is already connected with)
    /// other agencies.
    pub referred_on: bool,
    /// The date of the decision.
    pub decided_on: NaiveDate,
    /// Notes for after closing, or for the next plan.
    pub notes: String,
    /// つなぎ先: referral destination keys of the catalogue (never `other`: that one is
    /// `referral_other`).
    pub referral_destinations: BTreeSet<String>,
    /// The free text of the その他 destination, if checked.
    pub referral_other: Option<String>,
    /// 相談歴: agencies consulted before, catalogue keys (never `other`: that one is
    /// `past_other`).
    pub past_consultations: BTreeSet<String>,
    /// The free text of the その他 past consultation, if checked.
    pub past_other: Option<String>,
    /// Remarks.
    pub remarks: String,
    /// The supervisor who recorded the decision.
    pub recorded_by: StaffId,
}

impl Decision {
    /// Whether the decision names somewhere the person was referred to.
    pub fn has_destination(&self) -> bool {
        !self.referral_destinations.is_empty() || self.referral_other.is_some()
    }
}
