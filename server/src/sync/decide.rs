//! A supervisor's decision on a refused upload kept in quarantine (see
//! [`crate::store::quarantine`]): **reject** it with a reason the counsellor sees, or
//! **accept** it with an override.
//!
//! Accepting applies the upload's changes exactly as the device sent them, in one transaction
//! with heads, projections and audit, recorded as the sending device's changes and, in the
//! audit log, as the supervisor's override. The override lifts the *permission* rules only:
//! the changes must still be authored by the device that sent them, decode, have every
//! dependency on the server, and leave a document that reads without schema issues. Only
//! uploads refused as `invalid_change` **for overridable rules only** ([`OVERRIDABLE`]: a
//! colleague amended an activity that is not theirs, a counsellor did what a supervisor does,
//! a case was closed without a meeting decision) can be accepted. Nothing that would delete
//! or hide data, rewrite who wrote what, or set what only the server sets is ever accepted.

use automerge::ReadDoc;
use chrono::Utc;
use serde_json::json;
use tsunagi_sync::actor::check_authorship;
use tsunagi_sync::document::read_case;
use tsunagi_sync::ids::{CaseId, DeviceId, StaffId};
use tsunagi_sync::validation::{Violation, ViolationCode};
use tsunagi_sync::wire::{decode_cbor, DocumentErrorCode, DocumentUpload};

use super::{Requester, SyncEngine};
use crate::attention::{self, AttentionKind};
use crate::store::documents::{self, Sender};
use crate::store::schema::quarantine as quarantine_table;
use crate::store::{audit, projections, quarantine, visibility, StoreError};

/// The violation codes a supervisor's override may lift.
pub const OVERRIDABLE: &[ViolationCode] =
    &[ViolationCode::NotOwnActivity, ViolationCode::SupervisorOnly, ViolationCode::ClosingWithoutDecision];

/// A supervisor's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Apply the upload, overriding the rule it broke.
    Accept,
    /// Keep it refused, with a reason for the counsellor.
    Reject(String),
}

/// Why a decision was not recorded. Nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum DecideError {
    /// No such quarantined upload that the supervisor may see.
    #[error("no such quarantined upload")]
    NotFound,
    /// It was decided already.
    #[error("this upload was decided already")]
    AlreadyDecided,
    /// It cannot be accepted (why).
    #[error("{0}")]
    CannotAccept(String),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl SyncEngine {
    /// Records `decision` on quarantined upload `id` for supervisor `who`. Blocking.
    pub fn decide_quarantined(&self, who: &Requester, id: &str, decision: &Decision) -> Result<(), DecideError> {
        use diesel::prelude::*;
        let at = Utc::now().naive_utc();
        self.db.write(|conn| {
            let batch = quarantine::find(conn, id)?.ok_or(DecideError::NotFound)?;
            let case = CaseId::parse(&batch.case_id).map_err(|_| DecideError::NotFound)?;
            let row = documents::lock(conn, &case)?;
            let visible = visibility::may_see_upload(conn, who.viewer(), &case, &batch.staff_id)?;
            if !visible {
                return Err(DecideError::NotFound);
            }
            if batch.decided_at.is_some() {
                return Err(DecideError::AlreadyDecided);
            }
            let (stored_decision, resolution) = match decision {
                Decision::Reject(reason) => (format!("rejected: {reason}"), json!({ "rejected": reason })),
                Decision::Accept => {
                    if batch.code != DocumentErrorCode::InvalidChange.as_str() {
                        return Err(DecideError::CannotAccept(format!(
                            "an upload refused as {} can only be rejected",
                            batch.code
                        )));
                    }
                    let violations: Vec<Violation> = serde_json::from_str(&batch.violations).unwrap_or_default();
                    let fixed: Vec<&str> =
                        violations.iter().filter(|v| !OVERRIDABLE.contains(&v.code)).map(|v| v.code.as_str()).collect();
                    if violations.is_empty() || !fixed.is_empty() {
                        return Err(DecideError::CannotAccept(format!(
                            "no override lifts these rules: {}; the upload can only be rejected",
                            fixed.join(", ")
                        )));
                    }
                    let row = row.ok_or_else(|| {
                        DecideError::CannotAccept(
                            "the case was never stored; the counsellor opens it again from the kept copy".into(),
                        )
                    })?;
                    let upload: DocumentUpload = decode_cbor(&batch.upload)
                        .map_err(|e| StoreError::Corrupt(format!("quarantined upload {id}: {e}")))?;
                    let device = DeviceId::parse(&batch.device_id).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                    let staff = StaffId::parse(&batch.staff_id).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                    let mut doc = documents::load(conn, &row)?;
                    let mut fresh = Vec::new();
                    for bytes in &upload.changes {
                        let change = tsunagi_sync::validation::decode_change(bytes.0.clone())
                            .map_err(|e| DecideError::CannotAccept(format!("a change does not decode: {e}")))?;
                        if doc.get_change_by_hash(&change.hash()).is_none() {
                            fresh.push(change);
                        }
                    }
                    check_authorship(&fresh, &device).map_err(|e| DecideError::CannotAccept(e.to_string()))?;
                    tsunagi_sync::validation::untrusted(|| doc.apply_changes(fresh.clone()))
                        .map_err(|e| DecideError::CannotAccept(e.to_string()))?
                        .map_err(|e| DecideError::CannotAccept(e.to_string()))?;
                    if !doc.get_missing_deps(&[]).is_empty() {
                        return Err(DecideError::CannotAccept(
                            "the upload depends on changes the server does not hold; the device must sync first".into(),
                        ));
                    }
                    let reading = read_case(&doc);
                    let view = match reading.view {
                        Some(view) if reading.issues.is_empty() => view,
                        _ => {
                            let issues: Vec<String> = reading.issues.iter().map(|v| v.to_string()).collect();
                            return Err(DecideError::CannotAccept(format!(
                                "the result breaks the document schema, which no override lifts: {}",
                                issues.join("; ")
                            )));
                        }
                    };
                    if !fresh.is_empty() {
                        documents::append_changes(
                            conn,
                            &case,
                            &fresh,
                            Sender { staff: Some(staff), device: Some(device) },
                            at,
                        )?;
                        documents::update(conn, &row, &doc, at)?;
                        projections::project(conn, &view, at)?;
                    }
                    ("accepted".to_owned(), json!({ "accepted": true, "changes": fresh.len() }))
                }
            };
            diesel::update(quarantine_table::table.find(id))
                .set((quarantine_table::decided_at.eq(Some(at)), quarantine_table::decision.eq(Some(stored_decision))))
                .execute(conn)
                .map_err(StoreError::from)?;
            if let Some(item) = attention::find_open(conn, &batch.case_id, AttentionKind::QuarantinedBatch, id)? {
                attention::resolve(conn, &item.item_id, Some(&who.staff), &resolution, at)?;
            }
            let action = match decision {
                Decision::Accept => "quarantine.accept",
                Decision::Reject(_) => "quarantine.reject",
            };
            audit::record(conn, at, Some(&who.staff), Some(&who.device), Some(&case), action, id)?;
            Ok(())
        })
    }
}
