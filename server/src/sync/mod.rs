//! The sync engine behind `POST /v1/sync` (see `docs/protocol.md`).
//!
//! A request is handled in **one write transaction**: the response is numbered, the document
//! rows of every listed case locked at once, in case id order (`FOR UPDATE` on PostgreSQL,
//! the single writer on SQLite), and each case handled in turn: its document loaded (or taken
//! from the [`cache`] when the heads it was stored with are still the row's), changes the
//! server already holds skipped, the rest checked for authorship, applied and validated with
//! [`tsunagi_sync::validation`], and changes, heads, projections, case number and audit
//! written. The documents written are stamped with one value of the commit clock, last of all,
//! and the client's "ok" is only built after the commit. A refused upload changes nothing in
//! its case and is kept in quarantine, in the same transaction, with its violations; one
//! case's refusal never affects another's. A stored case that does not load is answered
//! `unavailable`, having written nothing, and the others go on. A database failure fails the
//! whole request, and nothing of it is acknowledged: the client sends it again.
//!
//! Visibility: a device only ever receives cases its staff member may see
//! ([`crate::store::visibility`]); anything else is `not_found`, exactly as for a
//! case that does not exist. A device that held a case and lost access may still upload the
//! changes it made (nothing a counsellor logged is lost), and is then told to purge it.
use std::collections::HashSet;
use std::sync::Arc;

use automerge::sync::{self, SyncDoc};
use automerge::transaction::{CommitOptions, Transactable};
use automerge::{ActorId, Automerge, Change, ChangeHash, ReadDoc, ROOT};
use chrono::{NaiveDateTime, Utc};
use tsunagi_sync::document::keys;
use tsunagi_sync::domain::Role;
use tsunagi_sync::ids::{CaseId, CaseNumber, DeviceId, FiscalYear, MunicipalityCode, StaffId};
use tsunagi_sync::validation::{self, Acting, Actor, BatchError, Violation, ViolationCode};
use tsunagi_sync::wire::{
    encode_cbor, AssignedDocument, Bytes, DocumentError, DocumentErrorCode, DocumentResult, DocumentStatus,
    DocumentUpload, Hash, PurgeNotice, PurgeReason, SyncRequest, SyncResponse, UNAVAILABLE_SINCE,
};

use crate::attention;
use crate::store::device_cases::{self, Synced};
use crate::store::documents::{self, Sender};
use crate::store::projections;
use crate::store::quarantine::{self, Quarantined};
use crate::store::visibility::{self, Viewer};
use crate::store::{accounts, audit};
use crate::store::{write_transaction, Database, DbConnection, StoreError};
use cache::{Cached, DocumentCache};

/// At most this many changes for one case in one request (`too_large` above).
pub const MAX_CHANGES_PER_CASE: usize = 10_000;
/// Assigned documents are sent until a response holds about this many bytes of them; the
/// rest follow in the next request (`more`).
pub const ASSIGNED_BYTE_BUDGET: usize = 4 * 1024 * 1024;

/// Who is syncing: an authenticated, active device and its staff member.
#[derive(Debug, Clone)]
pub struct Requester {
    /// The staff member.
    pub staff: StaffId,
    /// The device.
    pub device: DeviceId,
    /// The staff member's role.
    pub role: Role,
    /// The staff member's municipality.
    pub municipality: MunicipalityCode,
    /// The staff member's area code, if any.
    pub area: Option<String>,
}

impl Requester {
    /// The staff member and device as the validation rules see them.
    pub fn actor(&self) -> Actor {
        Actor { staff: self.staff, device: self.device, role: self.role }
    }

    /// The staff member as the visibility rule sees them.
    pub fn viewer(&self) -> Viewer<'_> {
        Viewer {
            staff: self.staff,
            role: self.role,
            municipality: &self.municipality,
            area: self.area.as_deref(),
            today: visibility::today_in_japan(),
        }
    }
}

/// Runs syncs against one database, writing the server's own changes with `actor`.
#[derive(Debug, Clone)]
pub struct SyncEngine {
    db: Database,
    actor: ActorId,
    assigned_byte_budget: usize,
    cache: Arc<DocumentCache>,
}

/// What the request's transaction found of one listed case before handling it.
struct Found {
    /// Its document row, locked; none for a case the server does not have.
    row: Option<documents::DocumentRow>,
    /// The device's staff member may see it.
    visible: bool,
    /// The device holds it, or may hold it.
    held: bool,
    /// It was merged into another case.
    merged: bool,
}

/// One listed case, handled: its answer, and what it leaves for the end of the transaction
/// and for after the commit.
struct Handled {
    case: CaseId,
    result: DocumentResult,
    purge: Option<PurgeNotice>,
    /// It stored changes: the document is stamped with the request's clock value.
    wrote: bool,
    /// The device's record of the case.
    listing: Listing,
    /// The case's clock when its row was locked.
    clock: Option<i64>,
    /// The document and view as stored, for the cache once committed.
    stored: Option<Cached>,
    /// The case its late entries were carried into (it was merged away).
    carried_into: Option<CaseId>,
}

/// What the device's record of a listed case becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Listing {
    /// It may not see the case (any more): no record is written.
    Hidden,
    /// It holds the case, but this response does not bring it up to date.
    Held,
    /// This response brings it up to date with the case as stored when the request commits:
    /// as of the clock value the request takes when it wrote the case, else the case's.
    UpToDate,
}

fn now() -> NaiveDateTime {
    Utc::now().naive_utc()
}

fn hashes(heads: &[ChangeHash]) -> Vec<Hash> {
    heads.iter().map(Hash::from).collect()
}

fn raw(changes: &[Change]) -> Vec<Bytes> {
    changes.iter().map(|c| Bytes(c.raw_bytes().to_vec())).collect()
}

