//! The session against a server simulated in the test with plain Automerge: one server
//! document per case, answering as protocol.md says.

use std::collections::HashMap;

use automerge::transaction::Transactable;
use automerge::{ActorId, ReadDoc, ROOT};
use chrono::TimeZone;

use super::*;
use crate::validation::{Violation, ViolationCode};

/// A server that holds one document per case and answers uploads as protocol.md says: `ok`
/// with what the client lacks, or `resync` (with the standard sync protocol) when it does not
/// know the client's `since`.
struct Server {
    docs: HashMap<CaseId, AutoCommit>,
    states: HashMap<CaseId, State>,
    cursor: u8,
}

impl Server {
    fn new() -> Self {
        Self { docs: HashMap::new(), states: HashMap::new(), cursor: 0 }
    }

    fn doc(&mut self, case: &CaseId) -> &mut AutoCommit {
        self.docs.entry(*case).or_insert_with(|| AutoCommit::new().with_actor(ActorId::random()))
    }

    /// A change by someone else (a supervisor on the web), made on the server.
    fn edit(&mut self, case: &CaseId, key: &str, value: &str) {
        let doc = self.doc(case);
        doc.put(ROOT, key, value).unwrap();
        doc.commit();
    }

    fn heads(&mut self, case: &CaseId) -> Vec<Hash> {
        self.doc(case).get_heads().into_iter().map(Hash::from).collect()
    }

    fn answer(&mut self, request: &SyncRequest) -> SyncResponse {
        let mut response = SyncResponse::new();
        for upload in &request.documents {
            response.documents.push(self.answer_one(upload));
        }
        self.cursor += 1;
        response.cursor = Some(Bytes(vec![self.cursor; 4]));
        response
    }

    fn answer_one(&mut self, upload: &DocumentUpload) -> DocumentResult {
        let case = upload.case_id;
        if let Some(message) = &upload.sync_message {
            let message = Message::decode(message.as_slice()).unwrap();
            let mut state = self.states.remove(&case).unwrap_or_default();
            let doc = self.doc(&case);
            doc.sync().receive_sync_message(&mut state, message).unwrap();
            let reply = doc.sync().generate_sync_message(&mut state);
            return match reply {
                Some(reply) => {
                    self.states.insert(case, state);
                    DocumentResult::resync(case, Bytes(reply.encode()))
                }
                None => {
                    let heads = self.heads(&case);
                    DocumentResult::ok(case, heads, vec![])
                }
            };
        }
        let since = change_hashes(&upload.since);
        let doc = self.doc(&case);
        if since.iter().any(|h| doc.get_change_by_hash(h).is_none()) {
            let mut state = State::new();
            let message = doc.sync().generate_sync_message(&mut state).unwrap();
            self.states.insert(case, state);
            return DocumentResult::resync(case, Bytes(message.encode()));
        }
        let changes: Vec<Change> =
            upload.changes.iter().map(|b| Change::from_bytes(b.as_slice().to_vec()).unwrap()).collect();
        let uploaded: HashSet<ChangeHash> = changes.iter().map(Change::hash).collect();
        doc.apply_changes(changes).unwrap();
        assert!(doc.get_missing_deps(&[]).is_empty(), "the upload is a causal prefix");
        let lacking =
            doc.get_changes(&since).iter().filter(|c| !uploaded.contains(&c.hash())).map(Bytes::from).collect();
        let heads = self.heads(&case);
        DocumentResult::ok(case, heads, lacking)
    }
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 4, 9, 0, 0).unwrap()
}

fn open(dir: &std::path::Path) -> ReplicaStore {
    ReplicaStore::open(dir).unwrap()
}

/// A case opened on the phone with one change.
fn new_case(store: &mut ReplicaStore) -> (CaseId, AutoCommit) {
    let case = CaseId::new_random();
    let mut doc = AutoCommit::new();
    doc.put(ROOT, "case_id", case.to_string()).unwrap();
    doc.put(ROOT, "status", "intake").unwrap();
    doc.commit();
    store.save_doc(&case, &mut doc).unwrap();
    (case, doc)
}

/// A local edit on the phone, saved to the store as an app would.
fn edit(store: &mut ReplicaStore, case: &CaseId, key: &str, value: &str) -> ChangeHash {
    let mut doc = store.load_doc(case).unwrap().unwrap();
    doc.put(ROOT, key, value).unwrap();
    let hash = doc.commit().unwrap();
    store.save_doc(case, &mut doc).unwrap();
    hash
}

fn value(store: &ReplicaStore, case: &CaseId, key: &str) -> Option<String> {
    let doc = store.load_doc(case).unwrap()?;
    doc.get(ROOT, key).unwrap().and_then(|(v, _)| v.into_string().ok())
}

