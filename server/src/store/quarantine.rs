//! The quarantine: uploads the server refused, kept whole with why, for an administrator.
//! Nothing a device sends is lost, not even what is refused. The sync engine writes here;
//! `tsunagi admin quarantine` reads.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::schema::quarantine;
use super::{DbConnection, StoreError};
use tsunagi_sync::ids::{CaseId, DeviceId, StaffId};

diesel::define_sql_function! {
    /// The length in bytes of a binary value (`length` on both backends).
    fn length(x: diesel::sql_types::Binary) -> diesel::sql_types::Integer;
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
pub fn keep(conn: &mut DbConnection, at: NaiveDateTime, q: Quarantined<'_>) -> Result<String, StoreError> {
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

/// A quarantined upload without its bytes, for listing.
#[derive(Debug, Clone, PartialEq, Eq, Queryable)]
pub struct QuarantineSummary {
    /// A UUID.
    pub id: String,
    /// When the upload arrived.
    pub received_at: NaiveDateTime,
    /// The case it was for.
    pub case_id: String,
    /// Who sent it.
    pub staff_id: String,
    /// From which device.
    pub device_id: String,
    /// The per-case error code (`invalid_change`, `foreign_actor`, ...).
    pub code: String,
    /// The size of the upload in bytes.
    pub upload_bytes: i32,
    /// When an administrator decided what to do with it.
    pub decided_at: Option<NaiveDateTime>,
    /// What was decided.
    pub decision: Option<String>,
}

/// A quarantined upload, whole.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = quarantine)]
pub struct QuarantinedBatch {
    /// A UUID.
    pub id: String,
    /// When the upload arrived.
    pub received_at: NaiveDateTime,
    /// The case it was for.
    pub case_id: String,
    /// Who sent it.
    pub staff_id: String,
    /// From which device.
    pub device_id: String,
    /// The per-case error code.
    pub code: String,
    /// The violations, as JSON.
    pub violations: String,
    /// The upload exactly as received (CBOR of the `DocumentUpload`).
    pub upload: Vec<u8>,
    /// When an administrator decided.
    pub decided_at: Option<NaiveDateTime>,
    /// What was decided.
    pub decision: Option<String>,
}

/// Quarantined uploads, oldest first; only those not yet decided if `undecided_only`.
pub fn list(conn: &mut DbConnection, undecided_only: bool) -> Result<Vec<QuarantineSummary>, StoreError> {
    let mut query = quarantine::table
        .select((
            quarantine::id,
            quarantine::received_at,
            quarantine::case_id,
            quarantine::staff_id,
            quarantine::device_id,
            quarantine::code,
            length(quarantine::upload),
            quarantine::decided_at,
            quarantine::decision,
        ))
        .order((quarantine::received_at.asc(), quarantine::id.asc()))
        .into_boxed();
    if undecided_only {
        query = query.filter(quarantine::decided_at.is_null());
    }
    Ok(query.load::<QuarantineSummary>(conn)?)
}

/// One quarantined upload, whole.
pub fn find(conn: &mut DbConnection, id: &str) -> Result<Option<QuarantinedBatch>, StoreError> {
    Ok(quarantine::table.find(id).select(QuarantinedBatch::as_select()).first(conn).optional()?)
}
