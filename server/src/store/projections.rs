//! Relational projections of case documents, for queries that must not load documents:
//! `cases`, `persons`, `case_concerns`, `activities`, `activity_topics`, `reviews`,
//! `assignments`. Rebuilt for a case inside the transaction that stores its changes, so they
//! are never behind the document.
//!
//! Also the case-number counters and which device holds which case.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::sql_types::{Integer, Text};

use super::schema::{activities, activity_topics, assignments, case_concerns, case_redirects, cases, persons, reviews};
use super::{DbConnection, StoreError};
use tsunagi_sync::document::{ActivityDetails, CaseView};
use tsunagi_sync::ids::{CaseId, CaseNumber, FiscalYear, MunicipalityCode, JAPAN};

#[derive(Insertable, AsChangeset)]
#[diesel(table_name = cases, treat_none_as_null = true)]
struct CaseRow {
    case_id: String,
    municipality: String,
    case_number: Option<String>,
    status: String,
    consent: String,
    area: Option<String>,
    primary_assignee: Option<String>,
    opened_on: Option<String>,
    conflicts: i32,
    updated_at: NaiveDateTime,
    last_activity_at: Option<NaiveDateTime>,
    merged_into: Option<String>,
}

#[derive(Insertable)]
#[diesel(table_name = persons, treat_none_as_default_value = false)]
struct PersonRow {
    case_id: String,
    person_id: String,
    name: String,
    kana: Option<String>,
    birth_date: Option<String>,
    is_subject: bool,
}

/// A row of `activities`, the projection of one activity (also written in bulk by the
/// benchmark's seeder).
#[derive(Insertable)]
#[diesel(table_name = activities, treat_none_as_default_value = false)]
pub struct ActivityRow {
    pub activity_id: String,
    pub case_id: String,
    pub kind: String,
    pub started_at: NaiveDateTime,
    pub recorded_by: String,
    pub device_id: String,
    pub place: String,
    pub outcome: Option<String>,
    pub follow_up_on: Option<String>,
    pub voided: bool,
    pub reviewed: bool,
    pub local_date: String,
    pub letter_left: bool,
    pub channel: Option<String>,
    pub agency: Option<String>,
    pub narrative: String,
    pub municipality: String,
    pub area: Option<String>,
}

/// A row of `activity_topics`: one consultation topic of one activity.
#[derive(Insertable)]
#[diesel(table_name = activity_topics)]
pub struct TopicRow {
    pub activity_id: String,
    pub case_id: String,
    pub topic: String,
}

/// Rows per multi-row insert of the projections (18 columns × 500 stays well under either
/// backend's limit of bound parameters).
const ROWS_PER_INSERT: usize = 500;

/// A row of `reviews`, the projection of one review.
#[derive(Insertable)]
#[diesel(table_name = reviews)]
pub struct ReviewRow {
    pub review_id: String,
    pub case_id: String,
    pub activity_id: String,
    pub by_staff: String,
    pub at: NaiveDateTime,
    pub comment: String,
}

#[derive(Insertable)]
#[diesel(table_name = assignments)]
struct AssignmentRow {
    case_id: String,
    staff_id: String,
    is_primary: bool,
}

