//! The case endpoints of the supervisors' API (`docs/api.md` sections 3 to 5):
//!
//! - `GET /v1/cases`: the cases the caller may see, filtered, newest case number first,
//!   paged by key;
//! - `GET /v1/cases/{case_id}`: one case's full record, the typed [`CaseView`] (household,
//!   activities, reviews, the three forms, conflicts), with what changed since its last
//!   review;
//! - `POST /v1/cases/{case_id}/reviews`: a supervisor's review (確認 / コメント) of an
//!   activity, written into the case document on the supervisor's behalf;
//! - `PUT` / `DELETE /v1/cases/{case_id}/assignees/{staff_id}`: assignment.
//!
//! Lists and records are answered from what the caller may see ([`crate::store::visibility`]);
//! anything else is `404 not_found`, identical to the answer for a case that does not exist.
//! Every answer holding case content writes an audit row in the same transaction.

use std::collections::BTreeMap;

use actix_web::{web, HttpResponse};
use chrono::{Duration, NaiveDateTime, Utc};
use diesel::prelude::*;
use serde::{Deserialize, Serialize};
use tsunagi_sync::document::{read_case, since_last_review, CaseView, SinceReview};
use tsunagi_sync::domain::{CaseStatus, ConcernTag, ConsentState, Role};
use tsunagi_sync::ids::{ActivityId, CaseId, CaseNumber, ReviewId, StaffId, JAPAN};
use tsunagi_sync::wire::ApiErrorCode;

use super::support::{self, invalid, not_found, Labelled};
use crate::auth::AuthenticatedDevice;
use crate::error::ApiFailure;
use crate::startup::AppState;
use crate::store::schema::{assignments, case_concerns, cases, persons, staff};
use crate::store::{audit, documents, visibility, StoreError};
use crate::sync::OnBehalfError;

/// Registers the routes of this module.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/cases", web::get().to(list))
        .route("/v1/cases/{case_id}", web::get().to(record))
        .route("/v1/cases/{case_id}/reviews", web::post().to(review))
        .route("/v1/cases/{case_id}/assignees/{staff_id}", web::put().to(assign))
        .route("/v1/cases/{case_id}/assignees/{staff_id}", web::delete().to(unassign));
}

/// Roles that read case content through this API.
const READERS: &[Role] = &[Role::Supervisor, Role::Counsellor, Role::MeetingTablet];

/// Parses a case id from a path; a malformed one is simply a case that does not exist.
fn case_id(raw: &str) -> Result<CaseId, ApiFailure> {
    CaseId::parse(raw).map_err(|_| not_found("case"))
}

