//! Relational projections of case documents, for queries that must not load documents:
//! `cases`, `persons`, `activities`, `assignments`. Rebuilt for a case inside the
//! transaction that stores its changes, so they are never behind the document.
//!
//! Also the case-number counters and who may see which case.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::sql_types::{Integer, Text};

use super::schema::{activities, assignments, cases, device_cases, persons};
use super::{DbConnection, StoreError};
use tsunagi_sync::document::{ActivityDetails, CaseView};
use tsunagi_sync::domain::Role;
use tsunagi_sync::ids::{CaseId, CaseNumber, DeviceId, FiscalYear, MunicipalityCode, StaffId};

#[derive(Insertable)]
#[diesel(table_name = cases)]
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
}

#[derive(Insertable)]
#[diesel(table_name = persons)]
struct PersonRow {
    case_id: String,
    person_id: String,
    name: String,
    kana: Option<String>,
    birth_date: Option<String>,
    is_subject: bool,
}

#[derive(Insertable)]
#[diesel(table_name = activities)]
struct ActivityRow {
    activity_id: String,
    case_id: String,
    kind: String,
    started_at: NaiveDateTime,
    recorded_by: String,
    device_id: String,
    place: String,
    outcome: Option<String>,
    follow_up_on: Option<String>,
    voided: bool,
    reviewed: bool,
}

#[derive(Insertable)]
#[diesel(table_name = assignments)]
struct AssignmentRow {
    case_id: String,
    staff_id: String,
    is_primary: bool,
}

/// Rewrites every projection row of one case from its view.
pub fn project(conn: &mut DbConnection, view: &CaseView, now: NaiveDateTime) -> Result<(), StoreError> {
    let id = view.case_id.to_string();
    diesel::delete(persons::table.filter(persons::case_id.eq(&id))).execute(conn)?;
    diesel::delete(activities::table.filter(activities::case_id.eq(&id))).execute(conn)?;
    diesel::delete(assignments::table.filter(assignments::case_id.eq(&id))).execute(conn)?;
    diesel::delete(cases::table.find(&id)).execute(conn)?;
    let municipality = view.municipality.map(|m| m.to_string()).unwrap_or_default();
    diesel::insert_into(cases::table)
        .values(CaseRow {
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
        })
        .execute(conn)?;
    for person in view.household.values() {
        diesel::insert_into(persons::table)
            .values(PersonRow {
                case_id: id.clone(),
                person_id: person.id.to_string(),
                name: person.name.clone(),
                kana: person.kana.clone(),
                birth_date: person.birth_date.map(tsunagi_sync::document::format_date),
                is_subject: person.is_subject,
            })
            .execute(conn)?;
    }
    for activity in view.activities.values() {
        let outcome = match &activity.details {
            ActivityDetails::Visit { outcome, .. } => Some(outcome.as_key().to_owned()),
            ActivityDetails::ContactAttempt { outcome, .. } => Some(outcome.as_key().to_owned()),
            _ => None,
        };
        diesel::insert_into(activities::table)
            .values(ActivityRow {
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
            })
            .execute(conn)?;
    }
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

/// Who is asking, for visibility decisions.
#[derive(Debug, Clone, Copy)]
pub struct Viewer<'a> {
    /// The staff member.
    pub staff: StaffId,
    /// Their role.
    pub role: Role,
    /// Their municipality.
    pub municipality: &'a MunicipalityCode,
}

/// Whether `viewer` may see `case`: counsellors their assigned cases, supervisors every case
/// of their municipality; meeting tablets and administrators none.
pub fn may_see(conn: &mut DbConnection, viewer: Viewer<'_>, case: &CaseId) -> Result<bool, StoreError> {
    let id = case.to_string();
    Ok(match viewer.role {
        Role::Counsellor => {
            assignments::table
                .filter(assignments::case_id.eq(&id))
                .filter(assignments::staff_id.eq(viewer.staff.to_string()))
                .count()
                .get_result::<i64>(conn)?
                > 0
        }
        Role::Supervisor => {
            cases::table
                .filter(cases::case_id.eq(&id))
                .filter(cases::municipality.eq(viewer.municipality.as_str()))
                .count()
                .get_result::<i64>(conn)?
                > 0
        }
        Role::MeetingTablet | Role::Administrator => false,
    })
}

/// Every case `viewer` may see.
pub fn visible_cases(conn: &mut DbConnection, viewer: Viewer<'_>) -> Result<Vec<String>, StoreError> {
    Ok(match viewer.role {
        Role::Counsellor => assignments::table
            .filter(assignments::staff_id.eq(viewer.staff.to_string()))
            .select(assignments::case_id)
            .order(assignments::case_id.asc())
            .load(conn)?,
        Role::Supervisor => cases::table
            .filter(cases::municipality.eq(viewer.municipality.as_str()))
            .select(cases::case_id)
            .order(cases::case_id.asc())
            .load(conn)?,
        Role::MeetingTablet | Role::Administrator => Vec::new(),
    })
}

/// Records that `device` holds `case` (received or uploaded it).
pub fn device_holds(conn: &mut DbConnection, device: &DeviceId, case: &CaseId) -> Result<(), StoreError> {
    let (d, c) = (device.to_string(), case.to_string());
    let held = device_cases::table
        .filter(device_cases::device_id.eq(&d))
        .filter(device_cases::case_id.eq(&c))
        .count()
        .get_result::<i64>(conn)?;
    if held == 0 {
        diesel::insert_into(device_cases::table)
            .values((device_cases::device_id.eq(&d), device_cases::case_id.eq(&c)))
            .execute(conn)?;
    }
    Ok(())
}

/// Whether `device` has held `case` at some point.
pub fn device_held(conn: &mut DbConnection, device: &DeviceId, case: &CaseId) -> Result<bool, StoreError> {
    Ok(device_cases::table
        .filter(device_cases::device_id.eq(device.to_string()))
        .filter(device_cases::case_id.eq(case.to_string()))
        .count()
        .get_result::<i64>(conn)?
        > 0)
}

/// Forgets that `device` holds `case` (after it was told to purge it).
pub fn device_released(conn: &mut DbConnection, device: &DeviceId, case: &CaseId) -> Result<(), StoreError> {
    diesel::delete(
        device_cases::table
            .filter(device_cases::device_id.eq(device.to_string()))
            .filter(device_cases::case_id.eq(case.to_string())),
    )
    .execute(conn)?;
    Ok(())
}
