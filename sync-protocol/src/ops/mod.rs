//! Field operations: what a phone does to its replica of a case, each producing one valid
//! Automerge change.
//!
//! A [`CaseReplica`] is one case document plus the [`Actor`] editing it. Every operation
//! checks its input first (dates are real dates, required fields per activity kind, a visit
//! that met people names members of the household, texts within bounds, the actor may do
//! this) and returns an [`OpError`] without touching the document when something is wrong.
//! When it succeeds it commits exactly one change, authored by the device's actor id, which
//! [`crate::validation::validate_update`] accepts for that actor.
//!
//! Narratives and notes are Automerge `Text`: [`CaseReplica::amend_narrative`] turns the new
//! text into character-level edits, so two people amending the same narrative offline both
//! keep their words after merging.
//!
//! The three forms: [`CaseReplica::add_plan`] (様式第1号, with [`CaseReplica::add_plan_action`]
//! for later rows), [`CaseReplica::add_evaluation`] (様式第2号) and
//! [`CaseReplica::record_decision`] (様式第2-2号, supervisors only), each built with its
//! `New…` builder; [`CaseReplica::amend_form_text`] amends their free texts. Closing a case
//! ([`CaseReplica::set_status`] with `closed`) needs a decision to close it first.

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{ActorId, AutoCommit, AutomergeError, Change, ChangeHash, ObjId, ObjType, ReadDoc, Value, ROOT};
use chrono::{DateTime, FixedOffset, NaiveDate};

use crate::actor::random_device_actor;
use std::collections::BTreeSet;

use crate::document::{
    format_date, format_heads, format_instant, keys as k, read_case, ActivityDetails, CaseView, Limits, ReferralSource,
    Sex, SCHEMA_VERSION,
};
use crate::domain::catalogue::Catalogue;
use crate::domain::{
    CaseStatus, ConcernTag, ConsentMethod, ConsentState, ObservedChange, PersonWish, Place, PlanVerdict, Relation,
    Role, VisitOutcome,
};
use crate::ids::{
    ActivityId, CaseId, DecisionId, EvaluationId, MunicipalityCode, PersonId, PlanActionId, PlanId, ReviewId, StaffId,
};
use crate::validation::Actor;

/// Why a field operation was not performed. The document is unchanged.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    /// The actor's role may not do this at all.
    #[error("a {0} may not change case documents")]
    ReadOnly(Role),
    /// Only a supervisor may do this.
    #[error("only a supervisor may {0}")]
    SupervisorOnly(&'static str),
    /// Counsellors amend only the activities they logged.
    #[error("activity {0} was logged by someone else; only its author amends it")]
    NotOwnActivity(ActivityId),
    /// No such activity in this case.
    #[error("this case has no activity {0}")]
    UnknownActivity(ActivityId),
    /// No such household member in this case.
    #[error("this case has no household member {0}")]
    UnknownPerson(PersonId),
    /// A required text is empty.
    #[error("{0} must not be empty")]
    Empty(&'static str),
    /// A text is too long.
    #[error("{field} has {len} characters, at most {max}")]
    TooLong {
        /// Which field.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// Too many entries.
    #[error("{field} has {len} entries, at most {max}")]
    TooMany {
        /// Which collection.
        field: &'static str,
        /// Its size.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// Fields that contradict each other.
    #[error("{0}")]
    Inconsistent(&'static str),
    /// The activity was voided already; a void is final.
    #[error("activity {0} is already voided")]
    AlreadyVoided(ActivityId),
    /// No such plan in this case.
    #[error("this case has no plan {0}")]
    UnknownPlan(PlanId),
    /// No such evaluation in this case.
    #[error("this case has no evaluation {0}")]
    UnknownEvaluation(EvaluationId),
    /// No such meeting decision in this case.
    #[error("this case has no meeting decision {0}")]
    UnknownDecision(DecisionId),
    /// A referral destination key that is not in the catalogue (or `other`, whose free text
    /// has a field of its own).
    #[error("{0:?} is not a referral destination of the catalogue")]
    UnknownDestination(String),
    /// Closing a case requires a meeting decision with the verdict `close`.
    #[error("closing a case requires a meeting decision to close it")]
    ClosingWithoutDecision,
    /// The document is not a readable case.
    #[error("not a readable case document: {0}")]
    NotACase(String),
    /// The bytes are not an Automerge document.
    #[error("cannot load the case document: {0}")]
    Load(Box<AutomergeError>),
    /// Automerge refused an operation (a bug if it ever happens). Boxed: Automerge's error
    /// is large, and every operation returns this type.
    #[error("automerge: {0}")]
    Automerge(Box<AutomergeError>),
}

impl From<AutomergeError> for OpError {
    fn from(e: AutomergeError) -> Self {
        OpError::Automerge(Box::new(e))
    }
}

/// What a new case starts with.
#[derive(Debug, Clone)]
pub struct NewCase {
    /// The case's id, made by the device opening it.
    pub case_id: CaseId,
    /// The municipality the case belongs to.
    pub municipality: MunicipalityCode,
    /// 相談受付日.
    pub opened_on: NaiveDate,
    /// 紹介元.
    pub referral_source: ReferralSource,
    /// The area code, if known.
    pub area: Option<String>,
    /// Household members known at opening (may be empty).
    pub household: Vec<NewPerson>,
}

impl NewCase {
    /// A case with a fresh id and nothing but the municipality and the intake date.
    pub fn new(municipality: MunicipalityCode, opened_on: NaiveDate) -> Self {
        Self {
            case_id: CaseId::new_random(),
            municipality,
            opened_on,
            referral_source: ReferralSource::default(),
            area: None,
            household: Vec::new(),
        }
    }
}

/// A household member to add.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPerson {
    /// The id (fresh by default).
    pub id: PersonId,
    /// 氏名 (required).
    pub name: String,
    /// ふりがな.
    pub kana: Option<String>,
    /// 性別.
    pub sex: Option<Sex>,
    /// 生年月日.
    pub birth_date: Option<NaiveDate>,
    /// 続柄.
    pub relation: Option<Relation>,
    /// Whether this is the main subject.
    pub is_subject: bool,
    /// 困難要素 (listed ones; `Other` is ignored here — use `other_concern`).
    pub concerns: Vec<ConcernTag>,
    /// The free text of the その他 concern.
    pub other_concern: Option<String>,
}

impl NewPerson {
    /// A person with a fresh id and a name.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            id: PersonId::new_random(),
            name: name.into(),
            kana: None,
            sex: None,
            birth_date: None,
            relation: None,
            is_subject: false,
            concerns: Vec::new(),
            other_concern: None,
        }
    }
}

/// Changes to a household member's fields; `None` leaves a field as it is, `Some(None)`
/// clears an optional one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PersonUpdate {
    /// New name.
    pub name: Option<String>,
    /// New reading.
    pub kana: Option<Option<String>>,
    /// New sex.
    pub sex: Option<Option<Sex>>,
    /// New date of birth.
    pub birth_date: Option<Option<NaiveDate>>,
    /// New relation.
    pub relation: Option<Option<Relation>>,
    /// Whether the person is the main subject.
    pub is_subject: Option<bool>,
}

/// An activity to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewActivity {
    /// The id (fresh by default; a retried log with the same id is the same activity).
    pub id: ActivityId,
    /// When it started.
    pub started_at: DateTime<FixedOffset>,
    /// When it ended.
    pub ended_at: Option<DateTime<FixedOffset>>,
    /// Where.
    pub place: Place,
    /// The fields of its kind.
    pub details: ActivityDetails,
    /// 次回予定.
    pub follow_up_on: Option<NaiveDate>,
    /// 経過記録.
    pub narrative: String,
}

