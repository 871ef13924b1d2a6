//! Syncing end to end: counsellors' phones and the server, over real HTTP, on SQLite and on
//! PostgreSQL (each story runs once per backend: `<story>::sqlite`, `<story>::postgres`).
//!
//! A phone here is the real phone stack — [`SyncClient`] + [`SyncSession`] + a
//! [`ReplicaStore`] in a temporary directory + [`CaseReplica`] field operations. Raw HTTP is
//! used only where the story is about what a broken or hostile client sends.

// The field operations return the library's `OpError`, whatever its size; the tests only
// pass it through.
#![allow(clippy::result_large_err)]

mod common;

use std::collections::BTreeSet;

use automerge::transaction::Transactable;
use automerge::{AutoCommit, ChangeHash, ObjId, ReadDoc, ROOT};
use chrono::{NaiveDate, Utc};
use diesel::prelude::*;
use serde_json::{json, Value};
use tsunagi_server::admin;
use tsunagi_server::store::{schema, StoreError};
use tsunagi_server::sync::Assignment;
use tsunagi_sync::actor::random_device_actor;
use tsunagi_sync::client::ClientError;
use tsunagi_sync::ids::{CaseId, CaseNumber};
use tsunagi_sync::ops::{CaseReplica, NewCase, OpError};
use tsunagi_sync::session::{CaseEvent, SyncReport};
use tsunagi_sync::wire::{
    ApiError, Bytes, DocumentErrorCode, DocumentStatus, DocumentUpload, Format, Hash, PurgeReason, SyncRequest,
    SyncResponse, SYNC_PATH,
};

use common::phone::{municipality, sorted, Phone};
use common::{server_heads, spawn_app, spawn_app_with, Backend, Seed, TestApp, MUNICIPALITY};

on_both_backends!(
    projections_written_batch_by_batch_equal_a_full_rebuild,
    a_case_opened_offline_gets_its_number_on_first_sync,
    tsunagi_admin_assign_sends_a_case_to_a_colleagues_phone_and_back_off_it,
    two_devices_amend_one_narrative_while_a_colleague_logs_a_visit_phone_first,
    two_devices_amend_one_narrative_while_a_colleague_logs_a_visit_tablet_first,
    sending_the_same_batch_twice_is_a_no_op,
    a_phone_killed_before_reading_the_answer_resumes_without_loss_or_duplicates,
    with_nothing_new_a_sync_is_one_empty_round_trip,
    with_its_cursor_a_device_lists_nothing_and_gets_only_what_others_recorded,
    an_answer_lost_on_the_way_is_answered_again_from_the_old_cursor,
    malformed_and_mistyped_bodies_get_a_clear_400_or_415_and_change_nothing,
    no_token_or_a_garbage_token_is_unauthenticated_and_changes_nothing,
    a_body_over_the_limit_is_refused_and_the_phone_sends_it_in_portions,
    a_case_someone_may_not_see_is_answered_exactly_like_one_that_does_not_exist,
    a_corrupt_change_refuses_its_case_while_another_case_goes_through,
    changes_with_missing_dependencies_are_answered_with_a_resync,
    every_trust_rule_refuses_quarantines_and_changes_nothing,
    a_revoked_phone_is_refused_at_once_and_told_to_wipe,
    an_ended_assignment_purges_the_case_from_the_phone,
);

/// The events of `case` in a sync report.
fn events(report: &SyncReport, case: &CaseId) -> Vec<CaseEvent> {
    report.events_of(case).cloned().collect()
}

/// The case number in the single `Synced` event of `case`, checking what went up and down.
fn synced(report: &SyncReport, case: &CaseId, uploaded: usize, received: usize) -> CaseNumber {
    match events(report, case).as_slice() {
        [CaseEvent::Synced { uploaded: u, received: r, case_number: Some(number) }] => {
            assert_eq!((*u, *r), (uploaded, received), "changes uploaded and received for {case}");
            *number
        }
        other => panic!("expected {case} synced with a case number, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// What the server holds
// ---------------------------------------------------------------------------------------------

/// The hashes of the changes the server stored for `case`, in the order stored.
fn stored_changes(app: &TestApp, case: &CaseId) -> Vec<Vec<u8>> {
    app.db
        .read(|c| -> Result<_, StoreError> {
            Ok(schema::changes::table
                .filter(schema::changes::case_id.eq(case.to_string()))
                .order(schema::changes::seq.asc())
                .select(schema::changes::hash)
                .load::<Vec<u8>>(c)?)
        })
        .unwrap()
}

/// How many documents, changes and quarantined uploads the server holds in all.
fn totals(app: &TestApp) -> (i64, i64, i64) {
    app.db
        .read(|c| -> Result<_, StoreError> {
            Ok((
                schema::documents::table.count().get_result(c)?,
                schema::changes::table.count().get_result(c)?,
                schema::quarantine::table.count().get_result(c)?,
            ))
        })
        .unwrap()
}

/// The `activities` projection of `case`: (activity id, recorded by, device, voided), by id.
fn activity_rows(app: &TestApp, case: &CaseId) -> Vec<(String, String, String, bool)> {
    use schema::activities as a;
    app.db
        .read(|c| -> Result<_, StoreError> {
            Ok(a::table
                .filter(a::case_id.eq(case.to_string()))
                .order(a::activity_id.asc())
                .select((a::activity_id, a::recorded_by, a::device_id, a::voided))
                .load(c)?)
        })
        .unwrap()
}

/// The `cases` projection of `case`: (case number, status, primary assignee).
fn case_row(app: &TestApp, case: &CaseId) -> Option<(Option<String>, String, Option<String>)> {
    use schema::cases as k;
    app.db
        .read(|c| -> Result<_, StoreError> {
            Ok(k::table
                .find(case.to_string())
                .select((k::case_number, k::status, k::primary_assignee))
                .first(c)
                .optional()?)
        })
        .unwrap()
}

/// The last serial handed out by the case number counter of the seeded municipality.
fn last_serial(app: &TestApp) -> Option<i32> {
    use schema::case_number_counters as n;
    app.db
        .read(|c| -> Result<_, StoreError> {
            Ok(n::table.filter(n::municipality.eq(MUNICIPALITY)).select(n::last_serial).first(c).optional()?)
        })
        .unwrap()
}

/// Everything a user of the server could notice about one case.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Record {
    heads: Vec<ChangeHash>,
    changes: Vec<Vec<u8>>,
    case: Option<(Option<String>, String, Option<String>)>,
    activities: Vec<(String, String, String, bool)>,
}

fn record(app: &TestApp, case: &CaseId) -> Record {
    Record {
        heads: server_heads(&app.db, case),
        changes: stored_changes(app, case),
        case: case_row(app, case),
        activities: activity_rows(app, case),
    }
}

// ---------------------------------------------------------------------------------------------
// Raw HTTP
// ---------------------------------------------------------------------------------------------

/// `POST /v1/sync` with this body, `Content-Type` and token (none if `None`).
async fn post_sync(app: &TestApp, token: Option<&str>, content_type: Option<&str>, body: Vec<u8>) -> reqwest::Response {
    let mut request = app.http.post(app.url(SYNC_PATH)).body(body);
    if let Some(content_type) = content_type {
        request = request.header(reqwest::header::CONTENT_TYPE, content_type);
    }
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.expect("the server answers")
}

/// Sends `request` in CBOR and decodes the `200` answer.
async fn sync_raw(app: &TestApp, token: &str, request: &SyncRequest) -> SyncResponse {
    let response = post_sync(app, Some(token), Some("application/cbor"), Format::Cbor.encode(request)).await;
    assert_eq!(response.status(), 200);
    let body = response.bytes().await.unwrap();
    SyncResponse::decode(Format::Cbor, &body).expect("a SyncResponse")
}

/// A JSON answer without its `cursor` (which every answer has, and which differs from one
/// answer to the next), after checking that it has one.
fn without_cursor(mut answer: Value) -> Value {
    let cursor = answer.as_object_mut().and_then(|o| o.remove("cursor"));
    assert!(cursor.is_some_and(|c| c.is_string()), "every answer carries a cursor: {answer}");
    answer
}

/// Sends a JSON body and returns the `200` answer as JSON.
async fn sync_json(app: &TestApp, token: &str, body: &Value) -> Value {
    let response = post_sync(app, Some(token), Some("application/json"), serde_json::to_vec(body).unwrap()).await;
    assert_eq!(response.status(), 200);
    response.json().await.expect("a JSON SyncResponse")
}

/// The status, `code` and body format of an error answer (an `ApiError` in CBOR or JSON, as
/// its `Content-Type` says).
async fn api_error(response: reqwest::Response) -> (u16, String, Format) {
    let status = response.status().as_u16();
    let format = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(Format::from_content_type)
        .expect("an error answer in CBOR or JSON");
    let body = response.bytes().await.unwrap();
    let error: ApiError = format.decode(&body).expect("an ApiError body");
    (status, error.code.as_str().to_owned(), format)
}

fn no_changes(app: &TestApp) {
    assert_eq!(totals(app), (0, 0, 0), "no document, no change, nothing quarantined");
    assert_eq!(last_serial(app), None, "no case number was taken");
}

// ---------------------------------------------------------------------------------------------
// Stories
// ---------------------------------------------------------------------------------------------

async fn a_case_opened_offline_gets_its_number_on_first_sync(backend: Backend) {
    let app = spawn_app(backend).await;
    let people = app.seed();
    let mut phone = Phone::sign_in(&app.address, &people.counsellor).await;

    let case = phone.open_case();
    let visit = phone.log_visit(&case, 10, "初回訪問。インターホンに応答なし。");
    assert_eq!(phone.view(&case).case_number, None, "offline, the case has no number yet");

    let report = phone.sync().await;
    // Up: the opening and the visit; down: the server's change that writes the number.
    let number = synced(&report, &case, 2, 1);
    assert_eq!(number.serial(), 1);
    assert_eq!(number.to_string(), format!("{}-0001", number.fiscal_year().year()));
    // The number is in the phone's replica itself, and in its index.
    assert_eq!(phone.view(&case).case_number, Some(number));
    assert_eq!(phone.store.entry(&case).unwrap().case_number, Some(number.to_string()));
    // Phone and server hold the same case.
    assert_eq!(phone.heads(&case), server_heads(&app.db, &case));
    assert_eq!(phone.since(&case), server_heads(&app.db, &case));
    let (case_number, status, primary) = case_row(&app, &case).expect("the case is projected");
    assert_eq!((case_number, status.as_str()), (Some(number.to_string()), "intake"));
    assert_eq!(primary, Some(people.counsellor.staff.to_string()));
    let rows = activity_rows(&app, &case);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].0, visit.to_string());

    // The next case opened offline gets the next number; the first keeps its own (and,
    // unchanged, is not even listed: the phone has a cursor).
    let second = phone.open_case();
    let report = phone.sync().await;
    assert_eq!(synced(&report, &second, 1, 1).serial(), 2);
    assert!(events(&report, &case).is_empty(), "{report:?}");
    assert_eq!(phone.view(&case).case_number, Some(number));
    assert_eq!(phone.view(&second).case_number.map(|n| n.serial()), Some(2));
    assert_eq!(last_serial(&app), Some(2));
}

