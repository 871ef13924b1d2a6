//! Refused uploads in the supervisors' API (`docs/api.md` section 9): a supervisor reads one
//! and decides it; a counsellor lists their own, with the decisions and reasons.
//!
//! - `GET /v1/quarantine/mine`: the caller's own refused uploads, newest first;
//! - `GET /v1/quarantine/{id}`: one refused upload (supervisors);
//! - `POST /v1/quarantine/{id}/decision`: accept with an override, or reject with a reason.

use actix_web::{web, HttpResponse};
use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tsunagi_sync::domain::Role;
use tsunagi_sync::ids::{CaseId, JAPAN};
use tsunagi_sync::wire::{decode_cbor, ApiErrorCode, DocumentUpload};

use super::support::{self, invalid, not_found};
use crate::auth::AuthenticatedDevice;
use crate::error::ApiFailure;
use crate::startup::AppState;
use crate::store::schema::{cases, quarantine as quarantine_table};
use crate::store::{quarantine, visibility, StoreError};
use crate::sync::{DecideError, Decision};

/// Registers the routes of this module.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/quarantine/mine", web::get().to(mine))
        .route("/v1/quarantine/{id}", web::get().to(one))
        .route("/v1/quarantine/{id}/decision", web::post().to(decide));
}

/// A refused upload as answers show it (never its content).
#[derive(Debug, Serialize)]
pub struct RefusedUpload {
    id: String,
    case_id: String,
    case_number: Option<String>,
    received_at: String,
    staff_id: String,
    device_id: String,
    code: String,
    violations: Value,
    changes: usize,
    decided_at: Option<String>,
    /// `accepted`, `rejected`, or null while undecided.
    decision: Option<String>,
    /// The supervisor's reason, for a rejection.
    reason: Option<String>,
}

fn instant(at: NaiveDateTime) -> String {
    tsunagi_sync::document::format_instant(at.and_utc().with_timezone(&JAPAN))
}

fn describe(
    conn: &mut crate::store::DbConnection,
    batch: quarantine::QuarantinedBatch,
) -> Result<RefusedUpload, StoreError> {
    let case_number: Option<String> =
        cases::table.find(&batch.case_id).select(cases::case_number).first(conn).optional()?.flatten();
    let changes = decode_cbor::<DocumentUpload>(&batch.upload).map(|u| u.changes.len()).unwrap_or(0);
    let (decision, reason) = match batch.decision.as_deref() {
        None => (None, None),
        Some(d) => match d.strip_prefix("rejected: ") {
            Some(reason) => (Some("rejected".to_owned()), Some(reason.to_owned())),
            None => (Some(d.to_owned()), None),
        },
    };
    Ok(RefusedUpload {
        id: batch.id,
        case_id: batch.case_id,
        case_number,
        received_at: instant(batch.received_at),
        staff_id: batch.staff_id,
        device_id: batch.device_id,
        code: batch.code,
        violations: serde_json::from_str(&batch.violations).unwrap_or(Value::Null),
        changes,
        decided_at: batch.decided_at.map(instant),
        decision,
        reason,
    })
}

/// `GET /v1/quarantine/mine`: every staff member's own refused uploads, newest first (at most
/// 200), so a phone can show what a supervisor decided.
pub async fn mine(state: web::Data<AppState>, who: AuthenticatedDevice) -> Result<HttpResponse, ApiFailure> {
    let uploads = support::read(&state, move |conn| -> Result<Vec<RefusedUpload>, StoreError> {
        let ids: Vec<String> = quarantine_table::table
            .filter(quarantine_table::staff_id.eq(who.staff.to_string()))
            .order(quarantine_table::received_at.desc())
            .select(quarantine_table::id)
            .limit(200)
            .load(conn)?;
        let mut out = Vec::new();
        for id in ids {
            if let Some(batch) = quarantine::find(conn, &id)? {
                out.push(describe(conn, batch)?);
            }
        }
        Ok(out)
    })
    .await?;
    Ok(support::json(&serde_json::json!({ "uploads": uploads })))
}

/// `GET /v1/quarantine/{id}`: supervisors who may see its case.
pub async fn one(
    state: web::Data<AppState>,
    who: AuthenticatedDevice,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiFailure> {
    support::require_role(&who, &[Role::Supervisor])?;
    let id = path.into_inner();
    let found = support::read(&state, move |conn| -> Result<Option<RefusedUpload>, StoreError> {
        let Some(batch) = quarantine::find(conn, &id)? else { return Ok(None) };
        let Ok(case) = CaseId::parse(&batch.case_id) else { return Ok(None) };
        let visible = visibility::may_see_upload(conn, support::viewer(&who), &case, &batch.staff_id)?;
        if !visible {
            return Ok(None);
        }
        describe(conn, batch).map(Some)
    })
    .await?;
    Ok(support::json(&found.ok_or_else(|| not_found("quarantined upload"))?))
}

/// The body of `POST /v1/quarantine/{id}/decision`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionBody {
    /// `accept` or `reject`.
    decision: String,
    /// Required for `reject`: shown to the counsellor.
    #[serde(default)]
    reason: Option<String>,
}

impl From<DecideError> for ApiFailure {
    fn from(e: DecideError) -> Self {
        match e {
            DecideError::NotFound => not_found("quarantined upload"),
            DecideError::AlreadyDecided | DecideError::CannotAccept(_) => {
                ApiFailure::new(ApiErrorCode::Conflict, e.to_string())
            }
            DecideError::Store(store) => store.into(),
        }
    }
}

/// `POST /v1/quarantine/{id}/decision`: supervisors only.
pub async fn decide(
    state: web::Data<AppState>,
    who: AuthenticatedDevice,
    path: web::Path<String>,
    body: web::Json<DecisionBody>,
) -> Result<HttpResponse, ApiFailure> {
    support::require_role(&who, &[Role::Supervisor])?;
    let id = path.into_inner();
    let body = body.into_inner();
    let decision = match body.decision.trim() {
        "accept" => Decision::Accept,
        "reject" => {
            let reason = body.reason.as_deref().map(str::trim).unwrap_or_default();
            if reason.is_empty() {
                return Err(invalid("reason", "a rejection says why, for the counsellor"));
            }
            if reason.chars().count() > 2000 {
                return Err(invalid("reason", "at most 2000 characters"));
            }
            Decision::Reject(reason.to_owned())
        }
        _ => return Err(invalid("decision", "expected accept or reject")),
    };
    let requester = support::requester(&who);
    let engine = state.engine.clone();
    let decided_id = id.clone();
    web::block(move || engine.decide_quarantined(&requester, &decided_id, &decision)).await??;
    let answer = support::read(&state, move |conn| -> Result<Option<RefusedUpload>, StoreError> {
        quarantine::find(conn, &id)?.map(|b| describe(conn, b)).transpose()
    })
    .await?
    .ok_or_else(|| not_found("quarantined upload"))?;
    Ok(support::json(&answer))
}
