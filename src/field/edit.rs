//! The offline field operations: open a case, log, amend and void activities. Each loads the
//! replica from the store, performs one operation (one Automerge change) and saves the replica
//! back through the crash-safe [`ReplicaStore`] before printing anything.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{anyhow, Context};
use clap::{Args, ValueEnum};
use tsunagi_sync::document::ActivityDetails;
use tsunagi_sync::domain::{
    ConsultationMode, ConsultationTopic, ContactChannel, ContactOutcome, LetterItem, LetterPlace, Place, Relation,
    VisitOutcome,
};
use tsunagi_sync::ids::{ActivityId, CaseId, MunicipalityCode, PersonId};
use tsunagi_sync::ops::{CaseReplica, NewActivity, NewCase, NewPerson};
use tsunagi_sync::store::ReplicaStore;

use super::session::FieldSession;

#[derive(Args)]
pub struct OpenCaseArgs {
    /// The municipality code (6 digits).
    #[arg(long, value_name = "CODE")]
    municipality: String,
    /// 相談受付日 (YYYY-MM-DD).
    #[arg(long, value_name = "YYYY-MM-DD")]
    opened_on: String,
    /// The main subject's name.
    #[arg(long, value_name = "NAME")]
    subject_name: Option<String>,
    /// The main subject's name in kana.
    #[arg(long, value_name = "KANA", requires = "subject_name")]
    subject_kana: Option<String>,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Kind {
    Visit,
    Letter,
    Contact,
    Consultation,
    Coordination,
    Accompaniment,
    Information,
}

#[derive(Args)]
pub struct LogArgs {
    case: String,
    #[arg(value_enum)]
    kind: Kind,
    /// When it started (RFC 3339, e.g. 2026-11-04T10:00:00+09:00).
    #[arg(long, value_name = "RFC3339")]
    at: String,
    /// Where (home, agency, office, phone, online, outdoors, other).
    #[arg(long)]
    place: Option<String>,
    /// Visit: met, not_home, refused, met_other. Contact: reached, no_answer, message_left,
    /// refused, wrong_number. Accompaniment: free text.
    #[arg(long)]
    outcome: Option<String>,
    /// Visit: a household member met (repeatable).
    #[arg(long, value_name = "PERSON_ID")]
    met: Vec<String>,
    /// Visit: a letter was left.
    #[arg(long)]
    letter_left: bool,
    /// Letter: what was left (letter, leaflet, card), comma-separated.
    #[arg(long, value_delimiter = ',')]
    items: Vec<String>,
    /// Letter: where (door, mailbox, handed).
    #[arg(long)]
    left_at: Option<String>,
    /// Contact: phone, sns, email, post, third_party.
    #[arg(long)]
    channel: Option<String>,
    /// Consultation: topics, comma-separated.
    #[arg(long, value_delimiter = ',')]
    topics: Vec<String>,
    /// Consultation: in_person, phone, online.
    #[arg(long)]
    mode: Option<String>,
    /// Coordination, accompaniment: the agency.
    #[arg(long)]
    agency: Option<String>,
    /// Accompaniment: why.
    #[arg(long)]
    purpose: Option<String>,
    /// Information: what was given.
    #[arg(long)]
    information: Option<String>,
    /// Information: the interest it matched.
    #[arg(long)]
    interest: Option<String>,
    /// 経過記録.
    #[arg(long)]
    narrative: Option<String>,
    /// 次回予定 (YYYY-MM-DD).
    #[arg(long, value_name = "YYYY-MM-DD")]
    follow_up: Option<String>,
}

/// Opens the store and reads the session (the actor), for an offline edit.
pub fn open(dir: &Path) -> anyhow::Result<(FieldSession, ReplicaStore)> {
    let session = FieldSession::load(dir)?;
    let store = ReplicaStore::open(dir).with_context(|| format!("cannot open the replica store {}", dir.display()))?;
    Ok((session, store))
}

pub fn parse_case(s: &str) -> anyhow::Result<CaseId> {
    CaseId::parse(s).map_err(|e| anyhow!("case id {s:?}: {e}"))
}

/// Loads a case of the store, to edit as the session's actor.
pub fn replica(store: &ReplicaStore, session: &FieldSession, case: &CaseId) -> anyhow::Result<CaseReplica> {
    let doc = store
        .load_doc(case)
        .with_context(|| format!("cannot read case {case}"))?
        .ok_or_else(|| anyhow!("no case {case} in {}", store.dir().display()))?;
    Ok(CaseReplica::from_doc(doc, session.actor()))
}

fn save(store: &mut ReplicaStore, case: &CaseId, replica: &mut CaseReplica) -> anyhow::Result<()> {
    store.save_doc(case, replica.doc_mut()).with_context(|| format!("cannot save case {case}"))
}

fn key<T: std::str::FromStr>(flag: &str, value: &str) -> anyhow::Result<T>
where
    T::Err: std::fmt::Display,
{
    value.parse().map_err(|e| anyhow!("--{flag}: {e}"))
}

fn required<'a>(flag: &str, kind: &str, value: &'a Option<String>) -> anyhow::Result<&'a str> {
    value.as_deref().ok_or_else(|| anyhow!("a {kind} needs --{flag}"))
}

