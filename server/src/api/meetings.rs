//! Meetings (`docs/api.md`, "Meetings"): supervisors prepare 重層的支援会議 and 支援会議 of
//! their municipality, decide which meeting tablets take part and which cases are on the
//! agenda, and end them. Supervisors only; every other role gets `403 forbidden`.
//!
//! - `POST /v1/meetings` → `201` with the meeting.
//! - `GET /v1/meetings?from=&to=&open=&after=&limit=` → `{"meetings": [...], "next"}`.
//! - `GET /v1/meetings/{meeting_id}` → the meeting.
//! - `PUT` / `DELETE /v1/meetings/{meeting_id}/agenda/{case_id}` → `204`.
//! - `PUT` / `DELETE /v1/meetings/{meeting_id}/members/{staff_id}` → `204`.
//! - `POST /v1/meetings/{meeting_id}/end` → `204`.
//!
//! The rules (who may put which case on which meeting, what tablets then see) are in
//! [`crate::store::meetings`]; this module reads requests and writes answers.

use actix_web::{web, HttpResponse};
use chrono::{NaiveDate, NaiveDateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tsunagi_sync::document::{format_date, format_instant, parse_date};
use tsunagi_sync::domain::{MeetingKind, Role};
use tsunagi_sync::ids::{CaseId, StaffId, JAPAN};
use tsunagi_sync::wire::ApiErrorCode;

use super::support::{self, created, invalid, json, not_found, require_role, Labelled};
use crate::auth::AuthenticatedDevice;
use crate::error::ApiFailure;
use crate::startup::AppState;
use crate::store::meetings::{
    self, Caller, Meeting, MeetingError, MeetingId, MeetingQuery, NewMeeting, PageKey, MAX_MEMBERS,
};

/// The longest title, in characters.
pub const MAX_TITLE_CHARS: usize = 200;
/// Meetings per page of `GET /v1/meetings` unless `limit` says otherwise.
pub const DEFAULT_PAGE: usize = 50;
/// The largest `limit`.
pub const MAX_PAGE: usize = 200;

/// Registers the routes of this module.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/v1/meetings").route(web::post().to(create)).route(web::get().to(list)))
        .service(web::resource("/v1/meetings/{meeting_id}").route(web::get().to(show)))
        .service(
            web::resource("/v1/meetings/{meeting_id}/agenda/{case_id}")
                .route(web::put().to(add_case))
                .route(web::delete().to(remove_case)),
        )
        .service(
            web::resource("/v1/meetings/{meeting_id}/members/{staff_id}")
                .route(web::put().to(add_member))
                .route(web::delete().to(remove_member)),
        )
        .service(web::resource("/v1/meetings/{meeting_id}/end").route(web::post().to(end)));
}

/// The one mapping of meeting errors to answers.
impl From<MeetingError> for ApiFailure {
    fn from(e: MeetingError) -> Self {
        match e {
            MeetingError::UnknownMeeting => not_found("meeting"),
            MeetingError::UnknownCase => not_found("case"),
            MeetingError::NotATablet { ref field, .. } => {
                invalid(field, "not an active meeting-tablet account of this municipality")
            }
            MeetingError::Closed | MeetingError::ConsentRequired | MeetingError::TooManyMembers => {
                ApiFailure::new(ApiErrorCode::Conflict, e.to_string())
            }
            MeetingError::Store(e) => e.into(),
        }
    }
}

fn now() -> NaiveDateTime {
    Utc::now().naive_utc()
}

/// A stored UTC instant as RFC 3339 in Japan.
fn instant(at: NaiveDateTime) -> String {
    format_instant(Utc.from_utc_datetime(&at).with_timezone(&JAPAN))
}

/// A meeting tablet in an answer.
#[derive(Debug, Serialize)]
struct MemberBody {
    staff_id: StaffId,
    display_name: String,
}