/// Writes the `cases` row of one case from its view, inserting it or replacing every column;
/// returns the case it was merged into, if any (a merged case keeps only this row).
fn write_case_row(conn: &mut DbConnection, view: &CaseView, now: NaiveDateTime) -> Result<Option<String>, StoreError> {
    let id = view.case_id.to_string();
    let merged_into: Option<String> =
        case_redirects::table.find(&id).select(case_redirects::merged_into).first::<String>(conn).optional()?;
    let last_activity_at =
        view.activities.values().filter(|a| a.voided.is_none()).map(|a| a.started_at.naive_utc()).max();
    let municipality = view.municipality.map(|m| m.to_string()).unwrap_or_default();
    let row = CaseRow {
        case_id: id.clone(),
        municipality,
        case_number: view.case_number.map(|n| n.to_string()),
        status: view.status.as_key().into(),
        consent: view.consent.state.as_key().into(),
        area: view.area.clone(),
        primary_assignee: view.assignees.primary.map(|s| s.to_string()),
        opened_on: view.opened_on.map(tsunagi_sync::document::format_date),
        conflicts: i32::try_from(view.conflicts.len()).unwrap_or(i32::MAX),
        updated_at: now,
        last_activity_at,
        merged_into: merged_into.clone(),
    };
    let upsert = diesel::insert_into(cases::table).values(&row).on_conflict(cases::case_id).do_update().set(&row);
    // diesel's multi-backend connection takes no ON CONFLICT clause; both backends do.
    match conn {
        DbConnection::Pg(c) => upsert.execute(c)?,
        DbConnection::Sqlite(c) => upsert.execute(c)?,
    };
    Ok(merged_into)
}

/// Rewrites the projection rows an update can have changed, as [`Validated`] by the case
/// rules: when it wrote only into activities, the `cases` row and those activities' rows and
/// topics (and the monthly counts); otherwise everything, as [`project`].
///
/// [`Validated`]: tsunagi_sync::validation::validate_update_touched
pub fn project_touched(
    conn: &mut DbConnection,
    view: &CaseView,
    touched: &tsunagi_sync::validation::Touched,
    now: NaiveDateTime,
) -> Result<(), StoreError> {
    if touched.other {
        return project(conn, view, now);
    }
    if write_case_row(conn, view, now)?.is_some() {
        return super::forms::delete_forms(conn, &view.case_id.to_string());
    }
    let ids: Vec<&String> = touched.activities.iter().collect();
    let (rows, topics) = activity_rows(view, |activity| touched.activities.contains(&activity.id.to_string()));
    replace_activities(conn, &view.case_id.to_string(), &ids, rows, topics)
}

/// A deleted row of `activities`, as far as the monthly counts read it: id, kind, local
/// date, municipality, outcome, letter left, voided.
type RemovedActivity = (String, String, String, String, Option<String>, bool, bool);

/// Replaces the `activities` and `activity_topics` rows of the activities `ids` of `case`
/// with `rows` and `topics` (the rows of those of them the case still has), and moves the
/// case's monthly counts from what the deleted rows counted to what the new ones count
/// ([`activity_months::apply`](super::activity_months::apply)).
pub(crate) fn replace_activities(
    conn: &mut DbConnection,
    case: &str,
    ids: &[&String],
    rows: Vec<ActivityRow>,
    topics: Vec<TopicRow>,
) -> Result<(), StoreError> {
    use super::activity_months::{apply, Counted};
    let removed: Vec<RemovedActivity> = diesel::delete(
        activities::table.filter(activities::case_id.eq(case)).filter(activities::activity_id.eq_any(ids)),
    )
    .returning((
        activities::activity_id,
        activities::kind,
        activities::local_date,
        activities::municipality,
        activities::outcome,
        activities::letter_left,
        activities::voided,
    ))
    .get_results(conn)?;
    let removed_topics: Vec<(String, String)> = diesel::delete(
        activity_topics::table
            .filter(activity_topics::case_id.eq(case))
            .filter(activity_topics::activity_id.eq_any(ids)),
    )
    .returning((activity_topics::activity_id, activity_topics::topic))
    .get_results(conn)?;
    fn topics_of<'a>(of: &[(&'a str, &'a str)], id: &str) -> Vec<&'a str> {
        of.iter().filter(|(a, _)| *a == id).map(|(_, t)| *t).collect()
    }
    let before: Vec<(&str, &str)> = removed_topics.iter().map(|(a, t)| (a.as_str(), t.as_str())).collect();
    let before: Vec<Counted<'_>> = removed
        .iter()
        .map(|(id, kind, local_date, municipality, outcome, letter_left, voided)| Counted {
            local_date,
            municipality,
            kind,
            outcome: outcome.as_deref(),
            letter_left: *letter_left,
            voided: *voided,
            topics: topics_of(&before, id),
        })
        .collect();
    let after: Vec<(&str, &str)> = topics.iter().map(|t| (t.activity_id.as_str(), t.topic.as_str())).collect();
    let after: Vec<Counted<'_>> = rows
        .iter()
        .map(|row| Counted {
            local_date: &row.local_date,
            municipality: &row.municipality,
            kind: &row.kind,
            outcome: row.outcome.as_deref(),
            letter_left: row.letter_left,
            voided: row.voided,
            topics: topics_of(&after, &row.activity_id),
        })
        .collect();
    apply(conn, case, &before, &after)?;
    crate::insert_rows!(conn, activities::table, rows, ROWS_PER_INSERT);
    crate::insert_rows!(conn, activity_topics::table, topics, ROWS_PER_INSERT);
    Ok(())
}

