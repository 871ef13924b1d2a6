//! Monthly counts per case, which the monthly figures (`crate::figures`) add up:
//! `activity_months` holds, per case, municipality and month in Japan (`YYYY-MM`), how many
//! consultations, visits, letters left (on their own or left at a visit), contact attempts and
//! visits that met the person it had; `activity_month_topics` how many of its consultations
//! were about each topic. Voided activities count nowhere.
//!
//! Both are derived from the `activities` and `activity_topics` projections only, and kept
//! equal to them in the transaction that rewrites those, so they are never behind them: a sync
//! that rewrote some activities moves the counts by what those rows took away and added
//! ([`apply`]); a case projected whole is rebuilt ([`refresh_case`]); [`refresh_all`] rebuilds
//! them for every case (after rows were written into `activities` by other means, as the
//! benchmark's bulk seeder does). A row exists for a month with at least one counted activity
//! (consultation, visit, letter left, contact attempt) that is not voided, so all three ways
//! give the same rows. A fiscal year's figures then read at most one row per case and month
//! instead of every activity of the year.

use std::collections::BTreeMap;

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use tsunagi_sync::domain::{ActivityKind, VisitOutcome};

use super::schema::{activity_month_topics, activity_months};
use super::{placeholders, DbConnection, StoreError};

/// Inserts the counts of the non-voided activities that `CONDITION` (spliced in, empty or
/// `AND case_id = $6`) selects. `$1` … `$4` the kind keys (consultation, visit, letter left,
/// contact attempt), `$5` the outcome key `met`.
const INSERT_MONTHS: &str = "\
INSERT INTO activity_months (case_id, month, municipality, consultations, visits, letters, contacts, met)
SELECT case_id, substr(local_date, 1, 7), municipality,
       SUM(CASE WHEN kind = $1 THEN 1 ELSE 0 END),
       SUM(CASE WHEN kind = $2 THEN 1 ELSE 0 END),
       SUM(CASE WHEN kind = $3 OR (kind = $2 AND letter_left) THEN 1 ELSE 0 END),
       SUM(CASE WHEN kind = $4 THEN 1 ELSE 0 END),
       SUM(CASE WHEN kind = $2 AND outcome = $5 THEN 1 ELSE 0 END)
FROM activities
WHERE NOT voided AND kind IN ($1, $2, $3, $4) CONDITION
GROUP BY case_id, substr(local_date, 1, 7), municipality";

/// Inserts the topics of the non-voided consultations that `CONDITION` (empty or
/// `AND a.case_id = $2 AND t.case_id = $2`, so that both tables are read by case) selects. `$1` the consultation kind key.
const INSERT_TOPICS: &str = "\
INSERT INTO activity_month_topics (case_id, month, municipality, topic, n)
SELECT a.case_id, substr(a.local_date, 1, 7), a.municipality, t.topic, COUNT(*)
FROM activities a JOIN activity_topics t ON t.activity_id = a.activity_id
WHERE a.kind = $1 AND NOT a.voided CONDITION
GROUP BY a.case_id, substr(a.local_date, 1, 7), a.municipality, t.topic";

/// The parts of one row of `activities` (and of its `activity_topics`) that the monthly
/// counts read.
#[derive(Debug, Clone)]
pub struct Counted<'a> {
    /// `activities.local_date`, `YYYY-MM-DD` in Japan.
    pub local_date: &'a str,
    /// `activities.municipality`.
    pub municipality: &'a str,
    /// `activities.kind`, an [`ActivityKind`] key.
    pub kind: &'a str,
    /// `activities.outcome`, a visit's or contact attempt's outcome key.
    pub outcome: Option<&'a str>,
    /// `activities.letter_left`.
    pub letter_left: bool,
    /// `activities.voided`.
    pub voided: bool,
    /// The activity's `activity_topics`.
    pub topics: Vec<&'a str>,
}

