//! The client side of `POST /v1/sync` (`docs/protocol.md`, sections 7 to 9), without any I/O
//! but the replica store: what to send, and what to do with the answer.
//!
//! A [`SyncSession`] lives as long as the app (or the `tsunagi field` command) does. One sync
//! round is:
//!
//! 1. [`SyncSession::build_request`] reads the [`ReplicaStore`] and returns the
//!    [`SyncRequest`] to send and a [`PendingUpload`] that remembers what it carried;
//! 2. the caller sends the request (`client::SyncClient`, behind the cargo feature `client`,
//!    does it over HTTP with retries; any other transport works too);
//! 3. [`SyncSession::apply_response`] applies the [`SyncResponse`] to the store, durably and in
//!    the order protocol.md prescribes (every replica before its index entry, every effect
//!    before the new cursor), and returns a [`SyncReport`] saying what happened to each case;
//! 4. while [`SyncReport::sync_again`] says so, the caller goes round again at once.
//!
//! Nothing here blocks on anything but the file system, and nothing is async: a phone can
//! call it from any thread, with whatever HTTP stack it has.
//!
//! # What the session remembers
//!
//! Only what protocol.md allows to live in memory: the Automerge sync states of cases in
//! fallback mode (section 8) with the sync message each of them sends next, and the upload
//! limits learnt from `too_large` and `413 payload_too_large` answers. Everything else — the
//! replicas, `since`, the case numbers, refusals, fallback mode, pending purges and the
//! cursor — is in the store. A session that is dropped (the app restarts) loses nothing but a
//! few bytes: a case in fallback mode starts its exchange over.
//!
//! # Retrying
//!
//! A request can be sent again as often as needed: changes are content-addressed and the
//! server skips the ones it holds. When a request fails (no answer, a timeout, a 5xx), simply
//! build a new one, or resend the same one; apply a response only once, with the
//! [`PendingUpload`] of the request it answers.
//!
//! # Example
//!
//! A round trip with an in-process "server" that acknowledges everything:
//!
//! ```
//! use automerge::{transaction::Transactable, AutoCommit, ROOT};
//! use tsunagi_sync::ids::CaseId;
//! use tsunagi_sync::session::SyncSession;
//! use tsunagi_sync::store::ReplicaStore;
//! use tsunagi_sync::wire::{DocumentResult, Hash, SyncResponse};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let mut store = ReplicaStore::open(dir.path()).unwrap();
//! let case = CaseId::new_random();
//! let mut doc = AutoCommit::new();
//! doc.put(ROOT, "status", "intake").unwrap();
//! store.save_doc(&case, &mut doc).unwrap();
//!
//! let mut session = SyncSession::new();
//! let (request, sent) = session.build_request(&store).unwrap();
//! assert_eq!(request.documents[0].changes.len(), 1);
//!
//! // The server applies the change and answers with its heads.
//! let mut response = SyncResponse::new();
//! let heads = doc.get_heads().into_iter().map(Hash::from).collect();
//! response.documents.push(DocumentResult::ok(case, heads, vec![]));
//! let report = session.apply_response(&mut store, &sent, response, chrono::Utc::now()).unwrap();
//! assert_eq!(report.uploaded(), 1);
//! assert_eq!(store.since(&case).unwrap(), doc.get_heads());
//!
//! // Nothing new: the next request carries no change.
//! let (request, _) = session.build_request(&store).unwrap();
//! assert!(request.documents[0].changes.is_empty());
//! ```

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;

use automerge::sync::{Message, State, SyncDoc};
use automerge::{AutoCommit, Change, ChangeHash};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use chrono::{DateTime, Utc};

use crate::ids::{CaseId, CaseNumber};
use crate::store::{CaseEntry, Refusal, ReplicaStore, StoreError};
use crate::wire::{
    AssignedDocument, Bytes, DocumentError, DocumentErrorCode, DocumentResult, DocumentStatus, DocumentUpload, Hash,
    PurgeNotice, PurgeReason, SyncRequest, SyncResponse,
};

/// Why a sync round could not be prepared or its answer not be stored.
///
/// Problems with one case of an answer (a change that does not decode, a document that does
/// not load) are not errors: they are reported as [`CaseEvent::Failed`] for that case and
/// the other cases go on. What remains here is the store failing, after which nothing more of
/// the answer is applied and the cursor is left as it was: the next round starts from what is
/// durable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The replica store could not read or write.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What one request carried, per case: pass it to [`SyncSession::apply_response`] with the
/// answer to that request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PendingUpload {
    cases: BTreeMap<CaseId, SentCase>,
    cursor: bool,
}