fn heads_of(store: &ReplicaStore, case: &CaseId) -> Vec<ChangeHash> {
    let mut heads = store.load_doc(case).unwrap().unwrap().get_heads();
    heads.sort();
    heads
}

fn sorted(mut heads: Vec<ChangeHash>) -> Vec<ChangeHash> {
    heads.sort();
    heads
}

/// One round: build, let the server answer, apply.
fn round(session: &mut SyncSession, store: &mut ReplicaStore, server: &mut Server) -> SyncReport {
    let (request, sent) = session.build_request(store).unwrap();
    let response = server.answer(&request);
    session.apply_response(store, &sent, response, now()).unwrap()
}

#[test]
fn ok_moves_changes_both_ways_and_advances_since() {
    let tmp = tempfile::tempdir().unwrap();
    let mut store = open(tmp.path());
    let mut server = Server::new();
    let mut session = SyncSession::new();
    let (case, _) = new_case(&mut store);

    // First sync: no cursor, the case goes up whole.
    let (request, sent) = session.build_request(&store).unwrap();
    assert!(request.cursor.is_none());
    assert_eq!(request.documents.len(), 1);
    assert!(request.documents[0].since.is_empty());
    assert_eq!(request.documents[0].changes.len(), 1);
    assert_eq!(sent.change_count(), 1);
    let mut response = server.answer(&request);
    response.documents[0].case_number = Some(CaseNumber::parse("2026-0153").unwrap());
    let report = session.apply_response(&mut store, &sent, response, now()).unwrap();
    assert_eq!(report.uploaded(), 1);
    assert_eq!(
        report.events_of(&case).collect::<Vec<_>>(),
        vec![&CaseEvent::Synced {
            uploaded: 1,
            received: 0,
            case_number: Some(CaseNumber::parse("2026-0153").unwrap())
        }]
    );
    assert!(!report.sync_again());
    assert_eq!(server.doc(&case).get(ROOT, "status").unwrap().unwrap().0.into_string().unwrap(), "intake");
    let entry = store.entry(&case).unwrap().clone();
    assert_eq!(sorted(entry.since_hashes().unwrap()), heads_of(&store, &case));
    assert_eq!(entry.case_number.as_deref(), Some("2026-0153"));
    assert_eq!(entry.last_synced_at.as_deref(), Some(now().to_rfc3339().as_str()));
    assert_eq!(store.cursor(), Some(BASE64.encode([1u8; 4]).as_str()));

    // Both sides edit; one round brings each the other's change.
    edit(&mut store, &case, "area", "north");
    server.edit(&case, "status", "outreach");
    let report = round(&mut session, &mut store, &mut server);
    assert_eq!((report.uploaded(), report.received()), (1, 1));
    assert_eq!(value(&store, &case, "status").as_deref(), Some("outreach"));
    assert_eq!(server.doc(&case).get(ROOT, "area").unwrap().unwrap().0.into_string().unwrap(), "north");
    assert_eq!(heads_of(&store, &case), sorted(server.doc(&case).get_heads()));
    assert_eq!(sorted(store.since(&case).unwrap()), sorted(server.doc(&case).get_heads()));

    // Nothing new: with the cursor, the case is not even listed; the request is a poll.
    let (request, sent) = session.build_request(&store).unwrap();
    assert!(request.cursor.is_some());
    assert!(request.documents.is_empty());
    assert_eq!(sent.change_count(), 0);

    // Without a cursor (this server version sends none), every case is listed, with no change.
    store.set_cursor(None, None).unwrap();
    let (request, _) = session.build_request(&store).unwrap();
    assert_eq!(request.documents.len(), 1);
    assert!(request.documents[0].changes.is_empty());
    assert_eq!(change_hashes(&request.documents[0].since).len(), 2);
}

#[test]
fn with_a_cursor_only_cases_with_something_to_send_are_listed() {
    let tmp = tempfile::tempdir().unwrap();
    let mut store = open(tmp.path());
    let mut server = Server::new();
    let mut session = SyncSession::new();
    let (quiet, _) = new_case(&mut store);
    let (busy, _) = new_case(&mut store);
    round(&mut session, &mut store, &mut server);

    edit(&mut store, &busy, "area", "south");
    let (request, _) = session.build_request(&store).unwrap();
    assert_eq!(request.cursor, Some(Bytes(vec![1; 4])));
    let listed: Vec<CaseId> = request.documents.iter().map(|d| d.case_id).collect();
    assert_eq!(listed, vec![busy]);

    // A case in fallback mode or with a pending purge is listed too.
    store.update_entry(&quiet, |e| e.fallback = true).unwrap();
    let (request, _) = session.build_request(&store).unwrap();
    assert_eq!(request.documents.len(), 2);
    store.update_entry(&quiet, |e| e.fallback = false).unwrap();
    store.update_entry(&quiet, |e| e.purge_pending = Some("unassigned".into())).unwrap();
    assert_eq!(session.build_request(&store).unwrap().0.documents.len(), 2);

    // A cursor that is not base64 is as good as none: every case is listed.
    store.set_cursor(Some("not base64!".into()), None).unwrap();
    let (request, sent) = session.build_request(&store).unwrap();
    assert!(request.cursor.is_none() && !sent.had_cursor());
    assert_eq!(request.documents.len(), 2);
}

