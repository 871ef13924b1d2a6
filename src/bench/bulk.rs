//! Bulk seeding for the `supervisor` scenario: a municipality with tens of thousands of cases
//! and a million activities, written straight into the database in large transactions.
//!
//! Seeding through the sync engine (as [`super::seed`] does) costs 25 to 40 ms per case on two
//! cores, hours for the sizes the supervisors' targets name. This seeder writes what the
//! server would have written, with the server's own store functions where they exist:
//!
//! - **accounts** (areas, counsellors of each area, supervisors, their devices) through
//!   `tsunagi_server::admin`, as `tsunagi admin` does;
//! - for every case, a **real case document** made with the field operations of
//!   `tsunagi-sync` — opened by a counsellor of its area with a household of one to three
//!   people, consent, status, for some cases another assignee and a meeting decision that
//!   referred the person on (made by a supervisor's replica), and the case number put by a
//!   third actor as the server puts it — stored with `store::documents` (`documents` row,
//!   every change in `changes` with its sender) and projected with the server's own
//!   `store::projections::project` (`cases`, `persons`, `case_concerns`, `assignments`,
//!   `decisions`, `referrals`);
//! - the case's **activities** (visits, letters left, contact attempts, consultations with
//!   topics, accompaniments, coordination, information; Japanese narratives; follow-up dates,
//!   a few voided, about a third reviewed by a supervisor) as rows of the projections only:
//!   `activities`, `activity_topics` and `reviews`, with multi-row `INSERT`s of up to a
//!   thousand rows, a few hundred cases per transaction; then the monthly counts of every
//!   case at once (`activity_months`, with the statements the projection runs per case).
//!
//! The activities are **not** in the case documents: building a million of them with
//! Automerge would take as long as the sync engine does. The visit log and the monthly
//! figures never read documents — they are answered from these projection tables only
//! (`docs/api.md`) — so what the measured queries read is what they would read had the
//! activities arrived by sync. A `tsunagi admin reproject` of such a database would rebuild the
//! projections from the documents and drop these activities; nothing in the benchmark does.
//!
//! Every activity falls within one fiscal year (the last complete one, in Asia/Tokyo dates),
//! so a year's figures count all of them. The database is `ANALYZE`d at the end, as
//! autovacuum would have done for tables of this size.

use std::sync::mpsc;

use anyhow::{bail, Context};
use automerge::transaction::{CommitOptions, Transactable};
use automerge::{ActorId, Change, ROOT};
use chrono::{Duration, NaiveDate, NaiveDateTime, TimeZone};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use tsunagi_server::store::documents::{self, Sender};
use tsunagi_server::store::projections::{self, ActivityRow, ReviewRow, TopicRow};
use tsunagi_server::store::schema::{activities, activity_topics, case_number_counters, reviews};
use tsunagi_server::store::{activity_months, DatabaseUrl, DbConnection};
use tsunagi_sync::actor::random_device_actor;
use tsunagi_sync::document::{format_date, keys};
use tsunagi_sync::domain::catalogue::Catalogue;
use tsunagi_sync::domain::{
    ActivityKind, CaseStatus, ConcernTag, ConsentMethod, ConsentState, ConsultationTopic, ContactChannel,
    ContactOutcome, PlanVerdict, Relation, Role, VisitOutcome,
};
use tsunagi_sync::ids::{ActivityId, CaseNumber, FiscalYear, ReviewId};
use tsunagi_sync::ops::{CaseReplica, NewCase, NewDecision, NewPerson};

use super::device::{jst, today, Person};
use super::seed::Seeder;
use super::text::{self, Rng};

/// The areas of the municipality (code, name).
pub const AREAS: &[(&str, &str)] = &[
    ("central", "中部"),
    ("east", "東部"),
    ("west", "西部"),
    ("south", "南部"),
    ("north", "北部"),
    ("otakanomori", "おおたかの森"),
];

/// Counsellors per area.
const COUNSELLORS_PER_AREA: usize = 4;

/// Cases per write transaction.
const CASES_PER_TRANSACTION: usize = 250;

/// Rows per multi-row `INSERT` (18 columns: 18,000 parameters, under both backends' limits).
const ROWS_PER_INSERT: usize = 1000;