/// What one request carried for one case.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SentCase {
    /// The `since` sent.
    pub since: Vec<ChangeHash>,
    /// The hashes of the changes uploaded, in the order sent (causal).
    pub changes: Vec<ChangeHash>,
    /// Their size in bytes, all together.
    pub change_bytes: usize,
    /// How many pending changes were left for a later request, to keep within the upload
    /// limits (see [`SyncSession::limit_upload_bytes`]).
    pub held_back: usize,
    /// The case went up as a fallback-mode sync message rather than `since` and changes.
    pub sync_message: bool,
    /// The replica file did not load: the case went up with an empty `since` so that the
    /// server sends all of it, and the unreadable file is set aside when the answer arrives.
    pub unreadable: bool,
}

impl PendingUpload {
    /// What was sent for `case`, if the request listed it.
    pub fn case(&self, case: &CaseId) -> Option<&SentCase> {
        self.cases.get(case)
    }

    /// Every case the request listed, in id order.
    pub fn cases(&self) -> impl Iterator<Item = (&CaseId, &SentCase)> {
        self.cases.iter()
    }

    /// Whether the request carried a cursor.
    pub fn had_cursor(&self) -> bool {
        self.cursor
    }

    /// How many changes the request uploaded, all cases together.
    pub fn change_count(&self) -> usize {
        self.cases.values().map(|c| c.changes.len()).sum()
    }

    /// The size of the uploaded changes in bytes, all cases together.
    pub fn change_bytes(&self) -> usize {
        self.cases.values().map(|c| c.change_bytes).sum()
    }

    /// How many cases kept changes back for a later request (upload limits).
    pub fn held_back(&self) -> usize {
        self.cases.values().filter(|c| c.held_back > 0).count()
    }
}

/// What happened to one case in one sync round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseReport {
    /// The case.
    pub case_id: CaseId,
    /// What happened.
    pub event: CaseEvent,
}

/// What happened to a case. A case can have more than one event in a round (for instance
/// [`Synced`](Self::Synced), then [`Purged`](Self::Purged)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CaseEvent {
    /// `ok`: the uploaded changes are durable on the server, the server's changes are in the
    /// replica, and `since` moved to the server's heads.
    Synced {
        /// Changes uploaded (now acknowledged).
        uploaded: usize,
        /// Changes received from the server.
        received: usize,
        /// The case number, if the server has assigned one.
        case_number: Option<CaseNumber>,
    },
    /// `refused`: the server applied nothing of the upload and keeps it in quarantine. The
    /// refused changes (and any made while the request was in flight) left the replica; the
    /// replica as it was before is kept in the store (`kept`), and the refusal is in the
    /// case's index entry for the app to show.
    Refused {
        /// Changes uploaded (refused).
        uploaded: usize,
        /// Changes received from the server.
        received: usize,
        /// Why, as the server said.
        error: DocumentError,
        /// How many changes left the replica.
        dropped: usize,
        /// The copy of the replica from before they left, if any had to
        /// ([`ReplicaStore::refused_copies`]).
        kept: Option<PathBuf>,
    },
    /// `refused` with `too_large`: nothing is wrong with the changes but their amount. They
    /// stay in the replica and go up in smaller portions.
    TooLarge {
        /// Changes uploaded (none applied).
        uploaded: usize,
        /// Changes received from the server.
        received: usize,
        /// At most this many changes of the case go up per request from now on.
        next_limit: usize,
        /// A single change is more than the server accepts: it cannot be synced. Tell the user.
        single_change: bool,
    },
    /// `resync`: the case is in fallback mode (Automerge's sync protocol).
    Fallback {
        /// The server's sync message brought changes into the replica.
        received: bool,
        /// Automerge believes both sides hold the same heads; the next request is a normal
        /// upload, which the server should answer `ok`.
        converged: bool,
    },
    /// `not_found`: no such case on the server, or one this device may not see. Nothing was
    /// applied; the replica is kept (only a purge deletes it).
    NotFound {
        /// Changes uploaded (not delivered; they stay in the replica).
        uploaded: usize,
    },
    /// `unavailable`: the server could not handle the case now. Nothing was applied; the
    /// changes stay in the replica and go up again with the next request (which lists the
    /// case: the cursor was dropped).
    Unavailable {
        /// Changes uploaded (not applied; they stay in the replica).
        uploaded: usize,
    },
    /// The case arrived whole, newly visible to this device.
    Assigned {
        /// The device already held a replica, and the server's document was merged into it
        /// (its unacknowledged changes go up with the next request).
        merged: bool,
        /// The case number, if assigned.
        case_number: Option<CaseNumber>,
    },
    /// The case was deleted from the device, with its refused copies.
    Purged {
        /// Why the server asked.
        reason: PurgeReason,
    },
    /// The server asked for the case to be deleted, but the replica holds changes the server
    /// has not acknowledged (made while the request was in flight, or held back by the upload
    /// limits). They go up with the next request; the case is deleted once it is answered.
    PurgePending {
        /// Why the server asked.
        reason: PurgeReason,
        /// How many changes are still to go up.
        unacknowledged: usize,
    },
    /// The replica does not contain every head the server sent, even after applying its
    /// changes: `since` stays where it was and the cursor is dropped, so that the next request
    /// lists every case and the server fills the gap.
    Incomplete {
        /// Changes received from the server (applied).
        received: usize,
        /// How many of the server's heads are missing.
        missing_heads: usize,
    },
    /// The server's answer for this case could not be used (a change or sync message that
    /// does not decode, a document that does not load). Nothing of it was applied beyond what
    /// is safe; the cursor is dropped so that the next request lists every case.
    Failed {
        /// What went wrong (no case content).
        reason: String,
    },
}