#[test]
fn heads_missing_after_applying_keep_the_old_since_and_drop_the_cursor() {
    let tmp = tempfile::tempdir().unwrap();
    let mut store = open(tmp.path());
    let mut server = Server::new();
    let mut session = SyncSession::new();
    let (case, _) = new_case(&mut store);
    round(&mut session, &mut store, &mut server);
    let since = store.since(&case).unwrap();
    assert!(store.cursor().is_some());

    // The server made two changes but only the second arrives: it cannot apply without the
    // first, so the replica lacks the heads.
    server.edit(&case, "status", "outreach");
    server.edit(&case, "area", "east");
    let last = server.doc(&case).get_last_local_change().unwrap();
    let (request, sent) = session.build_request(&store).unwrap();
    assert!(request.documents.is_empty(), "nothing to send, cursor present");
    let mut response = SyncResponse::new();
    response.cursor = Some(Bytes(vec![9; 4]));
    response.documents.push(DocumentResult::ok(case, server.heads(&case), vec![Bytes::from(&last)]));
    let report = session.apply_response(&mut store, &sent, response, now()).unwrap();
    assert_eq!(report.events_of(&case).next(), Some(&CaseEvent::Incomplete { received: 1, missing_heads: 1 }));
    assert!(report.cursor_dropped);
    assert_eq!(store.since(&case).unwrap(), since, "since stays");
    assert_eq!(store.cursor(), None, "the cursor is dropped, not replaced");

    // The next request lists every case, and the server fills the gap.
    let report = round(&mut session, &mut store, &mut server);
    assert_eq!(report.received(), 2);
    assert_eq!(value(&store, &case, "area").as_deref(), Some("east"));
    assert_eq!(sorted(store.since(&case).unwrap()), sorted(server.doc(&case).get_heads()));
}

#[test]
fn an_unusable_answer_for_one_case_fails_that_case_only() {
    let tmp = tempfile::tempdir().unwrap();
    let mut store = open(tmp.path());
    let mut session = SyncSession::new();
    let (a, _) = new_case(&mut store);
    let (b, mut b_doc) = new_case(&mut store);
    let (_, sent) = session.build_request(&store).unwrap();
    let mut response = SyncResponse::new();
    response.cursor = Some(Bytes(vec![1]));
    response.documents.push(DocumentResult::ok(a, vec![], vec![Bytes(vec![0x85, 0x6f, 0x4a, 0x83, 1, 2])]));
    response.documents.push(DocumentResult::resync(a, Bytes(vec![0xff])));
    let b_heads = b_doc.get_heads().into_iter().map(Hash::from).collect();
    response.documents.push(DocumentResult::ok(b, b_heads, vec![]));
    let report = session.apply_response(&mut store, &sent, response, now()).unwrap();
    let a_events: Vec<_> = report.events_of(&a).collect();
    assert_eq!(a_events.len(), 2);
    assert!(a_events.iter().all(|e| matches!(e, CaseEvent::Failed { .. })), "{a_events:?}");
    assert!(matches!(report.events_of(&b).next(), Some(CaseEvent::Synced { uploaded: 1, .. })));
    assert!(report.cursor_dropped);
    assert_eq!(store.cursor(), None);
    assert!(store.since(&a).unwrap().is_empty());
}

