//! The audit log (who did what to which case, when, from which device) and the quarantine
//! of refused uploads. Neither ever holds case content in clear: audit details are codes
//! and counts; a quarantined upload is the raw bytes the device sent.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::schema::{audit_log, quarantine};
use super::{DbConnection, StoreError};
use tsunagi_sync::ids::{CaseId, DeviceId, StaffId};

/// Appends one audit row.
pub fn record(
    conn: &mut DbConnection,
    at: NaiveDateTime,
    staff: Option<&StaffId>,
    device: Option<&DeviceId>,
    case: Option<&CaseId>,
    action: &str,
    detail: &str,
) -> Result<(), StoreError> {
    diesel::insert_into(audit_log::table)
        .values((
            audit_log::at.eq(at),
            audit_log::staff_id.eq(staff.map(|s| s.to_string())),
            audit_log::device_id.eq(device.map(|d| d.to_string())),
            audit_log::case_id.eq(case.map(|c| c.to_string())),
            audit_log::action.eq(action),
            audit_log::detail.eq(detail),
        ))
        .execute(conn)?;
    Ok(())
}

/// A refused upload to keep.
#[derive(Debug)]
pub struct Quarantined<'a> {
    /// The case it was for.
    pub case: &'a CaseId,
    /// Who sent it.
    pub staff: &'a StaffId,
    /// From which device.
    pub device: &'a DeviceId,
    /// The per-case error code (`foreign_actor`, `invalid_change`, ...).
    pub code: &'a str,
    /// The violations, as JSON.
    pub violations: String,
    /// The upload exactly as received (CBOR of the `DocumentUpload`).
    pub upload: Vec<u8>,
}

/// Stores a refused upload; returns its id.
pub fn quarantine(conn: &mut DbConnection, at: NaiveDateTime, q: Quarantined<'_>) -> Result<String, StoreError> {
    let id = uuid::Uuid::new_v4().to_string();
    diesel::insert_into(quarantine::table)
        .values((
            quarantine::id.eq(&id),
            quarantine::received_at.eq(at),
            quarantine::case_id.eq(q.case.to_string()),
            quarantine::staff_id.eq(q.staff.to_string()),
            quarantine::device_id.eq(q.device.to_string()),
            quarantine::code.eq(q.code),
            quarantine::violations.eq(&q.violations),
            quarantine::upload.eq(&q.upload),
        ))
        .execute(conn)?;
    Ok(id)
}