impl NewActivity {
    /// An activity with a fresh id, no end, no follow-up and an empty narrative.
    pub fn new(started_at: DateTime<FixedOffset>, place: Place, details: ActivityDetails) -> Self {
        Self {
            id: ActivityId::new_random(),
            started_at,
            ended_at: None,
            place,
            details,
            follow_up_on: None,
            narrative: String::new(),
        }
    }

    /// Sets the narrative.
    pub fn with_narrative(mut self, narrative: impl Into<String>) -> Self {
        self.narrative = narrative.into();
        self
    }

    /// Sets the end time.
    pub fn ending_at(mut self, ended_at: DateTime<FixedOffset>) -> Self {
        self.ended_at = Some(ended_at);
        self
    }

    /// Sets the follow-up date.
    pub fn with_follow_up(mut self, on: NaiveDate) -> Self {
        self.follow_up_on = Some(on);
        self
    }
}

/// A support plan to add (様式第1号). Its author is the actor adding it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPlan {
    /// The id (fresh by default; a retried add with the same id is the same plan).
    pub id: PlanId,
    /// プラン N 回目, from 1.
    pub round: u32,
    /// The date of the plan.
    pub drafted_on: NaiveDate,
    /// 解決したい課題.
    pub issues: String,
    /// 支援目標.
    pub goals: String,
    /// The action rows.
    pub actions: Vec<NewPlanAction>,
    /// The end of the plan period.
    pub period_until: Option<NaiveDate>,
    /// 次回モニタリング時期.
    pub next_monitoring_on: Option<NaiveDate>,
}

impl NewPlan {
    /// A plan of `round` with a fresh id, dated `drafted_on`, with empty texts and no actions.
    pub fn new(round: u32, drafted_on: NaiveDate) -> Self {
        Self {
            id: PlanId::new_random(),
            round,
            drafted_on,
            issues: String::new(),
            goals: String::new(),
            actions: Vec::new(),
            period_until: None,
            next_monitoring_on: None,
        }
    }

    /// Sets the issues to solve (解決したい課題).
    pub fn with_issues(mut self, issues: impl Into<String>) -> Self {
        self.issues = issues.into();
        self
    }

    /// Sets the support goals (支援目標).
    pub fn with_goals(mut self, goals: impl Into<String>) -> Self {
        self.goals = goals.into();
        self
    }

    /// Adds an action row.
    pub fn with_action(mut self, action: NewPlanAction) -> Self {
        self.actions.push(action);
        self
    }

    /// Sets the end of the plan period.
    pub fn until(mut self, period_until: NaiveDate) -> Self {
        self.period_until = Some(period_until);
        self
    }

    /// Sets the next monitoring date (次回モニタリング時期).
    pub fn with_next_monitoring(mut self, on: NaiveDate) -> Self {
        self.next_monitoring_on = Some(on);
        self
    }
}

/// A row of a plan's actions: who does what, how often, for how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPlanAction {
    /// The id (fresh by default; a retried add with the same id is the same row).
    pub id: PlanActionId,
    /// Who: the person, the family, or which agency (required).
    pub who: String,
    /// What (required).
    pub what: String,
    /// How often (empty: not said).
    pub frequency: String,
    /// For how long (empty: not said).
    pub duration: String,
}

impl NewPlanAction {
    /// A row with a fresh id saying who does what.
    pub fn new(who: impl Into<String>, what: impl Into<String>) -> Self {
        Self {
            id: PlanActionId::new_random(),
            who: who.into(),
            what: what.into(),
            frequency: String::new(),
            duration: String::new(),
        }
    }

    /// Sets how often.
    pub fn with_frequency(mut self, frequency: impl Into<String>) -> Self {
        self.frequency = frequency.into();
        self
    }

    /// Sets for how long.
    pub fn with_duration(mut self, duration: impl Into<String>) -> Self {
        self.duration = duration.into();
        self
    }
}

/// An evaluation to add (様式第2号). Its evaluator is the actor adding it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvaluation {
    /// The id (fresh by default; a retried add with the same id is the same evaluation).
    pub id: EvaluationId,
    /// The evaluation round, from 1.
    pub round: u32,
    /// The date of the evaluation.
    pub evaluated_on: NaiveDate,
    /// How far the goals were attained.
    pub goal_attainment: String,
    /// 見られた変化 (listed ones; [`ObservedChange::Other`] is ignored here — use
    /// `observed_other`).
    pub observed_changes: BTreeSet<ObservedChange>,
    /// The free text of the その他 change.
    pub observed_other: Option<String>,
    /// The current situation and the issues that remain.
    pub situation: String,
    /// The person's wish.
    pub wish: Option<PersonWish>,
    /// The staff member's opinion.
    pub staff_opinion: String,
}

impl NewEvaluation {
    /// An evaluation of `round` with a fresh id, dated `evaluated_on`, with nothing else.
    pub fn new(round: u32, evaluated_on: NaiveDate) -> Self {
        Self {
            id: EvaluationId::new_random(),
            round,
            evaluated_on,
            goal_attainment: String::new(),
            observed_changes: BTreeSet::new(),
            observed_other: None,
            situation: String::new(),
            wish: None,
            staff_opinion: String::new(),
        }
    }

    /// Sets how far the goals were attained.
    pub fn with_goal_attainment(mut self, text: impl Into<String>) -> Self {
        self.goal_attainment = text.into();
        self
    }

    /// Checks an observed change.
    pub fn with_change(mut self, change: ObservedChange) -> Self {
        self.observed_changes.insert(change);
        self
    }

    /// Checks その他 with its text.
    pub fn with_other_change(mut self, text: impl Into<String>) -> Self {
        self.observed_other = Some(text.into());
        self
    }

    /// Sets the current situation and remaining issues.
    pub fn with_situation(mut self, text: impl Into<String>) -> Self {
        self.situation = text.into();
        self
    }

    /// Sets the person's wish.
    pub fn with_wish(mut self, wish: PersonWish) -> Self {
        self.wish = Some(wish);
        self
    }

    /// Sets the staff member's opinion.
    pub fn with_staff_opinion(mut self, text: impl Into<String>) -> Self {
        self.staff_opinion = text.into();
        self
    }
}

/// A meeting decision to record (様式第2-2号). Its recorder is the supervisor recording it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDecision {
    /// The id (fresh by default; a retried record with the same id is the same decision).
    pub id: DecisionId,
    /// The date of the meeting.
    pub meeting_on: NaiveDate,
    /// The verdict on the plan.
    pub verdict: PlanVerdict,
    /// For a close: whether the person was referred on (requires a destination).
    pub referred_on: bool,
    /// The date of the decision.
    pub decided_on: NaiveDate,
    /// Notes for after closing, or for the next plan.
    pub notes: String,
    /// つなぎ先: referral destination keys of the catalogue.
    pub referral_destinations: BTreeSet<String>,
    /// The free text of the その他 destination.
    pub referral_other: Option<String>,
    /// 相談歴: catalogue keys of agencies consulted before.
    pub past_consultations: BTreeSet<String>,
    /// The free text of the その他 past consultation.
    pub past_other: Option<String>,
    /// Remarks.
    pub remarks: String,
}

impl NewDecision {
    /// A decision with a fresh id, taken at the meeting of `meeting_on` and dated that day,
    /// referring nobody on.
    pub fn new(meeting_on: NaiveDate, verdict: PlanVerdict) -> Self {
        Self {
            id: DecisionId::new_random(),
            meeting_on,
            verdict,
            referred_on: false,
            decided_on: meeting_on,
            notes: String::new(),
            referral_destinations: BTreeSet::new(),
            referral_other: None,
            past_consultations: BTreeSet::new(),
            past_other: None,
            remarks: String::new(),
        }
    }

    /// Sets the decision date (by default the meeting's).
    pub fn decided(mut self, on: NaiveDate) -> Self {
        self.decided_on = on;
        self
    }