#[test]
fn a_refusal_keeps_the_refused_changes_on_disk_and_rebuilds_the_replica() {
    let tmp = tempfile::tempdir().unwrap();
    let mut store = open(tmp.path());
    let mut server = Server::new();
    let mut session = SyncSession::new();
    let (case, _) = new_case(&mut store);
    round(&mut session, &mut store, &mut server);

    let bad = edit(&mut store, &case, "activities", "deleted");
    server.edit(&case, "status", "outreach");
    let (request, sent) = session.build_request(&store).unwrap();
    assert_eq!(sent.case(&case).unwrap().changes, vec![bad]);
    // An edit made while the request is in flight leaves with the refused ones.
    let in_flight = edit(&mut store, &case, "area", "west");

    // The server refuses, and still brings the phone up to date.
    let since = change_hashes(&request.documents[0].since);
    let lacking: Vec<Bytes> = server.doc(&case).get_changes(&since).iter().map(Bytes::from).collect();
    let violation = Violation::new(ViolationCode::DeletedEntity, "/activities", "an activity cannot be deleted");
    let error = DocumentError::invalid(vec![violation.clone()]);
    let mut response = SyncResponse::new();
    response.documents.push(DocumentResult::refused(case, error.clone(), server.heads(&case), lacking));
    let report = session.apply_response(&mut store, &sent, response, now()).unwrap();

    let Some(CaseEvent::Refused { uploaded: 1, received: 1, error: got, dropped: 2, kept: Some(kept) }) =
        report.events_of(&case).next().cloned()
    else {
        panic!("{report:?}")
    };
    assert_eq!(got, error);
    assert_eq!(report.refusals().count(), 1);
    // The copy holds everything the replica had, refused change and in-flight edit included.
    assert_eq!(store.refused_copies(&case).unwrap(), vec![kept.clone()]);
    let copy = AutoCommit::load(&std::fs::read(&kept).unwrap()).unwrap();
    assert!(copy.get_change_by_hash(&bad).is_some());
    assert!(copy.get_change_by_hash(&in_flight).is_some());
    // The replica holds what the server has, and nothing of what it refused.
    let mut replica = store.load_doc(&case).unwrap().unwrap();
    assert!(replica.get_change_by_hash(&bad).is_none());
    assert!(replica.get_change_by_hash(&in_flight).is_none());
    assert_eq!(value(&store, &case, "status").as_deref(), Some("outreach"));
    assert_eq!(value(&store, &case, "activities"), None);
    assert_eq!(sorted(replica.get_heads()), sorted(server.doc(&case).get_heads()));
    // The index says why.
    let entry = store.entry(&case).unwrap();
    let refusal = entry.refusal.as_ref().unwrap();
    assert_eq!(refusal.code, "invalid_change");
    assert_eq!(refusal.violations, vec![violation]);
    assert_eq!(sorted(entry.since_hashes().unwrap()), sorted(server.doc(&case).get_heads()));

    // Nothing is pending any more; a round that merely brings news keeps the refusal shown.
    let (request, _) = session.build_request(&store).unwrap();
    assert!(request.documents.iter().all(|d| d.changes.is_empty()));
    server.edit(&case, "area", "north");
    round(&mut session, &mut store, &mut server);
    assert!(store.entry(&case).unwrap().refusal.is_some());
    // Redone correctly, the work goes through and the refusal goes.
    edit(&mut store, &case, "note", "redone");
    let report = round(&mut session, &mut store, &mut server);
    assert_eq!(report.uploaded(), 1);
    assert!(store.entry(&case).unwrap().refusal.is_none());
    assert_eq!(store.refused_copies(&case).unwrap().len(), 1, "the copy stays until discarded");
}

#[test]
fn too_large_keeps_the_changes_and_sends_them_in_smaller_portions() {
    let tmp = tempfile::tempdir().unwrap();
    let mut store = open(tmp.path());
    let mut server = Server::new();
    let mut session = SyncSession::new();
    let (case, _) = new_case(&mut store);
    round(&mut session, &mut store, &mut server);
    for i in 0..8 {
        edit(&mut store, &case, &format!("k{i}"), "v");
    }
    let (_, sent) = session.build_request(&store).unwrap();
    assert_eq!(sent.change_count(), 8);
    let mut response = SyncResponse::new();
    let error = DocumentError::new(DocumentErrorCode::TooLarge, "at most 4 changes per case");
    response.documents.push(DocumentResult::refused(case, error, server.heads(&case), vec![]));
    let report = session.apply_response(&mut store, &sent, response, now()).unwrap();
    assert_eq!(
        report.events_of(&case).next(),
        Some(&CaseEvent::TooLarge { uploaded: 8, received: 0, next_limit: 4, single_change: false })
    );
    assert!(report.sync_again(), "smaller portions go up at once");
    assert!(store.entry(&case).unwrap().refusal.is_none());
    assert!(store.refused_copies(&case).unwrap().is_empty());

    // Four now, and the rest in the next round, at once.
    let report = round(&mut session, &mut store, &mut server);
    assert_eq!(report.uploaded(), 4);
    assert_eq!(report.held_back, 1);
    assert!(report.sync_again());
    let report = round(&mut session, &mut store, &mut server);
    assert_eq!(report.uploaded(), 4);
    assert!(!report.sync_again());
    assert_eq!(sorted(server.doc(&case).get_heads()), heads_of(&store, &case));

    // A single change that is too large cannot go up: said once, and not retried at once.
    edit(&mut store, &case, "big", "x");
    let (_, sent) = session.build_request(&store).unwrap();
    let mut response = SyncResponse::new();
    let error = DocumentError::new(DocumentErrorCode::TooLarge, "too large");
    response.documents.push(DocumentResult::refused(case, error, server.heads(&case), vec![]));
    let report = session.apply_response(&mut store, &sent, response, now()).unwrap();
    assert_eq!(
        report.events_of(&case).next(),
        Some(&CaseEvent::TooLarge { uploaded: 1, received: 0, next_limit: 1, single_change: true })
    );
    assert!(!report.sync_again());
    assert_eq!(session.build_request(&store).unwrap().1.change_count(), 1, "still held, still offered");
}