/// An agenda case in an answer.
#[derive(Debug, Serialize)]
struct AgendaBody {
    case_id: CaseId,
    case_number: Option<String>,
    status: Labelled,
    consent: Labelled,
}

/// A meeting in an answer.
#[derive(Debug, Serialize)]
struct MeetingBody {
    meeting_id: String,
    kind: Labelled,
    title: String,
    held_on: String,
    open: bool,
    ended_at: Option<String>,
    created_by: StaffId,
    created_at: String,
    members: Vec<MemberBody>,
    agenda: Vec<AgendaBody>,
}

impl From<Meeting> for MeetingBody {
    fn from(m: Meeting) -> Self {
        Self {
            meeting_id: m.id.to_string(),
            kind: Labelled::of(m.kind.as_key(), m.kind.label()),
            title: m.title,
            held_on: format_date(m.held_on),
            open: m.open,
            ended_at: m.ended_at.map(instant),
            created_by: m.created_by,
            created_at: instant(m.created_at),
            members: m
                .members
                .into_iter()
                .map(|p| MemberBody { staff_id: p.staff, display_name: p.display_name })
                .collect(),
            agenda: m
                .agenda
                .into_iter()
                .map(|c| AgendaBody {
                    case_id: c.case,
                    case_number: c.case_number.map(|n| n.to_string()),
                    status: Labelled::of(c.status.as_key(), c.status.label()),
                    consent: Labelled::of(c.consent.as_key(), c.consent.label()),
                })
                .collect(),
        }
    }
}

/// A page of meetings.
#[derive(Debug, Serialize)]
struct MeetingPage {
    meetings: Vec<MeetingBody>,
    next: Option<String>,
}

/// The query string of `GET /v1/meetings` (unknown parameters are refused).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListParams {
    from: Option<String>,
    to: Option<String>,
    open: Option<String>,
    after: Option<String>,
    limit: Option<String>,
}

/// Runs `f` as the authenticated supervisor, in one write transaction.
async fn as_supervisor<T, F>(state: &web::Data<AppState>, who: AuthenticatedDevice, f: F) -> Result<T, ApiFailure>
where
    T: Send + 'static,
    F: FnOnce(&mut crate::store::DbConnection, Caller<'_>) -> Result<T, MeetingError> + Send + 'static,
{
    support::write(state, move |conn| {
        let caller = Caller { viewer: support::viewer(&who), device: who.device };
        f(conn, caller)
    })
    .await
}

/// A meeting id from the path; anything else names no meeting.
fn meeting_id(raw: &str) -> Result<MeetingId, ApiFailure> {
    MeetingId::parse(raw).ok_or_else(|| not_found("meeting"))
}

/// A case id from the path; anything else names no case (answered exactly like a case the
/// caller may not see).
fn case_id(raw: &str) -> Result<CaseId, ApiFailure> {
    CaseId::parse(raw).map_err(|_| not_found("case"))
}

/// A staff id from the path.
fn staff_id(raw: &str) -> Result<StaffId, ApiFailure> {
    StaffId::parse(raw).map_err(|_| invalid("staff_id", "not a staff id (a lowercase UUID)"))
}

/// A date `YYYY-MM-DD` named `field`.
fn date(field: &str, raw: &str) -> Result<NaiveDate, ApiFailure> {
    parse_date(raw).ok_or_else(|| invalid(field, "expected a date YYYY-MM-DD"))
}

/// Reads and validates the body of `POST /v1/meetings`.
fn new_meeting(body: &Value, today: NaiveDate) -> Result<NewMeeting, ApiFailure> {
    let object: &Map<String, Value> = body.as_object().ok_or_else(|| invalid("body", "expected a JSON object"))?;
    const FIELDS: [&str; 4] = ["kind", "title", "held_on", "members"];
    if let Some(unknown) = object.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(invalid(unknown, format!("unknown field; expected {}", FIELDS.join(", "))));
    }
    let text = |field: &str| -> Result<&str, ApiFailure> {
        match object.get(field) {
            Some(Value::String(s)) => Ok(s.as_str()),
            None | Some(Value::Null) => Err(invalid(field, "missing")),
            Some(_) => Err(invalid(field, "expected a string")),
        }
    };
    let kind = MeetingKind::from_key(text("kind")?).map_err(|e| invalid("kind", format!("expected {}", e.expected)))?;
    let title = text("title")?.trim();
    if title.is_empty() {
        return Err(invalid("title", "must not be empty"));
    }
    if title.chars().count() > MAX_TITLE_CHARS {
        return Err(invalid("title", format!("at most {MAX_TITLE_CHARS} characters")));
    }
    if title.chars().any(char::is_control) {
        return Err(invalid("title", "one line of text, without control characters"));
    }
    let held_on = date("held_on", text("held_on")?)?;
    if held_on < today {
        return Err(invalid(
            "held_on",
            format!("a meeting is prepared for today ({}) or a later day", format_date(today)),
        ));
    }
    let members = match object.get("members") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => {
            if items.len() > MAX_MEMBERS {
                return Err(invalid("members", format!("at most {MAX_MEMBERS} meeting tablets")));
            }
            let mut members: Vec<StaffId> = Vec::with_capacity(items.len());
            for (index, item) in items.iter().enumerate() {
                let field = format!("members[{index}]");
                let id = item
                    .as_str()
                    .and_then(|s| StaffId::parse(s).ok())
                    .ok_or_else(|| invalid(&field, "expected a staff id (a lowercase UUID)"))?;
                if members.contains(&id) {
                    return Err(invalid(&field, "listed twice"));
                }
                members.push(id);
            }
            members
        }
        Some(_) => return Err(invalid("members", "expected a list of staff ids")),
    };
    Ok(NewMeeting { kind, title: title.to_owned(), held_on, members })
}