/// What one sync round (or several, merged with [`SyncReport::absorb`]) did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// What happened, case by case, in the order it happened.
    pub events: Vec<CaseReport>,
    /// The server has more to send: sync again at once.
    pub more: bool,
    /// Cases newly visible to this device that the server will send in later rounds (the
    /// last round's figure; for a progress display).
    pub pending_assigned: u32,
    /// The cursor was dropped (a case's answer was incomplete or unusable): the next request
    /// lists every case.
    pub cursor_dropped: bool,
    /// Cases that kept changes back for a later request (upload limits): sync again at once.
    pub held_back: usize,
    /// Cases in fallback mode with a sync message to send: sync again at once.
    pub fallback_pending: usize,
    /// How many request/response exchanges this report covers.
    pub rounds: usize,
}

impl SyncReport {
    /// Whether the caller should send another request at once: the server has more, changes
    /// were held back, or a fallback exchange is under way.
    pub fn sync_again(&self) -> bool {
        self.more || self.held_back > 0 || self.fallback_pending > 0
    }

    /// Adds the report of the next round: its events follow, and its state (`more`, held-back
    /// and fallback counts, `cursor_dropped`) replaces this one's.
    pub fn absorb(&mut self, next: SyncReport) {
        self.events.extend(next.events);
        self.more = next.more;
        self.pending_assigned = next.pending_assigned;
        self.cursor_dropped = next.cursor_dropped;
        self.held_back = next.held_back;
        self.fallback_pending = next.fallback_pending;
        self.rounds += next.rounds;
    }

    /// Changes uploaded and acknowledged (`ok`), all cases together.
    pub fn uploaded(&self) -> usize {
        self.events.iter().map(|r| if let CaseEvent::Synced { uploaded, .. } = r.event { uploaded } else { 0 }).sum()
    }

    /// Changes received from the server and applied, all cases together (assigned cases not
    /// counted).
    pub fn received(&self) -> usize {
        self.events
            .iter()
            .map(|r| match r.event {
                CaseEvent::Synced { received, .. }
                | CaseEvent::Refused { received, .. }
                | CaseEvent::TooLarge { received, .. }
                | CaseEvent::Incomplete { received, .. } => received,
                _ => 0,
            })
            .sum()
    }

    /// The refusals of this round: case and the server's reason.
    pub fn refusals(&self) -> impl Iterator<Item = (&CaseId, &DocumentError)> {
        self.events.iter().filter_map(|r| match &r.event {
            CaseEvent::Refused { error, .. } => Some((&r.case_id, error)),
            _ => None,
        })
    }

    /// The events of one case, in order.
    pub fn events_of<'a>(&'a self, case: &'a CaseId) -> impl Iterator<Item = &'a CaseEvent> + 'a {
        self.events.iter().filter(move |r| &r.case_id == case).map(|r| &r.event)
    }

    /// Every event except a [`Synced`](CaseEvent::Synced) that moved nothing: what a user
    /// might want to hear about.
    pub fn notable(&self) -> impl Iterator<Item = &CaseReport> {
        self.events.iter().filter(|r| !matches!(r.event, CaseEvent::Synced { uploaded: 0, received: 0, .. }))
    }

    fn push(&mut self, case_id: CaseId, event: CaseEvent) {
        self.events.push(CaseReport { case_id, event });
    }
}

/// A case in fallback mode: its Automerge sync state and the message it sends next.
#[derive(Debug, Default)]
struct Fallback {
    state: State,
    next_message: Option<Vec<u8>>,
}

/// The client's side of the sync protocol, across rounds. See the [module documentation](self).
#[derive(Debug, Default)]
pub struct SyncSession {
    /// Cases in fallback mode (protocol.md, section 8).
    fallback: HashMap<CaseId, Fallback>,
    /// At most this many changes per request for a case the server answered `too_large`.
    change_limits: HashMap<CaseId, usize>,
    /// Cases whose single next change is more than the server accepts.
    stuck: HashSet<CaseId>,
    /// At most this many bytes of changes per request, after `413 payload_too_large`.
    upload_bytes: Option<usize>,
}

/// Automerge change hashes from wire hashes.
fn change_hashes(hashes: &[Hash]) -> Vec<ChangeHash> {
    hashes.iter().map(|h| ChangeHash::from(*h)).collect()
}