    /// Records that the person was referred on to these catalogue destinations.
    pub fn referred_to<I: IntoIterator<Item = S>, S: Into<String>>(mut self, destinations: I) -> Self {
        self.referred_on = true;
        self.referral_destinations.extend(destinations.into_iter().map(Into::into));
        self
    }

    /// Records that the person was referred on to a destination the catalogue does not list
    /// (その他, free text).
    pub fn referred_to_other(mut self, text: impl Into<String>) -> Self {
        self.referred_on = true;
        self.referral_other = Some(text.into());
        self
    }

    /// Adds agencies consulted before (相談歴), catalogue keys.
    pub fn consulted_before<I: IntoIterator<Item = S>, S: Into<String>>(mut self, destinations: I) -> Self {
        self.past_consultations.extend(destinations.into_iter().map(Into::into));
        self
    }

    /// Sets the その他 past consultation (free text).
    pub fn consulted_other(mut self, text: impl Into<String>) -> Self {
        self.past_other = Some(text.into());
        self
    }

    /// Sets the notes for after closing or for the next plan.
    pub fn with_notes(mut self, notes: impl Into<String>) -> Self {
        self.notes = notes.into();
        self
    }

    /// Sets the remarks.
    pub fn with_remarks(mut self, remarks: impl Into<String>) -> Self {
        self.remarks = remarks.into();
        self
    }
}

/// A free-text (Text) field of a form, to amend with [`CaseReplica::amend_form_text`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormText {
    /// A plan's issues to solve (解決したい課題).
    PlanIssues(PlanId),
    /// A plan's support goals (支援目標).
    PlanGoals(PlanId),
    /// An evaluation's goal attainment.
    EvaluationGoalAttainment(EvaluationId),
    /// An evaluation's current situation and remaining issues.
    EvaluationSituation(EvaluationId),
    /// An evaluation's staff opinion.
    EvaluationStaffOpinion(EvaluationId),
    /// A decision's notes (supervisors only).
    DecisionNotes(DecisionId),
    /// A decision's remarks (supervisors only).
    DecisionRemarks(DecisionId),
}

impl FormText {
    /// The form's container, its id, and the field's key.
    fn location(&self) -> (&'static str, String, &'static str) {
        match self {
            FormText::PlanIssues(id) => (k::PLANS, id.to_string(), k::ISSUES),
            FormText::PlanGoals(id) => (k::PLANS, id.to_string(), k::GOALS),
            FormText::EvaluationGoalAttainment(id) => (k::EVALUATIONS, id.to_string(), k::GOAL_ATTAINMENT),
            FormText::EvaluationSituation(id) => (k::EVALUATIONS, id.to_string(), k::SITUATION),
            FormText::EvaluationStaffOpinion(id) => (k::EVALUATIONS, id.to_string(), k::STAFF_OPINION),
            FormText::DecisionNotes(id) => (k::DECISIONS, id.to_string(), k::NOTES),
            FormText::DecisionRemarks(id) => (k::DECISIONS, id.to_string(), k::REMARKS),
        }
    }

    /// The error for a form this case does not have.
    fn unknown(&self) -> OpError {
        match *self {
            FormText::PlanIssues(id) | FormText::PlanGoals(id) => OpError::UnknownPlan(id),
            FormText::EvaluationGoalAttainment(id)
            | FormText::EvaluationSituation(id)
            | FormText::EvaluationStaffOpinion(id) => OpError::UnknownEvaluation(id),
            FormText::DecisionNotes(id) | FormText::DecisionRemarks(id) => OpError::UnknownDecision(id),
        }
    }
}

/// One case document being edited by one actor.
#[derive(Debug, Clone)]
pub struct CaseReplica {
    doc: AutoCommit,
    actor: Actor,
    limits: Limits,
}

fn check_text(field: &'static str, text: &str, max: usize, required: bool) -> Result<(), OpError> {
    if required && text.trim().is_empty() {
        return Err(OpError::Empty(field));
    }
    let len = text.chars().count();
    if len > max {
        return Err(OpError::TooLong { field, len, max });
    }
    Ok(())
}

fn now_seconds() -> i64 {
    chrono::Utc::now().timestamp()
}

impl CaseReplica {
    /// Opens a new case: the first change creates every container of the document.
    pub fn open(new: NewCase, actor: Actor) -> Result<Self, OpError> {
        Self::writable(&actor)?;
        let limits = Limits::DEFAULT;
        check_text("area", new.area.as_deref().unwrap_or(""), limits.short_text_chars, false)?;
        check_text(
            "referral source name",
            new.referral_source.name.as_deref().unwrap_or(""),
            limits.short_text_chars,
            false,
        )?;
        if new.household.len() > limits.household_members {
            return Err(OpError::TooMany {
                field: "household",
                len: new.household.len(),
                max: limits.household_members,
            });
        }
        for person in &new.household {
            Self::check_person(person, &limits)?;
        }
        let mut doc = AutoCommit::new().with_actor(random_device_actor(&actor.device));
        doc.put(ROOT, k::SCHEMA, SCHEMA_VERSION)?;
        doc.put(ROOT, k::CASE_ID, new.case_id.to_string())?;
        doc.put(ROOT, k::MUNICIPALITY, new.municipality.to_string())?;
        doc.put(ROOT, k::OPENED_ON, format_date(new.opened_on))?;
        if let Some(area) = &new.area {
            doc.put(ROOT, k::AREA, area.as_str())?;
        }
        doc.put(ROOT, k::STATUS, CaseStatus::Intake.as_key())?;
        let source = doc.put_object(ROOT, k::REFERRAL_SOURCE, ObjType::Map)?;
        if let Some(kind) = &new.referral_source.kind {
            doc.put(&source, k::KIND, kind.as_str())?;
        }
        if let Some(name) = &new.referral_source.name {
            doc.put(&source, k::NAME, name.as_str())?;
        }
        if let Some(on) = new.referral_source.referred_on {
            doc.put(&source, k::REFERRED_ON, format_date(on))?;
        }
        let consent = doc.put_object(ROOT, k::CONSENT, ObjType::Map)?;
        doc.put(&consent, k::STATE, ConsentState::None.as_key())?;
        let assignees = doc.put_object(ROOT, k::ASSIGNEES, ObjType::Map)?;
        doc.put(&assignees, k::PRIMARY, actor.staff.to_string())?;
        doc.put_object(&assignees, k::OTHERS, ObjType::Map)?;
        let household = doc.put_object(ROOT, k::HOUSEHOLD, ObjType::Map)?;
        for person in &new.household {
            Self::write_person(&mut doc, &household, person)?;
        }
        for key in [k::ACTIVITIES, k::REVIEWS, k::PLANS, k::EVALUATIONS, k::DECISIONS] {
            doc.put_object(ROOT, key, ObjType::Map)?;
        }
        let mut replica = Self { doc, actor, limits };
        replica.commit("open case");
        Ok(replica)
    }

    /// Loads a saved case document to edit as `actor`, with a fresh actor id for this replica.
    pub fn load(bytes: &[u8], actor: Actor) -> Result<Self, OpError> {
        let doc = crate::document::load_saved(bytes).map_err(|e| match e {
            crate::document::SavedError::Automerge(e) => OpError::Load(e),
            other => OpError::NotACase(other.to_string()),
        })?;
        Ok(Self::from_doc(doc, actor))
    }

    /// Wraps a loaded document; sets a fresh device actor id on it.
    pub fn from_doc(doc: AutoCommit, actor: Actor) -> Self {
        let doc = doc.with_actor(random_device_actor(&actor.device));
        Self { doc, actor, limits: Limits::DEFAULT }
    }

    /// Uses a specific Automerge actor id (one the device persisted for this replica). It must
    /// be a device actor of `actor.device` and never be used by two live replicas at once.
    pub fn with_actor_id(mut self, actor_id: ActorId) -> Self {
        self.doc.set_actor(actor_id);
        self
    }