#[test]
fn an_upload_byte_limit_spreads_changes_over_requests() {
    let tmp = tempfile::tempdir().unwrap();
    let mut store = open(tmp.path());
    let mut server = Server::new();
    let mut session = SyncSession::new();
    let cases: Vec<CaseId> = (0..3).map(|_| new_case(&mut store).0).collect();
    let (_, all) = session.build_request(&store).unwrap();
    // Room for about one change per request; at least one always goes.
    session.limit_upload_bytes(Some(all.change_bytes() / 3));
    assert_eq!(session.upload_byte_limit(), Some(all.change_bytes() / 3));
    let mut rounds = 0;
    loop {
        let report = round(&mut session, &mut store, &mut server);
        rounds += 1;
        if !report.sync_again() {
            break;
        }
        assert!(rounds < 10);
    }
    assert!(rounds >= 2, "{rounds}");
    for case in &cases {
        assert_eq!(sorted(server.doc(case).get_heads()), heads_of(&store, case));
    }
    // Every case was listed each time (no cursor from a first sync), changes or not.
    session.limit_upload_bytes(Some(0));
    let (request, sent) = session.build_request(&store).unwrap();
    assert_eq!(request.documents.len(), 0, "the cursor is there now and nothing is pending");
    assert_eq!(sent.held_back(), 0);
}

#[test]
fn an_assigned_case_arrives_whole_or_merges_into_a_replica() {
    let tmp = tempfile::tempdir().unwrap();
    let mut store = open(tmp.path());
    let mut server = Server::new();
    let mut session = SyncSession::new();

    let case = CaseId::new_random();
    server.edit(&case, "case_id", &case.to_string());
    server.edit(&case, "status", "support");
    let number = CaseNumber::parse("2026-0007").unwrap();
    let assigned = |server: &mut Server| AssignedDocument {
        case_id: case,
        heads: server.heads(&case),
        document: Bytes(server.doc(&case).save()),
        case_number: Some(number),
    };
    let (_, sent) = session.build_request(&store).unwrap();
    let mut response = SyncResponse::new();
    response.assigned.push(assigned(&mut server));
    response.cursor = Some(Bytes(vec![3]));
    let report = session.apply_response(&mut store, &sent, response, now()).unwrap();
    assert_eq!(report.events_of(&case).next(), Some(&CaseEvent::Assigned { merged: false, case_number: Some(number) }));
    assert_eq!(store.case_ids(), vec![case]);
    assert_eq!(value(&store, &case, "status").as_deref(), Some("support"));
    assert_eq!(sorted(store.since(&case).unwrap()), sorted(server.doc(&case).get_heads()));
    assert_eq!(store.entry(&case).unwrap().case_number.as_deref(), Some("2026-0007"));
    assert_eq!(store.cursor(), Some("Aw=="));

    // Assigned again while the phone holds an edit of its own: merged, the edit stays and goes up.
    let mine = edit(&mut store, &case, "area", "north");
    server.edit(&case, "status", "outreach");
    let (_, sent) = session.build_request(&store).unwrap();
    let mut response = SyncResponse::new();
    response.assigned.push(assigned(&mut server));
    let report = session.apply_response(&mut store, &sent, response, now()).unwrap();
    assert!(matches!(report.events_of(&case).next(), Some(CaseEvent::Assigned { merged: true, .. })));
    assert_eq!(value(&store, &case, "status").as_deref(), Some("outreach"));
    assert_eq!(value(&store, &case, "area").as_deref(), Some("north"));
    let (request, _) = session.build_request(&store).unwrap();
    assert_eq!(request.documents.len(), 1);
    assert_eq!(change_hashes(&request.documents[0].since), server.doc(&case).get_heads());
    let uploaded: Vec<ChangeHash> = request.documents[0]
        .changes
        .iter()
        .map(|b| Change::from_bytes(b.as_slice().to_vec()).unwrap().hash())
        .collect();
    assert_eq!(uploaded, vec![mine]);

    // A document that does not load is reported, and the cursor dropped so it comes again.
    let other = CaseId::new_random();
    let mut response = SyncResponse::new();
    response.cursor = Some(Bytes(vec![4]));
    response.assigned.push(AssignedDocument {
        case_id: other,
        heads: vec![],
        document: Bytes(vec![1, 2, 3]),
        case_number: None,
    });
    let report = session.apply_response(&mut store, &PendingUpload::default(), response, now()).unwrap();
    assert!(matches!(report.events_of(&other).next(), Some(CaseEvent::Failed { .. })));
    assert!(!store.contains(&other));
    assert_eq!(store.cursor(), None);
}