fn case_number_of(doc: &Automerge) -> Option<CaseNumber> {
    match doc.get(ROOT, keys::CASE_NUMBER) {
        Ok(Some((automerge::Value::Scalar(s), _))) => s.as_str().and_then(|s| CaseNumber::parse(s).ok()),
        _ => None,
    }
}

impl SyncEngine {
    /// An engine whose own changes (case numbers) are written with a fresh 16-byte actor id,
    /// which can never be mistaken for a device actor (those are longer).
    pub fn new(db: Database) -> Self {
        Self {
            db,
            actor: ActorId::from(uuid::Uuid::new_v4().as_bytes().as_slice()),
            assigned_byte_budget: ASSIGNED_BYTE_BUDGET,
            cache: Arc::new(DocumentCache::new(cache::DEFAULT_BUDGET)),
        }
    }

    /// Keeps about `bytes` of recently stored documents loaded ([`cache`]; 0: none).
    pub fn with_document_cache(mut self, bytes: usize) -> Self {
        self.cache = Arc::new(DocumentCache::new(bytes));
        self
    }

    /// The document cache: how many cases it holds, and their estimated bytes.
    pub fn cache_usage(&self) -> (usize, usize) {
        self.cache.usage()
    }

    /// Sends newly visible documents up to about `bytes` per response (at least one).
    pub fn with_assigned_byte_budget(mut self, bytes: usize) -> Self {
        self.assigned_byte_budget = bytes.max(1);
        self
    }

    /// Answers one sync request. Blocking: call it from a blocking thread.
    ///
    /// The response is numbered, the commit clock read and every listed case handled in **one
    /// write transaction**; the answer is built only once it committed. The clock is read
    /// **before** any case is handled, so the cursor it returns never claims a change committed
    /// while it was being answered (those come again next time, which is harmless: applying a
    /// change twice is a no-op).
    ///
    /// The response is in the request's protocol version. A version 1 client does not know
    /// `unavailable`: a request of it that meets a case that does not load fails instead, once
    /// the other cases are stored (none of which it heard "ok" for, so it sends them again).
    pub fn sync(&self, who: &Requester, request: SyncRequest) -> Result<SyncResponse, StoreError> {
        let protocol = request.protocol;
        let mut uploads = Vec::with_capacity(request.documents.len());
        let mut listed = HashSet::new();
        for upload in request.documents {
            // One entry per case; protocol.md lets the server ignore repeats.
            if listed.insert(upload.case_id) {
                uploads.push(upload);
            }
        }
        let mut conn = self.db.conn()?;
        let (number, clock, cursor, handled) = write_transaction(&mut conn, |conn| {
            let number = accounts::next_sync_response(conn, &who.device)?;
            let clock = documents::clock(conn)?;
            let cursor = request.cursor.as_ref().and_then(|c| Cursor::decode(c.as_slice(), &who.device, number, clock));
            if let Some(cursor) = cursor {
                device_cases::purges_confirmed(conn, &who.device, cursor.response)?;
            }
            let handled = self.listed_cases(conn, who, &uploads, number)?;
            Ok::<_, StoreError>((number, clock, cursor, handled))
        })?;
        // Given back before the unlisted cases take connections of their own.
        drop(conn);
        let mut response = SyncResponse { protocol, ..SyncResponse::new() };
        for case in handled {
            // Committed: the document as stored may serve the next write of the case.
            if let Some(stored) = case.stored {
                self.cache.put(case.case, documents::encode_heads(&stored.doc.get_heads()), stored);
            }
            response.documents.push(case.result);
            response.purge.extend(case.purge);
        }
        if protocol < UNAVAILABLE_SINCE && response.documents.iter().any(|d| d.status == DocumentStatus::Unavailable) {
            return Err(StoreError::Corrupt("a case the request lists does not load".into()));
        }
        self.send_unlisted(who, &listed, cursor, number, &mut response)?;
        response.cursor = Some(Cursor { response: number, clock }.encode(&who.device));
        Ok(response)
    }