async fn two_devices_amend_one_narrative_while_a_colleague_logs_a_visit_phone_first(backend: Backend) {
    two_devices_amend_one_narrative_while_a_colleague_logs_a_visit(backend, false).await
}

async fn two_devices_amend_one_narrative_while_a_colleague_logs_a_visit_tablet_first(backend: Backend) {
    two_devices_amend_one_narrative_while_a_colleague_logs_a_visit(backend, true).await
}

/// 佐藤 amends the narrative of her visit offline on her phone and on her tablet, and logs
/// another visit on the phone; 鈴木, assigned to the case too, logs a visit offline. They
/// sync in one order (`reverse`: the other), then once more to pick up each other's work.
async fn two_devices_amend_one_narrative_while_a_colleague_logs_a_visit(backend: Backend, reverse: bool) {
    let app = spawn_app(backend).await;
    let people = app.seed();
    let sato = people.counsellor.clone();
    let suzuki = people.counsellor2.clone();
    let sato_tablet = app.add_device(&sato, "佐藤 花子のタブレット");

    let mut phone = Phone::sign_in(&app.address, &sato).await;
    let case = phone.open_case();
    let shared = phone.log_visit(&case, 10, "インターホンに応答なし。");
    phone.sync().await;
    app.assign(&case, &suzuki.staff, Assignment::Other).unwrap();

    // The tablet and 鈴木's phone receive the case whole on their first sync.
    let mut tablet = Phone::sign_in(&app.address, &sato_tablet).await;
    let mut colleague = Phone::sign_in(&app.address, &suzuki).await;
    for device in [&mut tablet, &mut colleague] {
        let report = device.sync().await;
        assert!(
            matches!(events(&report, &case).as_slice(), [CaseEvent::Assigned { merged: false, case_number: Some(_) }]),
            "{report:?}"
        );
    }

    // Offline, everyone works.
    phone.edit(&case, |r| r.amend_narrative(shared, "インターホンに応答なし。玄関に手紙を残した。")).unwrap();
    tablet.edit(&case, |r| r.insert_into_narrative(shared, 0, "【10時】")).unwrap();
    let from_phone = phone.log_visit(&case, 16, "再訪問。");
    let from_colleague = colleague.log_visit(&case, 15, "近所の方から話を聞いた。");
    // Only the author amends an activity: 鈴木's app does not even offer it.
    let refused = colleague.edit(&case, |r| r.amend_narrative(shared, "書き換え"));
    assert!(matches!(refused, Err(OpError::NotOwnActivity(id)) if id == shared), "{refused:?}");

    let mut devices = [(&mut phone, 2), (&mut tablet, 1), (&mut colleague, 1)];
    if reverse {
        devices.reverse();
    }
    for (device, changes) in devices.iter_mut() {
        let report = device.sync().await;
        match events(&report, &case).as_slice() {
            [CaseEvent::Synced { uploaded, .. }] => assert_eq!(uploaded, changes, "{}", device.who.login),
            other => panic!("{}: {other:?}", device.who.login),
        }
    }
    for (device, _) in devices.iter_mut() {
        let report = device.sync().await;
        assert_eq!(report.uploaded(), 0, "{}: everything went up in the first round", device.who.login);
    }

    // Everyone holds exactly what the server holds.
    let heads = server_heads(&app.db, &case);
    for (device, _) in devices.iter() {
        assert_eq!(device.heads(&case), heads, "{}", device.who.login);
        assert_eq!(device.since(&case), heads, "{}", device.who.login);
    }
    let view = phone.view(&case);
    assert_eq!(tablet.view(&case), view);
    assert_eq!(colleague.view(&case), view);
    // Both visits are in the record, and both amendments in the narrative.
    assert_eq!(
        view.activities.keys().copied().collect::<BTreeSet<_>>(),
        BTreeSet::from([shared, from_phone, from_colleague])
    );
    assert_eq!(view.activities[&shared].narrative, "【10時】インターホンに応答なし。玄関に手紙を残した。");
    assert_eq!(view.activities[&from_colleague].recorded_by, suzuki.staff);
    assert_eq!(view.activities[&from_colleague].narrative, "近所の方から話を聞いた。");
    // And in the projection the supervisors' screens read, each once, with its author.
    let mut expected = vec![
        (shared.to_string(), sato.staff.to_string(), sato.device.to_string(), false),
        (from_phone.to_string(), sato.staff.to_string(), sato.device.to_string(), false),
        (from_colleague.to_string(), suzuki.staff.to_string(), suzuki.device.to_string(), false),
    ];
    expected.sort();
    assert_eq!(activity_rows(&app, &case), expected);
    let hashes = stored_changes(&app, &case);
    assert_eq!(hashes.iter().collect::<BTreeSet<_>>().len(), hashes.len(), "every change is stored once");
}