    /// Who edits.
    pub fn actor(&self) -> &Actor {
        &self.actor
    }

    /// The underlying document (for saving, syncing, inspecting).
    pub fn doc(&self) -> &AutoCommit {
        &self.doc
    }

    /// The underlying document, mutably (sync, merge).
    pub fn doc_mut(&mut self) -> &mut AutoCommit {
        &mut self.doc
    }

    /// Gives up the replica, returning its document.
    pub fn into_doc(self) -> AutoCommit {
        self.doc
    }

    /// The typed view of the current state, conflicts included.
    pub fn view(&self) -> Result<CaseView, OpError> {
        let reading = read_case(&self.doc);
        reading.view.ok_or_else(|| OpError::NotACase(reading.issues.first().map(|v| v.to_string()).unwrap_or_default()))
    }

    /// The case id.
    pub fn case_id(&self) -> Result<CaseId, OpError> {
        match self.doc.get(ROOT, k::CASE_ID)? {
            Some((Value::Scalar(s), _)) => s
                .as_str()
                .and_then(|s| CaseId::parse(s).ok())
                .ok_or_else(|| OpError::NotACase("invalid case_id".into())),
            _ => Err(OpError::NotACase("no case_id".into())),
        }
    }

    /// The current heads.
    pub fn heads(&mut self) -> Vec<ChangeHash> {
        self.doc.get_heads()
    }

    /// The whole document, compressed.
    pub fn save(&mut self) -> Vec<u8> {
        self.doc.save()
    }

    /// The changes after `since` (what to upload when the server last sent `since`).
    pub fn changes_since(&mut self, since: &[ChangeHash]) -> Vec<Change> {
        self.doc.get_changes(since)
    }

    /// Applies changes received from elsewhere (duplicates are no-ops).
    pub fn apply_changes(&mut self, changes: Vec<Change>) -> Result<(), OpError> {
        self.doc.apply_changes(changes)?;
        Ok(())
    }

    /// Merges another replica of the same case into this one.
    pub fn merge(&mut self, other: &mut CaseReplica) -> Result<(), OpError> {
        self.doc.merge(&mut other.doc)?;
        Ok(())
    }

    fn writable(actor: &Actor) -> Result<(), OpError> {
        match actor.role {
            Role::Counsellor | Role::Supervisor => Ok(()),
            role => Err(OpError::ReadOnly(role)),
        }
    }

    fn commit(&mut self, message: &str) {
        self.doc.commit_with(CommitOptions::default().with_message(message).with_time(now_seconds()));
    }

    fn container(&self, key: &str) -> Result<ObjId, OpError> {
        match self.doc.get(ROOT, key)? {
            Some((Value::Object(ObjType::Map), id)) => Ok(id),
            _ => Err(OpError::NotACase(format!("no {key} container"))),
        }
    }

    fn entity(&self, container: &str, id: &str) -> Result<Option<ObjId>, OpError> {
        let container = self.container(container)?;
        Ok(match self.doc.get(&container, id)? {
            Some((Value::Object(ObjType::Map), obj)) => Some(obj),
            _ => None,
        })
    }

    fn child_object(&self, obj: &ObjId, key: &str) -> Result<ObjId, OpError> {
        match self.doc.get(obj, key)? {
            Some((Value::Object(_), id)) => Ok(id),
            _ => Err(OpError::NotACase(format!("no {key} container"))),
        }
    }

    fn check_person(person: &NewPerson, limits: &Limits) -> Result<(), OpError> {
        check_text("name", &person.name, limits.short_text_chars, true)?;
        check_text("kana", person.kana.as_deref().unwrap_or(""), limits.short_text_chars, false)?;
        if let Some(Sex::Described(s)) = &person.sex {
            check_text("sex", s, limits.short_text_chars, true)?;
        }
        check_text("other concern", person.other_concern.as_deref().unwrap_or(""), limits.short_text_chars, false)?;
        if person.concerns.len() > limits.set_entries {
            return Err(OpError::TooMany { field: "concerns", len: person.concerns.len(), max: limits.set_entries });
        }
        Ok(())
    }

    fn write_person(doc: &mut AutoCommit, household: &ObjId, person: &NewPerson) -> Result<(), OpError> {
        let obj = doc.put_object(household, person.id.to_string(), ObjType::Map)?;
        doc.put(&obj, k::NAME, person.name.as_str())?;
        if let Some(kana) = &person.kana {
            doc.put(&obj, k::KANA, kana.as_str())?;
        }
        if let Some(sex) = &person.sex {
            doc.put(&obj, k::SEX, sex.as_stored())?;
        }
        if let Some(date) = person.birth_date {
            doc.put(&obj, k::BIRTH_DATE, format_date(date))?;
        }
        if let Some(relation) = person.relation {
            doc.put(&obj, k::RELATION, relation.as_key())?;
        }
        doc.put(&obj, k::IS_SUBJECT, person.is_subject)?;
        let concerns = doc.put_object(&obj, k::CONCERNS, ObjType::Map)?;
        for tag in person.concerns.iter().filter(|t| **t != ConcernTag::Other) {
            doc.put(&concerns, tag.as_key(), true)?;
        }
        if let Some(other) = person.other_concern.as_deref().filter(|s| !s.trim().is_empty()) {
            doc.put(&concerns, k::OTHER, other)?;
        }
        doc.put_object(&obj, k::NOTE, ObjType::Text)?;
        Ok(())
    }

    /// Adds a household member.
    pub fn add_person(&mut self, person: NewPerson) -> Result<PersonId, OpError> {
        Self::writable(&self.actor)?;
        Self::check_person(&person, &self.limits)?;
        let household = self.container(k::HOUSEHOLD)?;
        let count = self.doc.keys(&household).count();
        if count >= self.limits.household_members {
            return Err(OpError::TooMany { field: "household", len: count + 1, max: self.limits.household_members });
        }
        if self.entity(k::HOUSEHOLD, &person.id.to_string())?.is_some() {
            return Ok(person.id); // a retried add: already there
        }
        Self::write_person(&mut self.doc, &household, &person)?;
        self.commit("add household member");
        Ok(person.id)
    }

    fn person_obj(&self, person: PersonId) -> Result<ObjId, OpError> {
        self.entity(k::HOUSEHOLD, &person.to_string())?.ok_or(OpError::UnknownPerson(person))
    }

    /// Amends a household member's fields.
    pub fn amend_person(&mut self, person: PersonId, update: PersonUpdate) -> Result<(), OpError> {
        Self::writable(&self.actor)?;
        let obj = self.person_obj(person)?;
        let max = self.limits.short_text_chars;
        if let Some(name) = &update.name {
            check_text("name", name, max, true)?;
        }
        if let Some(Some(kana)) = &update.kana {
            check_text("kana", kana, max, false)?;
        }
        if let Some(Some(Sex::Described(s))) = &update.sex {
            check_text("sex", s, max, true)?;
        }
        let doc = &mut self.doc;
        if let Some(name) = &update.name {
            doc.put(&obj, k::NAME, name.as_str())?;
        }
        fn set_opt(doc: &mut AutoCommit, obj: &ObjId, key: &str, value: Option<String>) -> Result<(), AutomergeError> {
            match value {
                Some(v) => doc.put(obj, key, v),
                None => doc.delete(obj, key),
            }
        }
        if let Some(kana) = update.kana {
            set_opt(doc, &obj, k::KANA, kana)?;
        }
        if let Some(sex) = update.sex {
            set_opt(doc, &obj, k::SEX, sex.map(|s| s.as_stored().to_owned()))?;
        }
        if let Some(date) = update.birth_date {
            set_opt(doc, &obj, k::BIRTH_DATE, date.map(format_date))?;
        }
        if let Some(relation) = update.relation {
            set_opt(doc, &obj, k::RELATION, relation.map(|r| r.as_key().to_owned()))?;
        }
        if let Some(is_subject) = update.is_subject {
            doc.put(&obj, k::IS_SUBJECT, is_subject)?;
        }
        self.commit("amend household member");
        Ok(())
    }