/// Agencies of accompaniments and coordination.
const AGENCIES: &[&str] = &[
    "ハローワーク松戸",
    "柏児童相談所",
    "流山市社会福祉協議会",
    "地域包括支援センター",
    "生活支援課",
    "障害者支援課",
    "保健センター",
    "中学校",
    "法テラス千葉",
    "フードバンク",
];

/// Comments of supervisors' reviews.
const REVIEW_COMMENTS: &[&str] = &[
    "確認しました。",
    "次回は民生委員と同行してください。",
    "学校との情報共有をお願いします。",
    "手紙への反応があれば共有してください。",
    "支援会議の議題に挙げましょう。",
];

/// The staff of the seeded municipality.
#[derive(Debug, Clone)]
pub struct Staffing {
    /// Counsellors with the index of their area in [`AREAS`].
    pub counsellors: Vec<(Person, usize)>,
    /// A supervisor without an area: sees every case of the municipality.
    pub supervisor: Person,
    /// A supervisor of the first area of [`AREAS`] (its cases, the consented cases, and their own).
    pub area_supervisor: Person,
}

/// What was seeded, to check the answers against.
#[derive(Debug, Clone, Default)]
pub struct Seeded {
    /// The fiscal year every activity falls in.
    pub fiscal_year: i32,
    /// Cases stored.
    pub cases: u64,
    /// Activities stored.
    pub activities: u64,
    /// Non-voided consultations (the figures' 相談件数 total).
    pub consultations: u64,
    /// Non-voided visits (the figures' 家庭訪問 total).
    pub visits: u64,
    /// Non-voided contact attempts.
    pub contact_attempts: u64,
    /// Referral destinations of meeting decisions in the fiscal year.
    pub referrals: u64,
    /// Reviews stored.
    pub reviews: u64,
    /// Changes stored in the case documents.
    pub changes: u64,
}

/// One case, built in memory, ready to be written.
struct BuiltCase {
    case_id: tsunagi_sync::ids::CaseId,
    doc: automerge::Automerge,
    view: tsunagi_sync::document::CaseView,
    /// Every change with who sent it.
    changes: Vec<(Change, Sender)>,
    activities: Vec<ActivityRow>,
    topics: Vec<TopicRow>,
    reviews: Vec<ReviewRow>,
}

/// A batch of cases for one transaction, and what it adds to the totals.
struct Batch {
    cases: Vec<BuiltCase>,
    seeded: Seeded,
}

/// The last complete fiscal year, in Japan.
pub fn last_complete_fiscal_year() -> anyhow::Result<FiscalYear> {
    let current = FiscalYear::containing(today().date_naive());
    Ok(FiscalYear::new(current.year() - 1)?)
}

/// Creates the areas, counsellors and supervisors.
pub fn staff(seeder: &Seeder) -> anyhow::Result<Staffing> {
    let mut counsellors = Vec::new();
    for (a, (code, name)) in AREAS.iter().enumerate() {
        seeder.area(code, name)?;
        for i in 0..COUNSELLORS_PER_AREA {
            let login = format!("sv-{code}-{i}");
            let person = seeder.staff(&login, &format!("{name}相談員 {}", i + 1), Role::Counsellor, Some(code))?;
            counsellors.push((person, a));
        }
    }
    let supervisor = seeder.staff("sv-supervisor", "管理者 全域", Role::Supervisor, None)?;
    let area_supervisor =
        seeder.staff("sv-area-supervisor", &format!("管理者 {}", AREAS[0].1), Role::Supervisor, Some(AREAS[0].0))?;
    Ok(Staffing { counsellors, supervisor, area_supervisor })
}

/// A uniformly random day of `first..=last`.
fn day_between(rng: &mut Rng, first: NaiveDate, last: NaiveDate) -> NaiveDate {
    let span = (last - first).num_days().max(0) as usize;
    first + Duration::days(rng.below(span + 1) as i64)
}

/// `at` (a wall-clock time in Japan) in UTC.
fn utc_of(date: NaiveDate, hour: u32, minute: u32) -> NaiveDateTime {
    let local = date.and_hms_opt(hour, minute, 0).unwrap_or_default();
    jst().from_local_datetime(&local).single().map(|t| t.naive_utc()).unwrap_or(local - Duration::hours(9))
}