async fn sending_the_same_batch_twice_is_a_no_op(backend: Backend) {
    let app = spawn_app(backend).await;
    let people = app.seed();
    let mut phone = Phone::sign_in(&app.address, &people.counsellor).await;
    let case = phone.open_case();
    phone.log_visit(&case, 10, "初回訪問");
    let (request, sent) = phone.session.build_request(&phone.store).unwrap();
    assert_eq!(request.documents[0].changes.len(), 2);

    let mut first = sync_raw(&app, &phone.token, &request).await;
    let after_first = record(&app, &case);
    let mut second = sync_raw(&app, &phone.token, &request).await;

    // The server answers exactly as the first time (but for the cursor: each answer has its
    // own), and holds exactly what it held.
    assert!(first.cursor.is_some() && second.cursor.is_some() && first.cursor != second.cursor);
    (first.cursor, second.cursor) = (None, None);
    assert_eq!(second, first);
    let result = &second.documents[0];
    assert_eq!(result.status, DocumentStatus::Ok);
    assert_eq!(result.case_number.map(|n| n.serial()), Some(1));
    assert_eq!(record(&app, &case), after_first);
    assert_eq!(after_first.changes.len(), 3, "the opening, the visit and the server's case number");
    assert_eq!(after_first.activities.len(), 1);
    assert_eq!(last_serial(&app), Some(1), "no second number was taken");
    assert_eq!(totals(&app), (1, 3, 0));

    // The second answer serves the phone as well as the first.
    let report = phone.session.apply_response(&mut phone.store, &sent, second, Utc::now()).unwrap();
    assert_eq!(synced(&report, &case, 2, 1).serial(), 1);
    assert_eq!(phone.heads(&case), after_first.heads);
    assert_eq!(phone.view(&case).case_number.map(|n| n.serial()), Some(1));
}

async fn a_phone_killed_before_reading_the_answer_resumes_without_loss_or_duplicates(backend: Backend) {
    let app = spawn_app(backend).await;
    let people = app.seed();
    let mut phone = Phone::sign_in(&app.address, &people.counsellor).await;
    let case = phone.open_case();
    let first_visit = phone.log_visit(&case, 10, "初回訪問");

    // The app sends its batch and is killed before it reads the answer.
    let (request, _) = phone.session.build_request(&phone.store).unwrap();
    let response = post_sync(&app, Some(&phone.token), Some("application/cbor"), Format::Cbor.encode(&request)).await;
    assert_eq!(response.status(), 200);
    drop(response);
    let mut phone = phone.restart();
    assert_eq!(phone.since(&case), Vec::<ChangeHash>::new(), "the phone never learnt of the answer");
    let applied = record(&app, &case);
    assert_eq!(applied.changes.len(), 3, "the server did apply the batch");

    // Started again, the phone simply syncs: it sends the same changes, which the server
    // already holds, and receives what it missed.
    let report = phone.sync().await;
    let number = synced(&report, &case, 2, 1);
    assert_eq!(number.serial(), 1);
    assert_eq!(record(&app, &case), applied, "the resent changes were no-ops");
    assert_eq!(phone.heads(&case), applied.heads);
    assert_eq!(phone.since(&case), applied.heads);
    assert_eq!(phone.view(&case).case_number, Some(number));

    // Killed once more, after an acknowledged sync, with a second visit in flight.
    let second_visit = phone.log_visit(&case, 14, "再訪問");
    let (request, _) = phone.session.build_request(&phone.store).unwrap();
    assert_eq!(request.documents[0].changes.len(), 1);
    let response = post_sync(&app, Some(&phone.token), Some("application/cbor"), Format::Cbor.encode(&request)).await;
    assert_eq!(response.status(), 200);
    drop(response);
    let mut phone = phone.restart();
    let report = phone.sync().await;
    assert_eq!(synced(&report, &case, 1, 0), number);

    // Everything once: four changes, two activities, one number.
    let hashes = stored_changes(&app, &case);
    assert_eq!(hashes.len(), 4);
    assert_eq!(hashes.iter().collect::<BTreeSet<_>>().len(), 4, "no change is stored twice");
    let ids: Vec<String> = activity_rows(&app, &case).into_iter().map(|row| row.0).collect();
    let mut expected = vec![first_visit.to_string(), second_visit.to_string()];
    expected.sort();
    assert_eq!(ids, expected);
    assert_eq!(last_serial(&app), Some(1));
    assert_eq!(phone.heads(&case), server_heads(&app.db, &case));
    assert_eq!(phone.since(&case), server_heads(&app.db, &case));
    assert!(phone.next_request().documents.iter().all(|d| d.changes.is_empty()), "nothing is left to send");
}

/// 佐藤 opens a case on her phone and logs a visit; 鈴木 is assigned to it as well and
/// receives it whole on his. Both have synced since; the case has its number.
struct SharedCase {
    app: TestApp,
    people: Seed,
    phone: Phone,
    colleague: Phone,
    case: CaseId,
    number: CaseNumber,
}

async fn a_case_on_two_phones(backend: Backend) -> SharedCase {
    let app = spawn_app(backend).await;
    let people = app.seed();
    let mut phone = Phone::sign_in(&app.address, &people.counsellor).await;
    let case = phone.open_case();
    phone.log_visit(&case, 10, "訪問");
    let number = synced(&phone.sync().await, &case, 2, 1);
    app.assign(&case, &people.counsellor2.staff, Assignment::Other).unwrap();
    phone.sync().await; // brings the assignment
    let mut colleague = Phone::sign_in(&app.address, &people.counsellor2).await;
    colleague.sync().await; // receives the case whole
    assert!(colleague.store.contains(&case));
    SharedCase { app, people, phone, colleague, case, number }
}

async fn with_nothing_new_a_sync_is_one_empty_round_trip(backend: Backend) {
    let SharedCase { app, mut phone, mut colleague, case, number, .. } = a_case_on_two_phones(backend).await;

    for device in [&mut phone, &mut colleague] {
        let before = record(&app, &case);
        // With its cursor, a device lists no case it has nothing to send for.
        let request = device.next_request();
        assert!(request.cursor.is_some());
        assert!(request.documents.is_empty(), "{}: nothing to send, nothing listed", device.who.login);
        let body = Format::Cbor.encode(&request);
        assert!(body.len() < 64, "an idle request is a few bytes, not {}", body.len());

        let report = device.sync().await;
        assert_eq!(report.rounds, 1, "{}: one request, one answer", device.who.login);
        assert_eq!((report.uploaded(), report.received()), (0, 0));
        assert!(events(&report, &case).is_empty(), "{}: {report:?}", device.who.login);
        assert_eq!(device.view(&case).case_number, Some(number));
        assert_eq!(report.notable().count(), 0, "nothing to tell the user");
        assert!(!report.sync_again());
        assert_eq!(record(&app, &case), before, "the server changed nothing");
        assert_eq!(device.heads(&case), before.heads);
    }
}