    /// Adds or removes a listed concern tag on a household member.
    pub fn set_concern(&mut self, person: PersonId, tag: ConcernTag, present: bool) -> Result<(), OpError> {
        Self::writable(&self.actor)?;
        if tag == ConcernTag::Other {
            return Err(OpError::Inconsistent("the その他 concern carries text: use set_other_concern"));
        }
        let concerns = self.child_object(&self.person_obj(person)?, k::CONCERNS)?;
        if present {
            let count = self.doc.keys(&concerns).count();
            if count >= self.limits.set_entries {
                return Err(OpError::TooMany { field: "concerns", len: count + 1, max: self.limits.set_entries });
            }
            self.doc.put(&concerns, tag.as_key(), true)?;
        } else {
            self.doc.delete(&concerns, tag.as_key())?;
        }
        self.commit("set concern");
        Ok(())
    }

    /// Sets (or clears, with `None`) the free text of a member's その他 concern.
    pub fn set_other_concern(&mut self, person: PersonId, text: Option<&str>) -> Result<(), OpError> {
        Self::writable(&self.actor)?;
        let concerns = self.child_object(&self.person_obj(person)?, k::CONCERNS)?;
        match text {
            Some(text) => {
                check_text("other concern", text, self.limits.short_text_chars, true)?;
                self.doc.put(&concerns, k::OTHER, text)?;
            }
            None => self.doc.delete(&concerns, k::OTHER)?,
        }
        self.commit("set other concern");
        Ok(())
    }

    /// Rewrites a household member's note as character-level edits.
    pub fn amend_person_note(&mut self, person: PersonId, note: &str) -> Result<(), OpError> {
        Self::writable(&self.actor)?;
        check_text("note", note, self.limits.long_text_chars, false)?;
        let text = self.child_object(&self.person_obj(person)?, k::NOTE)?;
        self.doc.update_text(&text, note)?;
        self.commit("amend note");
        Ok(())
    }

    fn check_activity(&self, activity: &NewActivity, view: &CaseView) -> Result<(), OpError> {
        let max = self.limits.short_text_chars;
        check_text("narrative", &activity.narrative, self.limits.long_text_chars, false)?;
        if let Some(end) = activity.ended_at {
            if end < activity.started_at {
                return Err(OpError::Inconsistent("an activity cannot end before it starts"));
            }
        }
        let set_bound = |field, len: usize| {
            if len > self.limits.set_entries {
                Err(OpError::TooMany { field, len, max: self.limits.set_entries })
            } else {
                Ok(())
            }
        };
        match &activity.details {
            ActivityDetails::Visit { outcome, met_person_ids, .. } => {
                set_bound("met persons", met_person_ids.len())?;
                if *outcome == VisitOutcome::Met && met_person_ids.is_empty() {
                    return Err(OpError::Inconsistent("a visit that met the household names whom it met"));
                }
                if *outcome != VisitOutcome::Met && !met_person_ids.is_empty() {
                    return Err(OpError::Inconsistent("only a visit with outcome `met` names household members met"));
                }
                if let Some(p) = met_person_ids.iter().find(|p| !view.household.contains_key(p)) {
                    return Err(OpError::UnknownPerson(*p));
                }
            }
            ActivityDetails::LetterLeft { items, .. } => {
                set_bound("letter items", items.len())?;
                if items.is_empty() {
                    return Err(OpError::Empty("letter items"));
                }
            }
            ActivityDetails::ContactAttempt { .. } => {}
            ActivityDetails::Accompaniment { agency, purpose, outcome } => {
                check_text("agency", agency, max, true)?;
                check_text("purpose", purpose, max, false)?;
                check_text("outcome", outcome, max, false)?;
            }
            ActivityDetails::Information { information, interest } => {
                check_text("information", information, max, true)?;
                check_text("interest", interest, max, false)?;
            }
            ActivityDetails::Consultation { topics, .. } => {
                set_bound("topics", topics.len())?;
                if topics.is_empty() {
                    return Err(OpError::Empty("topics"));
                }
            }
            ActivityDetails::Coordination { agency } => check_text("agency", agency, max, true)?,
        }
        Ok(())
    }

    /// Logs an activity in the actor's name, from the actor's device.
    ///
    /// Logging the same [`NewActivity::id`] twice (a retry) is a no-op.
    pub fn log_activity(&mut self, activity: NewActivity) -> Result<ActivityId, OpError> {
        Self::writable(&self.actor)?;
        let view = self.view()?;
        if view.activities.contains_key(&activity.id) {
            return Ok(activity.id);
        }
        if view.activities.len() >= self.limits.activities {
            return Err(OpError::TooMany {
                field: "activities",
                len: view.activities.len() + 1,
                max: self.limits.activities,
            });
        }
        self.check_activity(&activity, &view)?;
        let activities = self.container(k::ACTIVITIES)?;
        let doc = &mut self.doc;
        let obj = doc.put_object(&activities, activity.id.to_string(), ObjType::Map)?;
        doc.put(&obj, k::KIND, activity.details.kind().as_key())?;
        doc.put(&obj, k::STARTED_AT, format_instant(activity.started_at))?;
        if let Some(end) = activity.ended_at {
            doc.put(&obj, k::ENDED_AT, format_instant(end))?;
        }
        doc.put(&obj, k::RECORDED_BY, self.actor.staff.to_string())?;
        doc.put(&obj, k::DEVICE_ID, self.actor.device.to_string())?;
        doc.put(&obj, k::PLACE, activity.place.as_key())?;
        if let Some(on) = activity.follow_up_on {
            doc.put(&obj, k::FOLLOW_UP_ON, format_date(on))?;
        }
        let narrative = doc.put_object(&obj, k::NARRATIVE, ObjType::Text)?;
        doc.splice_text(&narrative, 0, 0, &activity.narrative)?;
        doc.put_object(&obj, k::VOIDED, ObjType::Map)?;
        match &activity.details {
            ActivityDetails::Visit { outcome, met_person_ids, letter_left } => {
                doc.put(&obj, k::OUTCOME, outcome.as_key())?;
                let met = doc.put_object(&obj, k::MET_PERSON_IDS, ObjType::Map)?;
                for person in met_person_ids {
                    doc.put(&met, person.to_string(), true)?;
                }
                doc.put(&obj, k::LETTER_LEFT, *letter_left)?;
            }
            ActivityDetails::LetterLeft { items, left_at, reply_received_on } => {
                let letter = doc.put_object(&obj, k::LETTER, ObjType::Map)?;
                let set = doc.put_object(&letter, k::ITEMS, ObjType::Map)?;
                for item in items {
                    doc.put(&set, item.as_key(), true)?;
                }
                doc.put(&letter, k::LEFT_AT, left_at.as_key())?;
                if let Some(on) = reply_received_on {
                    doc.put(&letter, k::REPLY_RECEIVED_ON, format_date(*on))?;
                }
            }
            ActivityDetails::ContactAttempt { channel, outcome } => {
                doc.put(&obj, k::CHANNEL, channel.as_key())?;
                doc.put(&obj, k::OUTCOME, outcome.as_key())?;
            }
            ActivityDetails::Accompaniment { agency, purpose, outcome } => {
                doc.put(&obj, k::AGENCY, agency.as_str())?;
                if !purpose.is_empty() {
                    doc.put(&obj, k::PURPOSE, purpose.as_str())?;
                }
                if !outcome.is_empty() {
                    doc.put(&obj, k::OUTCOME, outcome.as_str())?;
                }
            }
            ActivityDetails::Information { information, interest } => {
                doc.put(&obj, k::INFORMATION, information.as_str())?;
                if !interest.is_empty() {
                    doc.put(&obj, k::INTEREST, interest.as_str())?;
                }
            }
            ActivityDetails::Consultation { mode, topics } => {
                doc.put(&obj, k::MODE, mode.as_key())?;
                let set = doc.put_object(&obj, k::TOPICS, ObjType::Map)?;
                for topic in topics {
                    doc.put(&set, topic.as_key(), true)?;
                }
            }
            ActivityDetails::Coordination { agency } => {
                doc.put(&obj, k::AGENCY, agency.as_str())?;
            }
        }
        self.commit(&format!("log {}", activity.details.kind().as_key()));
        Ok(activity.id)
    }

