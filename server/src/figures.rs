//! Monthly figures (月別集計) of one municipality for one fiscal year, the tables supervisors
//! report from (Kashiwa's tables are the model): consultations and the persons behind them,
//! consultations by topic, referrals to other agencies, and outreach.
//!
//! Everything is counted **from the projections only**; no case document is loaded. The
//! activities are counted through their monthly counts per case
//! ([`crate::store::activity_months`]: one row per case and month in Japan, `YYYY-MM`,
//! rebuilt with the case's `activities` rows in the transaction that stores its changes), so
//! the cost grows with the cases active in the year, not with their activities. Four queries
//! answer a whole year:
//!
//! 1. the activities of the year, added up by month (consultations, visits, letters left,
//!    contact attempts, visits that met the person);
//! 2. the cases consulted in each month, and those among them whose first consultation ever
//!    falls in that month;
//! 3. the topics of the year's consultations, added up by month and topic;
//! 4. the referral destinations of meeting decisions taken in the year, grouped by month
//!    and destination.
//!
//! Months are April to March of the fiscal year, in Japan: an activity counts in the month
//! of its `local_date` (the day it started, Asia/Tokyo), a referral in the month of its
//! decision's `decided_on`. Voided activities never count.
//!
//! Definitions (also in `docs/api.md`, "Monthly figures"):
//!
//! - **相談件数(延べ)** consultations: `consultation` activities in the month.
//! - **新規相談者** new persons: cases whose first consultation ever (over all time, not just
//!   this year) falls in the month. A case is one person or household.
//! - **継続相談者** continuing persons: cases with a consultation in the month whose first
//!   consultation was in an earlier month.
//! - **相談者計** persons: new + continuing, i.e. the cases with a consultation in the month.
//! - **内容別相談件数** by topic: for each [`ConsultationTopic`], the month's consultations
//!   with that topic (a consultation with three topics counts once in each of three rows);
//!   **内容別相談件数計** the sum over topics; and two differences: topic total − consultations
//!   (how many topics beyond the first the month's consultations carried) and, as in Kashiwa's
//!   table (差 ②−①), topic total − persons.
//! - **つないだ件数** referrals: one row per referral destination of the catalogue (in its
//!   order, `other` as その他, then any key the catalogue no longer has), counting the
//!   destinations of meeting decisions (`referrals` rows) in the month of `decided_on`;
//!   and their total.
//! - **アウトリーチ** outreach: visits (家庭訪問), letters left (置き手紙: `letter_left`
//!   activities plus visits that left a letter), contact attempts (連絡・接触), visits that met
//!   the person (outcome `met`), and the share of visits that met the person, in percent with
//!   one decimal (`null` when there was no visit).
//!
//! Every row has twelve monthly cells and a fiscal-year total, which is the sum of the cells
//! (for the person rows, person-months: a case consulted in three months counts three
//! times in 継続相談者's total; it counts once in 新規相談者's, which is the number of new
//! cases of the year). The share's total is the year's met visits over the year's visits.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use serde::Serialize;
use tsunagi_sync::domain::catalogue::Catalogue;
use tsunagi_sync::domain::{ActivityKind, ConsultationTopic};
use tsunagi_sync::ids::{FiscalYear, MunicipalityCode};

use crate::store::{placeholders, DbConnection, StoreError};

/// Months in a fiscal year.
pub const MONTHS: usize = 12;

/// Why figures could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum FiguresError {
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A projection row holds something that is not a month of the requested year (a bug or
    /// a damaged projection; `tsunagi admin reproject` rebuilds them).
    #[error("a projected date is not a month of fiscal year {fiscal_year}: {value:?}")]
    BadMonth {
        /// The requested fiscal year.
        fiscal_year: i32,
        /// The offending `YYYY-MM` value.
        value: String,
    },
}

impl From<diesel::result::Error> for FiguresError {
    fn from(e: diesel::result::Error) -> Self {
        FiguresError::Store(StoreError::Query(e))
    }
}

/// One month of the fiscal year.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Month {
    /// `YYYY-MM` (Western calendar).
    pub key: String,
    /// `2024年4月`.
    pub label: String,
}

/// A row of counts: twelve months (April first) and the fiscal-year total.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CountRow {
    /// Stable key (`consultations`, a topic key, a catalogue key…).
    pub key: String,
    /// The Japanese heading.
    pub label: String,
    /// April … March.
    pub months: [i64; MONTHS],
    /// The sum of the months.
    pub total: i64,
}

impl CountRow {
    fn new(key: impl Into<String>, label: impl Into<String>, months: [i64; MONTHS]) -> Self {
        CountRow { key: key.into(), label: label.into(), total: months.iter().sum(), months }
    }

    /// `f(self, other)` month by month.
    fn combine(&self, other: &CountRow, key: &str, label: &str, f: impl Fn(i64, i64) -> i64) -> CountRow {
        let mut months = [0; MONTHS];
        for (i, cell) in months.iter_mut().enumerate() {
            *cell = f(self.months[i], other.months[i]);
        }
        CountRow::new(key, label, months)
    }
}

/// A row of percentages (one decimal), `None` where the denominator is zero.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShareRow {
    /// Stable key.
    pub key: String,
    /// The Japanese heading.
    pub label: String,
    /// April … March.
    pub months: [Option<f64>; MONTHS],
    /// Over the whole fiscal year.
    pub total: Option<f64>,
}

/// Consultations and the persons (cases) behind them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConsultationFigures {
    /// 相談件数(延べ).
    pub consultations: CountRow,
    /// 新規相談者.
    pub new_persons: CountRow,
    /// 継続相談者.
    pub continuing_persons: CountRow,
    /// 相談者計 (new + continuing).
    pub persons: CountRow,
}

/// Consultations by topic (内容別相談件数).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopicFigures {
    /// One row per [`ConsultationTopic`], in its order.
    pub by_topic: Vec<CountRow>,
    /// 内容別相談件数計.
    pub total: CountRow,
    /// Topic total − consultations.
    pub difference: CountRow,
    /// Topic total − persons (Kashiwa's 差 ②−①).
    pub difference_from_persons: CountRow,
}