/// 佐藤's phone and 鈴木's tablet hold the same case and have synced. 鈴木 logs a visit.
/// 佐藤's phone, with nothing of its own to send, lists no case, and receives exactly the
/// visit: not its own changes back, not the server's case number again.
async fn with_its_cursor_a_device_lists_nothing_and_gets_only_what_others_recorded(backend: Backend) {
    let SharedCase { app, mut phone, mut colleague, case, .. } = a_case_on_two_phones(backend).await;

    // 佐藤 logs a visit of her own and syncs; the next answer does not send it back to her.
    phone.log_visit(&case, 11, "再訪問");
    assert_eq!(phone.sync().await.uploaded(), 1);
    let visit = colleague.log_visit(&case, 12, "電話で近況を聞いた。");
    let report = colleague.sync().await;
    assert_eq!((report.uploaded(), report.received()), (1, 1), "up: the visit; down: 佐藤's visit");

    let request = phone.next_request();
    assert!(request.cursor.is_some() && request.documents.is_empty());
    let report = phone.sync().await;
    assert_eq!(report.rounds, 1);
    assert_eq!(
        events(&report, &case),
        [CaseEvent::Synced { uploaded: 0, received: 1, case_number: phone.view(&case).case_number }]
    );
    assert!(phone.view(&case).activities.contains_key(&visit));
    assert_eq!(phone.heads(&case), server_heads(&app.db, &case));
    assert_eq!(phone.since(&case), server_heads(&app.db, &case));
    // And then nothing more.
    let report = phone.sync().await;
    assert_eq!((report.uploaded(), report.received()), (0, 0));
    assert!(report.events.is_empty(), "{report:?}");
}

/// protocol.md, section 9: a request with a cursor is answered as if every answer issued
/// after that cursor's had never been sent. Each answer below is lost (the device never reads
/// it), and the next sync, from the old cursor, brings the same again: a colleague's visit, a
/// case newly assigned, and a purge — which, once the device has stored it, is not repeated.
async fn an_answer_lost_on_the_way_is_answered_again_from_the_old_cursor(backend: Backend) {
    let SharedCase { app, people, mut phone, mut colleague, case, .. } = a_case_on_two_phones(backend).await;

    // A colleague's visit.
    let visit = colleague.log_visit(&case, 12, "電話で近況を聞いた。");
    colleague.sync().await;
    let lost = sync_raw(&app, &phone.token, &phone.next_request()).await;
    assert_eq!(lost.documents.iter().filter(|d| d.case_id == case && !d.changes.is_empty()).count(), 1);
    let report = phone.sync().await;
    assert_eq!(report.received(), 1, "{report:?}");
    assert!(phone.view(&case).activities.contains_key(&visit));

    // A case newly assigned to 佐藤.
    let other = colleague.open_case();
    colleague.sync().await;
    app.assign(&other, &people.counsellor.staff, Assignment::Other).unwrap();
    let lost = sync_raw(&app, &phone.token, &phone.next_request()).await;
    assert_eq!(lost.assigned.iter().map(|a| a.case_id).collect::<Vec<_>>(), [other]);
    assert!(!phone.store.contains(&other));
    phone.sync().await;
    assert!(phone.store.contains(&other), "the case comes whole again");
    let report = phone.sync().await;
    assert!(report.events.is_empty(), "and then not again: {report:?}");

    // A purge.
    app.assign(&case, &people.counsellor2.staff, Assignment::Remove).unwrap();
    let lost = sync_raw(&app, &colleague.token, &colleague.next_request()).await;
    assert_eq!(lost.purge.iter().map(|p| (p.case_id, p.reason)).collect::<Vec<_>>(), [(case, PurgeReason::Unassigned)]);
    assert!(colleague.store.contains(&case));
    colleague.sync().await;
    assert!(!colleague.store.contains(&case), "the purge is ordered again, and carried out");
    assert!(held_by(&app, &colleague, &case), "until the tablet confirms it, the server remembers it");
    let confirming = sync_raw(&app, &colleague.token, &colleague.next_request()).await;
    assert!(confirming.purge.is_empty() && confirming.documents.is_empty(), "{confirming:?}");
    assert!(!held_by(&app, &colleague, &case), "the tablet's cursor confirmed the purge");
}

/// Whether the server counts `phone` as holding `case`.
fn held_by(app: &TestApp, phone: &Phone, case: &CaseId) -> bool {
    use schema::device_cases;
    let mut conn = app.db.conn().unwrap();
    let rows: i64 = device_cases::table
        .filter(device_cases::device_id.eq(phone.who.device.to_string()))
        .filter(device_cases::case_id.eq(case.to_string()))
        .count()
        .get_result(&mut *conn)
        .unwrap();
    rows > 0
}

async fn malformed_and_mistyped_bodies_get_a_clear_400_or_415_and_change_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let people = app.seed();
    let mut phone = Phone::sign_in(&app.address, &people.counsellor).await;
    let case = phone.open_case();
    phone.log_visit(&case, 10, "訪問");
    let request = phone.next_request();
    let cbor = Format::Cbor.encode(&request);
    let json = Format::Json.encode(&request);
    let token = Some(phone.token.as_str());

    let mut trailing = cbor.clone();
    trailing.push(0x00);
    let mut version_3 = request.clone();
    version_3.protocol = 3;
    let uppercase_id =
        json!({ "protocol": 1, "documents": [{ "case_id": case.to_string().to_uppercase(), "since": [] }] });
    const CBOR: Option<&str> = Some("application/cbor");
    const JSON: Option<&str> = Some("application/json");
    let attempts = [
        ("truncated CBOR", CBOR, cbor[..cbor.len() / 2].to_vec(), 400, "malformed_body"),
        ("not CBOR at all", CBOR, vec![0xff, 0xfe, 0x13, 0x37], 400, "malformed_body"),
        ("trailing bytes", CBOR, trailing, 400, "malformed_body"),
        ("truncated JSON", JSON, json[..json.len() - 3].to_vec(), 400, "malformed_body"),
        ("no protocol", JSON, br#"{"documents": []}"#.to_vec(), 400, "malformed_body"),
        ("uppercase case id", JSON, serde_json::to_vec(&uppercase_id).unwrap(), 400, "malformed_body"),
        ("text/plain", Some("text/plain"), cbor.clone(), 415, "unsupported_media_type"),
        ("no content type", None, cbor.clone(), 415, "unsupported_media_type"),
        ("protocol 3, CBOR", CBOR, Format::Cbor.encode(&version_3), 400, "unsupported_protocol"),
        ("protocol 3, JSON", JSON, Format::Json.encode(&version_3), 400, "unsupported_protocol"),
        (
            "protocol 3, another shape",
            JSON,
            br#"{"protocol": 3, "batches": {"x": 1}}"#.to_vec(),
            400,
            "unsupported_protocol",
        ),
    ];
    for (what, content_type, body, status, code) in attempts {
        // The error comes in the request's format, or in JSON when that is unknown.
        let format = content_type.and_then(Format::from_content_type).unwrap_or(Format::Json);
        let answer = api_error(post_sync(&app, token, content_type, body).await).await;
        assert_eq!(answer, (status, code.to_owned(), format), "{what}");
    }
    no_changes(&app);

    // The batch itself was fine: sent properly, it goes through and gets the first number.
    let report = phone.sync().await;
    assert_eq!(synced(&report, &case, 2, 1).serial(), 1);
}

async fn no_token_or_a_garbage_token_is_unauthenticated_and_changes_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let people = app.seed();
    let mut phone = Phone::sign_in(&app.address, &people.counsellor).await;
    let case = phone.open_case();
    phone.log_visit(&case, 10, "訪問");
    let body = Format::Cbor.encode(&phone.next_request());

    for token in [None, Some("garbage"), Some("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.")] {
        let response = post_sync(&app, token, Some("application/cbor"), body.clone()).await;
        assert_eq!(api_error(response).await, (401, "unauthenticated".into(), Format::Cbor), "{token:?}");
    }
    // The phone with a bad token is told to sign in again, not to wipe.
    let good = std::mem::replace(&mut phone.token, "garbage".into());
    let error = phone.try_sync().await.unwrap_err();
    assert!(matches!(error, ClientError::Unauthenticated { .. }), "{error:?}");
    assert!(error.requires_sign_in() && !error.requires_wipe());
    no_changes(&app);
    assert_eq!(phone.since(&case), Vec::<ChangeHash>::new());

    phone.token = good;
    assert_eq!(synced(&phone.sync().await, &case, 2, 1).serial(), 1);
}

