//! Merging duplicate cases, and the redirects a merge leaves (`docs/api.md` section 3):
//!
//! - `POST /v1/cases/{case_id}/merge` `{"duplicate": "<case id>"}`: the duplicate's members,
//!   activities, reviews and forms move into this case ([`crate::sync::SyncEngine::merge_cases`]);
//! - `GET /v1/cases/{case_id}` of a merged case answers `308 Permanent Redirect` to the survivor;
//! - `GET /v1/cases/by-number/{case_number}`: `308` to the case with that number in the
//!   caller's municipality, the survivor for a merged one.

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use diesel::prelude::*;
use serde::{Deserialize, Serialize};
use tsunagi_sync::domain::Role;
use tsunagi_sync::ids::{CaseId, CaseNumber};
use tsunagi_sync::wire::ApiErrorCode;

use super::support::{self, invalid, not_found};
use crate::auth::AuthenticatedDevice;
use crate::error::ApiFailure;
use crate::startup::AppState;
use crate::store::schema::{case_redirects, cases};
use crate::store::{projections, visibility, StoreError};
use crate::sync::MergeError;

/// Registers the routes of this module.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/cases/by-number/{case_number}", web::get().to(by_number))
        .route("/v1/cases/{case_id}/merge", web::post().to(merge));
}

impl From<MergeError> for ApiFailure {
    fn from(e: MergeError) -> Self {
        match e {
            MergeError::NotFound => not_found("case"),
            MergeError::SameCase => invalid("duplicate", e),
            MergeError::AlreadyMerged(_) | MergeError::Invalid(_) => {
                ApiFailure::new(ApiErrorCode::Conflict, e.to_string())
            }
            MergeError::Store(store) => store.into(),
        }
    }
}

fn see_other(case: &CaseId) -> HttpResponse {
    HttpResponse::PermanentRedirect().insert_header((header::LOCATION, format!("/v1/cases/{case}"))).finish()
}

/// For `GET /v1/cases/{case_id}`: the redirect to the survivor when `raw` names a merged case
/// whose survivor the caller may see; `None` otherwise (the record handler answers).
pub async fn redirect_if_merged(
    state: &web::Data<AppState>,
    who: &AuthenticatedDevice,
    raw: &str,
) -> Result<Option<HttpResponse>, ApiFailure> {
    let Ok(case) = CaseId::parse(raw) else { return Ok(None) };
    let who = who.clone();
    let survivor = support::read(state, move |conn| -> Result<Option<CaseId>, StoreError> {
        match projections::merged_into(conn, &case)? {
            Some(survivor) if visibility::may_see(conn, support::viewer(&who), &survivor)? => Ok(Some(survivor)),
            _ => Ok(None),
        }
    })
    .await?;
    Ok(survivor.as_ref().map(see_other))
}

/// `GET /v1/cases/by-number/{case_number}`.
pub async fn by_number(
    state: web::Data<AppState>,
    who: AuthenticatedDevice,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiFailure> {
    support::require_role(&who, &[Role::Supervisor, Role::Counsellor, Role::MeetingTablet])?;
    let number = CaseNumber::parse(path.trim()).map_err(|_| not_found("case"))?.to_string();
    let found = support::read(&state, move |conn| -> Result<Option<CaseId>, StoreError> {
        let municipality = who.municipality.as_str();
        let direct: Option<String> = cases::table
            .filter(cases::municipality.eq(municipality))
            .filter(cases::case_number.eq(&number))
            .filter(cases::merged_into.is_null())
            .select(cases::case_id)
            .first(conn)
            .optional()?;
        let id = match direct {
            Some(id) => Some(id),
            None => case_redirects::table
                .filter(case_redirects::municipality.eq(municipality))
                .filter(case_redirects::case_number.eq(&number))
                .select(case_redirects::merged_into)
                .first(conn)
                .optional()?,
        };
        let Some(case) = id.and_then(|id| CaseId::parse(&id).ok()) else { return Ok(None) };
        // A chain of merges ends at the case that is not merged.
        let mut case = case;
        for _ in 0..16 {
            match projections::merged_into(conn, &case)? {
                Some(next) => case = next,
                None => break,
            }
        }
        Ok(visibility::may_see(conn, support::viewer(&who), &case)?.then_some(case))
    })
    .await?;
    Ok(see_other(&found.ok_or_else(|| not_found("case"))?))
}

/// The body of `POST /v1/cases/{case_id}/merge`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MergeBody {
    /// The case that moves into this one and becomes a redirect.
    duplicate: String,
}

/// The answer of a merge.
#[derive(Debug, Serialize)]
pub struct MergeAnswer {
    case_id: CaseId,
    case_number: Option<String>,
    merged: MergedCase,
    copied: usize,
}

/// The case that was merged away.
#[derive(Debug, Serialize)]
pub struct MergedCase {
    case_id: CaseId,
    case_number: Option<String>,
}

/// `POST /v1/cases/{case_id}/merge`: supervisors only.
pub async fn merge(
    state: web::Data<AppState>,
    who: AuthenticatedDevice,
    path: web::Path<String>,
    body: web::Json<MergeBody>,
) -> Result<HttpResponse, ApiFailure> {
    support::require_role(&who, &[Role::Supervisor])?;
    let survivor = CaseId::parse(path.trim()).map_err(|_| not_found("case"))?;
    let duplicate = CaseId::parse(body.duplicate.trim()).map_err(|e| invalid("duplicate", e))?;
    let requester = support::requester(&who);
    let engine = state.engine.clone();
    let merged = web::block(move || engine.merge_cases(&requester, &survivor, &duplicate)).await??;
    Ok(support::json(&MergeAnswer {
        case_id: survivor,
        case_number: merged.survivor.case_number.map(|n| n.to_string()),
        merged: MergedCase { case_id: duplicate, case_number: merged.duplicate_number },
        copied: merged.copied,
    }))
}
