//! Writes the server makes **on behalf of** a staff member who acts through the supervisors'
//! API rather than from a replica of their own: a review, an assignment.
//!
//! The change is made with the field operations of [`tsunagi_sync::ops`] on the stored
//! document, under the server instance's Automerge actor (a device never authors it), and is
//! checked by [`tsunagi_sync::validation::validate_update`] **as that staff member**: the same
//! permission rules as if their own tablet had synced it. It is recorded with their staff id
//! and the device they called from, in one transaction with the heads, projections and an
//! audit row; devices that hold the case receive it on their next sync.

use automerge::{AutoCommit, Automerge};
use chrono::Utc;
use tsunagi_sync::ids::CaseId;
use tsunagi_sync::ops::{CaseReplica, OpError};
use tsunagi_sync::validation::{self, Acting, Violation};

use super::{Requester, SyncEngine};
use crate::store::documents::{self, Sender};
use crate::store::{audit, projections, visibility, DbConnection, StoreError};

/// Why a write on behalf of a staff member was not made. Nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum OnBehalfError {
    /// No such case, or one the staff member may not see.
    #[error("no such case")]
    NotFound,
    /// The field operation refused (e.g. an unknown activity, an empty comment).
    #[error(transparent)]
    Refused(#[from] OpError),
    /// The case's current state does not allow the change (e.g. removing the primary
    /// assignee).
    #[error("{0}")]
    Conflict(&'static str),
    /// The resulting document breaks the case rules.
    #[error("the change breaks the case rules: {}", .0.iter().map(|v| v.to_string()).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<Violation>),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl SyncEngine {
    /// Runs `op` on `case` as `who` and stores the change it made (none: nothing stored).
    /// `action` names the audit row (e.g. `case.review`); `detail` is its detail, never case
    /// content. Blocking: call it from a blocking thread.
    pub fn write_on_behalf<T>(
        &self,
        who: &Requester,
        case: &CaseId,
        action: &str,
        detail: &str,
        op: impl FnOnce(&mut CaseReplica) -> Result<T, OnBehalfError>,
    ) -> Result<T, OnBehalfError> {
        self.write_on_behalf_then(who, case, action, detail, op, |_| Ok(())).map(|(out, ())| out)
    }

    /// Like [`SyncEngine::write_on_behalf`], then runs `then` in **the same transaction**,
    /// after the change is stored: what must hold or fail together with it (e.g. marking the
    /// attention item it resolves). An error from `then` rolls the change back.
    pub fn write_on_behalf_then<T, U>(
        &self,
        who: &Requester,
        case: &CaseId,
        action: &str,
        detail: &str,
        op: impl FnOnce(&mut CaseReplica) -> Result<T, OnBehalfError>,
        then: impl FnOnce(&mut DbConnection) -> Result<U, OnBehalfError>,
    ) -> Result<(T, U), OnBehalfError> {
        let at = Utc::now().naive_utc();
        self.db.write(|conn| {
            let Some(row) = documents::lock(conn, case)? else { return Err(OnBehalfError::NotFound) };
            if !visibility::may_see(conn, who.viewer(), case)? {
                return Err(OnBehalfError::NotFound);
            }
            let stored: Automerge = documents::load(conn, &row)?;
            let heads = stored.get_heads();
            let doc = AutoCommit::load(&stored.save()).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let mut replica = CaseReplica::from_doc(doc, who.actor()).with_actor_id(self.actor.clone());
            let out = op(&mut replica)?;
            let mut doc = replica.into_doc();
            let own = doc.get_changes(&heads);
            if !own.is_empty() {
                let after = doc.document().clone();
                let view = validation::validate_update(&after, &heads, &Acting::Staff(who.actor()))
                    .map_err(OnBehalfError::Invalid)?;
                let sender = Sender { staff: Some(who.staff), device: Some(who.device) };
                documents::append_changes(conn, case, &own, sender, at)?;
                documents::update(conn, &row, &after, at)?;
                projections::project(conn, &view, at)?;
                audit::record(conn, at, Some(&who.staff), Some(&who.device), Some(case), action, detail)?;
            }
            let then = then(conn)?;
            Ok((out, then))
        })
    }
}