/// Narrative text that does not compress: `chars` pseudo-random kanji.
fn incompressible(seed: u32, chars: usize) -> String {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..chars)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            char::from_u32(0x4E00 + x % 0x5000).unwrap()
        })
        .collect()
}

async fn a_body_over_the_limit_is_refused_and_the_phone_sends_it_in_portions(backend: Backend) {
    const LIMIT: usize = 4096;
    let app = spawn_app_with(backend, |settings| settings.max_body_bytes = LIMIT).await;
    let people = app.seed();
    let mut phone = Phone::sign_in(&app.address, &people.counsellor).await;
    let case = phone.open_case();
    for (i, hour) in [9, 11, 13, 15].into_iter().enumerate() {
        phone.log_visit(&case, hour, &incompressible(i as u32, 400));
    }
    let request = phone.next_request();
    let body = Format::Cbor.encode(&request);
    let sizes: Vec<usize> = request.documents[0].changes.iter().map(Bytes::len).collect();
    assert!(body.len() > LIMIT, "the premise: the whole batch is over the limit ({} bytes)", body.len());
    assert!(sizes.iter().all(|&s| s < LIMIT / 2 - 256), "the premise: each change fits easily ({sizes:?})");

    let response = post_sync(&app, Some(&phone.token), Some("application/cbor"), body).await;
    assert_eq!(api_error(response).await, (413, "payload_too_large".into(), Format::Cbor));
    no_changes(&app);

    // The phone's client splits its upload by itself, and everything arrives.
    let report = phone.sync().await;
    assert_eq!(report.uploaded(), 5, "{report:?}");
    assert!(report.rounds > 1, "in more than one request: {report:?}");
    assert!(!report.sync_again());
    assert_eq!(report.refusals().count(), 0);
    assert_eq!(phone.heads(&case), server_heads(&app.db, &case));
    assert_eq!(phone.since(&case), server_heads(&app.db, &case));
    assert_eq!(activity_rows(&app, &case).len(), 4);
    assert_eq!(stored_changes(&app, &case).len(), 6, "five from the phone, the case number from the server");
    assert_eq!(phone.view(&case).case_number.map(|n| n.serial()), Some(1));
}

async fn a_case_someone_may_not_see_is_answered_exactly_like_one_that_does_not_exist(backend: Backend) {
    let app = spawn_app(backend).await;
    let people = app.seed();
    let mut phone = Phone::sign_in(&app.address, &people.counsellor).await;
    let case = phone.open_case();
    phone.log_visit(&case, 10, "訪問");
    phone.sync().await;
    let before = record(&app, &case);
    let heads: Vec<Hash> = before.heads.iter().map(Hash::from).collect();

    // 鈴木 is not assigned to the case. Whether he names it, or a case id that does not
    // exist, with or without heads he guessed right, he gets the same answer: not_found,
    // without heads, changes or number, and the case does not come to him as assigned.
    let suzuki = Phone::sign_in(&app.address, &people.counsellor2).await;
    let nowhere = CaseId::new_random();
    for since in [json!([]), json!(heads)] {
        let answer = |id: CaseId| json!({ "protocol": 1, "documents": [{ "case_id": id, "since": since.clone() }] });
        let real = without_cursor(sync_json(&app, &suzuki.token, &answer(case)).await);
        let unknown = without_cursor(sync_json(&app, &suzuki.token, &answer(nowhere)).await);
        assert_eq!(real, json!({ "protocol": 1, "documents": [{ "case_id": case, "status": "not_found" }] }));
        assert_eq!(unknown, json!({ "protocol": 1, "documents": [{ "case_id": nowhere, "status": "not_found" }] }));
    }
    // Nor can he write into it, even by opening a case under its id.
    let mut new = NewCase::new(municipality(), NaiveDate::from_ymd_opt(2026, 11, 2).unwrap());
    new.case_id = case;
    let mut forged = CaseReplica::open(new, suzuki.actor()).unwrap();
    let changes: Vec<Bytes> = forged.changes_since(&[]).iter().map(Bytes::from).collect();
    let upload = json!({ "protocol": 1, "documents": [{ "case_id": case, "changes": changes }] });
    let answer = without_cursor(sync_json(&app, &suzuki.token, &upload).await);
    assert_eq!(answer, json!({ "protocol": 1, "documents": [{ "case_id": case, "status": "not_found" }] }));
    assert_eq!(record(&app, &case), before, "nothing changed");
    assert_eq!(totals(&app).2, 0, "and nothing was quarantined");

    // A supervisor of the municipality does see it.
    let mut supervisor = Phone::sign_in(&app.address, &people.supervisor).await;
    let report = supervisor.sync().await;
    assert!(matches!(events(&report, &case).as_slice(), [CaseEvent::Assigned { .. }]), "{report:?}");
}

async fn a_corrupt_change_refuses_its_case_while_another_case_goes_through(backend: Backend) {
    let app = spawn_app(backend).await;
    let people = app.seed();
    let mut phone = Phone::sign_in(&app.address, &people.counsellor).await;
    let broken = phone.open_case();
    phone.log_visit(&broken, 10, "訪問");
    phone.sync().await;
    let before = record(&app, &broken);

    // Offline: a visit on the first case, and a second case opened.
    phone.log_visit(&broken, 14, "再訪問");
    let fine = phone.open_case();
    phone.log_visit(&fine, 15, "新規の訪問");
    let mut request = phone.next_request();
    // On the way, the first case's change is cut short.
    let upload = request.documents.iter_mut().find(|d| d.case_id == broken).unwrap();
    assert_eq!(upload.changes.len(), 1);
    let bytes = &mut upload.changes[0].0;
    bytes.truncate(bytes.len() / 2);

    let response = sync_raw(&app, &phone.token, &request).await;
    let result = |case: CaseId| response.documents.iter().find(|d| d.case_id == case).expect("a result per case");
    let refused = result(broken);
    assert_eq!(refused.status, DocumentStatus::Refused);
    assert_eq!(refused.error.as_ref().map(|e| e.code), Some(DocumentErrorCode::CorruptChange));
    let heads: Vec<ChangeHash> = sorted(refused.heads.iter().map(|h| ChangeHash::from(*h)).collect());
    assert_eq!(heads, before.heads, "the server's heads, unchanged");
    assert!(refused.changes.is_empty(), "the phone lacks nothing");
    assert_eq!(record(&app, &broken), before, "nothing of it was applied");
    let ok = result(fine);
    assert_eq!(ok.status, DocumentStatus::Ok, "{:?}", ok.error);
    assert_eq!(ok.case_number.map(|n| n.serial()), Some(2));
    assert_eq!(activity_rows(&app, &fine).len(), 1);
    let quarantined = admin::list_quarantine(&app.db, true).unwrap();
    assert_eq!(quarantined.len(), 1);
    let q = &quarantined[0];
    assert_eq!(
        (q.case_id.as_str(), q.device_id.as_str(), q.code.as_str()),
        (broken.to_string().as_str(), people.counsellor.device.to_string().as_str(), "corrupt_change")
    );

    // The phone never saw that answer (the damage was in transit); its next sync is whole.
    let report = phone.sync().await;
    assert_eq!(synced(&report, &broken, 1, 0).serial(), 1);
    assert_eq!(synced(&report, &fine, 2, 1).serial(), 2);
    assert_eq!(activity_rows(&app, &broken).len(), 2);
    for case in [broken, fine] {
        assert_eq!(phone.heads(&case), server_heads(&app.db, &case));
    }
}