    /// The activity's object, checking that the actor may amend it.
    fn own_activity(&self, activity: ActivityId) -> Result<ObjId, OpError> {
        Self::writable(&self.actor)?;
        let obj = self.entity(k::ACTIVITIES, &activity.to_string())?.ok_or(OpError::UnknownActivity(activity))?;
        let recorded_by = match self.doc.get(&obj, k::RECORDED_BY)? {
            Some((Value::Scalar(s), _)) => s.as_str().and_then(|s| StaffId::parse(s).ok()),
            _ => None,
        };
        if recorded_by != Some(self.actor.staff) {
            return Err(OpError::NotOwnActivity(activity));
        }
        Ok(obj)
    }

    /// Rewrites an activity's narrative; the difference becomes character-level edits, so a
    /// concurrent amendment by someone else merges with this one.
    pub fn amend_narrative(&mut self, activity: ActivityId, narrative: &str) -> Result<(), OpError> {
        let obj = self.own_activity(activity)?;
        check_text("narrative", narrative, self.limits.long_text_chars, false)?;
        let text = self.child_object(&obj, k::NARRATIVE)?;
        self.doc.update_text(&text, narrative)?;
        self.commit("amend narrative");
        Ok(())
    }

    /// Inserts text into a narrative at a character position (what an editor sends as the
    /// user types).
    pub fn insert_into_narrative(&mut self, activity: ActivityId, at: usize, text: &str) -> Result<(), OpError> {
        let obj = self.own_activity(activity)?;
        let narrative = self.child_object(&obj, k::NARRATIVE)?;
        let current = self.doc.text(&narrative)?;
        let len = current.chars().count();
        check_text("narrative", text, self.limits.long_text_chars.saturating_sub(len), false)?;
        let at = at.min(len);
        self.doc.splice_text(&narrative, at, 0, text)?;
        self.commit("amend narrative");
        Ok(())
    }

    /// Sets or clears the follow-up date (次回予定).
    pub fn set_follow_up(&mut self, activity: ActivityId, on: Option<NaiveDate>) -> Result<(), OpError> {
        let obj = self.own_activity(activity)?;
        match on {
            Some(date) => self.doc.put(&obj, k::FOLLOW_UP_ON, format_date(date))?,
            None => self.doc.delete(&obj, k::FOLLOW_UP_ON)?,
        }
        self.commit("set follow-up");
        Ok(())
    }

    /// Changes a visit's outcome (and whom it met) after the fact.
    pub fn set_visit_outcome(
        &mut self,
        activity: ActivityId,
        outcome: VisitOutcome,
        met_person_ids: &[PersonId],
    ) -> Result<(), OpError> {
        let obj = self.own_activity(activity)?;
        let view = self.view()?;
        match view.activities.get(&activity).map(|a| &a.details) {
            Some(ActivityDetails::Visit { .. }) => {}
            _ => return Err(OpError::Inconsistent("only a visit has a visit outcome")),
        }
        let probe = NewActivity::new(
            chrono::DateTime::<FixedOffset>::MIN_UTC.fixed_offset(),
            Place::Home,
            ActivityDetails::Visit {
                outcome,
                met_person_ids: met_person_ids.iter().copied().collect(),
                letter_left: false,
            },
        );
        self.check_activity(&probe, &view)?;
        let met = self.child_object(&obj, k::MET_PERSON_IDS)?;
        let existing: Vec<String> = self.doc.keys(&met).collect();
        for key in existing {
            if !met_person_ids.iter().any(|p| p.to_string() == key) {
                self.doc.delete(&met, key.as_str())?;
            }
        }
        for person in met_person_ids {
            self.doc.put(&met, person.to_string(), true)?;
        }
        self.doc.put(&obj, k::OUTCOME, outcome.as_key())?;
        self.commit("amend visit outcome");
        Ok(())
    }

    /// Records that a reply to a letter left came in.
    pub fn record_letter_reply(&mut self, activity: ActivityId, on: NaiveDate) -> Result<(), OpError> {
        let obj = self.own_activity(activity)?;
        let letter = match self.doc.get(&obj, k::LETTER)? {
            Some((Value::Object(ObjType::Map), id)) => id,
            _ => return Err(OpError::Inconsistent("only a letter left has a reply")),
        };
        self.doc.put(&letter, k::REPLY_RECEIVED_ON, format_date(on))?;
        self.commit("record letter reply");
        Ok(())
    }

    /// Voids a wrong entry, with a reason. The activity stays visible, marked voided. Its
    /// author or a supervisor may void it; a void is final.
    pub fn void_activity(
        &mut self,
        activity: ActivityId,
        reason: &str,
        at: DateTime<FixedOffset>,
    ) -> Result<(), OpError> {
        Self::writable(&self.actor)?;
        check_text("reason", reason, self.limits.short_text_chars, true)?;
        let obj = match self.own_activity(activity) {
            Ok(obj) => obj,
            Err(OpError::NotOwnActivity(_)) if self.actor.role == Role::Supervisor => {
                self.entity(k::ACTIVITIES, &activity.to_string())?.ok_or(OpError::UnknownActivity(activity))?
            }
            Err(e) => return Err(e),
        };
        let voided = self.child_object(&obj, k::VOIDED)?;
        if self.doc.keys(&voided).next().is_some() {
            return Err(OpError::AlreadyVoided(activity));
        }
        self.doc.put(&voided, k::BY, self.actor.staff.to_string())?;
        self.doc.put(&voided, k::AT, format_instant(at))?;
        self.doc.put(&voided, k::REASON, reason)?;
        self.commit("void activity");
        Ok(())
    }

    /// Changes the case's status. Closing it requires a meeting decision with the verdict
    /// `close` ([`CaseReplica::record_decision`]).
    pub fn set_status(&mut self, status: CaseStatus) -> Result<(), OpError> {
        Self::writable(&self.actor)?;
        if status == CaseStatus::Closed && !self.view()?.has_closing_decision() {
            return Err(OpError::ClosingWithoutDecision);
        }
        self.doc.put(ROOT, k::STATUS, status.as_key())?;
        self.commit("set status");
        Ok(())
    }

    /// Sets the area code.
    pub fn set_area(&mut self, area: &str) -> Result<(), OpError> {
        Self::writable(&self.actor)?;
        check_text("area", area, self.limits.short_text_chars, true)?;
        self.doc.put(ROOT, k::AREA, area)?;
        self.commit("set area");
        Ok(())
    }

    /// Records the person's consent (本人同意) or its withdrawal, with the date and how.
    pub fn record_consent(
        &mut self,
        state: ConsentState,
        on: NaiveDate,
        by: Option<ConsentMethod>,
    ) -> Result<(), OpError> {
        Self::writable(&self.actor)?;
        let consent = self.container(k::CONSENT)?;
        self.doc.put(&consent, k::STATE, state.as_key())?;
        self.doc.put(&consent, k::ON, format_date(on))?;
        match by {
            Some(by) => self.doc.put(&consent, k::BY, by.as_key())?,
            None => self.doc.delete(&consent, k::BY)?,
        }
        self.commit("record consent");
        Ok(())
    }

