//! Who may see which case: the one rule every endpoint and `POST /v1/sync` applies.
//!
//! - A **counsellor** sees the cases they are assigned to (primary or other).
//! - A **supervisor** sees, in their own municipality, the cases they are assigned to, every
//!   case of their area (all areas when their account has none), and every case **with
//!   consent** (本人同意 obtained). A case without consent stays with its assignees and the
//!   supervisors of its area: a supervisor of another area does not learn it exists.
//! - A **meeting tablet** sees the agenda of the meetings it is a member of while they are
//!   open (not ended, and not past their day in Japan): every agenda case of a 支援会議, and
//!   the agenda cases of a 重層的支援会議 only while their consent stands. When a meeting ends
//!   its cases land on the tablet's purge list.
//! - An **administrator** sees no case content at all.
//!
//! A case merged into another (a duplicate household) is seen by nobody: its id and number
//! lead to the survivor.
//!
//! The rule is expressed once, as a SQL filter on the `cases` projection, so lists and
//! pages are filtered in the database and single-case checks use the very same expression.

use chrono::NaiveDate;
use diesel::dsl::exists;
use diesel::prelude::*;
use diesel::sql_types::Bool;
use tsunagi_sync::domain::{ConsentState, MeetingKind, Role};
use tsunagi_sync::ids::{CaseId, MunicipalityCode, StaffId};

use super::schema::{assignments, cases, meeting_cases, meeting_members, meetings};
use super::{DbConnection, StoreError};

/// The backend type queries are built for (either database).
pub type Db = <DbConnection as diesel::Connection>::Backend;

/// A condition on rows of `cases`.
pub type CaseFilter = Box<dyn BoxableExpression<cases::table, Db, SqlType = Bool>>;

/// Who is asking.
#[derive(Debug, Clone, Copy)]
pub struct Viewer<'a> {
    /// The staff member.
    pub staff: StaffId,
    /// Their role.
    pub role: Role,
    /// Their municipality.
    pub municipality: &'a MunicipalityCode,
    /// Their area code; a supervisor without one oversees the whole municipality.
    pub area: Option<&'a str>,
    /// Today in Japan: meetings of an earlier day are over.
    pub today: NaiveDate,
}

/// Today's date in Japan.
pub fn today_in_japan() -> NaiveDate {
    chrono::Utc::now().with_timezone(&tsunagi_sync::ids::JAPAN).date_naive()
}

/// The cases `viewer` may see, as a condition on `cases` rows.
pub fn filter(viewer: Viewer<'_>) -> CaseFilter {
    Box::new(cases::merged_into.is_null().and(role_filter(viewer)))
}

fn role_filter(viewer: Viewer<'_>) -> CaseFilter {
    let staff = viewer.staff.to_string();
    let municipality = viewer.municipality.as_str().to_owned();
    let assigned = cases::case_id
        .eq_any(assignments::table.filter(assignments::staff_id.eq(staff.clone())).select(assignments::case_id));
    match viewer.role {
        Role::Counsellor => Box::new(cases::municipality.eq(municipality).and(assigned)),
        Role::Supervisor => {
            let in_scope: CaseFilter = match viewer.area {
                None => Box::new(diesel::dsl::sql::<Bool>("1 = 1")),
                Some(area) => Box::new(
                    cases::area
                        .eq(area.to_owned())
                        .assume_not_null()
                        .or(cases::consent.eq(ConsentState::Obtained.as_key())),
                ),
            };
            Box::new(cases::municipality.eq(municipality).and(in_scope.or(assigned)))
        }
        Role::MeetingTablet => {
            let today = tsunagi_sync::document::format_date(viewer.today);
            // The open meetings of these kinds that this tablet is a member of, and their agendas.
            let agenda = |kinds: Vec<&'static str>| {
                let open = meetings::table
                    .filter(meetings::municipality.eq(municipality.clone()))
                    .filter(meetings::kind.eq_any(kinds))
                    .filter(meetings::ended_at.is_null())
                    .filter(meetings::held_on.ge(today.clone()))
                    .filter(exists(
                        meeting_members::table
                            .filter(meeting_members::meeting_id.eq(meetings::meeting_id))
                            .filter(meeting_members::staff_id.eq(staff.clone())),
                    ))
                    .select(meetings::meeting_id);
                meeting_cases::table.filter(meeting_cases::meeting_id.eq_any(open)).select(meeting_cases::case_id)
            };
            let support = cases::case_id.eq_any(agenda(vec![MeetingKind::Support.as_key()]));
            let consented = cases::consent
                .eq(ConsentState::Obtained.as_key())
                .and(cases::case_id.eq_any(agenda(MeetingKind::ALL.iter().map(|k| k.as_key()).collect())));
            Box::new(cases::municipality.eq(municipality.clone()).and(support.or(consented)))
        }
        Role::Administrator => Box::new(diesel::dsl::sql::<Bool>("1 = 0")),
    }
}