async fn changes_with_missing_dependencies_are_answered_with_a_resync(backend: Backend) {
    let app = spawn_app(backend).await;
    let people = app.seed();
    let mut phone = Phone::sign_in(&app.address, &people.counsellor).await;
    let case = phone.open_case();
    phone.log_visit(&case, 10, "訪問");
    phone.sync().await;
    let before = record(&app, &case);

    phone.log_visit(&case, 13, "二回目");
    phone.log_visit(&case, 16, "三回目");
    let mut request = phone.next_request();
    assert_eq!(request.documents[0].changes.len(), 2);
    request.documents[0].changes.remove(0); // the third visit without the second it builds on

    let response = sync_raw(&app, &phone.token, &request).await;
    let result = &response.documents[0];
    assert_eq!(result.status, DocumentStatus::Resync, "{result:?}");
    assert!(result.sync_message.as_ref().is_some_and(|m| !m.is_empty()), "with the server's sync message");
    assert!(result.error.is_none() && result.heads.is_empty() && result.changes.is_empty());
    assert_eq!(record(&app, &case), before, "nothing was applied");
    assert_eq!(totals(&app).2, 0, "not a refusal: nothing quarantined");

    // The phone's own client gets everything through.
    let report = phone.sync().await;
    assert_eq!(report.uploaded(), 2);
    assert_eq!(activity_rows(&app, &case).len(), 3);
    assert_eq!(phone.heads(&case), server_heads(&app.db, &case));
}

/// The map `key` at the root of `doc`.
fn root_map(doc: &AutoCommit, key: &str) -> ObjId {
    doc.get(ROOT, key).unwrap().expect("a root container").1
}

/// The phone syncs an upload the server must refuse with `code` (and, for `invalid_change`,
/// the violation `violation` at `path`). Checks what the counsellor and the administrator
/// then see: the refusal on the phone, the phone back in step with the server, nothing
/// changed on the server, the upload in quarantine.
async fn refused(
    app: &TestApp,
    phone: &mut Phone,
    case: &CaseId,
    code: DocumentErrorCode,
    violation: Option<(&str, String)>,
) {
    let before = record(app, case);
    let quarantined_before = admin::list_quarantine(&app.db, false).unwrap();
    let report = phone.sync().await;
    let error = match events(&report, case).as_slice() {
        [CaseEvent::Refused { error, dropped: 1, kept: Some(_), .. }] => error.clone(),
        other => panic!("expected a refusal with code {code}, got {other:?}"),
    };
    assert_eq!(error.code, code);
    if let Some((violation, path)) = &violation {
        assert!(
            error.violations.iter().any(|v| v.code.as_str() == *violation && &v.path == path),
            "{violation} at {path}: {:?}",
            error.violations
        );
    }
    // Nothing changed on the server: same heads, same changes, same projections.
    assert_eq!(record(app, case), before, "{code}: nothing changed");
    // The upload is in quarantine, for an administrator.
    let quarantined = admin::list_quarantine(&app.db, false).unwrap();
    let new: Vec<_> = quarantined.iter().filter(|q| !quarantined_before.contains(q)).collect();
    assert_eq!(new.len(), 1, "{code}: one upload quarantined");
    assert_eq!(
        (new[0].case_id.as_str(), new[0].staff_id.as_str(), new[0].device_id.as_str(), new[0].code.as_str()),
        (
            case.to_string().as_str(),
            phone.who.staff.to_string().as_str(),
            phone.who.device.to_string().as_str(),
            code.as_str()
        )
    );
    // On the phone: the refused change left the replica (a copy is kept), which is back in
    // step with the server, and the refusal is there to show.
    assert_eq!(phone.heads(case), before.heads);
    assert_eq!(phone.since(case), before.heads);
    let refusal = phone.store.entry(case).unwrap().refusal.clone().expect("the refusal is kept to show");
    assert_eq!(refusal.code, code.as_str());
    assert!(!phone.store.refused_copies(case).unwrap().is_empty());
    // And the next sync has nothing to send.
    assert!(phone.next_request().documents.iter().all(|d| d.changes.is_empty()));
}

async fn every_trust_rule_refuses_quarantines_and_changes_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let people = app.seed();
    let (sato, suzuki) = (people.counsellor.clone(), people.counsellor2.clone());
    let mut phone = Phone::sign_in(&app.address, &sato).await;
    let case = phone.open_case();
    let visit = phone.log_visit(&case, 10, "インターホンに応答なし。");
    phone.sync().await;
    app.assign(&case, &suzuki.staff, Assignment::Other).unwrap();
    phone.sync().await;
    let mut colleague = Phone::sign_in(&app.address, &suzuki).await;
    colleague.sync().await;
    let activity_path = format!("/activities/{visit}");

    // A change written under another device's actor id.
    phone.tamper(&case, |doc| {
        doc.set_actor(random_device_actor(&suzuki.device));
        doc.put(ROOT, "status", "outreach").unwrap();
    });
    refused(&app, &mut phone, &case, DocumentErrorCode::ForeignActor, None).await;

    // Deleting an activity (it must be voided, with a reason).
    phone.tamper(&case, |doc| {
        let activities = root_map(doc, "activities");
        doc.delete(&activities, visit.to_string()).unwrap();
    });
    refused(&app, &mut phone, &case, DocumentErrorCode::InvalidChange, Some(("deleted_entity", activity_path.clone())))
        .await;

    // Writing the case number, which only the server assigns.
    phone.tamper(&case, |doc| doc.put(ROOT, "case_number", "2026-0999").unwrap());
    refused(
        &app,
        &mut phone,
        &case,
        DocumentErrorCode::InvalidChange,
        Some(("server_only_field", "/case_number".into())),
    )
    .await;

    // 鈴木 amends 佐藤's visit (his app would not; a hostile one might).
    colleague.tamper(&case, |doc| {
        let activities = root_map(doc, "activities");
        let activity = doc.get(&activities, visit.to_string()).unwrap().unwrap().1;
        let narrative = doc.get(&activity, "narrative").unwrap().unwrap().1;
        doc.splice_text(&narrative, 0, 0, "【訂正】").unwrap();
    });
    refused(
        &app,
        &mut colleague,
        &case,
        DocumentErrorCode::InvalidChange,
        Some(("not_own_activity", activity_path.clone())),
    )
    .await;
    assert_eq!(admin::list_quarantine(&app.db, true).unwrap().len(), 4);
    assert_eq!(phone.view(&case).activities[&visit].narrative, "インターホンに応答なし。");
    assert_eq!(case_row(&app, &case).unwrap().1, "intake");

    // A counsellor who is not assigned does not get the case, and cannot read it.
    let tanaka = app.add_counsellor(&people, "tanaka", "田中 次郎");
    let mut stranger = Phone::sign_in(&app.address, &tanaka).await;
    let report = stranger.sync().await;
    assert!(report.events.is_empty(), "{report:?}");
    assert!(stranger.store.case_ids().is_empty());
    let answer = sync_json(&app, &stranger.token, &json!({ "protocol": 1, "documents": [{ "case_id": case }] })).await;
    assert_eq!(
        without_cursor(answer),
        json!({ "protocol": 1, "documents": [{ "case_id": case, "status": "not_found" }] })
    );
}

