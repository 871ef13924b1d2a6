//! `GET /v1/audit`: the audit log for administrators (`docs/api.md` section 11). Every read
//! of case content and every write is recorded there (who, from which device, which case,
//! what, when); administrators list it with filters but never see case content through it:
//! an audit row names a case by id and says what was done, never what the case holds.

use actix_web::{web, HttpResponse};
use chrono::{NaiveDateTime, TimeZone};
use diesel::prelude::*;
use serde::{Deserialize, Serialize};
use tsunagi_sync::document::{format_instant, parse_date};
use tsunagi_sync::domain::Role;
use tsunagi_sync::ids::{CaseId, DeviceId, StaffId, JAPAN};

use super::support::{self, invalid};
use crate::auth::AuthenticatedDevice;
use crate::error::ApiFailure;
use crate::startup::AppState;
use crate::store::schema::{audit_log, cases, staff};
use crate::store::StoreError;

/// Registers the routes of this module.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/audit", web::get().to(list));
}

/// The query of `GET /v1/audit`.
#[derive(Debug, Default, Deserialize)]
pub struct AuditQuery {
    staff: Option<String>,
    device: Option<String>,
    case: Option<String>,
    action: Option<String>,
    from: Option<String>,
    to: Option<String>,
    after: Option<String>,
    limit: Option<String>,
}

/// One audit row.
#[derive(Debug, Serialize)]
pub struct AuditEntry {
    id: i64,
    at: String,
    staff_id: Option<String>,
    device_id: Option<String>,
    case_id: Option<String>,
    action: String,
    detail: String,
}

/// A page of the audit log, newest first.
#[derive(Debug, Serialize)]
pub struct AuditPage {
    entries: Vec<AuditEntry>,
    next: Option<String>,
}

/// Midnight in Japan at the start of `date`, in UTC.
fn start_of(date: chrono::NaiveDate) -> Option<NaiveDateTime> {
    JAPAN.from_local_datetime(&date.and_hms_opt(0, 0, 0)?).single().map(|t| t.naive_utc())
}

/// `GET /v1/audit`: administrators only; rows of their municipality's staff and cases.
pub async fn list(
    state: web::Data<AppState>,
    who: AuthenticatedDevice,
    query: web::Query<AuditQuery>,
) -> Result<HttpResponse, ApiFailure> {
    support::require_role(&who, &[Role::Administrator])?;
    let q = query.into_inner();
    let staff_id = support::param("staff", &q.staff, StaffId::parse)?;
    let device = support::param("device", &q.device, DeviceId::parse)?;
    let case = support::param("case", &q.case, CaseId::parse)?;
    let action = q.action.as_deref().map(str::trim).filter(|a| !a.is_empty()).map(str::to_owned);
    let date = |field: &str, value: &Option<String>| {
        support::param(field, value, |raw| parse_date(raw).and_then(start_of).ok_or("expected a date YYYY-MM-DD"))
    };
    let from = date("from", &q.from)?;
    let to = support::param("to", &q.to, |raw| {
        parse_date(raw).and_then(|d| d.succ_opt()).and_then(start_of).ok_or("expected a date YYYY-MM-DD")
    })?;
    let after = support::param("after", &q.after, |raw| raw.parse::<i64>())
        .map_err(|_| invalid("after", "not a value of `next` from a previous page"))?;
    let limit = support::limit_param(&q.limit, 100, 1000)?;
    let municipality = who.municipality.as_str().to_owned();
    let page = support::read(&state, move |conn| -> Result<AuditPage, StoreError> {
        let ours = audit_log::staff_id
            .eq_any(staff::table.filter(staff::municipality.eq(municipality.clone())).select(staff::id).nullable())
            .or(audit_log::case_id
                .eq_any(cases::table.filter(cases::municipality.eq(municipality)).select(cases::case_id).nullable()));
        let mut query = audit_log::table
            .filter(ours)
            .select((
                audit_log::id,
                audit_log::at,
                audit_log::staff_id,
                audit_log::device_id,
                audit_log::case_id,
                audit_log::action,
                audit_log::detail,
            ))
            .order(audit_log::id.desc())
            .limit(limit + 1)
            .into_boxed();
        if let Some(staff) = staff_id {
            query = query.filter(audit_log::staff_id.eq(staff.to_string()));
        }
        if let Some(device) = device {
            query = query.filter(audit_log::device_id.eq(device.to_string()));
        }
        if let Some(case) = case {
            query = query.filter(audit_log::case_id.eq(case.to_string()));
        }
        if let Some(action) = action {
            query = query.filter(audit_log::action.eq(action));
        }
        if let Some(from) = from {
            query = query.filter(audit_log::at.ge(from));
        }
        if let Some(to) = to {
            query = query.filter(audit_log::at.lt(to));
        }
        if let Some(after) = after {
            query = query.filter(audit_log::id.lt(after));
        }
        type Row = (i64, NaiveDateTime, Option<String>, Option<String>, Option<String>, String, String);
        let mut rows: Vec<Row> = query.load(conn)?;
        let next = if rows.len() as i64 > limit {
            rows.truncate(limit as usize);
            rows.last().map(|r| r.0.to_string())
        } else {
            None
        };
        let entries = rows
            .into_iter()
            .map(|(id, at, staff_id, device_id, case_id, action, detail)| AuditEntry {
                id,
                at: format_instant(at.and_utc().with_timezone(&JAPAN)),
                staff_id,
                device_id,
                case_id,
                action,
                detail,
            })
            .collect();
        Ok(AuditPage { entries, next })
    })
    .await?;
    Ok(support::json(&page))
}