/// Referrals to other agencies (つないだ件数), by destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReferralFigures {
    /// One row per destination.
    pub by_destination: Vec<CountRow>,
    /// つないだ件数計.
    pub total: CountRow,
}

/// Outreach (アウトリーチ).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutreachFigures {
    /// 家庭訪問.
    pub visits: CountRow,
    /// 置き手紙 (letters left, on their own or during a visit).
    pub letters_left: CountRow,
    /// 連絡・接触.
    pub contact_attempts: CountRow,
    /// Visits that met the person.
    pub visits_met: CountRow,
    /// Visits that met the person, in percent of visits.
    pub met_share: ShareRow,
}

/// A fiscal year's monthly figures for one municipality.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MonthlyFigures {
    /// The municipality code.
    pub municipality: String,
    /// The Western year the fiscal year starts in (2024 = 令和6年度).
    pub fiscal_year: i32,
    /// `令和6年度`.
    pub fiscal_year_label: String,
    /// April … March.
    pub months: Vec<Month>,
    /// Consultations and persons.
    pub consultations: ConsultationFigures,
    /// Consultations by topic.
    pub topics: TopicFigures,
    /// Referrals by destination.
    pub referrals: ReferralFigures,
    /// Outreach.
    pub outreach: OutreachFigures,
}

/// Section headings (区分) of the table, as the CSV export shows them.
pub mod sections {
    /// Consultations and persons.
    pub const CONSULTATIONS: &str = "相談件数";
    /// Consultations by topic.
    pub const TOPICS: &str = "内容別相談件数";
    /// Referrals.
    pub const REFERRALS: &str = "つないだ件数";
    /// Outreach.
    pub const OUTREACH: &str = "アウトリーチ";
}

impl MonthlyFigures {
    /// `令和6年度 (2024年4月〜2025年3月) 月別集計`: the heading of the printed table.
    pub fn heading(&self) -> String {
        let first = self.months.first().map(|m| m.label.as_str()).unwrap_or_default();
        let last = self.months.last().map(|m| m.label.as_str()).unwrap_or_default();
        format!("{} ({first}〜{last}) 月別集計", self.fiscal_year_label)
    }

    /// Every count row with its section heading, in the order the table lists them (the
    /// share of met visits, a percentage, comes last: see [`OutreachFigures::met_share`]).
    pub fn count_rows(&self) -> Vec<(&'static str, &CountRow)> {
        let c = &self.consultations;
        let mut rows = vec![
            (sections::CONSULTATIONS, &c.consultations),
            (sections::CONSULTATIONS, &c.new_persons),
            (sections::CONSULTATIONS, &c.continuing_persons),
            (sections::CONSULTATIONS, &c.persons),
        ];
        rows.extend(self.topics.by_topic.iter().map(|r| (sections::TOPICS, r)));
        rows.push((sections::TOPICS, &self.topics.total));
        rows.push((sections::TOPICS, &self.topics.difference));
        rows.push((sections::TOPICS, &self.topics.difference_from_persons));
        rows.extend(self.referrals.by_destination.iter().map(|r| (sections::REFERRALS, r)));
        rows.push((sections::REFERRALS, &self.referrals.total));
        let o = &self.outreach;
        rows.extend([&o.visits, &o.letters_left, &o.contact_attempts, &o.visits_met].map(|r| (sections::OUTREACH, r)));
        rows
    }
}

/// The twelve months of `fiscal_year`.
pub fn months_of(fiscal_year: FiscalYear) -> Vec<Month> {
    (0..MONTHS)
        .map(|i| {
            let (year, month) = year_month(fiscal_year, i);
            Month { key: format!("{year:04}-{month:02}"), label: format!("{year}年{month}月") }
        })
        .collect()
}

/// The calendar year and month of month `index` (0 = April) of `fiscal_year`.
fn year_month(fiscal_year: FiscalYear, index: usize) -> (i32, usize) {
    let m = index + 3; // months since January of the starting year, from 0
    (fiscal_year.year() + i32::from(m >= 12), m % 12 + 1)
}

/// Which month of `fiscal_year` (0 = April) a `YYYY-MM` value is.
fn month_index(fiscal_year: FiscalYear, value: &str) -> Result<usize, FiguresError> {
    let bad = || FiguresError::BadMonth { fiscal_year: fiscal_year.year(), value: value.chars().take(16).collect() };
    let (year, month) = value.split_once('-').ok_or_else(bad)?;
    if year.len() != 4 || month.len() != 2 {
        return Err(bad());
    }
    let year: i32 = year.parse().map_err(|_| bad())?;
    let month: i32 = month.parse().map_err(|_| bad())?;
    if !(1..=12).contains(&month) {
        return Err(bad());
    }
    let index = (year - fiscal_year.year()) * 12 + month - 4;
    usize::try_from(index).ok().filter(|i| *i < MONTHS).ok_or_else(bad)
}

#[derive(QueryableByName)]
struct ActivityMonth {
    #[diesel(sql_type = Text)]
    month: String,
    #[diesel(sql_type = BigInt)]
    consultations: i64,
    #[diesel(sql_type = BigInt)]
    visits: i64,
    #[diesel(sql_type = BigInt)]
    letters: i64,
    #[diesel(sql_type = BigInt)]
    contacts: i64,
    #[diesel(sql_type = BigInt)]
    met: i64,
}

#[derive(QueryableByName)]
struct PersonMonth {
    #[diesel(sql_type = Text)]
    month: String,
    #[diesel(sql_type = BigInt)]
    persons: i64,
    #[diesel(sql_type = BigInt)]
    new_persons: i64,
}