pub fn open_case(dir: &Path, a: OpenCaseArgs) -> anyhow::Result<ExitCode> {
    let (session, mut store) = open(dir)?;
    let municipality = MunicipalityCode::parse(&a.municipality).map_err(|e| anyhow!("--municipality: {e}"))?;
    let opened_on = a.opened_on.parse().map_err(|e| anyhow!("--opened-on {:?}: {e}", a.opened_on))?;
    let mut new = NewCase::new(municipality, opened_on);
    if let Some(name) = a.subject_name {
        let mut person = NewPerson::new(name);
        person.kana = a.subject_kana;
        person.is_subject = true;
        person.relation = Some(Relation::Subject);
        new.household.push(person);
    }
    let mut replica = CaseReplica::open(new, session.actor()).context("cannot open the case")?;
    let case = replica.case_id().context("the new case")?;
    save(&mut store, &case, &mut replica)?;
    println!("{case}");
    Ok(ExitCode::SUCCESS)
}

fn details(a: &LogArgs) -> anyhow::Result<(ActivityDetails, Place)> {
    Ok(match a.kind {
        Kind::Visit => {
            let outcome: VisitOutcome = key("outcome", required("outcome", "visit", &a.outcome)?)?;
            let met_person_ids = a
                .met
                .iter()
                .map(|p| PersonId::parse(p).map_err(|e| anyhow!("--met {p:?}: {e}")))
                .collect::<anyhow::Result<BTreeSet<_>>>()?;
            (ActivityDetails::Visit { outcome, met_person_ids, letter_left: a.letter_left }, Place::Home)
        }
        Kind::Letter => {
            let items = if a.items.is_empty() {
                BTreeSet::from([LetterItem::Letter])
            } else {
                a.items.iter().map(|i| key("items", i)).collect::<anyhow::Result<_>>()?
            };
            let left_at: LetterPlace =
                a.left_at.as_deref().map(|p| key("left-at", p)).transpose()?.unwrap_or(LetterPlace::Door);
            (ActivityDetails::LetterLeft { items, left_at, reply_received_on: None }, Place::Home)
        }
        Kind::Contact => {
            let channel: ContactChannel = key("channel", required("channel", "contact", &a.channel)?)?;
            let outcome: ContactOutcome = key("outcome", required("outcome", "contact", &a.outcome)?)?;
            (ActivityDetails::ContactAttempt { channel, outcome }, Place::Phone)
        }
        Kind::Consultation => {
            let mode: ConsultationMode =
                a.mode.as_deref().map(|m| key("mode", m)).transpose()?.unwrap_or(ConsultationMode::InPerson);
            let topics: BTreeSet<ConsultationTopic> =
                a.topics.iter().map(|t| key("topics", t)).collect::<anyhow::Result<_>>()?;
            (ActivityDetails::Consultation { mode, topics }, Place::Office)
        }
        Kind::Coordination => {
            let agency = required("agency", "coordination", &a.agency)?.to_owned();
            (ActivityDetails::Coordination { agency }, Place::Agency)
        }
        Kind::Accompaniment => (
            ActivityDetails::Accompaniment {
                agency: required("agency", "accompaniment", &a.agency)?.to_owned(),
                purpose: required("purpose", "accompaniment", &a.purpose)?.to_owned(),
                outcome: a.outcome.clone().unwrap_or_default(),
            },
            Place::Agency,
        ),
        Kind::Information => (
            ActivityDetails::Information {
                information: required("information", "information", &a.information)?.to_owned(),
                interest: a.interest.clone().unwrap_or_default(),
            },
            Place::Home,
        ),
    })
}

pub fn log(dir: &Path, a: LogArgs) -> anyhow::Result<ExitCode> {
    let case = parse_case(&a.case)?;
    let (details, default_place) = details(&a)?;
    let place = match &a.place {
        Some(p) => key("place", p)?,
        None => default_place,
    };
    let started_at = a.at.parse().map_err(|e| anyhow!("--at {:?}: {e} (expected RFC 3339)", a.at))?;
    let mut activity = NewActivity::new(started_at, place, details);
    if let Some(text) = &a.narrative {
        activity = activity.with_narrative(text.clone());
    }
    if let Some(on) = &a.follow_up {
        activity = activity.with_follow_up(on.parse().map_err(|e| anyhow!("--follow-up {on:?}: {e}"))?);
    }
    let (session, mut store) = open(dir)?;
    let mut replica = replica(&store, &session, &case)?;
    let id = replica.log_activity(activity).context("cannot log the activity")?;
    save(&mut store, &case, &mut replica)?;
    println!("{id}");
    Ok(ExitCode::SUCCESS)
}

fn parse_activity(s: &str) -> anyhow::Result<ActivityId> {
    ActivityId::parse(s).map_err(|e| anyhow!("activity id {s:?}: {e}"))
}

pub fn amend(dir: &Path, case: &str, activity: &str, narrative: &str) -> anyhow::Result<ExitCode> {
    let case = parse_case(case)?;
    let activity = parse_activity(activity)?;
    let (session, mut store) = open(dir)?;
    let mut replica = replica(&store, &session, &case)?;
    replica.amend_narrative(activity, narrative).context("cannot amend the narrative")?;
    save(&mut store, &case, &mut replica)?;
    Ok(ExitCode::SUCCESS)
}

pub fn void(dir: &Path, case: &str, activity: &str, reason: &str) -> anyhow::Result<ExitCode> {
    let case = parse_case(case)?;
    let activity = parse_activity(activity)?;
    let (session, mut store) = open(dir)?;
    let mut replica = replica(&store, &session, &case)?;
    let now = now_rfc3339();
    let at = now.parse().map_err(|e| anyhow!("the current time {now:?}: {e}"))?;
    replica.void_activity(activity, reason, at).context("cannot void the activity")?;
    save(&mut store, &case, &mut replica)?;
    Ok(ExitCode::SUCCESS)
}

/// The current time in UTC as RFC 3339 (whole seconds).
pub fn now_rfc3339() -> String {
    let secs =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}+00:00", rem / 3600, rem % 3600 / 60, rem % 60)
}