impl Counted<'_> {
    /// The month in Japan, `YYYY-MM`, as `substr(local_date, 1, 7)`.
    fn month(&self) -> &str {
        self.local_date.get(..7).unwrap_or(self.local_date)
    }

    /// What the activity adds to its month: consultations, visits, letters, contact attempts
    /// and visits that met the person, as [`INSERT_MONTHS`] counts them.
    fn counts(&self) -> [i64; 5] {
        if self.voided {
            return [0; 5];
        }
        let is = |kind: ActivityKind| self.kind == kind.as_key();
        let visit = is(ActivityKind::Visit);
        [
            is(ActivityKind::Consultation),
            visit,
            is(ActivityKind::LetterLeft) || (visit && self.letter_left),
            is(ActivityKind::ContactAttempt),
            visit && self.outcome == Some(VisitOutcome::Met.as_key()),
        ]
        .map(i64::from)
    }

    /// The topics the activity counts under: a consultation's that is not voided.
    fn counted_topics(&self) -> &[&str] {
        match !self.voided && self.kind == ActivityKind::Consultation.as_key() {
            true => &self.topics,
            false => &[],
        }
    }
}

/// Adds one month's counts to the row of `case`, inserting it when the month has none.
/// `$1` case, `$2` month, `$3` municipality, `$4` … `$8` the counts (negative to take away).
const ADD_MONTH: &str = "\
INSERT INTO activity_months (case_id, month, municipality, consultations, visits, letters, contacts, met)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (case_id, month, municipality) DO UPDATE SET
    consultations = activity_months.consultations + excluded.consultations,
    visits = activity_months.visits + excluded.visits,
    letters = activity_months.letters + excluded.letters,
    contacts = activity_months.contacts + excluded.contacts,
    met = activity_months.met + excluded.met";

/// Adds to one month's count of a topic of `case`. `$1` case, `$2` month, `$3`
/// municipality, `$4` topic, `$5` how many (negative to take away).
const ADD_TOPIC: &str = "\
INSERT INTO activity_month_topics (case_id, month, municipality, topic, n)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (case_id, month, municipality, topic) DO UPDATE SET n = activity_month_topics.n + excluded.n";