    /// The cases a request lists, inside its transaction, answered in the request's order.
    ///
    /// Their document rows, and those of the cases merged ones live on in, are locked at
    /// once, in case id order, so that two requests never wait on each other in a cycle;
    /// visibility, what the device holds and which cases were merged away are read once for
    /// all of them. Cases merged away are handled first: their
    /// late entries are carried into the case they live on in, which the request may list too
    /// and which is then handled from its row as carried into. Every case stored is stamped
    /// with **one** value of the commit clock, taken last of all.
    fn listed_cases(
        &self,
        conn: &mut DbConnection,
        who: &Requester,
        uploads: &[DocumentUpload],
        number: i64,
    ) -> Result<Vec<Handled>, StoreError> {
        let at = now();
        let ids: Vec<CaseId> = uploads.iter().map(|u| u.case_id).collect();
        // The cases their late entries may be carried into are locked with the rest, in the
        // same order (merges lock theirs in id order too). Read before the locks; a case
        // merged meanwhile is followed under them (`carry_into_survivor`), and should that
        // close a lock cycle, PostgreSQL rolls one transaction back and its client retries.
        let mut locked = ids.clone();
        for case in projections::merged_among(conn, &ids)? {
            locked.extend(projections::survivor_of(conn, &case)?);
        }
        let mut rows = documents::lock_all(conn, &locked)?;
        // Again under the locks: a case may have been merged since.
        let merged = projections::merged_among(conn, &ids)?;
        let visible = visibility::visible_among(conn, who.viewer(), &ids)?;
        let held = device_cases::holds_among(conn, &who.device, &ids)?;
        let mut order: Vec<usize> = (0..uploads.len()).collect();
        order.sort_by_key(|&i| !merged.contains(&uploads[i].case_id));
        let mut carried_into = HashSet::new();
        let mut handled: Vec<Option<Handled>> = uploads.iter().map(|_| None).collect();
        for index in order {
            let upload = &uploads[index];
            let case = upload.case_id;
            let found = match carried_into.contains(&case) {
                // Written by this transaction since the rows were read: read it again.
                true => Found {
                    row: documents::lock(conn, &case)?,
                    visible: visibility::may_see(conn, who.viewer(), &case)?,
                    held: held.contains(&case),
                    merged: false,
                },
                false => Found {
                    row: rows.remove(&case),
                    visible: visible.contains(&case),
                    held: held.contains(&case),
                    merged: merged.contains(&case),
                },
            };
            let one = self.case(conn, who, upload, found, number, at)?;
            carried_into.extend(one.carried_into);
            handled[index] = Some(one);
        }
        let handled: Vec<Handled> = handled.into_iter().flatten().collect();
        // Every document this request wrote: the cases it stored, and those it carried into.
        let written: HashSet<CaseId> =
            handled.iter().filter(|h| h.wrote).map(|h| h.case).chain(carried_into.iter().copied()).collect();
        // The device's record of each case it may see; the cases brought up to date with what
        // this request wrote get the clock value it takes next, in one statement after it.
        let mut up_to_stamp = Vec::new();
        for one in &handled {
            let synced = match one.listing {
                Listing::Hidden => continue,
                Listing::Held => None,
                Listing::UpToDate if written.contains(&one.case) => {
                    up_to_stamp.push(one.case);
                    Some(Synced { response: number, clock: 0 })
                }
                Listing::UpToDate => one.clock.map(|clock| Synced { response: number, clock }),
            };
            device_cases::listed(conn, &who.device, &one.case, synced)?;
        }
        // Last: the commit clock. Its row stays locked until the commit, and every writer
        // waits on it, so only the stamp and the device's clock come between it and the commit.
        if !written.is_empty() {
            let written: Vec<CaseId> = written.into_iter().collect();
            let clock = documents::stamp(conn, &written)?;
            device_cases::synced_at(conn, &who.device, &up_to_stamp, clock)?;
        }
        Ok(handled)
    }

    /// One case of the request, inside the request's transaction; its row (when it exists) is
    /// locked.
    fn case(
        &self,
        conn: &mut DbConnection,
        who: &Requester,
        upload: &DocumentUpload,
        found: Found,
        number: i64,
        at: NaiveDateTime,
    ) -> Result<Handled, StoreError> {
        let case = upload.case_id;
        let Found { row, visible, held, merged } = found;
        let mut handled = Handled {
            case,
            result: DocumentResult::not_found(case),
            purge: None,
            wrote: false,
            listing: Listing::Hidden,
            clock: row.as_ref().map(|r| r.clock),
            stored: None,
            carried_into: None,
        };
        let visible = row.is_some() && visible;
        match (&row, visible || held) {
            // Neither visible nor ever held: it may as well not exist.
            (Some(_), false) => return Ok(handled),
            // Unknown to the server and nothing to create it with.
            (None, _) if upload.changes.is_empty() && upload.sync_message.is_none() => return Ok(handled),
            _ => {}
        }
        let (doc, view) = match &row {
            Some(row) => match self.cache.take(&case, &row.heads) {
                Some(cached) => (Some(cached.doc), Some(cached.view)),
                None => match documents::load(conn, row) {
                    Ok(doc) => (Some(doc), None),
                    // Only this case is answered `unavailable`; it wrote nothing yet, and the
                    // request's other cases go on. The device keeps its changes for later.
                    Err(StoreError::Corrupt(reason)) => {
                        tracing::error!(%case, %reason, "a stored case does not load: answered unavailable");
                        handled.result = DocumentResult::unavailable(case);
                        if visible {
                            handled.listing = Listing::Held;
                        }
                        return Ok(handled);
                    }
                    Err(e) => return Err(e),
                },
            },
            None => (None, None),
        };
        let mut tx = CaseTx {
            engine: self,
            conn,
            who,
            case,
            upload,
            at,
            may_read: row.is_none() || visible,
            merged,
            row,
            view,
            stored: None,
            wrote: false,
            rewrote_case: false,
            carried_into: None,
        };
        let doc = doc.unwrap_or_default();
        let may_read = tx.may_read;
        let outcome = match &upload.sync_message {
            Some(message) => tx.fallback(doc, message)?,
            None => tx.upload(doc)?,
        };
        let (stored, wrote, carried_into) = (tx.stored.take(), tx.wrote, tx.carried_into.take());
        // Visibility follows the `cases` row, assignments and meetings: a batch that wrote
        // only into activities of a stored case changed none of them, and a new case that
        // stored nothing does not exist.
        let now_visible = match tx.rewrote_case {
            true => visibility::may_see(conn, who.viewer(), &case)?,
            false => visible,
        };
        // Purge a case this device held but may no longer see, once its upload is in.
        if !now_visible && held {
            device_cases::purge_sent(conn, &who.device, &case, number)?;
            handled.purge = Some(PurgeNotice { case_id: case, reason: purge_reason(conn, who.role, &case)? });
        }
        if now_visible {
            // `ok` and `refused` bring the device up to date with the case as stored now.
            let complete = may_read
                && outcome.as_ref().is_some_and(|r| matches!(r.status, DocumentStatus::Ok | DocumentStatus::Refused));
            handled.listing = match complete {
                true => Listing::UpToDate,
                false => Listing::Held,
            };
        }
        if let Some(result) = outcome {
            handled.result = result;
        }
        handled.wrote = wrote;
        handled.stored = stored;
        handled.carried_into = carried_into;
        Ok(handled)
    }