#[test]
fn purge_removes_a_case_but_keeps_one_with_unacknowledged_changes_until_they_are_answered() {
    let tmp = tempfile::tempdir().unwrap();
    let mut store = open(tmp.path());
    let mut server = Server::new();
    let mut session = SyncSession::new();
    let (gone, _) = new_case(&mut store);
    let (busy, _) = new_case(&mut store);
    round(&mut session, &mut store, &mut server);
    store.keep_refused(&gone, &store.load(&gone).unwrap().unwrap(), now()).unwrap();

    edit(&mut store, &busy, "area", "north");
    let (request, sent) = session.build_request(&store).unwrap();
    // Made while the request is in flight: not answered by this response.
    let late = edit(&mut store, &busy, "area", "south");
    let mut response = server.answer(&request);
    response.purge.push(PurgeNotice { case_id: gone, reason: PurgeReason::Unassigned });
    response.purge.push(PurgeNotice { case_id: busy, reason: PurgeReason::AccessEnded });
    let unknown = CaseId::new_random();
    response.purge.push(PurgeNotice { case_id: unknown, reason: PurgeReason::Merged });
    let report = session.apply_response(&mut store, &sent, response, now()).unwrap();

    assert_eq!(report.events_of(&gone).next(), Some(&CaseEvent::Purged { reason: PurgeReason::Unassigned }));
    assert!(!store.contains(&gone));
    assert!(!store.case_path(&gone).exists());
    assert!(store.refused_copies(&gone).unwrap().is_empty(), "its refused copies go with it");
    let busy_events: Vec<_> = report.events_of(&busy).collect();
    assert!(matches!(busy_events[0], CaseEvent::Synced { uploaded: 1, .. }));
    assert_eq!(busy_events[1], &CaseEvent::PurgePending { reason: PurgeReason::AccessEnded, unacknowledged: 1 });
    assert_eq!(report.events_of(&unknown).count(), 0);
    assert!(store.contains(&busy));
    assert_eq!(store.entry(&busy).unwrap().purge_pending.as_deref(), Some("access_ended"));

    // The next request carries the late edit; once answered, the case goes.
    let (request, sent) = session.build_request(&store).unwrap();
    assert_eq!(request.documents.len(), 1);
    assert_eq!(sent.case(&busy).unwrap().changes, vec![late]);
    let response = server.answer(&request);
    let report = session.apply_response(&mut store, &sent, response, now()).unwrap();
    let events: Vec<_> = report.events_of(&busy).collect();
    assert!(matches!(events[0], CaseEvent::Synced { uploaded: 1, .. }));
    assert_eq!(events[1], &CaseEvent::Purged { reason: PurgeReason::AccessEnded });
    assert!(!store.contains(&busy));
    assert!(server.doc(&busy).get_change_by_hash(&late).is_some(), "delivered before deletion");

    // Whatever the answer: not_found deletes a pending purge too.
    let (case, _) = new_case(&mut store);
    store.update_entry(&case, |e| e.purge_pending = Some("unassigned".into())).unwrap();
    let (_, sent) = session.build_request(&store).unwrap();
    let mut response = SyncResponse::new();
    response.documents.push(DocumentResult::not_found(case));
    let report = session.apply_response(&mut store, &sent, response, now()).unwrap();
    assert_eq!(
        report.events_of(&case).collect::<Vec<_>>(),
        vec![&CaseEvent::NotFound { uploaded: 1 }, &CaseEvent::Purged { reason: PurgeReason::Unassigned }]
    );
    assert!(!store.contains(&case));
}