/// Moves the monthly counts of `case` from activity rows `removed` to activity rows `added`:
/// called in the transaction that deleted the first and inserted the second, with counts that
/// matched the activity rows before, it leaves them matching the rows after, as
/// [`refresh_case`] would rebuild them. A month whose counts fall to zero loses its row.
pub fn apply(
    conn: &mut DbConnection,
    case: &str,
    removed: &[Counted<'_>],
    added: &[Counted<'_>],
) -> Result<(), StoreError> {
    let mut months: BTreeMap<(&str, &str), [i64; 5]> = BTreeMap::new();
    let mut topics: BTreeMap<(&str, &str, &str), i64> = BTreeMap::new();
    for (sign, activity) in removed.iter().map(|a| (-1, a)).chain(added.iter().map(|a| (1, a))) {
        let month = months.entry((activity.month(), activity.municipality)).or_default();
        for (total, n) in month.iter_mut().zip(activity.counts()) {
            *total += sign * n;
        }
        for topic in activity.counted_topics() {
            *topics.entry((activity.month(), activity.municipality, topic)).or_default() += sign;
        }
    }
    let mut fell = false;
    for ((month, municipality), counts) in months.into_iter().filter(|(_, counts)| *counts != [0; 5]) {
        fell |= counts.iter().any(|n| *n < 0);
        let [consultations, visits, letters, contacts, met] = counts;
        diesel::sql_query(placeholders(conn, ADD_MONTH))
            .bind::<Text, _>(case)
            .bind::<Text, _>(month)
            .bind::<Text, _>(municipality)
            .bind::<BigInt, _>(consultations)
            .bind::<BigInt, _>(visits)
            .bind::<BigInt, _>(letters)
            .bind::<BigInt, _>(contacts)
            .bind::<BigInt, _>(met)
            .execute(conn)?;
    }
    if fell {
        diesel::delete(
            activity_months::table
                .filter(activity_months::case_id.eq(case))
                .filter(activity_months::consultations.eq(0))
                .filter(activity_months::visits.eq(0))
                .filter(activity_months::letters.eq(0))
                .filter(activity_months::contacts.eq(0))
                .filter(activity_months::met.eq(0)),
        )
        .execute(conn)?;
    }
    let mut fell = false;
    for ((month, municipality, topic), n) in topics.into_iter().filter(|(_, n)| *n != 0) {
        fell |= n < 0;
        diesel::sql_query(placeholders(conn, ADD_TOPIC))
            .bind::<Text, _>(case)
            .bind::<Text, _>(month)
            .bind::<Text, _>(municipality)
            .bind::<Text, _>(topic)
            .bind::<BigInt, _>(n)
            .execute(conn)?;
    }
    if fell {
        diesel::delete(
            activity_month_topics::table
                .filter(activity_month_topics::case_id.eq(case))
                .filter(activity_month_topics::n.eq(0)),
        )
        .execute(conn)?;
    }
    Ok(())
}

/// Rebuilds the monthly counts of `case` from its activity rows (deleting them when it has
/// none). Call it inside the transaction that rewrote those rows.
pub fn refresh_case(conn: &mut DbConnection, case: &str) -> Result<(), StoreError> {
    for table in ["activity_months", "activity_month_topics"] {
        diesel::sql_query(placeholders(conn, &format!("DELETE FROM {table} WHERE case_id = $1")))
            .bind::<Text, _>(case)
            .execute(conn)?;
    }
    insert(conn, Some(case))
}

/// Rebuilds the monthly counts of every case. Call it inside a write transaction.
pub fn refresh_all(conn: &mut DbConnection) -> Result<(), StoreError> {
    for table in ["activity_months", "activity_month_topics"] {
        diesel::sql_query(format!("DELETE FROM {table}")).execute(conn)?;
    }
    insert(conn, None)
}

/// Inserts the counts of `case`'s activities, or of every case's.
fn insert(conn: &mut DbConnection, case: Option<&str>) -> Result<(), StoreError> {
    let months = INSERT_MONTHS.replace("CONDITION", if case.is_some() { "AND case_id = $6" } else { "" });
    let months = diesel::sql_query(placeholders(conn, &months))
        .bind::<Text, _>(ActivityKind::Consultation.as_key())
        .bind::<Text, _>(ActivityKind::Visit.as_key())
        .bind::<Text, _>(ActivityKind::LetterLeft.as_key())
        .bind::<Text, _>(ActivityKind::ContactAttempt.as_key())
        .bind::<Text, _>(VisitOutcome::Met.as_key());
    match case {
        Some(case) => months.bind::<Text, _>(case).execute(conn)?,
        None => months.execute(conn)?,
    };
    let topics =
        INSERT_TOPICS.replace("CONDITION", if case.is_some() { "AND a.case_id = $2 AND t.case_id = $2" } else { "" });
    let topics = diesel::sql_query(placeholders(conn, &topics)).bind::<Text, _>(ActivityKind::Consultation.as_key());
    match case {
        Some(case) => topics.bind::<Text, _>(case).execute(conn)?,
        None => topics.execute(conn)?,
    };
    Ok(())
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};
    use tsunagi_sync::ids::{CaseId, MunicipalityCode};

    use super::*;
    use crate::store::projections::{replace_activities, ActivityRow, TopicRow};
    use crate::store::schema::municipalities;
    use crate::store::Database;
    use crate::testing::{Backend, TestDatabase};

    const KINDS: [&str; 7] =
        ["consultation", "visit", "letter_left", "contact_attempt", "accompaniment", "coordination", "information"];

    /// One activity as a step of the property leaves it.
    #[derive(Debug, Clone)]
    struct Activity {
        id: u8,
        kind: &'static str,
        local_date: &'static str,
        municipality: &'static str,
        outcome: Option<&'static str>,
        letter_left: bool,
        voided: bool,
        topics: Vec<&'static str>,
    }

    fn activity() -> impl Strategy<Value = Activity> {
        (
            0u8..6,
            proptest::sample::select(&KINDS[..]),
            proptest::sample::select(&["2025-03-31", "2025-04-01", "2025-04-30", "2025-05-02"][..]),
            proptest::sample::select(&["122203", "122173"][..]),
            proptest::option::of(proptest::sample::select(&["met", "absent", "refused"][..])),
            any::<bool>(),
            any::<bool>(),
            proptest::sample::subsequence(&["debt", "housing", "health"][..], 0..=3),
        )
            .prop_map(|(id, kind, local_date, municipality, outcome, letter_left, voided, topics)| Activity {
                id,
                kind,
                local_date,
                municipality,
                outcome,
                letter_left,
                voided,
                topics,
            })
    }

    /// A step: the activities it rewrites (as they now are) and the ids it removes.
    fn step() -> impl Strategy<Value = (Vec<Activity>, Vec<u8>)> {
        (proptest::collection::vec(activity(), 0..4), proptest::collection::vec(0u8..6, 0..2))
    }

    /// Activity ids are unique across cases.
    fn activity_id(case: &str, n: u8) -> String {
        format!("{case}/{n}")
    }

    type Months = Vec<(String, String, i64, i64, i64, i64, i64)>;
    type Topics = Vec<(String, String, String, i64)>;

    fn counts_of(conn: &mut DbConnection, case: &str) -> (Months, Topics) {
        let months = activity_months::table
            .filter(activity_months::case_id.eq(case))
            .order((activity_months::month, activity_months::municipality))
            .select((
                activity_months::month,
                activity_months::municipality,
                activity_months::consultations,
                activity_months::visits,
                activity_months::letters,
                activity_months::contacts,
                activity_months::met,
            ))
            .load(conn)
            .unwrap();
        let topics = activity_month_topics::table
            .filter(activity_month_topics::case_id.eq(case))
            .order((activity_month_topics::month, activity_month_topics::municipality, activity_month_topics::topic))
            .select((
                activity_month_topics::month,
                activity_month_topics::municipality,
                activity_month_topics::topic,
                activity_month_topics::n,
            ))
            .load(conn)
            .unwrap();
        (months, topics)
    }

    /// Counts moved by every rewrite of some activities (new, amended, voided, moved to
    /// another month, removed) are the counts rebuilt from the rows afterwards.
    fn moved_counts_are_rebuilt_counts(backend: Backend) {
        let test = TestDatabase::new(backend);
        let db = Database::connect(&test.url, 1).unwrap();
        db.migrate().unwrap();
        let mut conn = db.conn().unwrap();
        let noon = NaiveDate::from_ymd_opt(2025, 4, 1).unwrap().and_hms_opt(3, 0, 0).unwrap();
        for code in ["122203", "122173"] {
            diesel::insert_into(municipalities::table)
                .values((
                    municipalities::code.eq(code),
                    municipalities::name.eq(code),
                    municipalities::created_at.eq(noon),
                ))
                .execute(&mut *conn)
                .unwrap();
        }
        let conn = std::cell::RefCell::new(conn);
        let mut runner = TestRunner::new(Config { cases: 24, ..Config::default() });
        runner
            .run(&proptest::collection::vec(step(), 1..6), |steps| {
                let mut conn = conn.borrow_mut();
                let conn = &mut **conn;
                let id = CaseId::new_random();
                let municipality = MunicipalityCode::parse("122203").unwrap();
                crate::store::documents::insert(conn, &id, &municipality, noon).unwrap();
                let case = id.to_string();
                for (written, removed) in steps {
                    let mut last = std::collections::BTreeMap::new();
                    for activity in written {
                        last.insert(activity.id, activity);
                    }
                    let ids: Vec<String> = last.keys().chain(&removed).map(|n| activity_id(&case, *n)).collect();
                    let ids: Vec<&String> = ids.iter().collect();
                    let kept = last.values().filter(|a| !removed.contains(&a.id));
                    let rows = kept
                        .clone()
                        .map(|a| ActivityRow {
                            activity_id: activity_id(&case, a.id),
                            case_id: case.clone(),
                            kind: a.kind.into(),
                            started_at: noon,
                            recorded_by: case.clone(),
                            device_id: case.clone(),
                            place: "home".into(),
                            outcome: a.outcome.map(Into::into),
                            follow_up_on: None,
                            voided: a.voided,
                            reviewed: false,
                            local_date: a.local_date.into(),
                            letter_left: a.letter_left,
                            channel: None,
                            agency: None,
                            narrative: String::new(),
                            municipality: a.municipality.into(),
                            area: None,
                        })
                        .collect();
                    let topics = kept
                        .filter(|a| a.kind == "consultation")
                        .flat_map(|a| {
                            a.topics.iter().map(|t| TopicRow {
                                activity_id: activity_id(&case, a.id),
                                case_id: case.clone(),
                                topic: (*t).into(),
                            })
                        })
                        .collect();
                    replace_activities(conn, &case, &ids, rows, topics).unwrap();
                    let moved = counts_of(conn, &case);
                    refresh_case(conn, &case).unwrap();
                    prop_assert_eq!(&moved, &counts_of(conn, &case));
                }
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn moved_counts_are_rebuilt_counts_on_sqlite() {
        moved_counts_are_rebuilt_counts(Backend::Sqlite);
    }

    #[test]
    fn moved_counts_are_rebuilt_counts_on_postgres() {
        moved_counts_are_rebuilt_counts(Backend::Postgres);
    }
}