#[derive(QueryableByName)]
struct KeyedMonthCount {
    #[diesel(sql_type = Text)]
    month: String,
    #[diesel(sql_type = Text)]
    key: String,
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// The activities of the year by month, added up from the cases' monthly counts
/// (`store::activity_months`). `$1` municipality, `$2` first month of the year (`YYYY-04`),
/// `$3` first month of the next year.
const ACTIVITIES_BY_MONTH: &str = "\
SELECT month,
       CAST(SUM(consultations) AS BIGINT) AS consultations,
       CAST(SUM(visits) AS BIGINT) AS visits,
       CAST(SUM(letters) AS BIGINT) AS letters,
       CAST(SUM(contacts) AS BIGINT) AS contacts,
       CAST(SUM(met) AS BIGINT) AS met
FROM activity_months
WHERE municipality = $1 AND month >= $2 AND month < $3
GROUP BY month";

/// The persons (cases) consulted in each month of the year, and how many of them were
/// consulted for the first time ever: `consulted` holds each case once per month it was
/// consulted in, `firsts` each case with its first month of the year; a case is new in that
/// month when it has no (non-voided) consultation before the year. Rows of the first half
/// have `new_persons` 0, rows of the second `persons` 0. Parameters as
/// [`ACTIVITIES_BY_MONTH`].
const PERSONS_BY_MONTH: &str = "\
WITH consulted AS (
    SELECT case_id, month
    FROM activity_months
    WHERE municipality = $1 AND consultations > 0 AND month >= $2 AND month < $3
    GROUP BY case_id, month),
firsts AS (SELECT case_id, MIN(month) AS month FROM consulted GROUP BY case_id)
SELECT month, COUNT(*) AS persons, 0 AS new_persons FROM consulted GROUP BY month
UNION ALL
SELECT f.month AS month, 0 AS persons, COUNT(*) AS new_persons
FROM firsts f
WHERE NOT EXISTS (SELECT 1 FROM activity_months e
                  WHERE e.case_id = f.case_id AND e.consultations > 0 AND e.month < $2)
GROUP BY f.month";

/// The topics of the year's consultations, by month. Parameters as [`ACTIVITIES_BY_MONTH`].
const TOPICS_BY_MONTH: &str = "\
SELECT month, topic AS key, CAST(SUM(n) AS BIGINT) AS n
FROM activity_month_topics
WHERE municipality = $1 AND month >= $2 AND month < $3
GROUP BY month, topic";

/// The referral destinations of the year's decisions, by month. `$1` municipality, `$2`/`$3`
/// the year.
const REFERRALS_BY_MONTH: &str = "\
SELECT substr(decided_on, 1, 7) AS month, destination AS key, COUNT(*) AS n
FROM referrals
WHERE municipality = $1 AND decided_on >= $2 AND decided_on < $3
GROUP BY substr(decided_on, 1, 7), destination";

/// Adds `n` to the cell of `month` in a row keyed by `key` of `rows` (appending an empty row
/// for a key not seen before).
fn add(rows: &mut Vec<(String, [i64; MONTHS])>, key: &str, index: usize, n: i64) {
    match rows.iter_mut().find(|(k, _)| k == key) {
        Some((_, months)) => months[index] += n,
        None => {
            let mut months = [0; MONTHS];
            months[index] = n;
            rows.push((key.to_owned(), months));
        }
    }
}

/// Percent with one decimal, rounded half up; `None` when `whole` is zero.
pub fn percent(part: i64, whole: i64) -> Option<f64> {
    if whole <= 0 {
        return None;
    }
    let tenths = (part * 2000 + whole) / (2 * whole);
    Some(tenths as f64 / 10.0)
}

/// Computes the monthly figures of `municipality` for `fiscal_year`, labelling referral
/// destinations from `catalogue`. Runs four aggregate queries on `conn`; run it inside one
/// transaction (see [`monthly_in_snapshot`]) for figures that agree with each other while
/// devices sync.
pub fn monthly(
    conn: &mut DbConnection,
    municipality: &MunicipalityCode,
    fiscal_year: FiscalYear,
    catalogue: &Catalogue,
) -> Result<MonthlyFigures, FiguresError> {
    let first = tsunagi_sync::document::format_date(fiscal_year.first_day());
    let next = format!("{:04}-04-01", fiscal_year.year() + 1);
    let (first_month, next_month) =
        (format!("{:04}-04", fiscal_year.year()), format!("{:04}-04", fiscal_year.year() + 1));
    let m = municipality.as_str();

    let sql = placeholders(conn, ACTIVITIES_BY_MONTH);
    let by_month: Vec<ActivityMonth> = diesel::sql_query(sql)
        .bind::<Text, _>(m)
        .bind::<Text, _>(&first_month)
        .bind::<Text, _>(&next_month)
        .load(conn)?;
    let mut consultations = [0; MONTHS];
    let (mut visits, mut letters, mut contacts, mut met) = ([0; MONTHS], [0; MONTHS], [0; MONTHS], [0; MONTHS]);
    for row in &by_month {
        let i = month_index(fiscal_year, &row.month)?;
        consultations[i] += row.consultations;
        visits[i] += row.visits;
        letters[i] += row.letters;
        contacts[i] += row.contacts;
        met[i] += row.met;
    }

    let sql = placeholders(conn, PERSONS_BY_MONTH);
    let person_rows: Vec<PersonMonth> = diesel::sql_query(sql)
        .bind::<Text, _>(m)
        .bind::<Text, _>(&first_month)
        .bind::<Text, _>(&next_month)
        .load(conn)?;
    let (mut persons, mut new_persons) = ([0; MONTHS], [0; MONTHS]);
    for row in &person_rows {
        let i = month_index(fiscal_year, &row.month)?;
        persons[i] += row.persons;
        new_persons[i] += row.new_persons;
    }

    let sql = placeholders(conn, TOPICS_BY_MONTH);
    let topic_rows: Vec<KeyedMonthCount> = diesel::sql_query(sql)
        .bind::<Text, _>(m)
        .bind::<Text, _>(&first_month)
        .bind::<Text, _>(&next_month)
        .load(conn)?;
    let mut topics: Vec<(String, [i64; MONTHS])> =
        ConsultationTopic::ALL.iter().map(|t| (t.as_key().to_owned(), [0; MONTHS])).collect();
    for row in &topic_rows {
        let i = month_index(fiscal_year, &row.month)?;
        if ConsultationTopic::from_key(&row.key).is_err() {
            // Validation refuses unknown topics, so this is a damaged projection: say so, and
            // leave it out of the table rather than refuse the whole year.
            tracing::warn!(topic = %row.key, "an unknown consultation topic in activity_topics is not counted");
            continue;
        }
        add(&mut topics, &row.key, i, row.n);
    }

    let sql = placeholders(conn, REFERRALS_BY_MONTH);
    let referral_rows: Vec<KeyedMonthCount> =
        diesel::sql_query(sql).bind::<Text, _>(m).bind::<Text, _>(&first).bind::<Text, _>(&next).load(conn)?;
    let mut destinations: Vec<(String, [i64; MONTHS])> =
        catalogue.referral_destinations.iter().map(|d| (d.key.clone(), [0; MONTHS])).collect();
    let known = destinations.len();
    for row in &referral_rows {
        add(&mut destinations, &row.key, month_index(fiscal_year, &row.month)?, row.n);
    }
    destinations[known..].sort_by(|a, b| a.0.cmp(&b.0));

    Ok(assemble(
        municipality,
        fiscal_year,
        Counts { consultations, persons, new_persons, visits, letters, contacts, met, topics, destinations },
        catalogue,
    ))
}