/// The `activities` and `activity_topics` rows of the activities of `view` that `wanted`
/// picks.
fn activity_rows(
    view: &CaseView,
    wanted: impl Fn(&tsunagi_sync::document::Activity) -> bool,
) -> (Vec<ActivityRow>, Vec<TopicRow>) {
    let id = view.case_id.to_string();
    let (mut rows, mut topics) = (Vec::new(), Vec::new());
    for activity in view.activities.values().filter(|a| wanted(a)) {
        let (mut outcome, mut letter_left, mut channel, mut agency) = (None, false, None, None);
        match &activity.details {
            ActivityDetails::Visit { outcome: o, letter_left: l, .. } => {
                outcome = Some(o.as_key().to_owned());
                letter_left = *l;
            }
            ActivityDetails::ContactAttempt { outcome: o, channel: c } => {
                outcome = Some(o.as_key().to_owned());
                channel = Some(c.as_key().to_owned());
            }
            ActivityDetails::LetterLeft { .. } => letter_left = true,
            ActivityDetails::Accompaniment { agency: a, .. } | ActivityDetails::Coordination { agency: a } => {
                agency = Some(a.clone());
            }
            ActivityDetails::Consultation { topics: of, .. } => {
                topics.extend(of.iter().map(|topic| TopicRow {
                    activity_id: activity.id.to_string(),
                    case_id: id.clone(),
                    topic: topic.as_key().to_owned(),
                }));
            }
            ActivityDetails::Information { .. } => {}
        }
        rows.push(ActivityRow {
            activity_id: activity.id.to_string(),
            case_id: id.clone(),
            kind: activity.kind().as_key().into(),
            started_at: activity.started_at.naive_utc(),
            recorded_by: activity.recorded_by.to_string(),
            device_id: activity.device_id.to_string(),
            place: activity.place.as_key().into(),
            outcome,
            follow_up_on: activity.follow_up_on.map(tsunagi_sync::document::format_date),
            voided: activity.voided.is_some(),
            reviewed: view.reviews.values().any(|r| r.activity_id == activity.id),
            local_date: tsunagi_sync::document::format_date(activity.started_at.with_timezone(&JAPAN).date_naive()),
            letter_left,
            channel,
            agency,
            narrative: activity.narrative.clone(),
            municipality: view.municipality.map(|m| m.to_string()).unwrap_or_default(),
            area: view.area.clone(),
        });
    }
    (rows, topics)
}

