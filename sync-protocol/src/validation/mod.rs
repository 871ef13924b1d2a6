//! Validation shared by phone and server.
//!
//! Given a case document, the heads it had **before** some changes were applied, and who is
//! acting, [`validate_update`] accepts the result or refuses it with every [`Violation`]:
//!
//! 1. **Schema** of the result ([`crate::document::read_case`]): types, enums, dates, ids,
//!    required fields per activity kind, sizes, no unknown fields, no duplicated containers.
//! 2. **Permissions on what changed**: the patches between the old and the new heads are
//!    checked against the acting role — nobody deletes an activity or a household member
//!    (void instead), nobody re-creates a container, a counsellor amends only activities they
//!    recorded, a new activity's `recorded_by`/`device_id` are the actor's own, only the
//!    server sets `case_number`, only supervisors add reviews or assign (a review's `heads`
//!    name only changes the document holds, and are fixed once written), a meeting tablet and
//!    an administrator write nothing. Plans and evaluations are added and amended by
//!    counsellors and supervisors, meeting decisions by supervisors only; a new form names
//!    its writer as its author, and its author and round are fixed.
//! 3. **Domain rules**: a batch that sets the status to `closed` leaves the case holding a
//!    decision with the verdict `close` ([`ViolationCode::ClosingWithoutDecision`]); a
//!    decision that refers the person on names a destination
//!    ([`ViolationCode::ReferralWithoutDestination`], checked with the schema).
//!
//! Authorship of the raw changes (the actor id must be the uploading device's) is checked
//! before anything is applied: [`crate::actor::check_authorship`]; [`apply_and_validate`]
//! does both.
mod permissions;
mod violation;

use std::collections::HashSet;

use automerge::{Automerge, Change, ChangeHash, ReadDoc};

pub use permissions::{validate_update, validate_update_from, validate_update_touched, Touched};
pub use violation::{Violation, ViolationCode};

use crate::domain::Role;
use crate::ids::{DeviceId, StaffId};

/// A staff member acting through one of their devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Actor {
    /// Who.
    pub staff: StaffId,
    /// Through which registered device.
    pub device: DeviceId,
    /// In which role.
    pub role: Role,
}

impl Actor {
    /// A counsellor on a device.
    pub fn counsellor(staff: StaffId, device: DeviceId) -> Self {
        Self { staff, device, role: Role::Counsellor }
    }

    /// A supervisor on a device.
    pub fn supervisor(staff: StaffId, device: DeviceId) -> Self {
        Self { staff, device, role: Role::Supervisor }
    }
}

/// Who is responsible for a set of changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acting {
    /// Changes uploaded from a device (or written by the server on a staff member's behalf).
    Staff(Actor),
    /// The server itself, e.g. assigning the case number.
    Server,
}

/// Why [`apply_and_validate`] refused a batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// A change does not decode.
    #[error("change {index} is not a valid Automerge change: {reason}")]
    Corrupt {
        /// Position in the batch.
        index: usize,
        /// The decoder's message.
        reason: String,
    },
    /// The batch depends on changes the document does not have.
    #[error("the changes depend on {} change(s) this document does not have", .0.len())]
    MissingDependencies(Vec<ChangeHash>),
    /// The changes, or their result, broke the rules.
    #[error("{} violation(s), first: {}", .0.len(), .0.first().map(|v| v.to_string()).unwrap_or_default())]
    Refused(Vec<Violation>),
}

/// Decodes raw change bytes, checks they are authored by the acting device, applies them to a
/// copy of `doc` and validates the result. On success returns the new document and its view;
/// `doc` itself is never modified.
pub fn apply_and_validate(
    doc: &Automerge,
    raw_changes: &[Vec<u8>],
    acting: &Acting,
) -> Result<(Automerge, crate::document::CaseView), BatchError> {
    apply_and_validate_touched(doc, raw_changes, acting).map(|(after, view, _)| (after, view))
}

/// [`apply_and_validate`], also saying what the changes wrote ([`Touched`]).
pub fn apply_and_validate_touched(
    doc: &Automerge,
    raw_changes: &[Vec<u8>],
    acting: &Acting,
) -> Result<(Automerge, crate::document::CaseView, Touched), BatchError> {
    apply_and_validate_from(doc, None, raw_changes, acting)
}

/// [`apply_and_validate_touched`], given the view of `doc` when the caller has it (see
/// [`validate_update_from`]): a batch that writes only into activities then reads only those
/// again.
pub fn apply_and_validate_from(
    doc: &Automerge,
    view: Option<crate::document::CaseView>,
    raw_changes: &[Vec<u8>],
    acting: &Acting,
) -> Result<(Automerge, crate::document::CaseView, Touched), BatchError> {
    let mut changes = Vec::with_capacity(raw_changes.len());
    for (index, bytes) in raw_changes.iter().enumerate() {
        let change = decode_change(bytes.clone()).map_err(|reason| BatchError::Corrupt { index, reason })?;
        changes.push(change);
    }
    if let Acting::Staff(actor) = acting {
        if let Err(e) = crate::actor::check_authorship(&changes, &actor.device) {
            return Err(BatchError::Refused(vec![Violation::new(ViolationCode::ForeignActor, "/", e.to_string())]));
        }
    }
    let before = doc.get_heads();
    // What the batch adds: a change the document already holds (sent again after a lost
    // answer) writes nothing now.
    let mut added = HashSet::new();
    let fresh: Vec<&Change> =
        changes.iter().filter(|c| doc.get_change_by_hash(&c.hash()).is_none() && added.insert(c.hash())).collect();
    let batch = untrusted(|| fresh.iter().map(|c| c.decode()).collect::<Vec<_>>())?;
    let mut after = doc.clone();
    untrusted(|| after.apply_changes(changes))?.map_err(|e| BatchError::Corrupt { index: 0, reason: e.to_string() })?;
    let missing = after.get_missing_deps(&[]);
    if !missing.is_empty() {
        return Err(BatchError::MissingDependencies(missing));
    }
    let (view, touched) = untrusted(|| permissions::validate_batch(&after, &before, view, acting, &batch))?
        .map_err(BatchError::Refused)?;
    Ok((after, view, touched))
}

/// Decodes one change that came from outside (an upload, a quarantined batch). Automerge
/// 0.12 can panic on some crafted bytes while decoding (found by fuzzing); that is an
/// undecodable change like any other.
pub fn decode_change(bytes: Vec<u8>) -> Result<Change, String> {
    match untrusted(|| Change::from_bytes(bytes)) {
        Ok(Ok(change)) => Ok(change),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// Runs Automerge on changes that came from outside. Automerge 0.12 can panic on crafted
/// change bytes that decode (found by fuzzing: an actor index out of range while importing
/// operations); such a batch is refused as corrupt instead of taking the request down. The
/// closure works on a copy of the document, which is dropped on failure, so nothing
/// half-applied survives.
pub fn untrusted<T>(f: impl FnOnce() -> T) -> Result<T, BatchError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|_| BatchError::Corrupt {
        index: 0,
        reason: "Automerge could not apply these changes: they are malformed".into(),
    })
}
#[cfg(test)]
mod tests;