    /// The cases the request did not list (protocol.md, section 9): what changed in those
    /// the device holds, since its cursor; purges for those it may no longer see; and, whole,
    /// paged by a byte budget, those it may see but does not hold (or may not have received).
    fn send_unlisted(
        &self,
        who: &Requester,
        listed: &HashSet<CaseId>,
        cursor: Option<Cursor>,
        number: i64,
        response: &mut SyncResponse,
    ) -> Result<(), StoreError> {
        let (visible, held) = self.db.read(|conn| {
            Ok::<_, StoreError>((
                visibility::visible_cases(conn, who.viewer())?,
                device_cases::held(conn, &who.device)?,
            ))
        })?;
        let visible_set: HashSet<&str> = visible.iter().map(String::as_str).collect();
        let mut whole = Vec::new();
        let mut updates = Vec::new();
        let mut held_set = HashSet::new();
        for row in &held {
            held_set.insert(row.case_id.as_str());
            let Ok(case) = CaseId::parse(&row.case_id) else { continue };
            if listed.contains(&case) {
                continue;
            }
            if !visible_set.contains(row.case_id.as_str()) {
                self.db.write(|conn| -> Result<(), StoreError> {
                    match cursor {
                        // Without a cursor the request lists every case the device holds: it
                        // does not hold this one (it purged it, or never received it).
                        None => device_cases::forget(conn, &who.device, &case),
                        Some(_) => {
                            device_cases::purge_sent(conn, &who.device, &case, number)?;
                            let reason = purge_reason(conn, who.role, &case)?;
                            response.purge.push(PurgeNotice { case_id: case, reason });
                            Ok(())
                        }
                    }
                })?;
                continue;
            }
            match cursor {
                // It stored the response that sent the case whole, and has not been told to
                // purge it since: it holds the case up to the cursor's clock.
                Some(cursor) if row.purge_sent.is_none() && row.sent_whole <= cursor.response => {
                    updates.push((row.case_id.clone(), row.holds_up_to(cursor.response, cursor.clock)))
                }
                // It may not hold the case: no cursor (it would have listed it), a response
                // with the whole case it has not confirmed, or a purge it may have carried out.
                _ => whole.push(case),
            }
        }
        if let Some(cursor) = cursor {
            self.send_updates(who, &updates, cursor.clock, number, response)?;
        }
        whole.extend(
            visible
                .iter()
                .filter(|id| !held_set.contains(id.as_str()))
                .filter_map(|id| CaseId::parse(id).ok())
                .filter(|case| !listed.contains(case)),
        );
        self.send_whole(who, &whole, number, response)
    }

    /// For each held case of `cases` with the clock up to which the device holds it for certain,
    /// the changes stamped later, less the device's own. `after` is the cursor's clock, which
    /// none of those clocks is below.
    fn send_updates(
        &self,
        who: &Requester,
        cases: &[(String, i64)],
        after: i64,
        number: i64,
        response: &mut SyncResponse,
    ) -> Result<(), StoreError> {
        if cases.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = cases.iter().map(|(id, _)| id.clone()).collect();
        let held_up_to: std::collections::HashMap<&str, i64> = cases.iter().map(|(id, c)| (id.as_str(), *c)).collect();
        let changed = self.db.read(|conn| documents::changed_since(conn, &ids, after))?;
        for (id, clock) in changed {
            let Some(&up_to) = held_up_to.get(id.as_str()) else { continue };
            let Ok(case) = CaseId::parse(&id) else { continue };
            if clock <= up_to {
                continue;
            }
            let at = now();
            let result = self.db.write(|conn| -> Result<Option<DocumentResult>, StoreError> {
                let Some(row) = documents::find(conn, &case)? else { return Ok(None) };
                if !visibility::may_see(conn, who.viewer(), &case)? {
                    return Ok(None);
                }
                let changes = documents::changes_after(conn, &id, up_to, &who.device)?;
                // Up to date with the case as stored now, once it stores this response.
                device_cases::listed(conn, &who.device, &case, Some(Synced { response: number, clock: row.clock }))?;
                if changes.is_empty() {
                    // Only its own changes since: it has them, and its `since` already
                    // includes them (they were acknowledged).
                    return Ok(None);
                }
                let heads = documents::decode_heads(&row.heads)?;
                audit::record(
                    conn,
                    at,
                    Some(&who.staff),
                    Some(&who.device),
                    Some(&case),
                    "sync.download",
                    &format!("{} change(s) since the cursor", changes.len()),
                )?;
                let result = DocumentResult::ok(case, hashes(&heads), changes.into_iter().map(Bytes).collect());
                Ok(Some(result.with_case_number(projections::case_number(conn, &case)?)))
            })?;
            response.documents.extend(result);
        }
        Ok(())
    }