/// Whether `viewer` may see `case`.
pub fn may_see(conn: &mut DbConnection, viewer: Viewer<'_>, case: &CaseId) -> Result<bool, StoreError> {
    let count: i64 =
        cases::table.filter(cases::case_id.eq(case.to_string())).filter(filter(viewer)).count().get_result(conn)?;
    Ok(count > 0)
}

/// Which of `cases` `viewer` may see: [`may_see`] for many cases in one statement (per
/// thousand).
pub fn visible_among(
    conn: &mut DbConnection,
    viewer: Viewer<'_>,
    cases: &[CaseId],
) -> Result<std::collections::HashSet<CaseId>, StoreError> {
    super::cases_among(cases, "cases", |chunk| {
        Ok(cases::table
            .filter(cases::case_id.eq_any(chunk))
            .filter(filter(viewer))
            .select(cases::case_id)
            .load(conn)?)
    })
}

/// Every case `viewer` may see, by id.
pub fn visible_cases(conn: &mut DbConnection, viewer: Viewer<'_>) -> Result<Vec<String>, StoreError> {
    Ok(cases::table.filter(filter(viewer)).select(cases::case_id).order(cases::case_id.asc()).load(conn)?)
}

/// The visible cases in the form a query over another table (activities, reviews) filters
/// by most cheaply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every case of this municipality (a supervisor without an area).
    Municipality(String),
    /// Exactly these cases.
    Cases(Vec<String>),
}

/// The cases `viewer` may see, as a [`Scope`].
pub fn scope(conn: &mut DbConnection, viewer: Viewer<'_>) -> Result<Scope, StoreError> {
    if viewer.role == Role::Supervisor && viewer.area.is_none() {
        return Ok(Scope::Municipality(viewer.municipality.as_str().to_owned()));
    }
    // In no particular order: the caller filters by them, and sorting thousands of ids would
    // cost as much as the page itself.
    Ok(Scope::Cases(cases::table.filter(filter(viewer)).select(cases::case_id).load(conn)?))
}

/// Whether `viewer` may see what a refused upload or an attention item says about `case`,
/// sent by staff member `sender`: the case is visible to them, or — a refused first upload of
/// a case the server never stored — they are a supervisor without an area in the sender's
/// municipality.
pub fn may_see_upload(
    conn: &mut DbConnection,
    viewer: Viewer<'_>,
    case: &CaseId,
    sender: &str,
) -> Result<bool, StoreError> {
    use super::schema::staff;
    if may_see(conn, viewer, case)? {
        return Ok(true);
    }
    let stored = cases::table.find(case.to_string()).count().get_result::<i64>(conn)? > 0;
    if stored || viewer.role != Role::Supervisor || viewer.area.is_some() {
        return Ok(false);
    }
    let municipality: Option<String> = staff::table.find(sender).select(staff::municipality).first(conn).optional()?;
    Ok(municipality.as_deref() == Some(viewer.municipality.as_str()))
}
