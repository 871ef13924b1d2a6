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

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{ActorId, AutoCommit, AutomergeError, Change, ChangeHash, ObjId, ObjType, ReadDoc, Value, ROOT};
use chrono::{DateTime, FixedOffset, NaiveDate};

use crate::actor::random_device_actor;
use crate::document::{
    format_date, format_instant, keys as k, read_case, ActivityDetails, CaseView, Limits, ReferralSource, Sex,
    SCHEMA_VERSION,
};
use crate::domain::{CaseStatus, ConcernTag, ConsentMethod, ConsentState, Place, Relation, Role, VisitOutcome};
use crate::ids::{ActivityId, CaseId, MunicipalityCode, PersonId, ReviewId, StaffId};
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
    /// The document is not a readable case.
    #[error("not a readable case document: {0}")]
    NotACase(String),
    /// The bytes are not an Automerge document.
    #[error("cannot load the case document: {0}")]
    Load(AutomergeError),
    /// Automerge refused an operation (a bug if it ever happens).
    #[error("automerge: {0}")]
    Automerge(#[from] AutomergeError),
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
        let doc = AutoCommit::load(bytes).map_err(OpError::Load)?;
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

    /// Changes the case's status.
    pub fn set_status(&mut self, status: CaseStatus) -> Result<(), OpError> {
        Self::writable(&self.actor)?;
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
        let id = ReviewId::new_random();
        let obj = self.doc.put_object(&reviews, id.to_string(), ObjType::Map)?;
        self.doc.put(&obj, k::ACTIVITY_ID, activity.to_string())?;
        self.doc.put(&obj, k::BY, self.actor.staff.to_string())?;
        self.doc.put(&obj, k::AT, format_instant(at))?;
        let text = self.doc.put_object(&obj, k::COMMENT, ObjType::Text)?;
        self.doc.splice_text(&text, 0, 0, comment)?;
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
}

#[cfg(test)]
mod tests;