/// Rewrites every projection row of one case from its view.
pub fn project(conn: &mut DbConnection, view: &CaseView, now: NaiveDateTime) -> Result<(), StoreError> {
    let id = view.case_id.to_string();
    diesel::delete(persons::table.filter(persons::case_id.eq(&id))).execute(conn)?;
    diesel::delete(activities::table.filter(activities::case_id.eq(&id))).execute(conn)?;
    diesel::delete(assignments::table.filter(assignments::case_id.eq(&id))).execute(conn)?;
    diesel::delete(activity_topics::table.filter(activity_topics::case_id.eq(&id))).execute(conn)?;
    diesel::delete(case_concerns::table.filter(case_concerns::case_id.eq(&id))).execute(conn)?;
    diesel::delete(reviews::table.filter(reviews::case_id.eq(&id))).execute(conn)?;
    let merged_into = write_case_row(conn, view, now)?;
    if merged_into.is_some() {
        // Merged into another case (a duplicate household): its activities, members and forms
        // live on in the survivor, which projects them; this case keeps only its `cases` row.
        return super::forms::delete_forms(conn, &id);
    }
    let mut concerns = std::collections::BTreeSet::new();
    for person in view.household.values() {
        concerns.extend(person.concerns.tags.iter().map(|t| t.as_key()));
        if person.concerns.other.is_some() {
            concerns.insert(tsunagi_sync::domain::ConcernTag::Other.as_key());
        }
    }
    for tag in concerns {
        diesel::insert_into(case_concerns::table)
            .values((case_concerns::case_id.eq(&id), case_concerns::tag.eq(tag)))
            .execute(conn)?;
    }
    let people: Vec<PersonRow> = view
        .household
        .values()
        .map(|person| PersonRow {
            case_id: id.clone(),
            person_id: person.id.to_string(),
            name: person.name.clone(),
            kana: person.kana.clone(),
            birth_date: person.birth_date.map(tsunagi_sync::document::format_date),
            is_subject: person.is_subject,
        })
        .collect();
    crate::insert_rows!(conn, persons::table, people, ROWS_PER_INSERT);
    let (rows, topics) = activity_rows(view, |_| true);
    crate::insert_rows!(conn, activities::table, rows, ROWS_PER_INSERT);
    crate::insert_rows!(conn, activity_topics::table, topics, ROWS_PER_INSERT);
    let reviewed: Vec<ReviewRow> = view
        .reviews
        .values()
        .map(|review| ReviewRow {
            review_id: review.id.to_string(),
            case_id: id.clone(),
            activity_id: review.activity_id.to_string(),
            by_staff: review.by.to_string(),
            at: review.at.naive_utc(),
            comment: review.comment.clone(),
        })
        .collect();
    crate::insert_rows!(conn, reviews::table, reviewed, ROWS_PER_INSERT);
    let mut assigned = Vec::new();
    if let Some(primary) = view.assignees.primary {
        assigned.push((primary, true));
    }
    assigned.extend(view.assignees.others.iter().filter(|s| Some(**s) != view.assignees.primary).map(|s| (*s, false)));
    for (staff, is_primary) in assigned {
        diesel::insert_into(assignments::table)
            .values(AssignmentRow { case_id: id.clone(), staff_id: staff.to_string(), is_primary })
            .execute(conn)?;
    }
    super::forms::project_forms(conn, view)?;
    super::activity_months::refresh_case(conn, &id)?;
    Ok(())
}

#[derive(QueryableByName)]
struct Serial {
    #[diesel(sql_type = Integer)]
    last_serial: i32,
}

