//! Meetings (重層的支援会議 / 支援会議): what a supervisor prepares, and what decides which cases
//! a meeting tablet shows.
//!
//! A meeting belongs to one municipality. It has a kind ([`MeetingKind`]), a title, a day
//! (`held_on`, a date in Japan), members (meeting-tablet accounts of that municipality) and
//! an agenda (cases). It is **open** until a supervisor ends it or its day is over; the
//! record of a closed meeting is final: its agenda and members no longer change.
//!
//! Confidentiality (守秘義務):
//! - only a case the supervisor may see ([`visibility`]) is put on or taken off an agenda;
//!   any other case is answered exactly like one that does not exist;
//! - a 重層的支援会議 lists only cases whose consent (本人同意) is obtained; a 支援会議 (art.
//!   106-6, statutory secrecy) may list any case;
//! - an agenda is shown to each supervisor as they may see it: cases outside their reach are
//!   left out, not counted;
//! - the tablets see exactly what [`visibility`] says: the agenda cases of their open
//!   meetings, and of a 重層的支援会議 only while consent stands. A case a tablet no longer
//!   sees lands on its purge list at its next sync (`meeting_ended`).
//!
//! Every function here runs inside the caller's transaction; every change writes its audit
//! row ([`audit::record`]) in that same transaction, and every agenda shown writes one audit
//! row per case shown.

use std::fmt;

use chrono::{NaiveDate, NaiveDateTime};
use diesel::prelude::*;
use tsunagi_sync::document::{format_date, parse_date};
use tsunagi_sync::domain::{CaseStatus, ConsentState, MeetingKind, Role};
use tsunagi_sync::ids::{CaseId, CaseNumber, DeviceId, StaffId};
use uuid::Uuid;

use super::schema::{cases, meeting_cases, meeting_members, meetings, staff};
use super::visibility::{self, Viewer};
use super::{audit, DbConnection, StoreError};

/// The most members one meeting has.
pub const MAX_MEMBERS: usize = 50;

/// A meeting's id: a canonical lowercase UUID, made by the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MeetingId(Uuid);

impl MeetingId {
    /// A fresh random id.
    pub fn new_random() -> Self {
        Self(Uuid::new_v4())
    }

    /// Parses the canonical hyphenated lowercase form; anything else is `None`.
    pub fn parse(s: &str) -> Option<Self> {
        Uuid::try_parse(s).ok().filter(|u| !u.is_nil() && u.hyphenated().to_string() == s).map(Self)
    }
}

impl fmt::Display for MeetingId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

/// Why a meeting request was not carried out. Each maps to one answer of the API.
#[derive(Debug, thiserror::Error)]
pub enum MeetingError {
    /// No such meeting in the caller's municipality.
    #[error("no such meeting")]
    UnknownMeeting,
    /// No such case, or one the caller may not see (the two are never told apart).
    #[error("no such case")]
    UnknownCase,
    /// The staff member named in `field` is not a meeting-tablet account of the municipality.
    #[error("{field}: {staff} is not an active meeting-tablet account of this municipality")]
    NotATablet {
        /// The request field that named them (`members[2]`, `staff_id`).
        field: String,
        /// Who was named.
        staff: StaffId,
    },
    /// The meeting was ended, or its day is over: its record no longer changes.
    #[error("the meeting is over (ended, or its day has passed); its agenda and members stay as they were")]
    Closed,
    /// A 重層的支援会議 lists only cases with consent.
    #[error(
        "a 重層的支援会議 (multi_layered) discusses only cases whose consent (本人同意) is obtained; \
         a case without consent belongs on a 支援会議 (support)"
    )]
    ConsentRequired,
    /// The meeting has [`MAX_MEMBERS`] members already.
    #[error("a meeting has at most {MAX_MEMBERS} members")]
    TooManyMembers,
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<diesel::result::Error> for MeetingError {
    fn from(e: diesel::result::Error) -> Self {
        Self::Store(e.into())
    }
}