impl From<OnBehalfError> for ApiFailure {
    fn from(e: OnBehalfError) -> Self {
        match e {
            OnBehalfError::NotFound => not_found("case"),
            OnBehalfError::Refused(op) => ApiFailure::new(ApiErrorCode::InvalidRequest, op.to_string()),
            OnBehalfError::Conflict(why) => ApiFailure::new(ApiErrorCode::Conflict, why),
            OnBehalfError::Invalid(_) => ApiFailure::new(ApiErrorCode::Conflict, e.to_string()),
            OnBehalfError::Store(store) => store.into(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// GET /v1/cases
// ---------------------------------------------------------------------------------------------

/// The query of `GET /v1/cases`. Every filter is optional; all given must hold.
#[derive(Debug, Default, Deserialize)]
pub struct CaseQuery {
    status: Option<String>,
    area: Option<String>,
    assignee: Option<String>,
    consent: Option<String>,
    concern: Option<String>,
    no_contact_days: Option<String>,
    after: Option<String>,
    limit: Option<String>,
}

/// One row of the case list.
#[derive(Debug, Serialize)]
pub struct CaseSummary {
    case_id: String,
    case_number: Option<String>,
    status: Labelled,
    consent: Labelled,
    area: Option<String>,
    primary_assignee: Option<StaffRef>,
    subject: Option<SubjectRef>,
    concerns: Vec<Labelled>,
    opened_on: Option<String>,
    last_activity_at: Option<String>,
    days_without_contact: Option<i64>,
    conflicts: i32,
}

/// A staff member named in an answer.
#[derive(Debug, Clone, Serialize)]
pub struct StaffRef {
    id: String,
    name: Option<String>,
}

/// The main subject of a case, as a list shows them.
#[derive(Debug, Serialize)]
pub struct SubjectRef {
    name: String,
    kana: Option<String>,
}

/// A page of cases.
#[derive(Debug, Serialize)]
pub struct CasePage {
    cases: Vec<CaseSummary>,
    next: Option<String>,
}

type CaseRow = (
    String,
    Option<String>,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    i32,
    Option<NaiveDateTime>,
);

fn format_instant(at: NaiveDateTime) -> String {
    tsunagi_sync::document::format_instant(at.and_utc().with_timezone(&JAPAN))
}

/// `GET /v1/cases`.
pub async fn list(
    state: web::Data<AppState>,
    who: AuthenticatedDevice,
    query: web::Query<CaseQuery>,
) -> Result<HttpResponse, ApiFailure> {
    support::require_role(&who, READERS)?;
    let q = query.into_inner();
    let status = support::param("status", &q.status, CaseStatus::from_key)?;
    let consent = support::param("consent", &q.consent, ConsentState::from_key)?;
    let concern = support::param("concern", &q.concern, ConcernTag::from_key)?;
    let assignee = support::param("assignee", &q.assignee, StaffId::parse)?;
    let area = q.area.as_deref().map(str::trim).filter(|a| !a.is_empty()).map(str::to_owned);
    let no_contact_days = support::param("no_contact_days", &q.no_contact_days, |raw| {
        raw.parse::<u32>().map_err(|_| "expected a whole number of days")
    })?;
    let after = support::param("after", &q.after, |raw| CaseNumber::parse(raw).map_err(|e| e.to_string()))
        .map_err(|_| invalid("after", "not a value of `next` from a previous page"))?;
    let limit = support::limit_param(&q.limit, 50, 500)?;
    let now = Utc::now().naive_utc();

    let page = support::write(&state, move |conn| -> Result<CasePage, StoreError> {
        let viewer = support::viewer(&who);
        let mut query = cases::table
            .filter(visibility::filter(viewer))
            .filter(cases::case_number.is_not_null())
            .select((
                cases::case_id,
                cases::case_number,
                cases::status,
                cases::consent,
                cases::area,
                cases::primary_assignee,
                cases::opened_on,
                cases::conflicts,
                cases::last_activity_at,
            ))
            .order(cases::case_number.desc())
            .limit(limit + 1)
            .into_boxed();
        if let Some(status) = status {
            query = query.filter(cases::status.eq(status.as_key()));
        }
        if let Some(consent) = consent {
            query = query.filter(cases::consent.eq(consent.as_key()));
        }
        if let Some(area) = area {
            query = query.filter(cases::area.eq(area));
        }
        if let Some(staff) = assignee {
            query = query.filter(cases::case_id.eq_any(
                assignments::table.filter(assignments::staff_id.eq(staff.to_string())).select(assignments::case_id),
            ));
        }
        if let Some(tag) = concern {
            query = query.filter(cases::case_id.eq_any(
                case_concerns::table.filter(case_concerns::tag.eq(tag.as_key())).select(case_concerns::case_id),
            ));
        }
        if let Some(days) = no_contact_days {
            let cutoff = now - Duration::days(i64::from(days));
            query = query.filter(cases::last_activity_at.is_null().or(cases::last_activity_at.lt(cutoff)));
        }
        if let Some(after) = after {
            query = query.filter(cases::case_number.lt(after.to_string()));
        }
        let mut rows: Vec<CaseRow> = query.load(conn)?;
        let next = if rows.len() as i64 > limit {
            rows.truncate(limit as usize);
            rows.last().and_then(|r| r.1.clone())
        } else {
            None
        };
        let ids: Vec<String> = rows.iter().map(|r| r.0.clone()).collect();
        let subjects: BTreeMap<String, (String, Option<String>)> = persons::table
            .filter(persons::case_id.eq_any(&ids))
            .filter(persons::is_subject.eq(true))
            .select((persons::case_id, persons::name, persons::kana))
            .load::<(String, String, Option<String>)>(conn)?
            .into_iter()
            .map(|(case, name, kana)| (case, (name, kana)))
            .collect();
        let mut concerns: BTreeMap<String, Vec<Labelled>> = BTreeMap::new();
        for (case, tag) in case_concerns::table
            .filter(case_concerns::case_id.eq_any(&ids))
            .select((case_concerns::case_id, case_concerns::tag))
            .load::<(String, String)>(conn)?
        {
            if let Ok(tag) = ConcernTag::from_key(&tag) {
                concerns.entry(case).or_default().push(Labelled::of(tag.as_key(), tag.label()));
            }
        }
        let names = support::staff_names(conn, rows.iter().filter_map(|r| r.5.clone()))?;
        let at = Utc::now().naive_utc();
        let mut summaries = Vec::with_capacity(rows.len());
        for (case_id, case_number, status, consent, area, primary, opened_on, conflicts, last) in rows {
            if let Ok(case) = CaseId::parse(&case_id) {
                audit::record(conn, at, Some(&who.staff), Some(&who.device), Some(&case), "case.list", "summary")?;
            }
            let status = CaseStatus::from_key(&status).unwrap_or(CaseStatus::Intake);
            let consent = ConsentState::from_key(&consent).unwrap_or(ConsentState::None);
            summaries.push(CaseSummary {
                subject: subjects
                    .get(&case_id)
                    .map(|(name, kana)| SubjectRef { name: name.clone(), kana: kana.clone() }),
                concerns: concerns.remove(&case_id).unwrap_or_default(),
                case_id,
                case_number,
                status: Labelled::of(status.as_key(), status.label()),
                consent: Labelled::of(consent.as_key(), consent.label()),
                area,
                primary_assignee: primary.map(|id| StaffRef { name: names.get(&id).cloned(), id }),
                opened_on,
                last_activity_at: last.map(format_instant),
                days_without_contact: last.map(|l| (now - l).num_days()),
                conflicts,
            });
        }
        Ok(CasePage { cases: summaries, next })
    })
    .await?;
    Ok(support::json(&page))
}

// ---------------------------------------------------------------------------------------------
// GET /v1/cases/{case_id}
// ---------------------------------------------------------------------------------------------

/// One case's full record.
#[derive(Debug, Serialize)]
pub struct CaseRecord {
    /// The typed case, as `docs/case-document.md` describes it.
    case: CaseView,
    /// Display names of every staff member the case mentions, by id.
    staff: BTreeMap<String, String>,
    /// What changed since the case's last review that recorded the version it saw: the
    /// activities added and amended after it. `None` when there is no such review.
    since_last_review: Option<SinceReview>,
}

/// `GET /v1/cases/{case_id}`.
pub async fn record(
    state: web::Data<AppState>,
    who: AuthenticatedDevice,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiFailure> {
    support::require_role(&who, READERS)?;
    if let Some(redirect) = super::merge::redirect_if_merged(&state, &who, &path).await? {
        return Ok(redirect);
    }
    let case = case_id(&path)?;
    let record = support::write(&state, move |conn| -> Result<Option<CaseRecord>, StoreError> {
        let Some(row) = documents::find(conn, &case)? else { return Ok(None) };
        if !visibility::may_see(conn, support::viewer(&who), &case)? {
            return Ok(None);
        }
        let doc = documents::load(conn, &row)?;
        let view =
            read_case(&doc).view.ok_or_else(|| StoreError::Corrupt(format!("stored case {case} does not read")))?;
        let mut mentioned: Vec<String> = Vec::new();
        mentioned.extend(view.assignees.primary.iter().map(|s| s.to_string()));
        mentioned.extend(view.assignees.others.iter().map(|s| s.to_string()));
        for activity in view.activities.values() {
            mentioned.push(activity.recorded_by.to_string());
            mentioned.extend(activity.voided.iter().map(|v| v.by.to_string()));
        }
        mentioned.extend(view.reviews.values().map(|r| r.by.to_string()));
        mentioned.extend(view.plans.values().map(|p| p.author.to_string()));
        mentioned.extend(view.evaluations.values().map(|e| e.evaluator.to_string()));
        mentioned.extend(view.decisions.values().map(|d| d.recorded_by.to_string()));
        let staff = support::staff_names(conn, mentioned)?;
        let since_last_review = since_last_review(&doc, &view);
        audit::record(
            conn,
            Utc::now().naive_utc(),
            Some(&who.staff),
            Some(&who.device),
            Some(&case),
            "case.read",
            "record",
        )?;
        Ok(Some(CaseRecord { case: view, staff, since_last_review }))
    })
    .await?
    .ok_or_else(|| not_found("case"))?;
    Ok(support::json(&record))
}

// ---------------------------------------------------------------------------------------------
// POST /v1/cases/{case_id}/reviews
// ---------------------------------------------------------------------------------------------

/// The body of `POST /v1/cases/{case_id}/reviews`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewReview {
    activity_id: String,
    #[serde(default)]
    comment: String,
}

/// The answer: the review's id.
#[derive(Debug, Serialize)]
pub struct ReviewCreated {
    review_id: ReviewId,
    case_id: CaseId,
    activity_id: ActivityId,
}

/// `POST /v1/cases/{case_id}/reviews`: supervisors only.
pub async fn review(
    state: web::Data<AppState>,
    who: AuthenticatedDevice,
    path: web::Path<String>,
    body: web::Json<NewReview>,
) -> Result<HttpResponse, ApiFailure> {
    support::require_role(&who, &[Role::Supervisor])?;
    let case = case_id(&path)?;
    let activity = ActivityId::parse(body.activity_id.trim()).map_err(|e| invalid("activity_id", e))?;
    let comment = body.into_inner().comment;
    let requester = support::requester(&who);
    let engine = state.engine.clone();
    let review_id = web::block(move || {
        engine.write_on_behalf(&requester, &case, "case.review", &activity.to_string(), |replica| {
            Ok(replica.add_review(activity, &comment, Utc::now().with_timezone(&JAPAN).fixed_offset())?)
        })
    })
    .await??;
    Ok(support::created(&ReviewCreated { review_id, case_id: case, activity_id: activity }))
}

// ---------------------------------------------------------------------------------------------
// PUT / DELETE /v1/cases/{case_id}/assignees/{staff_id}
// ---------------------------------------------------------------------------------------------

/// The body of `PUT /v1/cases/{case_id}/assignees/{staff_id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssignBody {
    /// `primary` (主担当者) or `other`.
    role: String,
}

/// The case's assignees after the change.
#[derive(Debug, Serialize)]
pub struct AssigneesAnswer {
    case_id: CaseId,
    primary: Option<StaffRef>,
    others: Vec<StaffRef>,
}

/// Checks that `staff` is an active counsellor or supervisor of the caller's municipality.
fn check_assignable(
    conn: &mut crate::store::DbConnection,
    who: &AuthenticatedDevice,
    staff_id: &StaffId,
) -> Result<(), ApiFailure> {
    let found: Option<(String, bool)> = staff::table
        .filter(staff::id.eq(staff_id.to_string()))
        .filter(staff::municipality.eq(who.municipality.as_str()))
        .select((staff::role, staff::active))
        .first(conn)
        .optional()
        .map_err(StoreError::from)?;
    match found {
        Some((role, true)) if role == Role::Counsellor.as_key() || role == Role::Supervisor.as_key() => Ok(()),
        Some((_, true)) => Err(invalid("staff_id", "only counsellors and supervisors are assigned to cases")),
        _ => Err(invalid("staff_id", "no active staff member with this id in your municipality")),
    }
}

async fn change_assignment(
    state: web::Data<AppState>,
    who: AuthenticatedDevice,
    case: CaseId,
    staff_id: StaffId,
    how: Option<bool>,
) -> Result<HttpResponse, ApiFailure> {
    let db = state.db.clone();
    let checker = who.clone();
    web::block(move || db.read(|conn| -> Result<(), ApiFailure> { check_assignable(conn, &checker, &staff_id) }))
        .await??;
    let requester = support::requester(&who);
    let engine = state.engine.clone();
    let action = match how {
        Some(true) => "case.assign_primary",
        Some(false) => "case.assign_other",
        None => "case.unassign",
    };
    let view = web::block(move || {
        engine.write_on_behalf(&requester, &case, action, &staff_id.to_string(), |replica| {
            let view = replica.view()?;
            match how {
                Some(true) => {
                    if view.assignees.primary != Some(staff_id) {
                        replica.set_primary_assignee(staff_id)?;
                    }
                    // The new primary is no longer one of the others.
                    if view.assignees.others.contains(&staff_id) {
                        replica.set_other_assignee(staff_id, false)?;
                    }
                }
                Some(false) => {
                    if view.assignees.primary == Some(staff_id) {
                        return Err(OnBehalfError::Conflict(
                            "this staff member is the primary assignee; assign another primary first",
                        ));
                    }
                    if !view.assignees.others.contains(&staff_id) {
                        replica.set_other_assignee(staff_id, true)?;
                    }
                }
                None => {
                    if view.assignees.primary == Some(staff_id) {
                        return Err(OnBehalfError::Conflict(
                            "the primary assignee is replaced by assigning another primary, not removed",
                        ));
                    }
                    if view.assignees.others.contains(&staff_id) {
                        replica.set_other_assignee(staff_id, false)?;
                    }
                }
            }
            Ok(replica.view()?)
        })
    })
    .await??;
    let db = state.db.clone();
    let ids: Vec<String> =
        view.assignees.primary.iter().chain(view.assignees.others.iter()).map(|s| s.to_string()).collect();
    let names = web::block(move || db.read(|conn| support::staff_names(conn, ids))).await??;
    let named = |id: &StaffId| StaffRef { id: id.to_string(), name: names.get(&id.to_string()).cloned() };
    Ok(support::json(&AssigneesAnswer {
        case_id: case,
        primary: view.assignees.primary.as_ref().map(named),
        others: view.assignees.others.iter().map(named).collect(),
    }))
}

/// `PUT /v1/cases/{case_id}/assignees/{staff_id}`: supervisors only.
pub async fn assign(
    state: web::Data<AppState>,
    who: AuthenticatedDevice,
    path: web::Path<(String, String)>,
    body: web::Json<AssignBody>,
) -> Result<HttpResponse, ApiFailure> {
    support::require_role(&who, &[Role::Supervisor])?;
    let (case, staff_id) = path.into_inner();
    let case = case_id(&case)?;
    let staff_id = StaffId::parse(&staff_id).map_err(|e| invalid("staff_id", e))?;
    let primary = match body.role.trim() {
        "primary" => true,
        "other" => false,
        _ => return Err(invalid("role", "expected primary or other")),
    };
    change_assignment(state, who, case, staff_id, Some(primary)).await
}

/// `DELETE /v1/cases/{case_id}/assignees/{staff_id}`: supervisors only.
pub async fn unassign(
    state: web::Data<AppState>,
    who: AuthenticatedDevice,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiFailure> {
    support::require_role(&who, &[Role::Supervisor])?;
    let (case, staff_id) = path.into_inner();
    let case = case_id(&case)?;
    let staff_id = StaffId::parse(&staff_id).map_err(|e| invalid("staff_id", e))?;
    change_assignment(state, who, case, staff_id, None).await
}