    /// Whole cases, in order, until the response holds about the byte budget of documents;
    /// the rest are owed (`more`) and go first next time.
    fn send_whole(
        &self,
        who: &Requester,
        cases: &[CaseId],
        number: i64,
        response: &mut SyncResponse,
    ) -> Result<(), StoreError> {
        let mut bytes = 0usize;
        for (index, case) in cases.iter().copied().enumerate() {
            if bytes >= self.assigned_byte_budget {
                response.more = true;
                response.pending_assigned = u32::try_from(cases.len() - index).unwrap_or(u32::MAX);
                // A case the device may hold is marked owed, so that no cursor counts as
                // having received it; one it never held simply comes next time.
                self.db.write(|conn| -> Result<(), StoreError> {
                    for case in &cases[index..] {
                        device_cases::owed(conn, &who.device, case)?;
                    }
                    Ok(())
                })?;
                break;
            }
            let at = now();
            let assigned = self.db.write(|conn| -> Result<Option<AssignedDocument>, StoreError> {
                let Some(row) = documents::find(conn, &case)? else { return Ok(None) };
                if !visibility::may_see(conn, who.viewer(), &case)? {
                    return Ok(None);
                }
                let doc = match documents::load(conn, &row) {
                    Ok(doc) => doc,
                    // Not sent, and so not recorded as sent: it comes when it loads again.
                    Err(StoreError::Corrupt(reason)) => {
                        tracing::error!(%case, %reason, "a stored case does not load: not sent whole");
                        return Ok(None);
                    }
                    Err(e) => return Err(e),
                };
                device_cases::sent_whole(conn, &who.device, &case, Synced { response: number, clock: row.clock })?;
                audit::record(
                    conn,
                    at,
                    Some(&who.staff),
                    Some(&who.device),
                    Some(&case),
                    "sync.assigned",
                    "whole document",
                )?;
                Ok(Some(AssignedDocument {
                    case_id: case,
                    heads: hashes(&doc.get_heads()),
                    document: Bytes(doc.save()),
                    case_number: case_number_of(&doc),
                }))
            })?;
            if let Some(assigned) = assigned {
                bytes += assigned.document.len();
                response.assigned.push(assigned);
            }
        }
        Ok(())
    }
}

/// Why a device that held `case` must purge it: the case was merged into another, or — by
/// the role of its staff member — the meeting ended, the counsellor was unassigned, or the
/// supervisor's access ended.
fn purge_reason(conn: &mut DbConnection, role: Role, case: &CaseId) -> Result<PurgeReason, StoreError> {
    if projections::merged_into(conn, case)?.is_some() {
        return Ok(PurgeReason::Merged);
    }
    Ok(match role {
        // A meeting tablet sees cases only through its open meetings: whatever took this one
        // away (the meeting ended or its day passed, the case or the tablet left it, consent
        // was withdrawn), the meeting is over for this case.
        Role::MeetingTablet => PurgeReason::MeetingEnded,
        Role::Counsellor => PurgeReason::Unassigned,
        // A supervisor loses a case by area, consent or assignment: access ended.
        Role::Supervisor | Role::Administrator => PurgeReason::AccessEnded,
    })
}

/// What checking a batch of changes against a document came to.
enum Checked {
    /// Authored by the device and valid: the merged document and its view.
    Accepted(Box<(Automerge, tsunagi_sync::document::CaseView, validation::Touched)>),
    /// The changes depend on changes the server lacks.
    Resync,
    /// Refused, with why.
    Refused(DocumentErrorCode, Vec<Violation>),
}

/// The per-case error for bytes that do not decode.
fn corrupt(detail: String) -> Checked {
    Checked::Refused(DocumentErrorCode::CorruptChange, vec![Violation::new(ViolationCode::NotACase, "/", detail)])
}

/// Applies `fresh` to a copy of `doc` and validates it for `who`; a new case must be opened in
/// the municipality of the staff member who opens it.
fn check(
    doc: &Automerge,
    view: Option<tsunagi_sync::document::CaseView>,
    fresh: &[Change],
    who: &Requester,
    is_new: bool,
) -> Checked {
    let raw: Vec<Vec<u8>> = fresh.iter().map(|c| c.raw_bytes().to_vec()).collect();
    match validation::apply_and_validate_from(doc, view, &raw, &Acting::Staff(who.actor())) {
        Ok((_, view, _)) if is_new && view.municipality != Some(who.municipality) => Checked::Refused(
            DocumentErrorCode::InvalidChange,
            vec![Violation::new(
                ViolationCode::InvalidId,
                "/municipality",
                "a case is opened in the municipality of the staff member who opens it",
            )],
        ),
        Ok(accepted) => Checked::Accepted(Box::new(accepted)),
        Err(BatchError::MissingDependencies(_)) => Checked::Resync,
        Err(BatchError::Corrupt { index, reason }) => corrupt(format!("change {index}: {reason}")),
        Err(BatchError::Refused(violations)) => {
            let code = if violations.iter().any(|v| v.code == ViolationCode::ForeignActor) {
                DocumentErrorCode::ForeignActor
            } else if violations.iter().any(|v| v.code == ViolationCode::ReadOnlyRole) {
                DocumentErrorCode::ReadOnly
            } else {
                DocumentErrorCode::InvalidChange
            };
            Checked::Refused(code, violations)
        }
    }
}

/// One case of a request, inside its write transaction.
struct CaseTx<'a> {
    engine: &'a SyncEngine,
    conn: &'a mut DbConnection,
    who: &'a Requester,
    case: CaseId,
    upload: &'a DocumentUpload,
    at: NaiveDateTime,
    /// The device may see the case now. A device that held the case and lost access may still
    /// upload what it made, but is sent nothing of the case back: not others' changes, not its
    /// heads, not its number.
    may_read: bool,
    /// The case was merged into another: what it stores is carried into the survivor.
    merged: bool,
    /// The document row as locked; none for a new case (see [`CaseTx::is_new`]).
    row: Option<documents::DocumentRow>,
    /// The view of the document as stored, when it came from the cache.
    view: Option<tsunagi_sync::document::CaseView>,
    /// It stored changes (the document is to be stamped with the commit clock at the end).
    wrote: bool,
    /// It wrote more than activities (or created the case): its `cases` row, assignees,
    /// consent or area may differ now.
    rewrote_case: bool,
    /// The document and view as this transaction leaves them, for the cache once committed.
    stored: Option<Cached>,
    /// The case the late entries were carried into.
    carried_into: Option<CaseId>,
}