#[test]
fn unavailable_keeps_the_changes_and_lists_the_case_again() {
    let tmp = tempfile::tempdir().unwrap();
    let mut store = open(tmp.path());
    let mut session = SyncSession::new();
    let mut server = Server::new();
    let (kept, _) = new_case(&mut store);
    let (other, _) = new_case(&mut store);
    let (request, sent) = session.build_request(&store).unwrap();
    session.apply_response(&mut store, &sent, server.answer(&request), now()).unwrap();
    assert!(store.cursor().is_some());
    let since = store.entry(&kept).unwrap().since.clone();

    // Both cases change; the server takes one and cannot handle the other.
    for case in [&kept, &other] {
        let mut doc = store.load_doc(case).unwrap().unwrap();
        doc.put(ROOT, "area", "east").unwrap();
        doc.commit();
        store.save_doc(case, &mut doc).unwrap();
    }
    store.update_entry(&kept, |e| e.purge_pending = Some("unassigned".into())).unwrap();
    let (request, sent) = session.build_request(&store).unwrap();
    let mut response = server.answer(&request);
    let at = response.documents.iter().position(|d| d.case_id == kept).unwrap();
    response.documents[at] = DocumentResult::unavailable(kept);
    let report = session.apply_response(&mut store, &sent, response, now()).unwrap();
    assert_eq!(report.events_of(&kept).collect::<Vec<_>>(), vec![&CaseEvent::Unavailable { uploaded: 1 }]);
    assert!(matches!(report.events_of(&other).next(), Some(CaseEvent::Synced { uploaded: 1, .. })));
    assert!(report.cursor_dropped && store.cursor().is_none(), "no cursor claims the case");
    assert!(!report.sync_again(), "not retried at once");
    assert!(store.contains(&kept), "a pending purge waits for an answer to the upload");
    assert_eq!(store.entry(&kept).unwrap().since, since);
    assert_eq!(value(&store, &kept, "area").as_deref(), Some("east"));

    // The next request lists every case, the kept change with it.
    let (request, sent) = session.build_request(&store).unwrap();
    assert!(request.cursor.is_none());
    assert_eq!(request.documents.len(), 2);
    assert_eq!(sent.case(&kept).unwrap().changes.len(), 1);
    assert!(sent.case(&other).unwrap().changes.is_empty());
}

#[test]
fn not_found_is_recorded_and_the_replica_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let mut store = open(tmp.path());
    let mut session = SyncSession::new();
    let (case, _) = new_case(&mut store);
    let (_, sent) = session.build_request(&store).unwrap();
    let mut response = SyncResponse::new();
    response.documents.push(DocumentResult::not_found(case));
    let report = session.apply_response(&mut store, &sent, response, now()).unwrap();
    assert_eq!(report.events_of(&case).next(), Some(&CaseEvent::NotFound { uploaded: 1 }));
    assert!(store.contains(&case));
    assert_eq!(value(&store, &case, "status").as_deref(), Some("intake"));
    let entry = store.entry(&case).unwrap();
    assert_eq!(entry.not_found_at.as_deref(), Some(now().to_rfc3339().as_str()));
    assert!(entry.since.is_empty());
    // Still pending: the change goes up again next time.
    assert_eq!(session.build_request(&store).unwrap().1.change_count(), 1);

    // A result for a case the device does not hold is skipped.
    let mut response = SyncResponse::new();
    let stranger = CaseId::new_random();
    response.documents.push(DocumentResult::not_found(stranger));
    let report = session.apply_response(&mut store, &PendingUpload::default(), response, now()).unwrap();
    assert!(report.events.is_empty());
    assert!(!store.contains(&stranger));
}

#[test]
fn resync_falls_back_to_the_automerge_sync_protocol_until_converged() {
    let tmp = tempfile::tempdir().unwrap();
    let mut store = open(tmp.path());
    let mut server = Server::new();
    let mut session = SyncSession::new();
    let (case, _) = new_case(&mut store);
    round(&mut session, &mut store, &mut server);
    edit(&mut store, &case, "area", "north");
    round(&mut session, &mut store, &mut server);

    // The server is restored from a backup that predates the phone's last change, and moves
    // on: the phone's `since` is unknown to it.
    let first = server.doc(&case).get_changes(&[]);
    let mut restored = AutoCommit::new().with_actor(ActorId::random());
    restored.apply_changes(first.into_iter().take(1)).unwrap();
    server.docs.insert(case, restored);
    server.edit(&case, "status", "outreach");
    let local = edit(&mut store, &case, "note", "after the restore");

    let report = round(&mut session, &mut store, &mut server);
    assert!(matches!(report.events_of(&case).next(), Some(CaseEvent::Fallback { .. })), "{report:?}");
    assert!(store.entry(&case).unwrap().fallback);
    assert!(report.sync_again());
    assert!(session.fallback_pending(&case));
    let (request, _) = session.build_request(&store).unwrap();
    assert!(request.documents[0].sync_message.is_some());
    assert!(request.documents[0].since.is_empty() && request.documents[0].changes.is_empty());

    let mut rounds = 1;
    let mut report = report;
    while report.sync_again() || store.entry(&case).unwrap().fallback {
        report = round(&mut session, &mut store, &mut server);
        rounds += 1;
        assert!(rounds < 20, "did not converge: {report:?}");
    }
    assert!(matches!(report.events_of(&case).next(), Some(CaseEvent::Synced { .. })), "{report:?}");
    assert!(!session.fallback_pending(&case));
    // Both sides hold everything: the phone's lost change, its new one, the server's.
    assert_eq!(heads_of(&store, &case), sorted(server.doc(&case).get_heads()));
    assert!(server.doc(&case).get_change_by_hash(&local).is_some());
    assert_eq!(value(&store, &case, "status").as_deref(), Some("outreach"));
    assert_eq!(server.doc(&case).get(ROOT, "area").unwrap().unwrap().0.into_string().unwrap(), "north");
    assert_eq!(sorted(store.since(&case).unwrap()), heads_of(&store, &case));

    // Back to normal: nothing to send.
    let (request, _) = session.build_request(&store).unwrap();
    assert!(request.documents.is_empty());
}