    fn supervisor(&self, what: &'static str) -> Result<(), OpError> {
        Self::writable(&self.actor)?;
        if self.actor.role != Role::Supervisor {
            return Err(OpError::SupervisorOnly(what));
        }
        Ok(())
    }

    /// A supervisor's review (確認 / コメント) of an activity.
    ///
    /// The review records the heads of this replica before its own change (`heads`): the
    /// version of the case its author saw, from which [`crate::document::changed_since`] tells
    /// what was added or amended after the review.
    pub fn add_review(
        &mut self,
        activity: ActivityId,
        comment: &str,
        at: DateTime<FixedOffset>,
    ) -> Result<ReviewId, OpError> {
        self.supervisor("review activities")?;
        check_text("comment", comment, self.limits.long_text_chars, false)?;
        if self.entity(k::ACTIVITIES, &activity.to_string())?.is_none() {
            return Err(OpError::UnknownActivity(activity));
        }
        let reviews = self.container(k::REVIEWS)?;
        let seen = self.doc.get_heads();
        let id = ReviewId::new_random();
        let obj = self.doc.put_object(&reviews, id.to_string(), ObjType::Map)?;
        self.doc.put(&obj, k::ACTIVITY_ID, activity.to_string())?;
        self.doc.put(&obj, k::BY, self.actor.staff.to_string())?;
        self.doc.put(&obj, k::AT, format_instant(at))?;
        let text = self.doc.put_object(&obj, k::COMMENT, ObjType::Text)?;
        self.doc.splice_text(&text, 0, 0, comment)?;
        if !seen.is_empty() {
            self.doc.put(&obj, k::HEADS, format_heads(&seen))?;
        }
        self.commit("review activity");
        Ok(id)
    }

    /// Sets the primary assignee (主担当者).
    pub fn set_primary_assignee(&mut self, staff: StaffId) -> Result<(), OpError> {
        self.supervisor("assign cases")?;
        let assignees = self.container(k::ASSIGNEES)?;
        self.doc.put(&assignees, k::PRIMARY, staff.to_string())?;
        self.commit("set primary assignee");
        Ok(())
    }

    /// Adds or removes another assignee.
    pub fn set_other_assignee(&mut self, staff: StaffId, assigned: bool) -> Result<(), OpError> {
        self.supervisor("assign cases")?;
        let others = self.child_object(&self.container(k::ASSIGNEES)?, k::OTHERS)?;
        if assigned {
            let count = self.doc.keys(&others).count();
            if count >= self.limits.set_entries {
                return Err(OpError::TooMany { field: "assignees", len: count + 1, max: self.limits.set_entries });
            }
            self.doc.put(&others, staff.to_string(), true)?;
        } else {
            self.doc.delete(&others, staff.to_string())?;
        }
        self.commit("set assignee");
        Ok(())
    }

    fn too_many(field: &'static str, len: usize, max: usize) -> Result<(), OpError> {
        if len > max {
            Err(OpError::TooMany { field, len, max })
        } else {
            Ok(())
        }
    }

    fn check_round(&self, round: u32) -> Result<(), OpError> {
        if round == 0 {
            return Err(OpError::Inconsistent("rounds count from 1"));
        }
        Self::too_many("round", usize::try_from(round).unwrap_or(usize::MAX), self.limits.forms)
    }

    fn check_plan_action(&self, action: &NewPlanAction) -> Result<(), OpError> {
        let max = self.limits.short_text_chars;
        check_text("who", &action.who, max, true)?;
        check_text("what", &action.what, max, true)?;
        check_text("frequency", &action.frequency, max, false)?;
        check_text("duration", &action.duration, max, false)
    }

    fn write_plan_action(doc: &mut AutoCommit, actions: &ObjId, action: &NewPlanAction) -> Result<(), OpError> {
        let row = doc.put_object(actions, action.id.to_string(), ObjType::Map)?;
        doc.put(&row, k::WHO, action.who.as_str())?;
        doc.put(&row, k::WHAT, action.what.as_str())?;
        if !action.frequency.is_empty() {
            doc.put(&row, k::FREQUENCY, action.frequency.as_str())?;
        }
        if !action.duration.is_empty() {
            doc.put(&row, k::DURATION, action.duration.as_str())?;
        }
        Ok(())
    }

    /// Creates a Text at `key` of `obj` holding `text` (only in the change that creates `obj`).
    fn new_text(doc: &mut AutoCommit, obj: &ObjId, key: &str, text: &str) -> Result<(), OpError> {
        let id = doc.put_object(obj, key, ObjType::Text)?;
        doc.splice_text(&id, 0, 0, text)?;
        Ok(())
    }