/// Who acts: a staff member on one of their devices, with what they may see.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    /// The staff member, their municipality, and today in Japan.
    pub viewer: Viewer<'a>,
    /// The device the request came from.
    pub device: DeviceId,
}

impl Caller<'_> {
    fn audit(
        &self,
        conn: &mut DbConnection,
        at: NaiveDateTime,
        case: Option<&CaseId>,
        action: &str,
        detail: &str,
    ) -> Result<(), StoreError> {
        audit::record(conn, at, Some(&self.viewer.staff), Some(&self.device), case, action, detail)
    }
}

/// A meeting to create (already validated: a title, a day, distinct members).
#[derive(Debug, Clone)]
pub struct NewMeeting {
    /// 重層的支援会議 or 支援会議.
    pub kind: MeetingKind,
    /// The title, trimmed.
    pub title: String,
    /// The day it is held, in Japan.
    pub held_on: NaiveDate,
    /// Meeting-tablet accounts to make members.
    pub members: Vec<StaffId>,
}

/// A `meetings` row.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = meetings)]
struct MeetingRow {
    meeting_id: String,
    kind: String,
    title: String,
    held_on: String,
    created_by: String,
    created_at: NaiveDateTime,
    ended_at: Option<NaiveDateTime>,
}

/// A meeting tablet on a meeting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The tablet's staff account.
    pub staff: StaffId,
    /// Its name, as people see it.
    pub display_name: String,
}

/// A case on an agenda, as much as a supervisor needs to prepare the meeting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgendaCase {
    /// The case.
    pub case: CaseId,
    /// 受付番号.
    pub case_number: Option<CaseNumber>,
    /// Its status.
    pub status: CaseStatus,
    /// Its consent (本人同意).
    pub consent: ConsentState,
}

/// A meeting, with its members and its agenda as one viewer may see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meeting {
    /// The meeting.
    pub id: MeetingId,
    /// 重層的支援会議 or 支援会議.
    pub kind: MeetingKind,
    /// The title.
    pub title: String,
    /// The day it is held, in Japan.
    pub held_on: NaiveDate,
    /// The supervisor who created it.
    pub created_by: StaffId,
    /// When it was created (UTC).
    pub created_at: NaiveDateTime,
    /// When a supervisor ended it (UTC), if one did.
    pub ended_at: Option<NaiveDateTime>,
    /// Not ended and not past its day: its tablets show its cases, its record may change.
    pub open: bool,
    /// Its meeting tablets, by name.
    pub members: Vec<Member>,
    /// The agenda cases the viewer may see, by case number.
    pub agenda: Vec<AgendaCase>,
}

/// Filters and paging of [`list`].
#[derive(Debug, Clone, Default)]
pub struct MeetingQuery {
    /// Held on or after this day.
    pub from: Option<NaiveDate>,
    /// Held on or before this day.
    pub to: Option<NaiveDate>,
    /// `Some(true)`: open meetings only; `Some(false)`: closed ones only.
    pub open: Option<bool>,
    /// Continue after this meeting (the `next` of the previous page).
    pub after: Option<PageKey>,
    /// At most this many meetings.
    pub limit: usize,
}

/// Where a page of [`list`] ends: meetings are listed by day, latest first, then by id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageKey {
    /// The day of the last meeting of the page.
    pub held_on: NaiveDate,
    /// Its id.
    pub id: MeetingId,
}

impl PageKey {
    /// Parses what [`PageKey`]'s `Display` wrote.
    pub fn parse(s: &str) -> Option<Self> {
        let (day, id) = s.split_once('.')?;
        Some(Self { held_on: parse_date(day)?, id: MeetingId::parse(id)? })
    }
}

impl fmt::Display for PageKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", format_date(self.held_on), self.id)
    }
}