/// Builds case number `index` (0-based) of the municipality, with its activities.
#[allow(clippy::too_many_arguments)]
fn build_case(
    rng: &mut Rng,
    staffing: &Staffing,
    seeder_municipality: tsunagi_sync::ids::MunicipalityCode,
    year: FiscalYear,
    serials: &mut std::collections::BTreeMap<i32, u32>,
    index: usize,
    per_case: usize,
    chars: usize,
    catalogue: &Catalogue,
    seeded: &mut Seeded,
) -> anyhow::Result<BuiltCase> {
    let area = index % AREAS.len();
    let colleagues: Vec<&Person> = staffing.counsellors.iter().filter(|(_, a)| *a == area).map(|(p, _)| p).collect();
    let primary = colleagues[rng.below(colleagues.len())];
    let first = year.first_day();
    let last = FiscalYear::new(year.year() + 1)?.first_day() - Duration::days(1);
    // A third of the cases were opened in the two years before; the others during the year.
    let opened = if rng.below(3) == 0 {
        day_between(rng, first - Duration::days(730), first - Duration::days(1))
    } else {
        day_between(rng, first, last - Duration::days(60))
    };

    let mut new = NewCase::new(seeder_municipality, opened);
    new.area = Some(AREAS[area].0.to_owned());
    let (family, kana) = text::family(rng);
    let mut subject = NewPerson::new(format!("{family} {}", rng.pick(&["和夫", "恵子", "翔太", "美咲", "茂", "直樹"])));
    subject.kana =
        Some(format!("{kana} {}", rng.pick(&["かずお", "けいこ", "しょうた", "みさき", "しげる", "なおき"])));
    subject.is_subject = true;
    subject.birth_date =
        NaiveDate::from_ymd_opt(1940 + rng.below(70) as i32, 1 + rng.below(12) as u32, 1 + rng.below(28) as u32);
    let concerns = 1 + rng.below(2);
    subject.concerns =
        rng.distinct(ConcernTag::ALL.len() - 1, concerns).into_iter().map(|i| ConcernTag::ALL[i]).collect();
    let mut household = vec![subject];
    for relation in [Relation::Mother, Relation::Son].iter().take(rng.below(3)) {
        let mut member = NewPerson::new(format!("{family} {}", rng.pick(&["洋子", "健一", "優太", "早苗"])));
        member.kana = Some(format!("{kana} {}", rng.pick(&["ようこ", "けんいち", "ゆうた", "さなえ"])));
        member.relation = Some(*relation);
        household.push(member);
    }
    new.household = household;
    let mut replica = CaseReplica::open(new, primary.actor()).context("cannot open a case")?;
    let case_id = replica.case_id()?;
    let counsellor_actor = replica.doc().get_actor().clone();
    if rng.below(10) < 6 {
        replica.record_consent(ConsentState::Obtained, opened, Some(ConsentMethod::Written))?;
    }

    // The supervisor's replica: another assignee for some cases, a meeting decision for others.
    let supervisor = &staffing.supervisor;
    let supervisor_actor = random_device_actor(&supervisor.device);
    let mut replica =
        CaseReplica::from_doc(replica.into_doc(), supervisor.actor()).with_actor_id(supervisor_actor.clone());
    let mut other = None;
    if rng.below(4) == 0 {
        let candidate = colleagues[rng.below(colleagues.len())];
        if candidate.staff != primary.staff {
            replica.set_other_assignee(candidate.staff, true)?;
            other = Some(candidate);
        }
    }
    let status = if rng.below(12) == 0 {
        let on = day_between(rng, first.max(opened), last);
        // `other` is not a key to refer to: a destination outside the catalogue is free text.
        let destinations: Vec<&str> =
            catalogue.referral_destinations.iter().map(|d| d.key.as_str()).filter(|k| *k != "other").collect();
        let count = 1 + rng.below(2);
        let picked: Vec<String> =
            rng.distinct(destinations.len(), count).into_iter().map(|i| destinations[i].to_owned()).collect();
        seeded.referrals += picked.len() as u64;
        replica.record_decision(NewDecision::new(on, PlanVerdict::Close).referred_to(picked))?;
        CaseStatus::Closed
    } else {
        *rng.pick(&[CaseStatus::Outreach, CaseStatus::Outreach, CaseStatus::Planning, CaseStatus::Supporting])
    };
    replica.set_status(status)?;

    // The case number, as the server puts it when it first stores a case: a change of its own.
    let fiscal = FiscalYear::containing(opened);
    let serial = serials.entry(fiscal.year()).or_insert(0);
    *serial += 1;
    let number = CaseNumber::new(fiscal, *serial)?;
    let server_actor = ActorId::random();
    let mut doc = replica.into_doc();
    doc.set_actor(server_actor);
    doc.put(ROOT, keys::CASE_NUMBER, number.to_string())?;
    doc.commit_with(CommitOptions::default().with_message("assign case number"));
    let replica = CaseReplica::from_doc(doc, supervisor.actor());
    let view = replica.view()?;
    if view.case_number != Some(number) {
        bail!("the seeded case {case_id} does not read its number back");
    }
    let mut doc = replica.into_doc();
    let changes: Vec<(Change, Sender)> = doc
        .get_changes(&[])
        .into_iter()
        .map(|c| {
            let sender = if *c.actor_id() == counsellor_actor {
                Sender { staff: Some(primary.staff), device: Some(primary.device) }
            } else if *c.actor_id() == supervisor_actor {
                Sender { staff: Some(supervisor.staff), device: Some(supervisor.device) }
            } else {
                Sender { staff: None, device: None }
            };
            (c.clone(), sender)
        })
        .collect();
    seeded.changes += changes.len() as u64;
    let doc = doc.document().clone();

    // The activities, over the year from the day the case was opened.
    let municipality = seeder_municipality.to_string();
    let (mut rows, mut topics, mut reviews) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..per_case {
        let date = day_between(rng, first.max(opened), last);
        let started_at = utc_of(date, 9 + rng.below(9) as u32, 5 * rng.below(12) as u32);
        let by = match rng.below(20) {
            0..=14 => primary,
            15..=17 => other.unwrap_or(primary),
            _ => colleagues[rng.below(colleagues.len())],
        };
        let id = ActivityId::new_random().to_string();
        let roll = rng.below(100);
        let kind = match roll {
            0..=34 => ActivityKind::Visit,
            35..=49 => ActivityKind::LetterLeft,
            50..=74 => ActivityKind::ContactAttempt,
            75..=89 => ActivityKind::Consultation,
            90..=93 => ActivityKind::Accompaniment,
            94..=97 => ActivityKind::Coordination,
            _ => ActivityKind::Information,
        };
        let (mut place, mut outcome, mut letter_left, mut channel, mut agency) = ("home", None, false, None, None);
        match kind {
            ActivityKind::Visit => {
                let o = *rng.pick(&[
                    VisitOutcome::Met,
                    VisitOutcome::Met,
                    VisitOutcome::NotHome,
                    VisitOutcome::NotHome,
                    VisitOutcome::MetOther,
                    VisitOutcome::Refused,
                ]);
                letter_left = o == VisitOutcome::NotHome && rng.below(10) < 7;
                outcome = Some(o.as_key().to_owned());
            }
            ActivityKind::LetterLeft => letter_left = true,
            ActivityKind::ContactAttempt => {
                let c = *rng.pick(ContactChannel::ALL);
                place = if c == ContactChannel::Phone { "phone" } else { "other" };
                channel = Some(c.as_key().to_owned());
                outcome = Some(rng.pick(ContactOutcome::ALL).as_key().to_owned());
            }
            ActivityKind::Consultation => {
                place = *rng.pick(&["office", "home", "phone", "online"]);
                let count = 1 + rng.below(3);
                for t in rng.distinct(ConsultationTopic::ALL.len(), count) {
                    topics.push(TopicRow {
                        activity_id: id.clone(),
                        case_id: case_id.to_string(),
                        topic: ConsultationTopic::ALL[t].as_key().to_owned(),
                    });
                }
            }
            ActivityKind::Accompaniment | ActivityKind::Coordination => {
                place = "agency";
                agency = Some(rng.pick(AGENCIES).to_string());
            }
            ActivityKind::Information => place = "office",
        }
        let voided = rng.below(100) == 0;
        let reviewed = rng.below(3) == 0;
        if reviewed {
            reviews.push(ReviewRow {
                review_id: ReviewId::new_random().to_string(),
                case_id: case_id.to_string(),
                activity_id: id.clone(),
                by_staff: supervisor.staff.to_string(),
                at: started_at + Duration::days(1 + rng.below(3) as i64),
                comment: rng.pick(REVIEW_COMMENTS).to_string(),
            });
        }
        if !voided {
            match kind {
                ActivityKind::Consultation => seeded.consultations += 1,
                ActivityKind::Visit => seeded.visits += 1,
                ActivityKind::ContactAttempt => seeded.contact_attempts += 1,
                _ => {}
            }
        }
        let follow_up_on = (rng.below(10) < 3).then(|| format_date(date + Duration::days(7 + rng.below(8) as i64)));
        rows.push(ActivityRow {
            activity_id: id,
            case_id: case_id.to_string(),
            kind: kind.as_key().to_owned(),
            started_at,
            recorded_by: by.staff.to_string(),
            device_id: by.device.to_string(),
            place: place.to_owned(),
            outcome,
            follow_up_on,
            voided,
            reviewed,
            local_date: format_date(date),
            letter_left,
            channel,
            agency,
            narrative: text::narrative(rng, chars),
            municipality: municipality.clone(),
            area: Some(AREAS[area].0.to_owned()),
        });
    }
    seeded.activities += rows.len() as u64;
    seeded.reviews += reviews.len() as u64;
    seeded.cases += 1;
    Ok(BuiltCase { case_id, doc, view, changes, activities: rows, topics, reviews })
}