async fn a_revoked_phone_is_refused_at_once_and_told_to_wipe(backend: Backend) {
    let app = spawn_app(backend).await;
    let people = app.seed();
    let mut phone = Phone::sign_in(&app.address, &people.counsellor).await;
    let case = phone.open_case();
    phone.log_visit(&case, 10, "訪問");
    phone.sync().await;
    let before = record(&app, &case);
    phone.log_visit(&case, 14, "紛失前の記録");

    // The phone is lost; the administrator revokes it. Its access token is still unexpired.
    admin::revoke_device(&app.db, people.counsellor.device).unwrap();
    let error = phone.try_sync().await.unwrap_err();
    assert!(matches!(error, ClientError::DeviceRevoked { .. }), "{error:?}");
    assert!(error.requires_wipe());
    assert!(!error.requires_sign_in(), "not a matter of signing in again");
    let body = Format::Cbor.encode(&phone.next_request());
    let response = post_sync(&app, Some(&phone.token), Some("application/cbor"), body).await;
    assert_eq!(api_error(response).await, (401, "device_revoked".into(), Format::Cbor));
    assert_eq!(record(&app, &case), before, "nothing the lost phone sent was applied");
    let error = phone.client.login(&phone.who.login, &phone.who.password, phone.who.device).await.unwrap_err();
    assert!(error.requires_wipe(), "signing in again is refused the same way: {error:?}");

    // The app wipes its store: no case data is left on the device.
    let dir = phone.store.dir().to_path_buf();
    let Phone { store, .. } = phone;
    store.wipe().unwrap();
    assert!(!dir.exists());
}

async fn an_ended_assignment_purges_the_case_from_the_phone(backend: Backend) {
    let app = spawn_app(backend).await;
    let people = app.seed();
    let mut phone = Phone::sign_in(&app.address, &people.counsellor).await;
    let case = phone.open_case();
    phone.log_visit(&case, 10, "訪問");
    phone.sync().await;
    let keep = phone.open_case();
    phone.sync().await;
    let suzuki = &people.counsellor2;
    for assigned in [case, keep] {
        app.assign(&assigned, &suzuki.staff, Assignment::Other).unwrap();
    }
    let mut colleague = Phone::sign_in(&app.address, suzuki).await;
    colleague.sync().await;
    assert_eq!(colleague.store.case_ids().into_iter().collect::<BTreeSet<_>>(), BTreeSet::from([case, keep]));
    let file = colleague.store.case_path(&case);
    assert!(file.exists());

    // The supervisor takes 鈴木 off the case.
    app.assign(&case, &suzuki.staff, Assignment::Remove).unwrap();
    let report = colleague.sync().await;
    assert!(events(&report, &case).contains(&CaseEvent::Purged { reason: PurgeReason::Unassigned }), "{report:?}");
    assert_eq!(colleague.store.case_ids(), vec![keep], "only the case still assigned remains");
    assert!(!file.exists(), "the case file is gone");
    assert!(colleague.store.refused_copies(&case).unwrap().is_empty());

    // It does not come back, and asking for it is answered not_found.
    let report = colleague.sync().await;
    assert!(events(&report, &case).is_empty(), "{report:?}");
    assert_eq!(colleague.store.case_ids(), vec![keep]);
    let answer = sync_json(&app, &colleague.token, &json!({ "protocol": 1, "documents": [{ "case_id": case }] })).await;
    assert_eq!(answer["documents"], json!([{ "case_id": case, "status": "not_found" }]));
    // The case itself is untouched, and 佐藤 still has it.
    assert_eq!(activity_rows(&app, &case).len(), 1);
    phone.sync().await;
    assert_eq!(phone.heads(&case), server_heads(&app.db, &case));
}

/// What a device taken off a case may still do (upload what it made) and must never get
/// (anything others recorded after its access ended).
const LEAK: &str = "a device taken off a case must receive nothing of it with its purge notice";

mod a_counsellor_taken_off_a_case_receives_nothing_recorded_after_it {
    use super::*;

    #[tokio::test]
    async fn sqlite() {
        super::a_counsellor_taken_off_a_case_receives_nothing_recorded_after_it(Backend::Sqlite).await
    }

    #[tokio::test]
    async fn postgres() {
        super::a_counsellor_taken_off_a_case_receives_nothing_recorded_after_it(Backend::Postgres).await
    }
}

/// 鈴木 is taken off a case; afterwards 佐藤 records a visit. 鈴木's phone, syncing next, is
/// told to purge the case, and must not receive that visit on the way: a device only ever
/// receives what its staff member may see.
async fn a_counsellor_taken_off_a_case_receives_nothing_recorded_after_it(backend: Backend) {
    let app = spawn_app(backend).await;
    let people = app.seed();
    let suzuki = &people.counsellor2;
    let mut phone = Phone::sign_in(&app.address, &people.counsellor).await;
    let case = phone.open_case();
    phone.log_visit(&case, 10, "訪問");
    phone.sync().await;
    app.assign(&case, &suzuki.staff, Assignment::Other).unwrap();
    let mut colleague = Phone::sign_in(&app.address, suzuki).await;
    colleague.sync().await;
    assert!(colleague.store.contains(&case));

    app.assign(&case, &suzuki.staff, Assignment::Remove).unwrap();
    let when_access_ended: BTreeSet<Vec<u8>> = stored_changes(&app, &case).into_iter().collect();
    let secret = phone.log_visit(&case, 12, "本人から家族の事情について詳しく聞いた。");
    // Up: the visit; down: the two assignment changes.
    synced(&phone.sync().await, &case, 1, 2);
    assert_eq!(stored_changes(&app, &case).len(), when_access_ended.len() + 1);

    // What 鈴木's phone sends next (with its cursor: the unchanged case is not listed), and
    // a request without a cursor that lists the case: what each gets back.
    let since: Vec<Hash> = colleague.since(&case).into_iter().map(Hash::from).collect();
    let listing = SyncRequest::new(None, vec![DocumentUpload::new(case, since, vec![])]);
    for request in [colleague.next_request(), listing] {
        let response = sync_raw(&app, &colleague.token, &request).await;
        assert_eq!(
            response.purge.iter().map(|p| (p.case_id, p.reason)).collect::<Vec<_>>(),
            [(case, PurgeReason::Unassigned)]
        );
        assert!(response.assigned.is_empty());
        let mut delivered = colleague.store.load_doc(&case).unwrap().unwrap();
        for result in response.documents.iter().filter(|d| d.case_id == case) {
            for bytes in &result.changes {
                let change = automerge::Change::from_bytes(bytes.0.clone()).expect("a change");
                assert!(
                    when_access_ended.contains(change.hash().0.as_slice()),
                    "{LEAK}: a change recorded after access ended was sent ({:?})",
                    result.status
                );
                delivered.apply_changes([change]).unwrap();
            }
        }
        let view = tsunagi_sync::document::read_case(&delivered).view.expect("a case");
        assert!(!view.activities.contains_key(&secret), "{LEAK}");
    }
}