impl CaseTx<'_> {
    /// The server had no document for this case before this request.
    fn is_new(&self) -> bool {
        self.row.is_none()
    }

    /// The normal path: `since` plus the client's changes.
    fn upload(&mut self, doc: Automerge) -> Result<Option<DocumentResult>, StoreError> {
        let since: Vec<ChangeHash> = self.upload.since.iter().map(|h| ChangeHash(h.0)).collect();
        if since.iter().any(|h| doc.get_change_by_hash(h).is_none()) {
            return Ok(Some(resync(self.case, &doc)));
        }
        if self.upload.changes.len() > MAX_CHANGES_PER_CASE {
            let error = DocumentError::new(
                DocumentErrorCode::TooLarge,
                format!("at most {MAX_CHANGES_PER_CASE} changes per case and request; send the rest next time"),
            );
            return Ok(Some(self.current(&doc, &since, &HashSet::new(), Some(error))?));
        }
        // Decode, and skip what the server already holds (a retry, or changes of others that
        // the client resends after a crash): those are no-ops, never refusals.
        let mut sent = HashSet::new();
        let mut fresh = Vec::new();
        for (index, bytes) in self.upload.changes.iter().enumerate() {
            match validation::decode_change(bytes.0.clone()) {
                Ok(change) => {
                    sent.insert(change.hash());
                    if doc.get_change_by_hash(&change.hash()).is_none() {
                        fresh.push(change);
                    }
                }
                Err(e) => return self.settle(&doc, &since, corrupt(format!("change {index}: {e}"))),
            }
        }
        if fresh.is_empty() {
            let result = self.current(&doc, &since, &sent, None)?;
            self.keep(doc);
            return Ok(Some(result));
        }
        match check(&doc, self.view.take(), &fresh, self.who, self.is_new()) {
            Checked::Accepted(accepted) => {
                let (after, view, touched) = *accepted;
                let (stored, view) = self.store(&doc, after, view, &touched, fresh)?;
                let result = self.current(&stored, &since, &sent, None)?;
                self.view = Some(view);
                self.keep(stored);
                Ok(Some(result))
            }
            Checked::Resync => Ok(Some(resync(self.case, &doc))),
            refused => {
                let result = self.settle(&doc, &since, refused)?;
                self.keep(doc);
                Ok(result)
            }
        }
    }

    /// Hands `doc`, the document as this transaction leaves it, to the cache (once committed)
    /// when its view is known.
    fn keep(&mut self, doc: Automerge) {
        if let Some(view) = self.view.take() {
            self.stored = Some(Cached { doc, view });
        }
    }

    /// Fallback: the standard Automerge sync protocol, one message per request. The server
    /// keeps no sync state between requests; changes that arrive this way pass the same
    /// authorship and validation checks as any upload.
    fn fallback(&mut self, doc: Automerge, message: &Bytes) -> Result<Option<DocumentResult>, StoreError> {
        let message = match sync::Message::decode(message.as_slice()) {
            Ok(m) => m,
            Err(e) => return self.settle(&doc, &[], corrupt(format!("sync message: {e}"))),
        };
        let before = doc.get_heads();
        let mut state = sync::State::new();
        let mut received = doc.clone();
        let applied = validation::untrusted(|| received.receive_sync_message(&mut state, message));
        if !matches!(applied, Ok(Ok(()))) {
            return self.settle(&doc, &[], corrupt("the sync message's changes do not decode".into()));
        }
        let mut current = doc;
        let fresh = received.get_changes(&before);
        if !fresh.is_empty() && received.get_missing_deps(&[]).is_empty() {
            match check(&current, None, &fresh, self.who, self.is_new()) {
                Checked::Accepted(accepted) => {
                    let (after, view, touched) = *accepted;
                    current = self.store(&current, after, view, &touched, fresh)?.0;
                }
                Checked::Resync => {}
                refused => return self.settle(&current, &[], refused),
            }
        }
        if self.is_new() && current.get_heads().is_empty() {
            return Ok(None);
        }
        if !self.may_read {
            return Ok(Some(DocumentResult::ok(self.case, Vec::new(), Vec::new())));
        }
        // Answer from the stored state, with the peer's heads and wishes from its message.
        match current.generate_sync_message(&mut state) {
            Some(reply) => {
                self.audit("sync.download", "fallback")?;
                Ok(Some(DocumentResult::resync(self.case, Bytes(reply.encode()))))
            }
            None => Ok(Some(
                DocumentResult::ok(self.case, hashes(&current.get_heads()), Vec::new())
                    .with_case_number(case_number_of(&current)),
            )),
        }
    }

    fn audit(&mut self, action: &str, detail: &str) -> Result<(), StoreError> {
        let who = self.who;
        audit::record(self.conn, self.at, Some(&who.staff), Some(&who.device), Some(&self.case), action, detail)
    }

    /// Writes accepted changes (and, for a new case, its number), heads, projections, audit.
    /// Returns the stored document and its view.
    fn store(
        &mut self,
        before: &Automerge,
        mut after: Automerge,
        mut view: tsunagi_sync::document::CaseView,
        touched: &validation::Touched,
        fresh: Vec<Change>,
    ) -> Result<(Automerge, tsunagi_sync::document::CaseView), StoreError> {
        let (case, at, who) = (self.case, self.at, self.who);
        if self.is_new() {
            documents::insert(self.conn, &case, &who.municipality, at)?;
        }
        let sender = Sender { staff: Some(who.staff), device: Some(who.device) };
        documents::append_changes(self.conn, &case, &fresh, sender, at)?;
        if case_number_of(&after).is_none() {
            // First stored: the case number of this fiscal year (dates in Asia/Tokyo).
            let fiscal_year = FiscalYear::of_instant(&Utc::now());
            let number = projections::next_case_number(self.conn, &who.municipality, fiscal_year)?;
            let heads = after.get_heads();
            after.set_actor(self.engine.actor.clone());
            let mut tx = after.transaction();
            tx.put(ROOT, keys::CASE_NUMBER, number.to_string()).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            tx.commit_with(
                CommitOptions::default().with_message("assign case number").with_time(Utc::now().timestamp()),
            );
            let own = after.get_changes(&heads);
            if let Err(violations) = validation::validate_update(&after, &heads, &Acting::Server) {
                return Err(StoreError::Corrupt(format!("the server's case number change is invalid: {violations:?}")));
            }
            documents::append_changes(self.conn, &case, &own, Sender { staff: None, device: None }, at)?;
            audit::record(self.conn, at, None, None, Some(&case), "case.number_assigned", &number.to_string())?;
            view.case_number = Some(number);
            projections::project(self.conn, &view, at)?;
        } else {
            // Only the rows the batch can have changed (all of them unless it wrote only into
            // activities).
            projections::project_touched(self.conn, &view, touched, at)?;
        }
        // Work on a case merged away meanwhile also goes to the case it lives on in. (Its row
        // is locked: it cannot have been merged since the request read which cases were.)
        let survivor = match self.merged {
            true => match projections::survivor_of(self.conn, &case)? {
                Some(survivor) => {
                    let (target, wrote) = self.engine.carry_into_survivor(self.conn, &after, &survivor, sender, at)?;
                    if wrote {
                        self.carried_into = Some(target);
                    }
                    Some(target)
                }
                None => None,
            },
            false => None,
        };
        let since: Vec<ChangeHash> = self.upload.since.iter().map(|h| ChangeHash(h.0)).collect();
        attention::check_batch(
            self.conn,
            &attention::Batch {
                case: &case,
                municipality: &who.municipality,
                before,
                after: &after,
                view: &view,
                since: &since,
                staff: &who.staff,
                role: who.role,
                at,
                survivor: survivor.as_ref(),
            },
        )?;
        self.audit("sync.upload", &format!("{} change(s), {} before", fresh.len(), before.get_heads().len()))?;
        // The heads now; the commit clock last of all, just before the commit
        // (`SyncEngine::listed_cases`): its row stays locked until then, and every writer
        // waits on it.
        match &self.row {
            Some(row) => documents::write(self.conn, row, &after, at)?,
            None => {
                let row = documents::lock(self.conn, &case)?
                    .ok_or_else(|| StoreError::Corrupt("document row vanished".into()))?;
                documents::write(self.conn, &row, &after, at)?
            }
        }
        self.wrote = true;
        // A new case's first batch writes everything (`Touched::other`).
        self.rewrote_case |= touched.other;
        Ok((after, view))
    }

    /// `ok` (or `refused` with `error`): the server's heads and what the client lacks.
    fn current(
        &mut self,
        doc: &Automerge,
        since: &[ChangeHash],
        sent: &HashSet<ChangeHash>,
        error: Option<DocumentError>,
    ) -> Result<DocumentResult, StoreError> {
        if !self.may_read {
            // Acknowledge exactly what the device already knows (its `since` and what it just
            // sent), so it can purge the case; send nothing it does not have.
            let known: Vec<ChangeHash> =
                since.iter().chain(sent.iter()).filter(|h| doc.get_change_by_hash(h).is_some()).copied().collect();
            let heads = match known.is_empty() {
                true => Vec::new(),
                false => doc.fork_at(&known).map(|d| hashes(&d.get_heads())).unwrap_or_default(),
            };
            return Ok(match error {
                None => DocumentResult::ok(self.case, heads, Vec::new()),
                Some(error) => DocumentResult::refused(self.case, error, heads, Vec::new()),
            });
        }
        let lacking: Vec<Change> = doc.get_changes(since).into_iter().filter(|c| !sent.contains(&c.hash())).collect();
        if !lacking.is_empty() {
            self.audit("sync.download", &format!("{} change(s)", lacking.len()))?;
        }
        let heads = hashes(&doc.get_heads());
        let result = match error {
            None => DocumentResult::ok(self.case, heads, raw(&lacking)),
            Some(error) => DocumentResult::refused(self.case, error, heads, raw(&lacking)),
        };
        Ok(result.with_case_number(case_number_of(doc)))
    }

    /// Answers a batch that was not accepted: a refusal is quarantined (nothing of it is
    /// applied) and answered with why; a batch missing dependencies falls back to resync.
    fn settle(
        &mut self,
        doc: &Automerge,
        since: &[ChangeHash],
        checked: Checked,
    ) -> Result<Option<DocumentResult>, StoreError> {
        let (code, violations) = match checked {
            Checked::Refused(code, violations) => (code, violations),
            Checked::Resync => return Ok(Some(resync(self.case, doc))),
            Checked::Accepted(_) => return Err(StoreError::Corrupt("an accepted batch settled as refused".into())),
        };
        let (case, who) = (self.case, self.who);
        let violations_json = serde_json::to_string(&violations).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let id = quarantine::keep(
            self.conn,
            self.at,
            Quarantined {
                case: &case,
                staff: &who.staff,
                device: &who.device,
                code: code.as_str(),
                violations: violations_json,
                upload: encode_cbor(self.upload),
            },
        )?;
        attention::quarantined(self.conn, &who.municipality, &case, &id, &who.staff, code.as_str(), self.at)?;
        let codes: Vec<&str> = violations.iter().map(|v| v.code.as_str()).collect();
        self.audit("sync.refused", &format!("{} [{}] quarantine {id}", code.as_str(), codes.join(",")))?;
        tracing::info!(case = %case, code = code.as_str(), quarantine = %id, "upload refused");
        let error = DocumentError { code, message: refusal_message(code), violations };
        if documents::find(self.conn, &case)?.is_none() {
            return Ok(Some(DocumentResult::refused(case, error, Vec::new(), Vec::new())));
        }
        let since: Vec<ChangeHash> = since.iter().filter(|h| doc.get_change_by_hash(h).is_some()).copied().collect();
        Ok(Some(self.current(doc, &since, &HashSet::new(), Some(error))?))
    }
}