/// Inserts `rows` in multi-row statements of at most [`ROWS_PER_INSERT`] rows (fewer for
/// narrower tables would do; one size keeps it simple).
macro_rules! insert_all {
    ($conn:expr, $table:expr, $rows:expr) => {
        tsunagi_server::insert_rows!($conn, $table, $rows, ROWS_PER_INSERT)
    };
}

/// Writes one batch of cases in one transaction.
fn write_batch(
    conn: &mut DbConnection,
    municipality: &tsunagi_sync::ids::MunicipalityCode,
    batch: Batch,
) -> anyhow::Result<()> {
    let now = chrono::Utc::now().naive_utc();
    let (mut rows, mut topics, mut reviews) = (Vec::new(), Vec::new(), Vec::new());
    for case in batch.cases {
        documents::insert(conn, &case.case_id, municipality, now)?;
        for (change, sender) in &case.changes {
            documents::append_changes(conn, &case.case_id, std::slice::from_ref(change), *sender, now)?;
        }
        let row = documents::lock(conn, &case.case_id)?.context("the document row vanished")?;
        documents::update(conn, &row, &case.doc, now)?;
        projections::project(conn, &case.view, now)?;
        rows.extend(case.activities);
        topics.extend(case.topics);
        reviews.extend(case.reviews);
    }
    insert_all!(conn, activities::table, rows);
    insert_all!(conn, activity_topics::table, topics);
    insert_all!(conn, reviews::table, reviews);
    Ok(())
}