/// Decodes changes in Automerge's binary change format.
fn decode_changes(raw: &[Bytes]) -> Result<Vec<Change>, String> {
    raw.iter()
        .enumerate()
        .map(|(i, bytes)| {
            Change::from_bytes(bytes.as_slice().to_vec())
                .map_err(|e| format!("change {i} from the server does not decode: {e}"))
        })
        .collect()
}

/// The heads among `heads` that `doc` does not contain.
fn missing_heads(doc: &mut AutoCommit, heads: &[ChangeHash]) -> usize {
    heads.iter().filter(|h| doc.get_change_by_hash(h).is_none()).count()
}

fn parse_purge_reason(reason: &str) -> PurgeReason {
    PurgeReason::ALL.iter().copied().find(|r| r.as_str() == reason).unwrap_or(PurgeReason::AccessEnded)
}

/// A replica loaded to apply an answer to.
struct Loaded {
    doc: AutoCommit,
    /// The heads before anything was applied (`None` when the file was unreadable and the
    /// document starts empty: it must be written whatever happens).
    before: Option<Vec<ChangeHash>>,
}

impl Loaded {
    /// Whether the document differs from the stored file.
    fn changed(&mut self) -> bool {
        match &self.before {
            Some(before) => &self.doc.get_heads() != before,
            None => true,
        }
    }
}

impl SyncSession {
    /// A session with no fallback exchange under way and no upload limits.
    pub fn new() -> Self {
        Self::default()
    }

    /// Limits the changes of one request to `bytes` bytes in all (at least one change always
    /// goes, so that a round always makes progress); the cases' other changes go in the
    /// following requests. A client sets this after `413 payload_too_large`, typically to half
    /// of what the refused request carried ([`PendingUpload::change_bytes`]). `None` lifts the
    /// limit.
    pub fn limit_upload_bytes(&mut self, bytes: Option<usize>) {
        self.upload_bytes = bytes;
    }

    /// The limit set by [`limit_upload_bytes`](Self::limit_upload_bytes), if any.
    pub fn upload_byte_limit(&self) -> Option<usize> {
        self.upload_bytes
    }

    /// Whether `case` is in fallback mode in this session with a sync message to send.
    pub fn fallback_pending(&self, case: &CaseId) -> bool {
        self.fallback.get(case).is_some_and(|f| f.next_message.is_some())
    }

    /// Forgets everything this session remembers about `case`.
    fn forget(&mut self, case: &CaseId) {
        self.fallback.remove(case);
        self.change_limits.remove(case);
        self.stuck.remove(case);
    }