/// How an assignment changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assignment {
    /// Make the staff member the primary assignee (主担当者).
    Primary,
    /// Add the staff member to the other assignees.
    Other,
    /// Remove the staff member from the other assignees.
    Remove,
}

/// Why an assignment was not made.
#[derive(Debug, thiserror::Error)]
pub enum AssignError {
    /// No such case.
    #[error("no case {0}")]
    UnknownCase(CaseId),
    /// No such active staff member in the case's municipality.
    #[error("no active staff member {0} in the case's municipality")]
    UnknownStaff(StaffId),
    /// The primary assignee cannot be removed, only replaced.
    #[error("the primary assignee is replaced by assigning another primary, not removed")]
    RemovePrimary,
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl SyncEngine {
    /// Records an assignment in the case document, as one change by the server, in one
    /// transaction with its projections and an audit row naming who ordered it. The devices
    /// of a newly assigned counsellor receive the case on their next sync; those of an
    /// unassigned one find it on their purge list.
    pub fn assign(
        &self,
        case: &CaseId,
        staff: &StaffId,
        how: Assignment,
        ordered_by: Option<&StaffId>,
    ) -> Result<(), AssignError> {
        use diesel::prelude::*;
        let at = now();
        self.db.write(|conn| -> Result<(), AssignError> {
            let row = documents::lock(conn, case)?.ok_or(AssignError::UnknownCase(*case))?;
            let active: i64 = crate::store::schema::staff::table
                .filter(crate::store::schema::staff::id.eq(staff.to_string()))
                .filter(crate::store::schema::staff::municipality.eq(&row.municipality))
                .filter(crate::store::schema::staff::active.eq(true))
                .count()
                .get_result(conn)
                .map_err(StoreError::from)?;
            if active == 0 {
                return Err(AssignError::UnknownStaff(*staff));
            }
            let mut doc = documents::load(conn, &row)?;
            let view = tsunagi_sync::document::read_case(&doc).view.ok_or(AssignError::UnknownCase(*case))?;
            if how == Assignment::Remove && view.assignees.primary == Some(*staff) {
                return Err(AssignError::RemovePrimary);
            }
            let heads = doc.get_heads();
            doc.set_actor(self.actor.clone());
            let corrupt = |e: automerge::AutomergeError| StoreError::Corrupt(e.to_string());
            let assignees = match doc.get(ROOT, keys::ASSIGNEES).map_err(corrupt)? {
                Some((automerge::Value::Object(_), id)) => id,
                _ => return Err(StoreError::Corrupt("a case without assignees".into()).into()),
            };
            let mut tx = doc.transaction();
            match how {
                Assignment::Primary => tx.put(&assignees, keys::PRIMARY, staff.to_string()).map_err(corrupt)?,
                Assignment::Other | Assignment::Remove => {
                    let others = match tx.get(&assignees, keys::OTHERS).map_err(corrupt)? {
                        Some((automerge::Value::Object(_), id)) => id,
                        _ => return Err(StoreError::Corrupt("a case without other assignees".into()).into()),
                    };
                    if how == Assignment::Other {
                        tx.put(&others, staff.to_string(), true).map_err(corrupt)?;
                    } else if tx.get(&others, staff.to_string()).map_err(corrupt)?.is_some() {
                        tx.delete(&others, staff.to_string()).map_err(corrupt)?;
                    }
                }
            }
            tx.commit_with(CommitOptions::default().with_message("assign").with_time(Utc::now().timestamp()));
            let own = doc.get_changes(&heads);
            if own.is_empty() {
                return Ok(());
            }
            let view = validation::validate_update(&doc, &heads, &Acting::Server)
                .map_err(|v| StoreError::Corrupt(format!("the server's assignment change is invalid: {v:?}")))?;
            documents::append_changes(conn, case, &own, Sender { staff: ordered_by.copied(), device: None }, at)?;
            documents::update(conn, &row, &doc, at)?;
            projections::project(conn, &view, at)?;
            let action = match how {
                Assignment::Primary => "case.assign_primary",
                Assignment::Other => "case.assign_other",
                Assignment::Remove => "case.unassign",
            };
            audit::record(conn, at, ordered_by, None, Some(case), action, &staff.to_string())?;
            Ok(())
        })
    }
}

fn resync(case: CaseId, doc: &Automerge) -> DocumentResult {
    let mut state = sync::State::new();
    match doc.generate_sync_message(&mut state) {
        Some(message) => DocumentResult::resync(case, Bytes(message.encode())),
        None => DocumentResult::ok(case, hashes(&doc.get_heads()), Vec::new()),
    }
}

fn refusal_message(code: DocumentErrorCode) -> String {
    match code {
        DocumentErrorCode::ForeignActor => "a change is not authored by this device; nothing was applied",
        DocumentErrorCode::CorruptChange => "the upload does not decode as Automerge changes; nothing was applied",
        DocumentErrorCode::InvalidChange => "the changes break the case rules; nothing was applied",
        DocumentErrorCode::ReadOnly => "this device's role does not write to cases; nothing was applied",
        DocumentErrorCode::TooLarge => "too many changes for one request; send them in smaller batches",
    }
    .to_owned()
}

pub mod cache;
pub mod cursor;
mod decide;
mod merge;
mod on_behalf;
pub use cursor::Cursor;
pub use decide::{DecideError, Decision};
pub use merge::{MergeError, Merged};
pub use on_behalf::OnBehalfError;

#[cfg(test)]
mod tests;