/// Reads the query string of `GET /v1/meetings`.
fn meeting_query(params: &ListParams) -> Result<MeetingQuery, ApiFailure> {
    let from = params.from.as_deref().map(|s| date("from", s)).transpose()?;
    let to = params.to.as_deref().map(|s| date("to", s)).transpose()?;
    if let (Some(from), Some(to)) = (from, to) {
        if from > to {
            return Err(invalid("to", "must not be before from"));
        }
    }
    let open = match params.open.as_deref() {
        None => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(_) => return Err(invalid("open", "expected true or false")),
    };
    let after = match params.after.as_deref() {
        None => None,
        Some(s) => Some(PageKey::parse(s).ok_or_else(|| invalid("after", "not a value this list gave as next"))?),
    };
    let limit = match params.limit.as_deref() {
        None => DEFAULT_PAGE,
        Some(s) => s
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_PAGE).contains(n))
            .ok_or_else(|| invalid("limit", format!("expected a whole number from 1 to {MAX_PAGE}")))?,
    };
    Ok(MeetingQuery { from, to, open, after, limit })
}

/// `POST /v1/meetings`.
async fn create(
    state: web::Data<AppState>,
    who: AuthenticatedDevice,
    body: Result<web::Json<Value>, actix_web::Error>,
) -> actix_web::Result<HttpResponse> {
    require_role(&who, &[Role::Supervisor])?;
    let today = support::viewer(&who).today;
    let new = new_meeting(&body?.into_inner(), today)?;
    let at = now();
    let meeting = as_supervisor(&state, who, move |conn, caller| {
        let id = meetings::create(conn, caller, &new, at)?;
        meetings::show(conn, caller, id, at)
    })
    .await?;
    Ok(created(&MeetingBody::from(meeting)))
}