/// 5 counsellors, each on a phone and a tablet, open 50 cases offline (5 per device) and sync
/// all at once, half of the devices against one server instance and half against another
/// on the same PostgreSQL database: the cases get the serials 1 to 50, no gap, no duplicate,
/// and every number reaches its phone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_cases_opened_offline_on_two_server_instances_are_numbered_without_gap_or_duplicate() {
    let app = spawn_app(Backend::Postgres).await;
    let people = app.seed();
    let second = app.spawn_instance().await;
    let mut counsellors = vec![people.counsellor.clone(), people.counsellor2.clone()];
    for (login, name) in [("tanaka", "田中 次郎"), ("ito", "伊藤 三郎"), ("watanabe", "渡辺 四郎")] {
        counsellors.push(app.add_counsellor(&people, login, name));
    }
    let mut devices = Vec::new();
    for who in &counsellors {
        devices.push(who.clone());
        devices.push(app.add_device(who, "タブレット"));
    }
    let mut phones = Vec::new();
    for (i, who) in devices.iter().enumerate() {
        let server = if i % 2 == 0 { app.address.clone() } else { second.clone() };
        let mut phone = Phone::sign_in(&server, who).await;
        let cases: Vec<CaseId> = (0..5).map(|_| phone.open_case()).collect();
        phones.push((phone, cases));
    }

    let mut syncs = tokio::task::JoinSet::new();
    for (mut phone, cases) in phones {
        syncs.spawn(async move {
            let report = phone.sync().await;
            (phone, cases, report)
        });
    }
    let mut serials = Vec::new();
    for (phone, cases, report) in syncs.join_all().await {
        for case in &cases {
            let number = synced(&report, case, 1, 1);
            assert_eq!(phone.view(case).case_number, Some(number), "the number reaches the phone");
            serials.push(number.serial());
        }
    }
    serials.sort_unstable();
    assert_eq!(serials, (1..=50).collect::<Vec<u32>>());
    assert_eq!(last_serial(&app), Some(50));
    let numbers: Vec<Option<String>> = app
        .db
        .read(|c| -> Result<_, StoreError> {
            Ok(schema::cases::table.select(schema::cases::case_number).load::<Option<String>>(c)?)
        })
        .unwrap();
    let distinct: BTreeSet<String> = numbers.iter().flatten().cloned().collect();
    assert_eq!((numbers.len(), distinct.len()), (50, 50), "every case has its own number in the projection");
}

/// An administrator assigns a case from the command line; the colleague's phone gets it on
/// its next sync, and purges it once the administrator removes them again.
async fn tsunagi_admin_assign_sends_a_case_to_a_colleagues_phone_and_back_off_it(backend: Backend) {
    let app = spawn_app(backend).await;
    let people = app.seed();
    let mut phone = Phone::sign_in(&app.address, &people.counsellor).await;
    let case = phone.open_case();
    phone.sync().await;
    let suzuki = &people.counsellor2;
    let mut colleague = Phone::sign_in(&app.address, suzuki).await;
    colleague.sync().await;
    assert!(colleague.store.case_ids().is_empty(), "not assigned yet");

    let case_arg = case.to_string();
    let (code, _, err) = app.cli(&["admin", "assign", &case_arg, "--login", &suzuki.login, "--other"], "");
    assert_eq!(code, 0, "{err}");
    colleague.sync().await;
    assert_eq!(colleague.store.case_ids(), vec![case]);

    let (code, _, err) = app.cli(&["admin", "assign", &case_arg, "--login", &suzuki.login, "--remove"], "");
    assert_eq!(code, 0, "{err}");
    colleague.sync().await;
    assert!(colleague.store.case_ids().is_empty(), "purged after the assignment ended");

    // Mistakes are refused with a clear message and change nothing.
    let (code, _, err) = app.cli(&["admin", "assign", &case_arg, "--login", "nobody", "--other"], "");
    assert_eq!(code, 1);
    assert!(err.contains("no staff member with login nobody"), "{err}");
    let (code, _, err) = app.cli(&["admin", "assign", &case_arg, "--login", &suzuki.login], "");
    assert_ne!(code, 0);
    assert!(err.contains("--primary, --other or --remove"), "{err}");
}

/// The projected columns of an activity the test compares.
type ActivityColumns = (String, String, Option<String>, Option<String>, bool, bool, bool, String);

/// What the supervisors' queries read of a case: its `cases` row, activity rows and topics.
type Projected = (Vec<(String, String, i32, Option<chrono::NaiveDateTime>)>, Vec<String>, Vec<(String, String)>);

fn projected(app: &TestApp) -> Projected {
    app.db
        .read(|c| -> Result<Projected, StoreError> {
            use schema::{activities as a, activity_topics as t, cases};
            let cases = cases::table
                .order(cases::case_id)
                .select((cases::case_id, cases::status, cases::conflicts, cases::last_activity_at))
                .load(c)?;
            let rows: Vec<ActivityColumns> = a::table
                .order(a::activity_id)
                .select((
                    a::activity_id,
                    a::kind,
                    a::outcome,
                    a::follow_up_on,
                    a::voided,
                    a::reviewed,
                    a::letter_left,
                    a::narrative,
                ))
                .load(c)?;
            let topics = t::table.order((t::activity_id, t::topic)).select((t::activity_id, t::topic)).load(c)?;
            Ok((cases, rows.into_iter().map(|r| format!("{r:?}")).collect(), topics))
        })
        .unwrap()
}

/// A sync that writes only into activities rewrites only their rows; the result is exactly
/// what rebuilding every projection from the documents gives, figures included.
async fn projections_written_batch_by_batch_equal_a_full_rebuild(backend: Backend) {
    use tsunagi_sync::document::ActivityDetails;
    use tsunagi_sync::domain::{ConsultationMode, ConsultationTopic, Place, VisitOutcome};
    use tsunagi_sync::ops::NewActivity;
    let app = spawn_app(backend).await;
    let people = app.seed();
    let mut sato = Phone::sign_in(&app.address, &people.counsellor).await;
    let case = sato.open_case();
    let first = sato.log_visit(&case, 9, "不在。");
    let second = sato.log_visit(&case, 10, "不在。手紙を残した。");
    sato.sync().await;
    // Activity-only batches: a consultation with topics, an amendment, an outcome, a void.
    let consultation = sato
        .edit(&case, |r| {
            r.log_activity(
                NewActivity::new(
                    common::phone::jst(14),
                    Place::Office,
                    ActivityDetails::Consultation {
                        mode: ConsultationMode::InPerson,
                        topics: [ConsultationTopic::Debt, ConsultationTopic::Housing].into(),
                    },
                )
                .with_narrative("来所相談。"),
            )
        })
        .unwrap();
    sato.edit(&case, |r| r.amend_narrative(first, "不在。隣人の話では日中は留守。")).unwrap();
    sato.sync().await;
    sato.edit(&case, |r| r.set_visit_outcome(second, VisitOutcome::Refused, &[])).unwrap();
    sato.edit(&case, |r| r.set_follow_up(second, NaiveDate::from_ymd_opt(2026, 11, 20))).unwrap();
    sato.sync().await;
    sato.edit(&case, |r| r.void_activity(consultation, "別ケースの記録", common::phone::jst(15))).unwrap();
    sato.sync().await;
    let incremental = projected(&app);
    assert_eq!(incremental.2.len(), 2, "the consultation's topics: {incremental:?}");
    tsunagi_server::store::projections::reproject_all(&app.db).unwrap();
    assert_eq!(projected(&app), incremental, "a full rebuild changes nothing");
    // A review (not activity-only) in between, then one more amendment.
    let supervisor = app.login(&people.supervisor).await.access_token;
    let body = json!({"activity_id": first.to_string(), "comment": "確認"});
    let (status, _) =
        app.call(reqwest::Method::POST, &supervisor, &format!("/v1/cases/{case}/reviews"), Some(&body)).await;
    assert_eq!(status, 201);
    sato.sync().await;
    sato.edit(&case, |r| r.amend_narrative(second, "在宅。母と面談。")).unwrap();
    sato.sync().await;

    let incremental = projected(&app);
    let (_, figures) = app.call(reqwest::Method::GET, &supervisor, "/v1/figures/2026", None).await;
    assert_eq!(incremental.1.len(), 3, "{incremental:?}");
    assert!(incremental.1.iter().any(|r| r.contains("在宅。母と面談。")), "{incremental:?}");
    assert_eq!(incremental.2.len(), 2, "the voided consultation keeps its topic rows: {incremental:?}");
    tsunagi_server::store::projections::reproject_all(&app.db).unwrap();
    assert_eq!(projected(&app), incremental, "a full rebuild changes nothing");
    let (_, rebuilt) = app.call(reqwest::Method::GET, &supervisor, "/v1/figures/2026", None).await;
    assert_eq!(rebuilt, figures);
}