fn corrupt(what: &str, e: impl fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

/// Whether `staff` is a meeting-tablet account of the caller's municipality (and active, if
/// `active_only`).
fn is_tablet(
    conn: &mut DbConnection,
    caller: Caller<'_>,
    who: &StaffId,
    active_only: bool,
) -> Result<bool, StoreError> {
    let mut query = staff::table
        .filter(staff::id.eq(who.to_string()))
        .filter(staff::municipality.eq(caller.viewer.municipality.as_str()))
        .filter(staff::role.eq(Role::MeetingTablet.as_key()))
        .into_boxed();
    if active_only {
        query = query.filter(staff::active.eq(true));
    }
    Ok(query.count().get_result::<i64>(conn)? > 0)
}

/// The meeting row, in the caller's municipality; locked for the rest of the transaction on
/// PostgreSQL (`FOR UPDATE`), so that changes to one meeting never interleave. SQLite's
/// write transaction already holds the only write lock.
fn lock(conn: &mut DbConnection, caller: Caller<'_>, id: MeetingId) -> Result<MeetingRow, MeetingError> {
    let query = meetings::table
        .filter(meetings::meeting_id.eq(id.to_string()))
        .filter(meetings::municipality.eq(caller.viewer.municipality.as_str()));
    let row = match conn {
        DbConnection::Pg(c) => query.select(MeetingRow::as_select()).for_update().first(c).optional()?,
        DbConnection::Sqlite(c) => query.select(MeetingRow::as_select()).first(c).optional()?,
    };
    row.ok_or(MeetingError::UnknownMeeting)
}

/// Whether a meeting still takes changes: not ended and not past its day.
fn is_open(row: &MeetingRow, today: NaiveDate) -> bool {
    // `held_on` is `YYYY-MM-DD`, which orders as text exactly as the days do (the same
    // comparison `visibility` makes in SQL).
    row.ended_at.is_none() && row.held_on.as_str() >= format_date(today).as_str()
}

/// Locks an open meeting for a change; [`MeetingError::Closed`] if it is over.
fn lock_open(conn: &mut DbConnection, caller: Caller<'_>, id: MeetingId) -> Result<MeetingRow, MeetingError> {
    let row = lock(conn, caller, id)?;
    if !is_open(&row, caller.viewer.today) {
        return Err(MeetingError::Closed);
    }
    Ok(row)
}

/// [`lock`] for a change to the agenda: a case the caller may not see is
/// [`MeetingError::UnknownCase`] (checked first, so a closed meeting says nothing of a
/// hidden case), then the meeting must be open.
fn lock_open_for_case(
    conn: &mut DbConnection,
    caller: Caller<'_>,
    id: MeetingId,
    case: &CaseId,
) -> Result<MeetingRow, MeetingError> {
    let row = lock(conn, caller, id)?;
    if !visibility::may_see(conn, caller.viewer, case)? {
        return Err(MeetingError::UnknownCase);
    }
    if !is_open(&row, caller.viewer.today) {
        return Err(MeetingError::Closed);
    }
    Ok(row)
}

/// Creates a meeting with its members; returns its id. Every member must be an active
/// meeting-tablet account of the caller's municipality.
pub fn create(
    conn: &mut DbConnection,
    caller: Caller<'_>,
    new: &NewMeeting,
    at: NaiveDateTime,
) -> Result<MeetingId, MeetingError> {
    for (index, member) in new.members.iter().enumerate() {
        if !is_tablet(conn, caller, member, true)? {
            return Err(MeetingError::NotATablet { field: format!("members[{index}]"), staff: *member });
        }
    }
    let id = MeetingId::new_random();
    diesel::insert_into(meetings::table)
        .values((
            meetings::meeting_id.eq(id.to_string()),
            meetings::municipality.eq(caller.viewer.municipality.as_str()),
            meetings::kind.eq(new.kind.as_key()),
            meetings::title.eq(&new.title),
            meetings::held_on.eq(format_date(new.held_on)),
            meetings::created_by.eq(caller.viewer.staff.to_string()),
            meetings::created_at.eq(at),
            meetings::ended_at.eq(None::<NaiveDateTime>),
        ))
        .execute(conn)?;
    for member in &new.members {
        diesel::insert_into(meeting_members::table)
            .values((meeting_members::meeting_id.eq(id.to_string()), meeting_members::staff_id.eq(member.to_string())))
            .execute(conn)?;
    }
    let detail = format!(
        "meeting {id}: {}, held on {}, {} member(s)",
        new.kind.as_key(),
        format_date(new.held_on),
        new.members.len()
    );
    caller.audit(conn, at, None, "meeting.create", &detail)?;
    Ok(id)
}

/// Puts `case` on the agenda of an open meeting; whether it was not there yet. The caller
/// must be able to see the case ([`MeetingError::UnknownCase`] otherwise, as for a case that
/// does not exist); a 重層的支援会議 takes only cases with consent.
pub fn add_case(
    conn: &mut DbConnection,
    caller: Caller<'_>,
    id: MeetingId,
    case: &CaseId,
    at: NaiveDateTime,
) -> Result<bool, MeetingError> {
    let row = lock_open_for_case(conn, caller, id, case)?;
    if row.kind == MeetingKind::MultiLayered.as_key() {
        let consent: String =
            cases::table.find(case.to_string()).select(cases::consent).first(conn).optional()?.unwrap_or_default();
        if consent != ConsentState::Obtained.as_key() {
            return Err(MeetingError::ConsentRequired);
        }
    }
    if on_agenda(conn, id, case)? {
        return Ok(false);
    }
    diesel::insert_into(meeting_cases::table)
        .values((meeting_cases::meeting_id.eq(id.to_string()), meeting_cases::case_id.eq(case.to_string())))
        .execute(conn)?;
    caller.audit(conn, at, Some(case), "meeting.agenda_add", &format!("meeting {id}: {}", row.kind))?;
    Ok(true)
}

/// Takes `case` off the agenda of an open meeting; whether it was there. The caller must be
/// able to see the case, as for [`add_case`].
pub fn remove_case(
    conn: &mut DbConnection,
    caller: Caller<'_>,
    id: MeetingId,
    case: &CaseId,
    at: NaiveDateTime,
) -> Result<bool, MeetingError> {
    let row = lock_open_for_case(conn, caller, id, case)?;
    let removed = diesel::delete(
        meeting_cases::table
            .filter(meeting_cases::meeting_id.eq(id.to_string()))
            .filter(meeting_cases::case_id.eq(case.to_string())),
    )
    .execute(conn)?;
    if removed > 0 {
        caller.audit(conn, at, Some(case), "meeting.agenda_remove", &format!("meeting {id}: {}", row.kind))?;
    }
    Ok(removed > 0)
}

fn on_agenda(conn: &mut DbConnection, id: MeetingId, case: &CaseId) -> Result<bool, StoreError> {
    Ok(meeting_cases::table
        .filter(meeting_cases::meeting_id.eq(id.to_string()))
        .filter(meeting_cases::case_id.eq(case.to_string()))
        .count()
        .get_result::<i64>(conn)?
        > 0)
}

/// Makes a meeting tablet a member of an open meeting; whether it was not one yet.
pub fn add_member(
    conn: &mut DbConnection,
    caller: Caller<'_>,
    id: MeetingId,
    member: &StaffId,
    at: NaiveDateTime,
) -> Result<bool, MeetingError> {
    lock_open(conn, caller, id)?;
    if !is_tablet(conn, caller, member, true)? {
        return Err(MeetingError::NotATablet { field: "staff_id".into(), staff: *member });
    }
    let present = meeting_members::table
        .filter(meeting_members::meeting_id.eq(id.to_string()))
        .filter(meeting_members::staff_id.eq(member.to_string()))
        .count()
        .get_result::<i64>(conn)?
        > 0;
    if present {
        return Ok(false);
    }
    let members: i64 =
        meeting_members::table.filter(meeting_members::meeting_id.eq(id.to_string())).count().get_result(conn)?;
    if usize::try_from(members).unwrap_or(usize::MAX) >= MAX_MEMBERS {
        return Err(MeetingError::TooManyMembers);
    }
    diesel::insert_into(meeting_members::table)
        .values((meeting_members::meeting_id.eq(id.to_string()), meeting_members::staff_id.eq(member.to_string())))
        .execute(conn)?;
    caller.audit(conn, at, None, "meeting.member_add", &format!("meeting {id}: staff {member}"))?;
    Ok(true)
}

/// Takes a meeting tablet off an open meeting; whether it was a member. Its device finds
/// the meeting's cases on its purge list at its next sync.
pub fn remove_member(
    conn: &mut DbConnection,
    caller: Caller<'_>,
    id: MeetingId,
    member: &StaffId,
    at: NaiveDateTime,
) -> Result<bool, MeetingError> {
    lock_open(conn, caller, id)?;
    // A tablet account disabled since it joined can still be taken off.
    if !is_tablet(conn, caller, member, false)? {
        return Err(MeetingError::NotATablet { field: "staff_id".into(), staff: *member });
    }
    let removed = diesel::delete(
        meeting_members::table
            .filter(meeting_members::meeting_id.eq(id.to_string()))
            .filter(meeting_members::staff_id.eq(member.to_string())),
    )
    .execute(conn)?;
    if removed > 0 {
        caller.audit(conn, at, None, "meeting.member_remove", &format!("meeting {id}: staff {member}"))?;
    }
    Ok(removed > 0)
}

/// Ends a meeting; whether it was not ended yet (ending it again changes nothing). Its tablets
/// find its cases on their purge list at their next sync.
pub fn end(
    conn: &mut DbConnection,
    caller: Caller<'_>,
    id: MeetingId,
    at: NaiveDateTime,
) -> Result<bool, MeetingError> {
    let row = lock(conn, caller, id)?;
    if row.ended_at.is_some() {
        return Ok(false);
    }
    diesel::update(meetings::table.find(id.to_string())).set(meetings::ended_at.eq(Some(at))).execute(conn)?;
    let agenda: i64 =
        meeting_cases::table.filter(meeting_cases::meeting_id.eq(id.to_string())).count().get_result(conn)?;
    caller.audit(conn, at, None, "meeting.end", &format!("meeting {id}: {} agenda case(s)", agenda))?;
    Ok(true)
}

/// The meeting as the caller may see it: its members, and the agenda cases the caller may
/// see (one audit row per case shown).
pub fn show(
    conn: &mut DbConnection,
    caller: Caller<'_>,
    id: MeetingId,
    at: NaiveDateTime,
) -> Result<Meeting, MeetingError> {
    let row = meetings::table
        .filter(meetings::meeting_id.eq(id.to_string()))
        .filter(meetings::municipality.eq(caller.viewer.municipality.as_str()))
        .select(MeetingRow::as_select())
        .first(conn)
        .optional()?
        .ok_or(MeetingError::UnknownMeeting)?;
    Ok(complete(conn, caller, row, at)?)
}

/// Meetings of the caller's municipality, latest day first, with their members and agendas
/// as the caller may see them (one audit row per agenda case shown), and the key of the next
/// page if there may be one.
pub fn list(
    conn: &mut DbConnection,
    caller: Caller<'_>,
    query: &MeetingQuery,
    at: NaiveDateTime,
) -> Result<(Vec<Meeting>, Option<PageKey>), MeetingError> {
    let today = format_date(caller.viewer.today);
    let mut rows = meetings::table
        .filter(meetings::municipality.eq(caller.viewer.municipality.as_str()))
        .select(MeetingRow::as_select())
        .into_boxed();
    if let Some(from) = query.from {
        rows = rows.filter(meetings::held_on.ge(format_date(from)));
    }
    if let Some(to) = query.to {
        rows = rows.filter(meetings::held_on.le(format_date(to)));
    }
    match query.open {
        Some(true) => rows = rows.filter(meetings::ended_at.is_null().and(meetings::held_on.ge(today))),
        Some(false) => rows = rows.filter(meetings::ended_at.is_not_null().or(meetings::held_on.lt(today))),
        None => {}
    }
    if let Some(after) = query.after {
        let day = format_date(after.held_on);
        rows = rows.filter(
            meetings::held_on
                .lt(day.clone())
                .or(meetings::held_on.eq(day).and(meetings::meeting_id.lt(after.id.to_string()))),
        );
    }
    let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
    let rows: Vec<MeetingRow> =
        rows.order((meetings::held_on.desc(), meetings::meeting_id.desc())).limit(limit).load(conn)?;
    let full = rows.len() == query.limit;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        out.push(complete(conn, caller, row, at)?);
    }
    let next = match (full, out.last()) {
        (true, Some(last)) => Some(PageKey { held_on: last.held_on, id: last.id }),
        _ => None,
    };
    Ok((out, next))
}