/// `GET /v1/meetings`.
async fn list(
    state: web::Data<AppState>,
    who: AuthenticatedDevice,
    params: Result<web::Query<ListParams>, actix_web::Error>,
) -> actix_web::Result<HttpResponse> {
    require_role(&who, &[Role::Supervisor])?;
    let query = meeting_query(&params?.into_inner())?;
    let at = now();
    let (page, next) = as_supervisor(&state, who, move |conn, caller| meetings::list(conn, caller, &query, at)).await?;
    let page =
        MeetingPage { meetings: page.into_iter().map(MeetingBody::from).collect(), next: next.map(|k| k.to_string()) };
    Ok(json(&page))
}

/// `GET /v1/meetings/{meeting_id}`.
async fn show(
    state: web::Data<AppState>,
    who: AuthenticatedDevice,
    path: web::Path<String>,
) -> actix_web::Result<HttpResponse> {
    require_role(&who, &[Role::Supervisor])?;
    let id = meeting_id(&path)?;
    let at = now();
    let meeting = as_supervisor(&state, who, move |conn, caller| meetings::show(conn, caller, id, at)).await?;
    Ok(json(&MeetingBody::from(meeting)))
}

/// `PUT /v1/meetings/{meeting_id}/agenda/{case_id}`.
async fn add_case(
    state: web::Data<AppState>,
    who: AuthenticatedDevice,
    path: web::Path<(String, String)>,
) -> actix_web::Result<HttpResponse> {
    require_role(&who, &[Role::Supervisor])?;
    let (id, case) = (meeting_id(&path.0)?, case_id(&path.1)?);
    let at = now();
    as_supervisor(&state, who, move |conn, caller| meetings::add_case(conn, caller, id, &case, at)).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `DELETE /v1/meetings/{meeting_id}/agenda/{case_id}`.
async fn remove_case(
    state: web::Data<AppState>,
    who: AuthenticatedDevice,
    path: web::Path<(String, String)>,
) -> actix_web::Result<HttpResponse> {
    require_role(&who, &[Role::Supervisor])?;
    let (id, case) = (meeting_id(&path.0)?, case_id(&path.1)?);
    let at = now();
    as_supervisor(&state, who, move |conn, caller| meetings::remove_case(conn, caller, id, &case, at)).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `PUT /v1/meetings/{meeting_id}/members/{staff_id}`.
async fn add_member(
    state: web::Data<AppState>,
    who: AuthenticatedDevice,
    path: web::Path<(String, String)>,
) -> actix_web::Result<HttpResponse> {
    require_role(&who, &[Role::Supervisor])?;
    let (id, member) = (meeting_id(&path.0)?, staff_id(&path.1)?);
    let at = now();
    as_supervisor(&state, who, move |conn, caller| meetings::add_member(conn, caller, id, &member, at)).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `DELETE /v1/meetings/{meeting_id}/members/{staff_id}`.
async fn remove_member(
    state: web::Data<AppState>,
    who: AuthenticatedDevice,
    path: web::Path<(String, String)>,
) -> actix_web::Result<HttpResponse> {
    require_role(&who, &[Role::Supervisor])?;
    let (id, member) = (meeting_id(&path.0)?, staff_id(&path.1)?);
    let at = now();
    as_supervisor(&state, who, move |conn, caller| meetings::remove_member(conn, caller, id, &member, at)).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `POST /v1/meetings/{meeting_id}/end`.
async fn end(
    state: web::Data<AppState>,
    who: AuthenticatedDevice,
    path: web::Path<String>,
) -> actix_web::Result<HttpResponse> {
    require_role(&who, &[Role::Supervisor])?;
    let id = meeting_id(&path)?;
    let at = now();
    as_supervisor(&state, who, move |conn, caller| meetings::end(conn, caller, id, at)).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        parse_date(s).unwrap()
    }

    fn message(body: Value) -> String {
        new_meeting(&body, day("2026-11-23")).unwrap_err().message
    }

    #[test]
    fn a_new_meeting_is_read_strictly_and_errors_name_the_field() {
        let tablet = StaffId::new_random();
        let ok = new_meeting(
            &serde_json::json!({ "kind": "support", "title": " 11月 支援会議 ", "held_on": "2026-11-23", "members": [tablet] }),
            day("2026-11-23"),
        )
        .unwrap();
        assert_eq!((ok.kind, ok.title.as_str(), ok.members), (MeetingKind::Support, "11月 支援会議", vec![tablet]));
        let cases = [
            (serde_json::json!([]), "body:"),
            (serde_json::json!({ "title": "t", "held_on": "2026-11-23" }), "kind: missing"),
            (
                serde_json::json!({ "kind": "block", "title": "t", "held_on": "2026-11-23" }),
                "kind: expected multi_layered, support",
            ),
            (
                serde_json::json!({ "kind": "support", "title": "  ", "held_on": "2026-11-23" }),
                "title: must not be empty",
            ),
            (serde_json::json!({ "kind": "support", "title": "a\nb", "held_on": "2026-11-23" }), "title: one line"),
            (
                serde_json::json!({ "kind": "support", "title": "x".repeat(201), "held_on": "2026-11-23" }),
                "title: at most",
            ),
            (serde_json::json!({ "kind": "support", "title": 5, "held_on": "2026-11-23" }), "title: expected a string"),
            (
                serde_json::json!({ "kind": "support", "title": "t", "held_on": "2026-11-31" }),
                "held_on: expected a date",
            ),
            (
                serde_json::json!({ "kind": "support", "title": "t", "held_on": "2026-11-22" }),
                "held_on: a meeting is prepared",
            ),
            (
                serde_json::json!({ "kind": "support", "title": "t", "held_on": "2026-11-23", "members": "x" }),
                "members: expected a list",
            ),
            (
                serde_json::json!({ "kind": "support", "title": "t", "held_on": "2026-11-23", "members": ["nope"] }),
                "members[0]: expected a staff id",
            ),
            (
                serde_json::json!({ "kind": "support", "title": "t", "held_on": "2026-11-23", "members": [tablet, tablet] }),
                "members[1]: listed twice",
            ),
            (
                serde_json::json!({ "kind": "support", "title": "t", "held_on": "2026-11-23", "agenda": [] }),
                "agenda: unknown field",
            ),
        ];
        for (body, expected) in cases {
            let got = message(body.clone());
            assert!(got.starts_with(expected), "{body}: {got}");
        }
    }

    #[test]
    fn list_parameters_are_checked_and_page_keys_round_trip() {
        let params =
            |from: Option<&str>, to: Option<&str>, open: Option<&str>, after: Option<&str>, limit: Option<&str>| {
                ListParams {
                    from: from.map(Into::into),
                    to: to.map(Into::into),
                    open: open.map(Into::into),
                    after: after.map(Into::into),
                    limit: limit.map(Into::into),
                }
            };
        let q = meeting_query(&params(Some("2026-11-01"), Some("2026-11-30"), Some("true"), None, Some("5"))).unwrap();
        assert_eq!((q.from, q.to, q.open, q.limit), (Some(day("2026-11-01")), Some(day("2026-11-30")), Some(true), 5));
        let key = PageKey { held_on: day("2026-11-25"), id: MeetingId::new_random() };
        let q = meeting_query(&params(None, None, None, Some(&key.to_string()), None)).unwrap();
        assert_eq!((q.after, q.limit), (Some(key), DEFAULT_PAGE));
        for (p, field) in [
            (params(Some("11/01"), None, None, None, None), "from:"),
            (params(Some("2026-11-30"), Some("2026-11-01"), None, None, None), "to:"),
            (params(None, None, Some("yes"), None, None), "open:"),
            (params(None, None, None, Some("2026-11-25"), None), "after:"),
            (params(None, None, None, None, Some("0")), "limit:"),
            (params(None, None, None, None, Some("201")), "limit:"),
        ] {
            let got = meeting_query(&p).unwrap_err().message;
            assert!(got.starts_with(field), "{got}");
        }
    }
}