    /// Creates a set at `key` of `obj` holding `members`.
    fn new_set<'m>(
        doc: &mut AutoCommit,
        obj: &ObjId,
        key: &str,
        members: impl IntoIterator<Item = &'m str>,
    ) -> Result<(), OpError> {
        let set = doc.put_object(obj, key, ObjType::Map)?;
        for member in members {
            doc.put(&set, member, true)?;
        }
        Ok(())
    }

    /// Adds a support plan (様式第1号), with its action rows, in the actor's name as author.
    /// Counsellors and supervisors add plans.
    ///
    /// Adding the same [`NewPlan::id`] twice (a retry) is a no-op.
    pub fn add_plan(&mut self, plan: NewPlan) -> Result<PlanId, OpError> {
        Self::writable(&self.actor)?;
        let view = self.view()?;
        if view.plans.contains_key(&plan.id) {
            return Ok(plan.id);
        }
        Self::too_many("plans", view.plans.len() + 1, self.limits.forms)?;
        self.check_round(plan.round)?;
        let long = self.limits.long_text_chars;
        check_text("issues", &plan.issues, long, false)?;
        check_text("goals", &plan.goals, long, false)?;
        Self::too_many("plan actions", plan.actions.len(), self.limits.plan_actions)?;
        for action in &plan.actions {
            self.check_plan_action(action)?;
        }
        let ids: BTreeSet<PlanActionId> = plan.actions.iter().map(|a| a.id).collect();
        if ids.len() != plan.actions.len() {
            return Err(OpError::Inconsistent("two action rows of the plan have one id"));
        }
        if plan.period_until.is_some_and(|until| until < plan.drafted_on) {
            return Err(OpError::Inconsistent("the plan period cannot end before the plan"));
        }
        if plan.next_monitoring_on.is_some_and(|on| on < plan.drafted_on) {
            return Err(OpError::Inconsistent("the next monitoring cannot come before the plan"));
        }
        let plans = self.container(k::PLANS)?;
        let doc = &mut self.doc;
        let obj = doc.put_object(&plans, plan.id.to_string(), ObjType::Map)?;
        doc.put(&obj, k::ROUND, i64::from(plan.round))?;
        doc.put(&obj, k::AUTHOR, self.actor.staff.to_string())?;
        doc.put(&obj, k::DRAFTED_ON, format_date(plan.drafted_on))?;
        Self::new_text(doc, &obj, k::ISSUES, &plan.issues)?;
        Self::new_text(doc, &obj, k::GOALS, &plan.goals)?;
        let actions = doc.put_object(&obj, k::ACTIONS, ObjType::Map)?;
        for action in &plan.actions {
            Self::write_plan_action(doc, &actions, action)?;
        }
        if let Some(until) = plan.period_until {
            doc.put(&obj, k::PERIOD_UNTIL, format_date(until))?;
        }
        if let Some(on) = plan.next_monitoring_on {
            doc.put(&obj, k::NEXT_MONITORING_ON, format_date(on))?;
        }
        self.commit("add plan");
        Ok(plan.id)
    }

    /// Adds an action row to a plan. Adding the same [`NewPlanAction::id`] twice is a no-op.
    pub fn add_plan_action(&mut self, plan: PlanId, action: NewPlanAction) -> Result<PlanActionId, OpError> {
        Self::writable(&self.actor)?;
        let obj = self.entity(k::PLANS, &plan.to_string())?.ok_or(OpError::UnknownPlan(plan))?;
        let actions = self.child_object(&obj, k::ACTIONS)?;
        if matches!(self.doc.get(&actions, action.id.to_string())?, Some((Value::Object(_), _))) {
            return Ok(action.id);
        }
        Self::too_many("plan actions", self.doc.keys(&actions).count() + 1, self.limits.plan_actions)?;
        self.check_plan_action(&action)?;
        Self::write_plan_action(&mut self.doc, &actions, &action)?;
        self.commit("add plan action");
        Ok(action.id)
    }

    /// Adds an evaluation (様式第2号) in the actor's name as evaluator. Counsellors and
    /// supervisors add evaluations.
    ///
    /// Adding the same [`NewEvaluation::id`] twice (a retry) is a no-op.
    pub fn add_evaluation(&mut self, evaluation: NewEvaluation) -> Result<EvaluationId, OpError> {
        Self::writable(&self.actor)?;
        let view = self.view()?;
        if view.evaluations.contains_key(&evaluation.id) {
            return Ok(evaluation.id);
        }
        Self::too_many("evaluations", view.evaluations.len() + 1, self.limits.forms)?;
        self.check_round(evaluation.round)?;
        let long = self.limits.long_text_chars;
        check_text("goal attainment", &evaluation.goal_attainment, long, false)?;
        check_text("situation", &evaluation.situation, long, false)?;
        check_text("staff opinion", &evaluation.staff_opinion, long, false)?;
        if let Some(other) = &evaluation.observed_other {
            check_text("observed other", other, self.limits.short_text_chars, true)?;
        }
        let changes: Vec<ObservedChange> =
            evaluation.observed_changes.iter().copied().filter(|c| *c != ObservedChange::Other).collect();
        Self::too_many("observed changes", changes.len(), self.limits.set_entries)?;
        let no_change = changes.contains(&ObservedChange::NoChange);
        if no_change && (changes.len() > 1 || evaluation.observed_other.is_some()) {
            return Err(OpError::Inconsistent("「変化は見られなかった」 excludes every other change"));
        }
        let evaluations = self.container(k::EVALUATIONS)?;
        let doc = &mut self.doc;
        let obj = doc.put_object(&evaluations, evaluation.id.to_string(), ObjType::Map)?;
        doc.put(&obj, k::ROUND, i64::from(evaluation.round))?;
        doc.put(&obj, k::EVALUATOR, self.actor.staff.to_string())?;
        doc.put(&obj, k::EVALUATED_ON, format_date(evaluation.evaluated_on))?;
        Self::new_text(doc, &obj, k::GOAL_ATTAINMENT, &evaluation.goal_attainment)?;
        Self::new_set(doc, &obj, k::OBSERVED_CHANGES, changes.iter().map(|c| c.as_key()))?;
        if let Some(other) = &evaluation.observed_other {
            doc.put(&obj, k::OBSERVED_OTHER, other.as_str())?;
        }
        Self::new_text(doc, &obj, k::SITUATION, &evaluation.situation)?;
        if let Some(wish) = evaluation.wish {
            doc.put(&obj, k::WISH, wish.as_key())?;
        }
        Self::new_text(doc, &obj, k::STAFF_OPINION, &evaluation.staff_opinion)?;
        self.commit("add evaluation");
        Ok(evaluation.id)
    }

    /// Checks that every key is a referral destination of the default catalogue, and not
    /// `other` (whose free text has a field of its own).
    fn check_destinations(field: &'static str, keys: &BTreeSet<String>, limits: &Limits) -> Result<(), OpError> {
        Self::too_many(field, keys.len(), limits.set_entries)?;
        let catalogue: Catalogue = Catalogue::default();
        match keys.iter().find(|key| key.as_str() == k::OTHER || !catalogue.is_destination(key)) {
            Some(key) => Err(OpError::UnknownDestination(key.clone())),
            None => Ok(()),
        }
    }

    /// Records a meeting decision (様式第2-2号) in the actor's name. Only supervisors record
    /// decisions (at the meeting).
    ///
    /// Recording the same [`NewDecision::id`] twice (a retry) is a no-op.
    pub fn record_decision(&mut self, decision: NewDecision) -> Result<DecisionId, OpError> {
        self.supervisor("record meeting decisions")?;
        let view = self.view()?;
        if view.decisions.contains_key(&decision.id) {
            return Ok(decision.id);
        }
        Self::too_many("decisions", view.decisions.len() + 1, self.limits.forms)?;
        let long = self.limits.long_text_chars;
        let short = self.limits.short_text_chars;
        check_text("notes", &decision.notes, long, false)?;
        check_text("remarks", &decision.remarks, long, false)?;
        Self::check_destinations("referral destinations", &decision.referral_destinations, &self.limits)?;
        Self::check_destinations("past consultations", &decision.past_consultations, &self.limits)?;
        if let Some(other) = &decision.referral_other {
            check_text("referral other", other, short, true)?;
        }
        if let Some(other) = &decision.past_other {
            check_text("past other", other, short, true)?;
        }
        if decision.referred_on && decision.verdict != PlanVerdict::Close {
            return Err(OpError::Inconsistent("only a decision to close refers the person on"));
        }
        if decision.referred_on && decision.referral_destinations.is_empty() && decision.referral_other.is_none() {
            return Err(OpError::Inconsistent("a decision that refers the person on names where to"));
        }
        let decisions = self.container(k::DECISIONS)?;
        let doc = &mut self.doc;
        let obj = doc.put_object(&decisions, decision.id.to_string(), ObjType::Map)?;
        doc.put(&obj, k::MEETING_ON, format_date(decision.meeting_on))?;
        doc.put(&obj, k::VERDICT, decision.verdict.as_key())?;
        doc.put(&obj, k::REFERRED_ON, decision.referred_on)?;
        doc.put(&obj, k::DECIDED_ON, format_date(decision.decided_on))?;
        Self::new_text(doc, &obj, k::NOTES, &decision.notes)?;
        Self::new_set(doc, &obj, k::REFERRAL_DESTINATIONS, decision.referral_destinations.iter().map(String::as_str))?;
        if let Some(other) = &decision.referral_other {
            doc.put(&obj, k::REFERRAL_OTHER, other.as_str())?;
        }
        Self::new_set(doc, &obj, k::PAST_CONSULTATIONS, decision.past_consultations.iter().map(String::as_str))?;
        if let Some(other) = &decision.past_other {
            doc.put(&obj, k::PAST_OTHER, other.as_str())?;
        }
        Self::new_text(doc, &obj, k::REMARKS, &decision.remarks)?;
        doc.put(&obj, k::RECORDED_BY, self.actor.staff.to_string())?;
        self.commit("record meeting decision");
        Ok(decision.id)
    }

    /// Rewrites a form's free text as character-level edits, so a concurrent amendment by
    /// someone else merges with this one. Counsellors and supervisors amend plans and
    /// evaluations; only supervisors amend decisions.
    pub fn amend_form_text(&mut self, field: FormText, text: &str) -> Result<(), OpError> {
        let (container, id, key) = field.location();
        if container == k::DECISIONS {
            self.supervisor("amend meeting decisions")?;
        } else {
            Self::writable(&self.actor)?;
        }
        check_text(key, text, self.limits.long_text_chars, false)?;
        let obj = self.entity(container, &id)?.ok_or_else(|| field.unknown())?;
        let target = self.child_object(&obj, key)?;
        self.doc.update_text(&target, text)?;
        self.commit("amend form");
        Ok(())
    }
}

#[cfg(test)]
mod tests;