/// Takes the next case number of `municipality` in `fiscal_year`. Must run inside the write
/// transaction that stores the case: the counter row stays locked until it commits, so
/// concurrent transactions (even on other server instances) queue behind it, and a rolled
/// back transaction gives its number back. No gaps, no duplicates.
pub fn next_case_number(
    conn: &mut DbConnection,
    municipality: &MunicipalityCode,
    fiscal_year: FiscalYear,
) -> Result<CaseNumber, StoreError> {
    let ensure = match conn {
        DbConnection::Pg(_) => {
            "INSERT INTO case_number_counters (municipality, fiscal_year, last_serial) VALUES ($1, $2, 0) \
             ON CONFLICT DO NOTHING"
        }
        DbConnection::Sqlite(_) => {
            "INSERT OR IGNORE INTO case_number_counters (municipality, fiscal_year, last_serial) VALUES (?, ?, 0)"
        }
    };
    diesel::sql_query(ensure)
        .bind::<Text, _>(municipality.as_str())
        .bind::<Integer, _>(fiscal_year.year())
        .execute(conn)?;
    let next = match conn {
        DbConnection::Pg(_) => {
            "UPDATE case_number_counters SET last_serial = last_serial + 1 \
             WHERE municipality = $1 AND fiscal_year = $2 RETURNING last_serial"
        }
        DbConnection::Sqlite(_) => {
            "UPDATE case_number_counters SET last_serial = last_serial + 1 \
             WHERE municipality = ? AND fiscal_year = ? RETURNING last_serial"
        }
    };
    let serial: Serial = diesel::sql_query(next)
        .bind::<Text, _>(municipality.as_str())
        .bind::<Integer, _>(fiscal_year.year())
        .get_result(conn)?;
    let serial = u32::try_from(serial.last_serial).map_err(|_| StoreError::Corrupt("negative case serial".into()))?;
    CaseNumber::new(fiscal_year, serial).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Rebuilds the projections of every stored case from its document, one case per
/// transaction (after an upgrade whose migration added projected columns). Returns how many
/// cases were projected. Safe to run while the server is serving: each case is locked while
/// it is rebuilt, exactly as a sync would.
pub fn reproject_all(db: &super::Database) -> Result<usize, StoreError> {
    use super::schema::documents;
    let ids: Vec<String> =
        db.read(|conn| documents::table.select(documents::case_id).load(conn).map_err(StoreError::from))?;
    let mut done = 0;
    for id in ids {
        let case = CaseId::parse(&id).map_err(|e| StoreError::Corrupt(format!("stored case id {id}: {e}")))?;
        db.write(|conn| -> Result<(), StoreError> {
            let Some(row) = super::documents::lock(conn, &case)? else { return Ok(()) };
            let doc = super::documents::load(conn, &row)?;
            let reading = tsunagi_sync::document::read_case(&doc);
            let view = reading.view.ok_or_else(|| StoreError::Corrupt(format!("stored case {id} does not read")))?;
            project(conn, &view, chrono::Utc::now().naive_utc())
        })?;
        done += 1;
    }
    Ok(done)
}

/// The case number of `case`, as projected, once the server has assigned it.
pub fn case_number(conn: &mut DbConnection, case: &CaseId) -> Result<Option<CaseNumber>, StoreError> {
    let number: Option<Option<String>> =
        cases::table.find(case.to_string()).select(cases::case_number).first(conn).optional()?;
    number
        .flatten()
        .map(|n| CaseNumber::parse(&n).map_err(|e| StoreError::Corrupt(format!("cases.case_number: {e}"))))
        .transpose()
}

/// The case `case` was merged into, if it was (a duplicate household).
pub fn merged_into(conn: &mut DbConnection, case: &CaseId) -> Result<Option<CaseId>, StoreError> {
    let survivor: Option<String> =
        case_redirects::table.find(case.to_string()).select(case_redirects::merged_into).first(conn).optional()?;
    survivor.map(|s| CaseId::parse(&s).map_err(|e| StoreError::Corrupt(format!("case_redirects: {e}")))).transpose()
}

/// Which of `cases` were merged into another case.
pub fn merged_among(
    conn: &mut DbConnection,
    cases: &[CaseId],
) -> Result<std::collections::HashSet<CaseId>, StoreError> {
    super::cases_among(cases, "case_redirects", |chunk| {
        Ok(case_redirects::table
            .filter(case_redirects::case_id.eq_any(chunk))
            .select(case_redirects::case_id)
            .load(conn)?)
    })
}

/// The case `case` finally lives on in: following merges (a survivor may itself have been
/// merged later) to a case that was not merged. `None` when `case` was never merged.
pub fn survivor_of(conn: &mut DbConnection, case: &CaseId) -> Result<Option<CaseId>, StoreError> {
    let mut found = None;
    let mut at = *case;
    // Merges form no cycles (a merged case is never merged again); the bound only guards a
    // damaged table.
    for _ in 0..64 {
        match merged_into(conn, &at)? {
            Some(next) => {
                found = Some(next);
                at = next;
            }
            None => return Ok(found),
        }
    }
    Err(StoreError::Corrupt(format!("case_redirects: the merges of {case} form a cycle")))
}