/// Seeds `cases` cases of `per_case` activities each (narratives of `chars` characters) into
/// the database at `url`: the cases are built on a thread of their own while the previous
/// batch is written. Returns the staff and what was stored.
pub fn seed(
    url: &DatabaseUrl,
    cases: usize,
    per_case: usize,
    chars: usize,
    seed: u64,
) -> anyhow::Result<(Staffing, Seeded)> {
    let seeder = Seeder::new(url)?;
    let staffing = staff(&seeder)?;
    let year = last_complete_fiscal_year()?;
    let municipality = seeder.municipality;
    let catalogue = Catalogue::default();
    let db = seeder.database().clone();

    let (send, receive) = mpsc::sync_channel::<anyhow::Result<Batch>>(2);
    let builder_staffing = staffing.clone();
    let builder = std::thread::spawn(move || -> std::collections::BTreeMap<i32, u32> {
        let mut rng = Rng::derive(seed, 0x5eed_b01c);
        let mut serials = std::collections::BTreeMap::new();
        let mut index = 0;
        while index < cases {
            let n = (cases - index).min(CASES_PER_TRANSACTION);
            let mut batch = Batch { cases: Vec::with_capacity(n), seeded: Seeded::default() };
            let mut failed = None;
            for i in index..index + n {
                match build_case(
                    &mut rng,
                    &builder_staffing,
                    municipality,
                    year,
                    &mut serials,
                    i,
                    per_case,
                    chars,
                    &catalogue,
                    &mut batch.seeded,
                ) {
                    Ok(case) => batch.cases.push(case),
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            let stop = failed.is_some();
            let message = match failed {
                Some(e) => Err(e),
                None => Ok(batch),
            };
            if send.send(message).is_err() || stop {
                break;
            }
            index += n;
        }
        serials
    });

    let mut seeded = Seeded { fiscal_year: year.year(), ..Seeded::default() };
    let mut written = 0;
    let started = std::time::Instant::now();
    for batch in receive {
        let batch = batch?;
        let (s, count) = (batch.seeded.clone(), batch.cases.len());
        db.write(|conn| write_batch(conn, &municipality, batch))?;
        seeded.cases += s.cases;
        seeded.activities += s.activities;
        seeded.consultations += s.consultations;
        seeded.visits += s.visits;
        seeded.contact_attempts += s.contact_attempts;
        seeded.referrals += s.referrals;
        seeded.reviews += s.reviews;
        seeded.changes += s.changes;
        written += count;
        if written % 5000 < CASES_PER_TRANSACTION && written < cases {
            eprintln!(
                "supervisor: {written} of {cases} cases seeded ({} activities) in {:.0} s",
                seeded.activities,
                started.elapsed().as_secs_f64()
            );
        }
    }
    let serials = builder.join().map_err(|_| anyhow::anyhow!("the case builder panicked"))?;
    if seeded.cases as usize != cases {
        bail!("seeded {} cases of {cases}", seeded.cases);
    }
    // The case-number counters, where the server continues numbering.
    db.write(|conn| -> anyhow::Result<()> {
        for (fiscal_year, last) in &serials {
            let values = (
                case_number_counters::municipality.eq(municipality.as_str()),
                case_number_counters::fiscal_year.eq(*fiscal_year),
                case_number_counters::last_serial.eq(i32::try_from(*last)?),
            );
            match conn {
                DbConnection::Pg(c) => diesel::insert_into(case_number_counters::table).values(values).execute(c)?,
                DbConnection::Sqlite(c) => {
                    diesel::insert_into(case_number_counters::table).values(values).execute(c)?
                }
            };
        }
        Ok(())
    })?;
    // The monthly counts the figures read, from every activity row at once (the same
    // statements the projection runs for one case).
    db.write(activity_months::refresh_all)?;
    db.read(|conn| -> anyhow::Result<()> {
        conn.batch_execute("ANALYZE")?;
        Ok(())
    })?;
    Ok((staffing, seeded))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn times_in_japan_are_nine_hours_ahead_of_utc() {
        let day = NaiveDate::from_ymd_opt(2025, 4, 1).unwrap();
        assert_eq!(utc_of(day, 9, 0), NaiveDate::from_ymd_opt(2025, 4, 1).unwrap().and_hms_opt(0, 0, 0).unwrap());
        assert_eq!(utc_of(day, 8, 0), NaiveDate::from_ymd_opt(2025, 3, 31).unwrap().and_hms_opt(23, 0, 0).unwrap());
    }

    #[test]
    fn days_stay_in_their_range() {
        let mut rng = Rng::new(3);
        let (a, b) = (NaiveDate::from_ymd_opt(2025, 4, 1).unwrap(), NaiveDate::from_ymd_opt(2025, 4, 3).unwrap());
        let days: BTreeSet<NaiveDate> = (0..200).map(|_| day_between(&mut rng, a, b)).collect();
        assert_eq!(days.len(), 3);
    }
}