    /// Builds the next request from the store (protocol.md, section 7, `build_request`).
    ///
    /// Per case the store holds: a case in fallback mode with a sync message to send goes up
    /// as that message; any other case goes up as its `since` and the changes of its replica
    /// after it (`get_changes(since)`, raw, in causal order) — all of them, unless an upload
    /// limit holds some back. With a stored cursor, cases with nothing to send (no change, not
    /// in fallback mode, no pending purge) are left out; without one, every case is listed.
    ///
    /// A replica file that does not load is listed with an empty `since` and no change, so
    /// that the server sends the whole case back; the unreadable file is set aside (kept
    /// under `refused/`) when the answer arrives.
    pub fn build_request(&self, store: &ReplicaStore) -> Result<(SyncRequest, PendingUpload), SessionError> {
        // The cursor is stored as base64 text; one that does not decode is as good as none
        // (protocol.md, 9: without a cursor, list every case).
        let cursor = store.cursor().and_then(|c| BASE64.decode(c).ok()).map(Bytes);
        let mut pending = PendingUpload { cases: BTreeMap::new(), cursor: cursor.is_some() };
        let mut documents = Vec::new();
        let mut bytes_left = self.upload_bytes;
        let mut any_change = false;

        for case in store.case_ids() {
            let entry = store.entry(&case).cloned().unwrap_or_default();
            if entry.fallback {
                if let Some(message) = self.fallback.get(&case).and_then(|f| f.next_message.clone()) {
                    documents.push(DocumentUpload::with_sync_message(case, Bytes(message)));
                    pending.cases.insert(case, SentCase { sync_message: true, ..SentCase::default() });
                    continue;
                }
            }
            // A `since` that does not parse is replaced by the empty one: the server then
            // sends everything, and the answer repairs the index.
            let since = store.since(&case).unwrap_or_default();
            let mut doc = match store.load_doc(&case) {
                Ok(Some(doc)) => doc,
                Ok(None) => continue,
                Err(StoreError::CorruptCase { .. }) => {
                    documents.push(DocumentUpload::new(case, Vec::new(), Vec::new()));
                    pending.cases.insert(case, SentCase { unreadable: true, ..SentCase::default() });
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let changes = doc.get_changes(&since);
            let listed = cursor.is_none() || !changes.is_empty() || entry.fallback || entry.purge_pending.is_some();
            if !listed {
                continue;
            }
            let limit = self.change_limits.get(&case).copied().unwrap_or(usize::MAX);
            let mut sent = SentCase { since: since.clone(), ..SentCase::default() };
            let mut raw = Vec::new();
            for change in &changes {
                let size = change.raw_bytes().len();
                let fits = match bytes_left {
                    Some(left) => size <= left || !any_change,
                    None => true,
                };
                if raw.len() >= limit || !fits {
                    break;
                }
                if let Some(left) = bytes_left.as_mut() {
                    *left = left.saturating_sub(size);
                }
                any_change = true;
                sent.changes.push(change.hash());
                sent.change_bytes += size;
                raw.push(Bytes::from(change));
            }
            sent.held_back = changes.len() - raw.len();
            documents.push(DocumentUpload::new(case, since.into_iter().map(Hash::from).collect(), raw));
            pending.cases.insert(case, sent);
        }
        Ok((SyncRequest::new(cursor, documents), pending))
    }

    /// Applies the answer to a request built by [`build_request`](Self::build_request)
    /// (protocol.md, section 7, steps 2 to 6), durably, and says what happened.
    ///
    /// In order: every [`DocumentResult`] (`ok`, `refused`, `resync`, `not_found`, `unavailable`), every
    /// assigned case, every purge notice, pending purges whose request has now been answered,
    /// and last the cursor — stored only once everything before it is durable, and dropped
    /// instead when some case's answer was incomplete or unusable. Each replica is written
    /// before the index entry that describes it. `now` stamps `last_synced_at`, refusals and
    /// refused copies.
    ///
    /// On a [`SessionError`] (the store failed) the rest of the answer is not applied and the
    /// cursor is left as it was; what was applied is durable and consistent, and the next
    /// round picks up from there.
    pub fn apply_response(
        &mut self,
        store: &mut ReplicaStore,
        sent: &PendingUpload,
        response: SyncResponse,
        now: DateTime<Utc>,
    ) -> Result<SyncReport, SessionError> {
        let SyncResponse { cursor, documents, assigned, purge, more, pending_assigned, .. } = response;
        let mut round = Round {
            report: SyncReport { more, pending_assigned, rounds: 1, ..SyncReport::default() },
            drop_cursor: false,
            resend: HashSet::new(),
        };
        let now_text = now.to_rfc3339();
        let mut answered = HashSet::new();

        // Step 2: documents.
        for result in documents {
            let case = result.case_id;
            if !store.contains(&case) {
                continue;
            }
            // A case in fallback, or one the server could not handle, had no answer to its upload.
            if !matches!(result.status, DocumentStatus::Resync | DocumentStatus::Unavailable) {
                answered.insert(case);
            }
            let event = self.apply_result(store, sent, result, now, &now_text, &mut round)?;
            round.report.push(case, event);
        }

        // Step 3: assigned.
        for document in assigned {
            let case = document.case_id;
            let event = self.apply_assigned(store, document, now, &now_text, &mut round)?;
            round.report.push(case, event);
        }

        // Step 4: purge, first the notices of this answer, then pending purges whose request
        // has now been answered.
        let mut purged = HashSet::new();
        for PurgeNotice { case_id, reason } in purge {
            if !store.contains(&case_id) || !purged.insert(case_id) {
                continue;
            }
            let event = self.purge(store, sent, &case_id, reason)?;
            round.report.push(case_id, event);
        }
        for case in store.case_ids() {
            let Some(reason) = store.entry(&case).and_then(|e| e.purge_pending.clone()) else {
                continue;
            };
            if purged.contains(&case) || !answered.contains(&case) || sent.case(&case).is_none() {
                continue;
            }
            let event = self.purge(store, sent, &case, parse_purge_reason(&reason))?;
            round.report.push(case, event);
        }

        // Step 5: the cursor, once everything above is durable.
        let cursor = if round.drop_cursor { None } else { cursor.map(|c| BASE64.encode(c.as_slice())) };
        store.set_cursor(cursor, Some(now_text))?;

        let Round { mut report, drop_cursor, mut resend } = round;
        report.cursor_dropped = drop_cursor;
        resend.extend(sent.cases().filter(|(_, s)| s.held_back > 0).map(|(case, _)| *case));
        report.held_back = resend.iter().filter(|case| store.contains(case) && !self.stuck.contains(case)).count();
        report.fallback_pending = self.fallback.values().filter(|f| f.next_message.is_some()).count();
        Ok(report)
    }

    /// Step 2 for one case the store holds.
    fn apply_result(
        &mut self,
        store: &mut ReplicaStore,
        sent: &PendingUpload,
        result: DocumentResult,
        now: DateTime<Utc>,
        now_text: &str,
        round: &mut Round,
    ) -> Result<CaseEvent, SessionError> {
        let case = result.case_id;
        let uploaded = sent.case(&case).map_or(0, |s| s.changes.len());
        match result.status {
            DocumentStatus::Ok | DocumentStatus::Refused => {
                let Some(mut loaded) = self.load(store, sent, &case, now, round)? else {
                    return Ok(round.failed("the replica does not load"));
                };
                let received = result.changes.len();
                let changes = match decode_changes(&result.changes) {
                    Ok(changes) => changes,
                    Err(reason) => return Ok(round.failed(reason)),
                };
                if let Err(e) = loaded.doc.apply_changes(changes) {
                    return Ok(round.failed(format!("the server's changes do not apply: {e}")));
                }
                let heads = change_hashes(&result.heads);
                let missing = missing_heads(&mut loaded.doc, &heads);
                if missing > 0 {
                    // Keep what arrived (the replica before the index: safe), keep the old
                    // since, and list every case next time.
                    if loaded.changed() {
                        store.save_doc(&case, &mut loaded.doc)?;
                    }
                    if let Some(error) = result.error.filter(|_| result.status == DocumentStatus::Refused) {
                        store.update_entry(&case, |e| e.refusal = Some(refusal(&error, now_text)))?;
                    }
                    round.drop_cursor = true;
                    return Ok(CaseEvent::Incomplete { received, missing_heads: missing });
                }
                if result.status == DocumentStatus::Ok {
                    self.on_ok(store, sent, &case, loaded, &heads, result.case_number, received, now_text)
                } else {
                    let Some(error) = result.error else {
                        // A refusal without a reason: nothing can be decided about the local
                        // changes, so they stay where they are.
                        if loaded.changed() {
                            store.save_doc(&case, &mut loaded.doc)?;
                        }
                        return Ok(round.failed("the server refused the upload without saying why"));
                    };
                    let event = self.on_refused(
                        store,
                        &case,
                        loaded,
                        &heads,
                        result.case_number,
                        error,
                        uploaded,
                        received,
                        now,
                    )?;
                    if matches!(event, CaseEvent::TooLarge { single_change: false, .. }) {
                        // Smaller portions go up at once.
                        round.resend.insert(case);
                    }
                    Ok(event)
                }
            }
            DocumentStatus::Resync => self.on_resync(store, sent, &case, result.sync_message, now, round),
            DocumentStatus::NotFound => {
                self.forget(&case);
                store.update_entry(&case, |e| {
                    e.not_found_at = Some(now_text.to_owned());
                    e.fallback = false;
                })?;
                Ok(CaseEvent::NotFound { uploaded })
            }
            DocumentStatus::Unavailable => {
                // Nothing applied and nothing of the case sent: the changes and `since` stay,
                // and without a cursor the next request lists the case again.
                round.drop_cursor = true;
                Ok(CaseEvent::Unavailable { uploaded })
            }
        }
    }

    /// Loads the replica of `case` to apply an answer to. A file that does not load, for a
    /// case that went up as unreadable, is set aside under `refused/` and replaced by an empty
    /// document (the server sent all of the case); for any other case it is a failure
    /// (`None`).
    fn load(
        &mut self,
        store: &mut ReplicaStore,
        sent: &PendingUpload,
        case: &CaseId,
        now: DateTime<Utc>,
        round: &mut Round,
    ) -> Result<Option<Loaded>, SessionError> {
        match store.load_doc(case) {
            Ok(Some(mut doc)) => {
                let before = doc.get_heads();
                Ok(Some(Loaded { doc, before: Some(before) }))
            }
            Ok(None) => Ok(None),
            Err(StoreError::CorruptCase { .. }) if sent.case(case).is_some_and(|s| s.unreadable) => {
                if let Some(bytes) = store.load(case)?.filter(|b| !b.is_empty()) {
                    store.keep_refused(case, &bytes, now)?;
                }
                Ok(Some(Loaded { doc: AutoCommit::new(), before: None }))
            }
            Err(StoreError::CorruptCase { .. }) => {
                round.drop_cursor = true;
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_ok(
        &mut self,
        store: &mut ReplicaStore,
        sent: &PendingUpload,
        case: &CaseId,
        mut loaded: Loaded,
        heads: &[ChangeHash],
        case_number: Option<CaseNumber>,
        received: usize,
        now_text: &str,
    ) -> Result<CaseEvent, SessionError> {
        let sent_case = sent.case(case);
        let uploaded = sent_case.map_or(0, |s| s.changes.len());
        let update = |e: &mut CaseEntry| {
            e.set_since(heads);
            if let Some(number) = &case_number {
                e.case_number = Some(number.to_string());
            }
            e.last_synced_at = Some(now_text.to_owned());
            // A refusal stays until the device's own changes go through again (or the app
            // dismisses it): an answer that merely brings news does not hide it.
            if uploaded > 0 {
                e.refusal = None;
            }
            e.fallback = false;
            e.not_found_at = None;
        };
        if loaded.changed() {
            store.save_doc_with_entry(case, &mut loaded.doc, update)?;
        } else {
            store.update_entry(case, update)?;
        }
        self.fallback.remove(case);
        self.stuck.remove(case);
        // Portions that go through may grow again; without held-back changes the limit goes.
        if sent_case.is_some_and(|s| s.held_back > 0) {
            if let Some(limit) = self.change_limits.get_mut(case) {
                *limit = limit.saturating_mul(2);
            }
        } else {
            self.change_limits.remove(case);
        }
        Ok(CaseEvent::Synced { uploaded, received, case_number })
    }

    #[allow(clippy::too_many_arguments)]
    fn on_refused(
        &mut self,
        store: &mut ReplicaStore,
        case: &CaseId,
        mut loaded: Loaded,
        heads: &[ChangeHash],
        case_number: Option<CaseNumber>,
        error: DocumentError,
        uploaded: usize,
        received: usize,
        now: DateTime<Utc>,
    ) -> Result<CaseEvent, SessionError> {
        self.fallback.remove(case);
        let now_text = now.to_rfc3339();
        let set_number = |e: &mut CaseEntry| {
            if let Some(number) = &case_number {
                e.case_number = Some(number.to_string());
            }
        };

        if error.code == DocumentErrorCode::TooLarge {
            // Nothing wrong with the changes, only their amount: keep them, send less.
            let update = |e: &mut CaseEntry| {
                e.set_since(heads);
                set_number(e);
                e.fallback = false;
            };
            if loaded.changed() {
                store.save_doc_with_entry(case, &mut loaded.doc, update)?;
            } else {
                store.update_entry(case, update)?;
            }
            let previous = self.change_limits.get(case).copied().unwrap_or(usize::MAX).min(uploaded.max(1));
            let single_change = previous <= 1;
            let next_limit = (previous / 2).max(1);
            self.change_limits.insert(*case, next_limit);
            if single_change {
                self.stuck.insert(*case);
            }
            return Ok(CaseEvent::TooLarge { uploaded, received, next_limit, single_change });
        }

        // The same changes would be refused again, so they leave the replica: everything the
        // server lacks (including edits made while the request was in flight). A copy of the
        // replica as it was is kept first, so that nothing is lost even here.
        let drop: HashSet<ChangeHash> = loaded.doc.get_changes(heads).iter().map(Change::hash).collect();
        let refusal = refusal(&error, &now_text);
        let update = |e: &mut CaseEntry| {
            e.set_since(heads);
            set_number(e);
            e.refusal = Some(refusal);
            e.fallback = false;
            e.not_found_at = None;
        };
        if drop.is_empty() {
            if loaded.changed() {
                store.save_doc_with_entry(case, &mut loaded.doc, update)?;
            } else {
                store.update_entry(case, update)?;
            }
            return Ok(CaseEvent::Refused { uploaded, received, error, dropped: 0, kept: None });
        }

        let before = loaded.doc.save();
        let kept = store.keep_refused(case, &before, now)?;
        let keep: Vec<Change> =
            loaded.doc.get_changes(&[]).into_iter().filter(|change| !drop.contains(&change.hash())).collect();
        // A new document (and with it a fresh actor id) holding only what the server has.
        let mut rebuilt = AutoCommit::new();
        if let Err(e) = rebuilt.apply_changes(keep) {
            // Cannot happen for changes taken from a loaded document; keep the replica as it
            // was (the copy is kept too) and say so.
            return Ok(CaseEvent::Failed { reason: format!("the replica could not be rebuilt: {e}") });
        }
        store.save_doc_with_entry(case, &mut rebuilt, update)?;
        Ok(CaseEvent::Refused { uploaded, received, error, dropped: drop.len(), kept: Some(kept) })
    }

    fn on_resync(
        &mut self,
        store: &mut ReplicaStore,
        sent: &PendingUpload,
        case: &CaseId,
        message: Option<Bytes>,
        now: DateTime<Utc>,
        round: &mut Round,
    ) -> Result<CaseEvent, SessionError> {
        let Some(message) = message else {
            return Ok(round.failed("the server answered resync without a sync message"));
        };
        let message = match Message::decode(message.as_slice()) {
            Ok(message) => message,
            Err(e) => return Ok(round.failed(format!("the server's sync message does not decode: {e}"))),
        };
        let Some(mut loaded) = self.load(store, sent, case, now, round)? else {
            return Ok(round.failed("the replica does not load"));
        };
        let fallback = self.fallback.entry(*case).or_default();
        if let Err(e) = loaded.doc.sync().receive_sync_message(&mut fallback.state, message) {
            self.fallback.remove(case);
            return Ok(round.failed(format!("the server's sync message does not apply: {e}")));
        }
        let reply = loaded.doc.sync().generate_sync_message(&mut fallback.state);
        let converged = reply.is_none();
        fallback.next_message = reply.map(Message::encode);
        let heads = loaded.doc.get_heads();
        let update = |e: &mut CaseEntry| {
            e.fallback = true;
            if converged {
                e.set_since(&heads);
            }
        };
        let received = loaded.changed();
        if received {
            store.save_doc_with_entry(case, &mut loaded.doc, update)?;
        } else {
            store.update_entry(case, update)?;
        }
        Ok(CaseEvent::Fallback { received, converged })
    }

    /// Step 3 for one assigned case.
    fn apply_assigned(
        &mut self,
        store: &mut ReplicaStore,
        assigned: AssignedDocument,
        now: DateTime<Utc>,
        now_text: &str,
        round: &mut Round,
    ) -> Result<CaseEvent, SessionError> {
        let case = assigned.case_id;
        let loaded = crate::document::load_saved(assigned.document.as_slice()).map_err(|e| e.to_string());
        let mut remote = match loaded {
            Ok(doc) => doc,
            // Without the case, a cursor would tell the server we have it: drop the cursor
            // and the server sends it again.
            Err(e) => return Ok(round.failed(format!("the assigned document does not load: {e}"))),
        };
        // The heads of the document as sent: exactly what the device now holds of the
        // server's history, hence its `since`. (`AssignedDocument::heads` are the same for a
        // correct server, and may be omitted.)
        let since = remote.get_heads();
        let claimed = change_hashes(&assigned.heads);
        if missing_heads(&mut remote, &claimed) > 0 {
            return Ok(round.failed("the assigned document does not contain its own heads"));
        }
        let (mut doc, merged) = match store.load_doc(&case) {
            Ok(Some(mut local)) => {
                if let Err(e) = local.merge(&mut remote) {
                    return Ok(round.failed(format!("the assigned document does not merge: {e}")));
                }
                (local, true)
            }
            Ok(None) => (remote, false),
            Err(StoreError::CorruptCase { .. }) => {
                if let Some(bytes) = store.load(&case)?.filter(|b| !b.is_empty()) {
                    store.keep_refused(&case, &bytes, now)?;
                }
                (remote, false)
            }
            Err(e) => return Err(e.into()),
        };
        let case_number = assigned.case_number;
        store.save_doc_with_entry(&case, &mut doc, |e| {
            e.set_since(&since);
            if let Some(number) = &case_number {
                e.case_number = Some(number.to_string());
            }
            e.last_synced_at = Some(now_text.to_owned());
            e.fallback = false;
            e.not_found_at = None;
            e.purge_pending = None;
        })?;
        self.forget(&case);
        Ok(CaseEvent::Assigned { merged, case_number })
    }

    /// Step 4 for one case the store holds: delete it, unless the replica holds changes the
    /// server has not acknowledged.
    fn purge(
        &mut self,
        store: &mut ReplicaStore,
        sent: &PendingUpload,
        case: &CaseId,
        reason: PurgeReason,
    ) -> Result<CaseEvent, SessionError> {
        let unacknowledged = self.unacknowledged(store, sent, case)?;
        if unacknowledged > 0 {
            store.update_entry(case, |e| e.purge_pending = Some(reason.as_str().to_owned()))?;
            return Ok(CaseEvent::PurgePending { reason, unacknowledged });
        }
        // The case's data leaves the device: refused copies first, then the replica, then
        // its index entry (the store's order; a crash is finished by the next open).
        store.discard_refused(case)?;
        store.remove(case)?;
        self.forget(case);
        Ok(CaseEvent::Purged { reason })
    }

    /// How many changes of the replica of `case` the server has not acknowledged and this
    /// request did not answer for: those after `since`, less those `sent` carried (answered
    /// by now: durable, quarantined or undeliverable). A replica that does not load has none
    /// that could be sent.
    fn unacknowledged(&self, store: &ReplicaStore, sent: &PendingUpload, case: &CaseId) -> Result<usize, SessionError> {
        let mut doc = match store.load_doc(case) {
            Ok(Some(doc)) => doc,
            Ok(None) | Err(StoreError::CorruptCase { .. }) => return Ok(0),
            Err(e) => return Err(e.into()),
        };
        let since = store.since(case).unwrap_or_default();
        let answered: HashSet<&ChangeHash> = sent.case(case).map(|s| s.changes.iter().collect()).unwrap_or_default();
        Ok(doc.get_changes(&since).iter().filter(|c| !answered.contains(&c.hash())).count())
    }
}

/// What is shared between the steps of one `apply_response`.
struct Round {
    report: SyncReport,
    drop_cursor: bool,
    /// Cases with changes to send again at once (`too_large`).
    resend: HashSet<CaseId>,
}

impl Round {
    /// A case whose answer could not be used: the cursor goes, so that the next request
    /// lists every case.
    fn failed(&mut self, reason: impl Into<String>) -> CaseEvent {
        self.drop_cursor = true;
        CaseEvent::Failed { reason: reason.into() }
    }
}

/// The index's record of a refusal.
fn refusal(error: &DocumentError, at: &str) -> Refusal {
    Refusal {
        at: at.to_owned(),
        code: error.code.as_str().to_owned(),
        message: error.message.clone(),
        violations: error.violations.clone(),
    }
}

#[cfg(test)]
mod tests;