/// [`monthly`] in a read transaction of its own: one snapshot on SQLite (WAL), and
/// `REPEATABLE READ, READ ONLY` on PostgreSQL, so the four queries see the same data. Do
/// not call it inside another transaction.
pub fn monthly_in_snapshot(
    conn: &mut DbConnection,
    municipality: &MunicipalityCode,
    fiscal_year: FiscalYear,
    catalogue: &Catalogue,
) -> Result<MonthlyFigures, FiguresError> {
    conn.transaction(|conn| {
        if let DbConnection::Pg(_) = conn {
            diesel::sql_query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY").execute(conn)?;
        }
        monthly(conn, municipality, fiscal_year, catalogue)
    })
}

/// What the queries counted, by month.
struct Counts {
    consultations: [i64; MONTHS],
    persons: [i64; MONTHS],
    new_persons: [i64; MONTHS],
    visits: [i64; MONTHS],
    letters: [i64; MONTHS],
    contacts: [i64; MONTHS],
    met: [i64; MONTHS],
    topics: Vec<(String, [i64; MONTHS])>,
    destinations: Vec<(String, [i64; MONTHS])>,
}

/// Builds the labelled rows from the counts.
fn assemble(
    municipality: &MunicipalityCode,
    fiscal_year: FiscalYear,
    counts: Counts,
    catalogue: &Catalogue,
) -> MonthlyFigures {
    let consultations = CountRow::new("consultations", "相談件数(延べ)", counts.consultations);
    let new_persons = CountRow::new("new_persons", "新規相談者", counts.new_persons);
    let persons = CountRow::new("persons", "相談者計", counts.persons);
    let continuing_persons = persons.combine(&new_persons, "continuing_persons", "継続相談者", |p, n| p - n);

    let by_topic: Vec<CountRow> = counts
        .topics
        .into_iter()
        .map(|(key, months)| {
            let label = ConsultationTopic::from_key(&key).map(|t| t.label()).unwrap_or_default();
            CountRow::new(key, label, months)
        })
        .collect();
    let topic_total = CountRow::new("topic_total", "内容別相談件数計", sum(&by_topic));
    let difference = topic_total.combine(&consultations, "difference", "差(内容別相談件数計−相談件数)", |t, c| t - c);
    let difference_from_persons =
        topic_total.combine(&persons, "difference_from_persons", "差(内容別相談件数計−相談者計)", |t, p| t - p);

    let by_destination: Vec<CountRow> = counts
        .destinations
        .into_iter()
        .map(|(key, months)| {
            let label = catalogue.destination(&key).map(|d| d.label.clone()).unwrap_or_else(|| key.clone());
            CountRow::new(key, label, months)
        })
        .collect();
    let referral_total = CountRow::new("referral_total", "つないだ件数計", sum(&by_destination));

    let visits = CountRow::new("visits", ActivityKind::Visit.label(), counts.visits);
    let visits_met = CountRow::new("visits_met", "家庭訪問(会えた)", counts.met);
    let mut share = [None; MONTHS];
    for (i, cell) in share.iter_mut().enumerate() {
        *cell = percent(visits_met.months[i], visits.months[i]);
    }
    let met_share = ShareRow {
        key: "met_share".into(),
        label: "家庭訪問で会えた割合(%)".into(),
        months: share,
        total: percent(visits_met.total, visits.total),
    };

    MonthlyFigures {
        municipality: municipality.as_str().to_owned(),
        fiscal_year: fiscal_year.year(),
        fiscal_year_label: fiscal_year.japanese_label(),
        months: months_of(fiscal_year),
        consultations: ConsultationFigures { consultations, new_persons, continuing_persons, persons },
        topics: TopicFigures { by_topic, total: topic_total, difference, difference_from_persons },
        referrals: ReferralFigures { by_destination, total: referral_total },
        outreach: OutreachFigures {
            visits,
            letters_left: CountRow::new("letters_left", ActivityKind::LetterLeft.label(), counts.letters),
            contact_attempts: CountRow::new("contact_attempts", ActivityKind::ContactAttempt.label(), counts.contacts),
            visits_met,
            met_share,
        },
    }
}