#[test]
fn after_a_restart_in_fallback_mode_the_case_goes_up_normally_again() {
    let tmp = tempfile::tempdir().unwrap();
    let mut store = open(tmp.path());
    let mut server = Server::new();
    let mut session = SyncSession::new();
    let (case, _) = new_case(&mut store);
    round(&mut session, &mut store, &mut server);
    server.docs.insert(case, AutoCommit::new());
    server.edit(&case, "status", "outreach");
    edit(&mut store, &case, "area", "north");
    round(&mut session, &mut store, &mut server);
    assert!(store.entry(&case).unwrap().fallback);

    // The app restarts: the sync state is gone, the index still says fallback.
    let mut session = SyncSession::new();
    let (request, _) = session.build_request(&store).unwrap();
    assert_eq!(request.documents.len(), 1);
    assert!(request.documents[0].sync_message.is_none());
    assert!(!request.documents[0].since.is_empty());
    let mut rounds = 0;
    loop {
        let report = round(&mut session, &mut store, &mut server);
        rounds += 1;
        if !store.entry(&case).unwrap().fallback && !report.sync_again() {
            break;
        }
        assert!(rounds < 20);
    }
    assert_eq!(heads_of(&store, &case), sorted(server.doc(&case).get_heads()));
}

#[test]
fn an_unreadable_replica_is_set_aside_and_fetched_again() {
    let tmp = tempfile::tempdir().unwrap();
    let mut store = open(tmp.path());
    let mut server = Server::new();
    let mut session = SyncSession::new();
    let (case, _) = new_case(&mut store);
    round(&mut session, &mut store, &mut server);
    std::fs::write(store.case_path(&case), b"garbage").unwrap();
    // Found damaged when the file is read again: the store kept the document it saved loaded.
    drop(store);
    let mut store = open(tmp.path());

    let (request, sent) = session.build_request(&store).unwrap();
    assert_eq!(request.documents[0].since, vec![]);
    assert!(sent.case(&case).unwrap().unreadable);
    let response = server.answer(&request);
    let report = session.apply_response(&mut store, &sent, response, now()).unwrap();
    assert!(matches!(report.events_of(&case).next(), Some(CaseEvent::Synced { received: 1, .. })), "{report:?}");
    assert_eq!(value(&store, &case, "status").as_deref(), Some("intake"));
    let copies = store.refused_copies(&case).unwrap();
    assert_eq!(copies.len(), 1);
    assert_eq!(std::fs::read(&copies[0]).unwrap(), b"garbage");
}

#[test]
fn get_changes_after_heads_it_does_not_know_lists_everything() {
    // build_request relies on this: a `since` the replica lacks sends everything (harmless),
    // never nothing.
    let mut doc = AutoCommit::new();
    doc.put(ROOT, "a", 1).unwrap();
    doc.commit();
    let unknown = ChangeHash([7; 32]);
    assert_eq!(doc.get_changes(&[unknown]).len(), 1);
}

#[test]
fn reports_merge_across_rounds() {
    let case = CaseId::new_random();
    let mut report = SyncReport { more: true, rounds: 1, ..SyncReport::default() };
    report.push(case, CaseEvent::Synced { uploaded: 2, received: 1, case_number: None });
    let mut next = SyncReport { rounds: 1, ..SyncReport::default() };
    next.push(case, CaseEvent::Synced { uploaded: 0, received: 0, case_number: None });
    next.push(case, CaseEvent::Purged { reason: PurgeReason::Unassigned });
    report.absorb(next);
    assert_eq!(report.rounds, 2);
    assert!(!report.more && !report.sync_again());
    assert_eq!((report.uploaded(), report.received()), (2, 1));
    assert_eq!(report.events.len(), 3);
    assert_eq!(report.notable().count(), 2);
}
