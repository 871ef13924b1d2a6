//! Monthly counts per case, which the monthly figures (`crate::figures`) add up:
//! `activity_months` holds, per case, municipality and month in Japan (`YYYY-MM`), how many
//! consultations, visits, letters left (on their own or left at a visit), contact attempts and
//! visits that met the person it had; `activity_month_topics` how many of its consultations
//! were about each topic. Voided activities count nowhere.
//!
//! Both are derived from the `activities` and `activity_topics` projections only, and rebuilt
//! for a case ([`refresh_case`]) in the transaction that rewrites those, so they are never
//! behind them; [`refresh_all`] rebuilds them for every case (after rows were written into
//! `activities` by other means, as the benchmark's bulk seeder does). A fiscal year's figures
//! then read at most one row per case and month instead of every activity of the year.

use diesel::prelude::*;
use diesel::sql_types::Text;
use tsunagi_sync::domain::{ActivityKind, VisitOutcome};

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
WHERE NOT voided CONDITION
GROUP BY case_id, substr(local_date, 1, 7), municipality";

/// Inserts the topics of the non-voided consultations that `CONDITION` (empty or
/// `AND a.case_id = $2 AND t.case_id = $2`, so that both tables are read by case) selects. `$1` the consultation kind key.
const INSERT_TOPICS: &str = "\
INSERT INTO activity_month_topics (case_id, month, municipality, topic, n)
SELECT a.case_id, substr(a.local_date, 1, 7), a.municipality, t.topic, COUNT(*)
FROM activities a JOIN activity_topics t ON t.activity_id = a.activity_id
WHERE a.kind = $1 AND NOT a.voided CONDITION
GROUP BY a.case_id, substr(a.local_date, 1, 7), a.municipality, t.topic";

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