/// The month-by-month sum of `rows`.
fn sum(rows: &[CountRow]) -> [i64; MONTHS] {
    let mut total = [0; MONTHS];
    for row in rows {
        for (cell, n) in total.iter_mut().zip(row.months) {
            *cell += n;
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use chrono::{NaiveDate, NaiveDateTime};
    use diesel::prelude::*;
    use tsunagi_sync::domain::catalogue::Catalogue;

    use super::*;
    use crate::store::schema::{activities, activity_topics, municipalities, referrals};
    use crate::store::{activity_months, Database};
    use crate::testing::{Backend, TestDatabase};
    use tsunagi_sync::ids::CaseId;

    const NAGAREYAMA: &str = "122203";
    const KASHIWA: &str = "122173";

    fn fy(year: i32) -> FiscalYear {
        FiscalYear::new(year).unwrap()
    }

    fn noon(date: &str) -> NaiveDateTime {
        NaiveDate::parse_from_str(date, "%Y-%m-%d").unwrap().and_hms_opt(3, 0, 0).unwrap()
    }

    /// A migrated database with both municipalities.
    fn database(backend: Backend) -> (TestDatabase, Database) {
        let test = TestDatabase::new(backend);
        let db = Database::connect(&test.url, 2).unwrap();
        db.migrate().unwrap();
        let mut conn = db.conn().unwrap();
        for (code, name) in [(NAGAREYAMA, "流山市"), (KASHIWA, "柏市")] {
            diesel::insert_into(municipalities::table)
                .values((
                    municipalities::code.eq(code),
                    municipalities::name.eq(name),
                    municipalities::created_at.eq(noon("2024-01-01")),
                ))
                .execute(&mut *conn)
                .unwrap();
        }
        drop(conn);
        (test, db)
    }

    /// Rows written straight into the projections, as a sync would project them.
    struct Rows<'a> {
        conn: &'a mut DbConnection,
        serial: u32,
    }

    #[derive(Clone, Copy, Default)]
    struct Extra<'a> {
        outcome: Option<&'a str>,
        letter_left: bool,
        voided: bool,
        topics: &'a [&'a str],
    }

    impl Rows<'_> {
        fn case(&mut self, municipality: &str) -> String {
            let id = CaseId::new_random();
            let municipality = MunicipalityCode::parse(municipality).unwrap();
            crate::store::documents::insert(self.conn, &id, &municipality, noon("2024-01-01")).unwrap();
            id.to_string()
        }

        fn activity(&mut self, case: &str, municipality: &str, kind: &str, date: &str, extra: Extra<'_>) {
            self.serial += 1;
            let id = format!("00000000-0000-4000-8000-{:012}", self.serial);
            diesel::insert_into(activities::table)
                .values((
                    activities::activity_id.eq(&id),
                    activities::case_id.eq(case),
                    activities::kind.eq(kind),
                    activities::started_at.eq(noon(date)),
                    activities::recorded_by.eq("00000000-0000-4000-8000-000000000000"),
                    activities::device_id.eq("00000000-0000-4000-8000-000000000000"),
                    activities::place.eq("home"),
                    activities::outcome.eq(extra.outcome),
                    activities::voided.eq(extra.voided),
                    activities::reviewed.eq(false),
                    activities::local_date.eq(date),
                    activities::letter_left.eq(extra.letter_left),
                    activities::narrative.eq(""),
                    activities::municipality.eq(municipality),
                ))
                .execute(self.conn)
                .unwrap();
            for topic in extra.topics {
                diesel::insert_into(activity_topics::table)
                    .values((
                        activity_topics::activity_id.eq(&id),
                        activity_topics::case_id.eq(case),
                        activity_topics::topic.eq(*topic),
                    ))
                    .execute(self.conn)
                    .unwrap();
            }
        }

        fn consultation(&mut self, case: &str, date: &str, topics: &[&str]) {
            self.activity(case, NAGAREYAMA, "consultation", date, Extra { topics, ..Extra::default() });
        }

        fn referral(&mut self, case: &str, municipality: &str, decision: &str, destination: &str, decided_on: &str) {
            diesel::insert_into(referrals::table)
                .values((
                    referrals::decision_id.eq(decision),
                    referrals::case_id.eq(case),
                    referrals::municipality.eq(municipality),
                    referrals::destination.eq(destination),
                    referrals::decided_on.eq(decided_on),
                ))
                .execute(self.conn)
                .unwrap();
        }
    }

    /// `[(month index, n)…]` as a row of twelve.
    fn cells(values: &[(usize, i64)]) -> [i64; MONTHS] {
        let mut months = [0; MONTHS];
        for (i, n) in values {
            months[*i] = *n;
        }
        months
    }

    fn row<'a>(rows: &'a [CountRow], key: &str) -> &'a CountRow {
        rows.iter().find(|r| r.key == key).unwrap_or_else(|| panic!("no row {key}"))
    }

    fn every_cell_is_counted_from_the_projections(backend: Backend) {
        let (_test, db) = database(backend);
        let mut conn = db.conn().unwrap();
        let mut rows = Rows { conn: &mut conn, serial: 0 };
        let (a, b, c, d) = (rows.case(NAGAREYAMA), rows.case(NAGAREYAMA), rows.case(NAGAREYAMA), rows.case(NAGAREYAMA));
        let elsewhere = rows.case(KASHIWA);

        // A: first consulted in March 2024 (fiscal 2023), so continuing from April 2024 on.
        rows.consultation(&a, "2024-03-31", &["finances"]);
        rows.consultation(&a, "2024-04-01", &["finances", "debt", "housing"]);
        rows.consultation(&a, "2024-04-20", &["debt"]);
        // B: new in April 2024 (its voided consultation in March does not count), continuing
        // in May and in March 2025.
        rows.activity(
            &b,
            NAGAREYAMA,
            "consultation",
            "2024-03-10",
            Extra { voided: true, topics: &["other"], ..Extra::default() },
        );
        rows.consultation(&b, "2024-04-30", &["elderly_care"]);
        rows.consultation(&b, "2024-05-01", &["elderly_care", "health"]);
        rows.consultation(&b, "2025-03-31", &["family"]);
        // C: new in May; a voided consultation in April does not make it new in April.
        rows.activity(
            &c,
            NAGAREYAMA,
            "consultation",
            "2024-04-15",
            Extra { voided: true, topics: &["debt"], ..Extra::default() },
        );
        rows.consultation(&c, "2024-05-31", &["withdrawal"]);
        // D: no consultation at all, only outreach.
        let visit = |outcome, letter_left| Extra { outcome: Some(outcome), letter_left, ..Extra::default() };
        rows.activity(&d, NAGAREYAMA, "visit", "2024-04-02", visit("not_home", true));
        rows.activity(&d, NAGAREYAMA, "visit", "2024-04-09", visit("not_home", false));
        rows.activity(&d, NAGAREYAMA, "visit", "2024-04-16", visit("met", false));
        rows.activity(&d, NAGAREYAMA, "visit", "2024-05-07", visit("met", true));
        rows.activity(&d, NAGAREYAMA, "visit", "2024-05-14", visit("refused", false));
        rows.activity(&d, NAGAREYAMA, "visit", "2024-05-21", Extra { voided: true, ..visit("met", true) });
        rows.activity(&d, NAGAREYAMA, "letter_left", "2024-04-03", Extra::default());
        rows.activity(&d, NAGAREYAMA, "letter_left", "2024-05-03", Extra { voided: true, ..Extra::default() });
        rows.activity(
            &d,
            NAGAREYAMA,
            "contact_attempt",
            "2024-04-04",
            Extra { outcome: Some("no_answer"), ..Extra::default() },
        );
        rows.activity(
            &d,
            NAGAREYAMA,
            "contact_attempt",
            "2024-06-04",
            Extra { outcome: Some("reached"), ..Extra::default() },
        );
        rows.activity(&d, NAGAREYAMA, "information", "2024-04-05", Extra::default());
        // Outside the year or the municipality: never counted.
        rows.consultation(&d, "2025-04-01", &["legal"]);
        rows.activity(&d, NAGAREYAMA, "visit", "2024-03-31", visit("met", true));
        rows.activity(
            &elsewhere,
            KASHIWA,
            "consultation",
            "2024-04-10",
            Extra { topics: &["debt"], ..Extra::default() },
        );
        rows.activity(&elsewhere, KASHIWA, "visit", "2024-04-10", visit("met", true));

        // Referrals of meeting decisions, by decided_on.
        rows.referral(&a, NAGAREYAMA, "d1", "hello_work", "2024-04-25");
        rows.referral(&a, NAGAREYAMA, "d1", "legal_support", "2024-04-25");
        rows.referral(&b, NAGAREYAMA, "d2", "hello_work", "2024-05-10");
        rows.referral(&b, NAGAREYAMA, "d3", "other", "2025-03-31");
        rows.referral(&b, NAGAREYAMA, "d3", "retired_agency", "2025-03-31");
        rows.referral(&c, NAGAREYAMA, "d4", "hello_work", "2025-04-01");
        rows.referral(&elsewhere, KASHIWA, "d5", "hello_work", "2024-04-25");

        // The monthly counts, rebuilt case by case as the projection does.
        for case in [&a, &b, &c, &d, &elsewhere] {
            activity_months::refresh_case(&mut conn, case).unwrap();
        }
        let m = MunicipalityCode::parse(NAGAREYAMA).unwrap();
        let f = monthly_in_snapshot(&mut conn, &m, fy(2024), &Catalogue::default()).unwrap();
        activity_months::refresh_all(&mut conn).unwrap();
        let again = monthly_in_snapshot(&mut conn, &m, fy(2024), &Catalogue::default()).unwrap();
        assert_eq!(
            serde_json::to_value(&again).unwrap(),
            serde_json::to_value(&f).unwrap(),
            "rebuilding every case's counts at once gives the same figures"
        );
        assert_eq!((f.fiscal_year, f.fiscal_year_label.as_str()), (2024, "令和6年度"));
        assert_eq!(f.months.len(), 12);
        assert_eq!((f.months[0].key.as_str(), f.months[0].label.as_str()), ("2024-04", "2024年4月"));
        assert_eq!((f.months[11].key.as_str(), f.months[11].label.as_str()), ("2025-03", "2025年3月"));
        assert_eq!(f.heading(), "令和6年度 (2024年4月〜2025年3月) 月別集計");

        let c = &f.consultations;
        assert_eq!(c.consultations.months, cells(&[(0, 3), (1, 2), (11, 1)]));
        assert_eq!(c.consultations.total, 6);
        assert_eq!(c.new_persons.months, cells(&[(0, 1), (1, 1)]));
        assert_eq!(c.new_persons.total, 2);
        assert_eq!(c.continuing_persons.months, cells(&[(0, 1), (1, 1), (11, 1)]));
        assert_eq!(c.continuing_persons.total, 3);
        assert_eq!(c.persons.months, cells(&[(0, 2), (1, 2), (11, 1)]));
        assert_eq!(c.persons.total, 5);
        assert_eq!((c.consultations.label.as_str(), c.persons.label.as_str()), ("相談件数(延べ)", "相談者計"));

        let t = &f.topics;
        assert_eq!(t.by_topic.len(), ConsultationTopic::ALL.len());
        assert_eq!(t.by_topic[0].key, "elderly_care");
        assert_eq!(t.by_topic[0].label, "高齢・介護");
        let expected_topics: &[(&str, &[(usize, i64)])] = &[
            ("finances", &[(0, 1)]),
            ("debt", &[(0, 2)]),
            ("housing", &[(0, 1)]),
            ("elderly_care", &[(0, 1), (1, 1)]),
            ("health", &[(1, 1)]),
            ("withdrawal", &[(1, 1)]),
            ("family", &[(11, 1)]),
        ];
        for topic in ConsultationTopic::ALL {
            let want = expected_topics.iter().find(|(k, _)| *k == topic.as_key()).map(|(_, v)| *v).unwrap_or(&[]);
            assert_eq!(row(&t.by_topic, topic.as_key()).months, cells(want), "{topic}");
        }
        assert_eq!(t.total.months, cells(&[(0, 5), (1, 3), (11, 1)]));
        assert_eq!(t.total.total, 9);
        assert_eq!(t.difference.months, cells(&[(0, 2), (1, 1)]));
        assert_eq!(t.difference.total, 3);
        assert_eq!(t.difference_from_persons.months, cells(&[(0, 3), (1, 1)]));
        assert_eq!(t.difference_from_persons.total, 4);

        let r = &f.referrals;
        let catalogue = Catalogue::default();
        assert_eq!(r.by_destination.len(), catalogue.referral_destinations.len() + 1);
        for (row, entry) in r.by_destination.iter().zip(&catalogue.referral_destinations) {
            assert_eq!((row.key.as_str(), row.label.as_str()), (entry.key.as_str(), entry.label.as_str()));
        }
        assert_eq!(row(&r.by_destination, "hello_work").months, cells(&[(0, 1), (1, 1)]));
        assert_eq!(row(&r.by_destination, "hello_work").total, 2);
        assert_eq!(row(&r.by_destination, "legal_support").months, cells(&[(0, 1)]));
        assert_eq!(row(&r.by_destination, "other").months, cells(&[(11, 1)]));
        assert_eq!(row(&r.by_destination, "other").label, "その他");
        let unknown = r.by_destination.last().unwrap();
        assert_eq!((unknown.key.as_str(), unknown.label.as_str()), ("retired_agency", "retired_agency"));
        assert_eq!(unknown.months, cells(&[(11, 1)]));
        let others: i64 = r
            .by_destination
            .iter()
            .filter(|r| !["hello_work", "legal_support", "other", "retired_agency"].contains(&r.key.as_str()))
            .map(|r| r.total)
            .sum();
        assert_eq!(others, 0);
        assert_eq!(r.total.months, cells(&[(0, 2), (1, 1), (11, 2)]));
        assert_eq!(r.total.total, 5);

        let o = &f.outreach;
        assert_eq!(o.visits.months, cells(&[(0, 3), (1, 2)]));
        assert_eq!(o.visits.total, 5);
        assert_eq!(o.letters_left.months, cells(&[(0, 2), (1, 1)]));
        assert_eq!(o.letters_left.total, 3);
        assert_eq!(o.contact_attempts.months, cells(&[(0, 1), (2, 1)]));
        assert_eq!(o.contact_attempts.total, 2);
        assert_eq!(o.visits_met.months, cells(&[(0, 1), (1, 1)]));
        assert_eq!(o.visits_met.total, 2);
        let mut share = [None; MONTHS];
        share[0] = Some(33.3);
        share[1] = Some(50.0);
        assert_eq!(o.met_share.months, share);
        assert_eq!(o.met_share.total, Some(40.0));

        // The previous year sees A as new in March 2024, and nothing of B's voided consultation.
        let before = monthly(&mut conn, &m, fy(2023), &Catalogue::default()).unwrap();
        assert_eq!(before.consultations.new_persons.months, cells(&[(11, 1)]));
        assert_eq!(before.consultations.consultations.months, cells(&[(11, 1)]));
        assert_eq!(before.outreach.visits_met.months, cells(&[(11, 1)]));
        // Kashiwa sees only its own.
        let kashiwa = MunicipalityCode::parse(KASHIWA).unwrap();
        let k = monthly_in_snapshot(&mut conn, &kashiwa, fy(2024), &Catalogue::default()).unwrap();
        assert_eq!(k.consultations.new_persons.months, cells(&[(0, 1)]));
        assert_eq!(k.outreach.met_share.months[0], Some(100.0));
        assert_eq!(k.referrals.total.months, cells(&[(0, 1)]));
    }

    fn an_empty_year_is_all_zeros_with_no_share(backend: Backend) {
        let (_test, db) = database(backend);
        let mut conn = db.conn().unwrap();
        let m = MunicipalityCode::parse(NAGAREYAMA).unwrap();
        let f = monthly_in_snapshot(&mut conn, &m, fy(2019), &Catalogue::default()).unwrap();
        assert_eq!(f.fiscal_year_label, "令和元年度");
        assert!(f.count_rows().iter().all(|(_, r)| r.months == [0; MONTHS] && r.total == 0));
        assert_eq!(f.outreach.met_share.months, [None; MONTHS]);
        assert_eq!(f.outreach.met_share.total, None);
        assert_eq!(f.referrals.by_destination.len(), Catalogue::default().referral_destinations.len());
        let json = serde_json::to_value(&f).unwrap();
        assert_eq!(json["outreach"]["met_share"]["total"], serde_json::Value::Null);
        assert_eq!(json["consultations"]["new_persons"]["label"], "新規相談者");
    }

    #[test]
    fn every_cell_is_counted_from_the_projections_on_sqlite() {
        every_cell_is_counted_from_the_projections(Backend::Sqlite);
    }

    #[test]
    fn every_cell_is_counted_from_the_projections_on_postgres() {
        every_cell_is_counted_from_the_projections(Backend::Postgres);
    }

    #[test]
    fn an_empty_year_is_all_zeros_with_no_share_on_sqlite() {
        an_empty_year_is_all_zeros_with_no_share(Backend::Sqlite);
    }

    #[test]
    fn an_empty_year_is_all_zeros_with_no_share_on_postgres() {
        an_empty_year_is_all_zeros_with_no_share(Backend::Postgres);
    }

    /// Fills the projections with 1,000,000 activities of 20,000 cases over five fiscal years
    /// (2020–2024): 30 % consultations with one to three topics, 30 % visits, 15 % letters
    /// left, 15 % contact attempts, 10 % information; 1 % voided; 10,000 referrals.
    fn a_million_activities(conn: &mut DbConnection) {
        let statements: [&str; 5] = match conn {
            DbConnection::Pg(_) => [
                "INSERT INTO documents (case_id, municipality, heads, snapshot, snapshot_seq, created_at, updated_at)
                 SELECT 'case-' || g, '122203', ''::bytea, ''::bytea, 0, now(), now() FROM generate_series(0, 19999) g",
                "INSERT INTO activities (activity_id, case_id, kind, started_at, recorded_by, device_id, place, outcome,
                     voided, reviewed, local_date, letter_left, narrative, municipality)
                 SELECT 'act-' || g, 'case-' || (g % 20000),
                     CASE WHEN g % 20 < 6 THEN 'consultation' WHEN g % 20 < 12 THEN 'visit'
                          WHEN g % 20 < 15 THEN 'letter_left' WHEN g % 20 < 18 THEN 'contact_attempt'
                          ELSE 'information' END,
                     now(), 's', 'd', 'home',
                     CASE WHEN g % 20 BETWEEN 6 AND 11 THEN (CASE WHEN g % 3 = 0 THEN 'met' ELSE 'not_home' END) END,
                     g % 100 = 0, false, to_char(date '2020-04-01' + (g % 1826), 'YYYY-MM-DD'),
                     g % 20 BETWEEN 6 AND 11 AND g % 2 = 0, '', '122203'
                 FROM generate_series(0, 999999) g",
                "INSERT INTO activity_topics (activity_id, case_id, topic)
                 SELECT a.activity_id, a.case_id, t.topic FROM activities a
                 JOIN (VALUES (0, 'finances'), (1, 'debt'), (2, 'housing')) t(n, topic)
                   ON t.n <= (length(a.activity_id) % 3)
                 WHERE a.kind = 'consultation'",
                "INSERT INTO referrals (decision_id, case_id, municipality, destination, decided_on)
                 SELECT 'dec-' || g, 'case-' || (g % 20000), '122203',
                     CASE WHEN g % 2 = 0 THEN 'hello_work' ELSE 'other' END,
                     to_char(date '2020-04-01' + (g % 1826), 'YYYY-MM-DD')
                 FROM generate_series(0, 9999) g",
                "ANALYZE",
            ],
            DbConnection::Sqlite(_) => [
                "WITH RECURSIVE g(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM g WHERE x < 19999)
                 INSERT INTO documents (case_id, municipality, heads, snapshot, snapshot_seq, created_at, updated_at)
                 SELECT 'case-' || x, '122203', x'', x'', 0, '2024-01-01 00:00:00', '2024-01-01 00:00:00' FROM g",
                "WITH RECURSIVE g(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM g WHERE x < 999999)
                 INSERT INTO activities (activity_id, case_id, kind, started_at, recorded_by, device_id, place, outcome,
                     voided, reviewed, local_date, letter_left, narrative, municipality)
                 SELECT 'act-' || x, 'case-' || (x % 20000),
                     CASE WHEN x % 20 < 6 THEN 'consultation' WHEN x % 20 < 12 THEN 'visit'
                          WHEN x % 20 < 15 THEN 'letter_left' WHEN x % 20 < 18 THEN 'contact_attempt'
                          ELSE 'information' END,
                     '2024-01-01 00:00:00', 's', 'd', 'home',
                     CASE WHEN x % 20 BETWEEN 6 AND 11 THEN (CASE WHEN x % 3 = 0 THEN 'met' ELSE 'not_home' END) END,
                     x % 100 = 0, 0, date('2020-04-01', '+' || (x % 1826) || ' days'),
                     x % 20 BETWEEN 6 AND 11 AND x % 2 = 0, '', '122203'
                 FROM g",
                "INSERT INTO activity_topics (activity_id, case_id, topic)
                 SELECT a.activity_id, a.case_id, t.topic FROM activities a
                 JOIN (SELECT 0 AS n, 'finances' AS topic UNION ALL SELECT 1, 'debt' UNION ALL SELECT 2, 'housing') t
                   ON t.n <= (length(a.activity_id) % 3)
                 WHERE a.kind = 'consultation'",
                "WITH RECURSIVE g(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM g WHERE x < 9999)
                 INSERT INTO referrals (decision_id, case_id, municipality, destination, decided_on)
                 SELECT 'dec-' || x, 'case-' || (x % 20000), '122203',
                     CASE WHEN x % 2 = 0 THEN 'hello_work' ELSE 'other' END,
                     date('2020-04-01', '+' || (x % 1826) || ' days')
                 FROM g",
                "ANALYZE",
            ],
        };
        for statement in statements {
            diesel::connection::SimpleConnection::batch_execute(conn, statement).unwrap();
        }
        activity_months::refresh_all(conn).unwrap();
    }

    /// The best of three runs over a million activities, in milliseconds.
    fn time_a_million(backend: Backend) -> u128 {
        let (_test, db) = database(backend);
        let mut conn = db.conn().unwrap();
        a_million_activities(&mut conn);
        let m = MunicipalityCode::parse(NAGAREYAMA).unwrap();
        let mut best = u128::MAX;
        for _ in 0..3 {
            let started = std::time::Instant::now();
            let f = monthly_in_snapshot(&mut conn, &m, fy(2024), &Catalogue::default()).unwrap();
            best = best.min(started.elapsed().as_millis());
            assert!(f.consultations.consultations.total > 50_000, "{}", f.consultations.consultations.total);
            assert_eq!(f.consultations.new_persons.total, 0, "every case was consulted in 2020");
        }
        eprintln!("{backend:?}: monthly figures over 1,000,000 activities in {best} ms");
        best
    }

    /// A measurement, not a test of speed (targets live in the benchmark harness and
    /// `docs/benchmarks.md`): prints how long a fiscal year's figures take over a million
    /// activities.
    #[test]
    #[ignore = "a benchmark: fills a database with a million activities (run with --ignored)"]
    fn a_million_activities_on_postgres() {
        time_a_million(Backend::Postgres);
    }

    /// SQLite, the embedded default for small deployments: it reads the year's rows from the
    /// table (no covering index), and test builds compile it without optimisation.
    #[test]
    #[ignore = "a benchmark: fills a database with a million activities (run with --ignored)"]
    fn a_million_activities_on_sqlite() {
        time_a_million(Backend::Sqlite);
    }

    #[test]
    fn months_run_april_to_march() {
        let keys: Vec<String> = months_of(fy(2024)).into_iter().map(|m| m.key).collect();
        assert_eq!(keys[..3], ["2024-04", "2024-05", "2024-06"]);
        assert_eq!(keys[8..], ["2024-12", "2025-01", "2025-02", "2025-03"]);
        assert_eq!(month_index(fy(2024), "2024-04").unwrap(), 0);
        assert_eq!(month_index(fy(2024), "2024-12").unwrap(), 8);
        assert_eq!(month_index(fy(2024), "2025-03").unwrap(), 11);
        for bad in ["2024-03", "2025-04", "", "2024", "2024-13", "2024-4", "abcd-04", "2024-00"] {
            assert!(matches!(month_index(fy(2024), bad), Err(FiguresError::BadMonth { .. })), "{bad}");
        }
    }

    #[test]
    fn shares_have_one_decimal_rounded_half_up() {
        assert_eq!(percent(0, 0), None);
        assert_eq!(percent(0, 3), Some(0.0));
        assert_eq!(percent(1, 3), Some(33.3));
        assert_eq!(percent(2, 3), Some(66.7));
        assert_eq!(percent(1, 8), Some(12.5));
        assert_eq!(percent(1, 16), Some(6.3));
        assert_eq!(percent(7, 7), Some(100.0));
    }
}