/// A row with its members and the agenda the caller may see.
fn complete(
    conn: &mut DbConnection,
    caller: Caller<'_>,
    row: MeetingRow,
    at: NaiveDateTime,
) -> Result<Meeting, StoreError> {
    let open = is_open(&row, caller.viewer.today);
    let id = MeetingId::parse(&row.meeting_id).ok_or_else(|| corrupt("meetings.meeting_id", &row.meeting_id))?;
    let members: Vec<(String, String)> = staff::table
        .filter(
            staff::id.eq_any(
                meeting_members::table
                    .filter(meeting_members::meeting_id.eq(&row.meeting_id))
                    .select(meeting_members::staff_id),
            ),
        )
        .select((staff::id, staff::display_name))
        .order((staff::display_name.asc(), staff::id.asc()))
        .load(conn)?;
    let members = members
        .into_iter()
        .map(|(staff, display_name)| {
            Ok(Member { staff: StaffId::parse(&staff).map_err(|e| corrupt("staff.id", e))?, display_name })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    let agenda: Vec<(String, Option<String>, String, String)> = cases::table
        .filter(cases::case_id.eq_any(
            meeting_cases::table.filter(meeting_cases::meeting_id.eq(&row.meeting_id)).select(meeting_cases::case_id),
        ))
        .filter(visibility::filter(caller.viewer))
        .select((cases::case_id, cases::case_number, cases::status, cases::consent))
        .load(conn)?;
    let mut shown = Vec::with_capacity(agenda.len());
    for (case, number, status, consent) in agenda {
        let case = CaseId::parse(&case).map_err(|e| corrupt("cases.case_id", e))?;
        shown.push(AgendaCase {
            case,
            case_number: number
                .map(|n| CaseNumber::parse(&n).map_err(|e| corrupt("cases.case_number", e)))
                .transpose()?,
            status: CaseStatus::from_key(&status).map_err(|e| corrupt("cases.status", e))?,
            consent: ConsentState::from_key(&consent).map_err(|e| corrupt("cases.consent", e))?,
        });
    }
    // By case number (numbered cases first), then id: the same order on both backends.
    shown.sort_by(|a, b| {
        (a.case_number.is_none(), a.case_number, a.case).cmp(&(b.case_number.is_none(), b.case_number, b.case))
    });
    for case in &shown {
        caller.audit(conn, at, Some(&case.case), "meeting.agenda_read", &format!("meeting {id}"))?;
    }
    Ok(Meeting {
        id,
        kind: MeetingKind::from_key(&row.kind).map_err(|e| corrupt("meetings.kind", e))?,
        title: row.title,
        held_on: parse_date(&row.held_on).ok_or_else(|| corrupt("meetings.held_on", &row.held_on))?,
        created_by: StaffId::parse(&row.created_by).map_err(|e| corrupt("meetings.created_by", e))?,
        created_at: row.created_at,
        ended_at: row.ended_at,
        open,
        members,
        agenda: shown,
    })
}
