//! The audit log: who did what to which case, when, from which device. It never holds case
//! content: details are codes, counts and ids.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::schema::audit_log;
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
