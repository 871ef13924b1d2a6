//! Meetings end to end, over real HTTP, on SQLite and on PostgreSQL: a supervisor prepares
//! a 重層的支援会議 and a 支援会議, and the meeting tablet (a real phone stack) receives
//! exactly the agenda's cases, writes nothing, and loses every case when its meeting is
//! over, with `meeting_ended`.

// The field operations return the library's `OpError`, whatever its size; the tests only
// pass it through.
#![allow(clippy::result_large_err)]

mod common;

use std::collections::{BTreeMap, BTreeSet};

use automerge::transaction::Transactable;
use automerge::ROOT;
use chrono::{Duration, NaiveDate};
use diesel::prelude::*;
use reqwest::Method;
use serde_json::{json, Value};
use tsunagi_server::admin::{self, NewStaff};
use tsunagi_server::store::visibility::today_in_japan;
use tsunagi_server::store::{schema, StoreError};
use tsunagi_sync::document::format_date;
use tsunagi_sync::domain::{ConsentMethod, ConsentState, Role};
use tsunagi_sync::ids::{CaseId, MunicipalityCode, StaffId};
use tsunagi_sync::session::{CaseEvent, SyncReport};
use tsunagi_sync::wire::{DocumentErrorCode, PurgeReason};

use common::phone::Phone;
use common::{spawn_app, Backend, Person, Seed, TestApp};

on_both_backends!(
    a_meeting_tablet_syncs_only_the_agenda_and_writes_nothing,
    a_case_without_consent_cannot_go_on_a_multi_layered_meeting,
    withdrawing_consent_takes_the_case_off_the_tablet,
    ending_the_meeting_purges_every_case_from_the_tablet,
    a_meeting_of_an_earlier_day_is_closed_automatically,
    taking_a_case_or_the_tablet_off_the_meeting_purges_it,
    only_supervisors_prepare_meetings_and_every_field_is_checked,
    meetings_are_listed_by_day_filtered_and_paged,
    every_change_is_audited,
);

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Sends a request with a bearer token and an optional JSON body; the status and the JSON
/// answer (`Null` for an empty one).
async fn call(app: &TestApp, token: &str, method: Method, path: &str, body: Option<&Value>) -> (u16, Value) {
    app.call(method, token, path, body).await
}

async fn token(app: &TestApp, who: &Person) -> String {
    app.login(who).await.access_token
}

/// A day relative to today in Japan.
fn day(offset: i64) -> String {
    format_date(today_in_japan() + Duration::days(offset))
}

/// `POST /v1/meetings`; the new meeting's id.
async fn create_meeting(app: &TestApp, token: &str, kind: &str, members: &[&Person]) -> String {
    let members: Vec<String> = members.iter().map(|p| p.staff.to_string()).collect();
    let body = json!({ "kind": kind, "title": format!("{kind} の会議"), "held_on": day(0), "members": members });
    let (status, meeting) = call(app, token, Method::POST, "/v1/meetings", Some(&body)).await;
    assert_eq!(status, 201, "{meeting}");
    meeting["meeting_id"].as_str().expect("an id").to_owned()
}

async fn put_case(app: &TestApp, token: &str, meeting: &str, case: &CaseId) -> (u16, Value) {
    call(app, token, Method::PUT, &format!("/v1/meetings/{meeting}/agenda/{case}"), None).await
}

async fn get_meeting(app: &TestApp, token: &str, meeting: &str) -> Value {
    let (status, body) = call(app, token, Method::GET, &format!("/v1/meetings/{meeting}"), None).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// The case ids of a meeting's agenda, as answered.
fn agenda(meeting: &Value) -> Vec<String> {
    meeting["agenda"].as_array().expect("an agenda").iter().map(|c| c["case_id"].as_str().unwrap().to_owned()).collect()
}

/// A case opened on `phone` with one visit and, if given, a consent record; synced.
async fn case_with(phone: &mut Phone, consent: Option<ConsentState>) -> CaseId {
    let case = phone.open_case();
    phone.log_visit(&case, 10, "訪問");
    if let Some(state) = consent {
        record_consent(phone, &case, state);
    }
    phone.sync().await;
    case
}

fn record_consent(phone: &mut Phone, case: &CaseId, state: ConsentState) {
    let on = NaiveDate::from_ymd_opt(2026, 11, 3).unwrap();
    phone.edit(case, |r| r.record_consent(state, on, Some(ConsentMethod::Written))).expect("consent is recorded");
}

fn held(phone: &Phone) -> BTreeSet<CaseId> {
    phone.store.case_ids().into_iter().collect()
}

fn purges(report: &SyncReport) -> BTreeMap<CaseId, PurgeReason> {
    report
        .events
        .iter()
        .filter_map(|r| match r.event {
            CaseEvent::Purged { reason } => Some((r.case_id, reason)),
            _ => None,
        })
        .collect()
}

/// A second meeting tablet account of the seeded municipality.
fn add_tablet(app: &TestApp, seed: &Seed, login: &str) -> Person {
    let password = format!("{login}-passphrase-123");
    let new = NewStaff {
        login,
        display_name: "第二会議室タブレット",
        role: Role::MeetingTablet,
        organisation: seed.organisation,
        municipality: seed.municipality,
        area: None,
    };
    let staff = admin::create_staff(&app.db, &new, &password).unwrap();
    let device = admin::register_device(&app.db, login, "第二会議室").unwrap();
    Person { login: login.to_owned(), password, staff, device, role: Role::MeetingTablet }
}

/// Moves a meeting to another day, as if the calendar had moved on.
fn move_meeting(app: &TestApp, meeting: &str, held_on: String) {
    use schema::meetings as m;
    app.db
        .write(|c| -> Result<(), StoreError> {
            diesel::update(m::table.find(meeting)).set(m::held_on.eq(held_on)).execute(c)?;
            Ok(())
        })
        .unwrap();
}

/// The audit rows of an action: (staff, case, detail), in order.
fn audit_rows(app: &TestApp, action: &str) -> Vec<(Option<String>, Option<String>, String)> {
    use schema::audit_log as a;
    app.db
        .read(|c| -> Result<_, StoreError> {
            Ok(a::table
                .filter(a::action.eq(action))
                .order(a::id.asc())
                .select((a::staff_id, a::case_id, a::detail))
                .load(c)?)
        })
        .unwrap()
}

/// The server's heads of a case, as stored bytes.
fn stored_heads(app: &TestApp, case: &CaseId) -> Vec<u8> {
    app.db
        .read(|c| -> Result<_, StoreError> {
            Ok(schema::documents::table.find(case.to_string()).select(schema::documents::heads).first::<Vec<u8>>(c)?)
        })
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// Stories
// ---------------------------------------------------------------------------------------------

async fn a_meeting_tablet_syncs_only_the_agenda_and_writes_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let people = app.seed();
    let mut phone = Phone::sign_in(&app.address, &people.counsellor).await;
    let consented = case_with(&mut phone, Some(ConsentState::Obtained)).await;
    let without = case_with(&mut phone, None).await;
    let other_consented = case_with(&mut phone, Some(ConsentState::Obtained)).await;
    let other_without = case_with(&mut phone, None).await;
    let supervisor = token(&app, &people.supervisor).await;

    // A 重層的支援会議 with the consented case; a 支援会議 with the one without consent.
    let tablet_person = &people.meeting_tablet;
    let multi = create_meeting(&app, &supervisor, "multi_layered", &[tablet_person]).await;
    assert_eq!(put_case(&app, &supervisor, &multi, &consented).await.0, 204);
    let support = create_meeting(&app, &supervisor, "support", &[tablet_person]).await;
    assert_eq!(put_case(&app, &supervisor, &support, &without).await.0, 204);

    let shown = get_meeting(&app, &supervisor, &multi).await;
    assert_eq!(shown["kind"], json!({ "key": "multi_layered", "label": "重層的支援会議" }));
    assert_eq!(shown["open"], json!(true));
    assert_eq!(shown["held_on"], json!(day(0)));
    assert_eq!(shown["members"], json!([{ "staff_id": tablet_person.staff, "display_name": "会議室タブレット" }]));
    let entry = &shown["agenda"][0];
    assert_eq!(agenda(&shown), vec![consented.to_string()]);
    assert_eq!(entry["consent"], json!({ "key": "obtained", "label": "同意あり" }));
    assert_eq!(entry["status"]["key"], json!("intake"));
    let number = phone.store.entry(&consented).and_then(|e| e.case_number.clone()).expect("a case number");
    assert_eq!(entry["case_number"], json!(number));

    // The tablet receives exactly the two agenda cases.
    let mut tablet = Phone::sign_in(&app.address, tablet_person).await;
    let report = tablet.sync().await;
    assert_eq!(held(&tablet), BTreeSet::from([consented, without]), "{report:?}");
    for case in [other_consented, other_without] {
        assert!(report.events_of(&case).next().is_none(), "nothing of a case off the agenda: {report:?}");
    }

    // It writes nothing: a change it makes is refused read_only, and the case is untouched.
    let before = stored_heads(&app, &consented);
    tablet.tamper(&consented, |doc| {
        doc.put(ROOT, "status", "closed").unwrap();
    });
    let report = tablet.sync().await;
    match report.events_of(&consented).collect::<Vec<_>>().as_slice() {
        [CaseEvent::Refused { error, .. }] => assert_eq!(error.code, DocumentErrorCode::ReadOnly),
        other => panic!("expected a read_only refusal, got {other:?}"),
    }
    assert_eq!(stored_heads(&app, &consented), before, "nothing of it was applied");
    assert_eq!(held(&tablet), BTreeSet::from([consented, without]));

    // A second sync brings nothing new and keeps both cases.
    let report = tablet.sync().await;
    assert!(purges(&report).is_empty(), "{report:?}");
    assert_eq!(held(&tablet), BTreeSet::from([consented, without]));
}

async fn a_case_without_consent_cannot_go_on_a_multi_layered_meeting(backend: Backend) {
    let app = spawn_app(backend).await;
    let people = app.seed();
    let mut phone = Phone::sign_in(&app.address, &people.counsellor).await;
    let without = case_with(&mut phone, None).await;
    let withdrawn = case_with(&mut phone, Some(ConsentState::Obtained)).await;
    record_consent(&mut phone, &withdrawn, ConsentState::Withdrawn);
    phone.sync().await;
    let supervisor = token(&app, &people.supervisor).await;
    let multi = create_meeting(&app, &supervisor, "multi_layered", &[&people.meeting_tablet]).await;

    for case in [without, withdrawn] {
        let (status, body) = put_case(&app, &supervisor, &multi, &case).await;
        assert_eq!(status, 409, "{body}");
        assert_eq!(body["code"], json!("conflict"));
        let message = body["message"].as_str().unwrap();
        assert!(message.contains("consent") && message.contains("support"), "{message}");
    }
    assert!(agenda(&get_meeting(&app, &supervisor, &multi).await).is_empty(), "nothing was added");

    // The tablet gets nothing of them.
    let mut tablet = Phone::sign_in(&app.address, &people.meeting_tablet).await;
    tablet.sync().await;
    assert!(held(&tablet).is_empty());

    // On a 支援会議 they are fine.
    let support = create_meeting(&app, &supervisor, "support", &[&people.meeting_tablet]).await;
    for case in [without, withdrawn] {
        assert_eq!(put_case(&app, &supervisor, &support, &case).await.0, 204);
    }
    // Putting a case on twice changes nothing.
    assert_eq!(put_case(&app, &supervisor, &support, &without).await.0, 204);
    let mut expected = vec![without.to_string(), withdrawn.to_string()];
    expected.sort_by_key(|id| phone.store.entry(&CaseId::parse(id).unwrap()).and_then(|e| e.case_number.clone()));
    assert_eq!(agenda(&get_meeting(&app, &supervisor, &support).await), expected, "by case number");
    tablet.sync().await;
    assert_eq!(held(&tablet), BTreeSet::from([without, withdrawn]));
}

async fn withdrawing_consent_takes_the_case_off_the_tablet(backend: Backend) {
    let app = spawn_app(backend).await;
    let people = app.seed();
    let mut phone = Phone::sign_in(&app.address, &people.counsellor).await;
    let case = case_with(&mut phone, Some(ConsentState::Obtained)).await;
    let keep = case_with(&mut phone, Some(ConsentState::Obtained)).await;
    let supervisor = token(&app, &people.supervisor).await;
    let multi = create_meeting(&app, &supervisor, "multi_layered", &[&people.meeting_tablet]).await;
    for c in [case, keep] {
        assert_eq!(put_case(&app, &supervisor, &multi, &c).await.0, 204);
    }
    let mut tablet = Phone::sign_in(&app.address, &people.meeting_tablet).await;
    tablet.sync().await;
    assert_eq!(held(&tablet), BTreeSet::from([case, keep]));
    let file = tablet.store.case_path(&case);
    assert!(file.exists());

    // The person withdraws consent; the counsellor records it in the field.
    record_consent(&mut phone, &case, ConsentState::Withdrawn);
    phone.sync().await;
    let report = tablet.sync().await;
    assert_eq!(purges(&report), BTreeMap::from([(case, PurgeReason::MeetingEnded)]), "{report:?}");
    assert_eq!(held(&tablet), BTreeSet::from([keep]));
    assert!(!file.exists(), "the case file is gone");

    // It stays on the agenda, for the record, with its consent as it now is.
    let shown = get_meeting(&app, &supervisor, &multi).await;
    let entry = shown["agenda"].as_array().unwrap().iter().find(|c| c["case_id"] == json!(case)).unwrap().clone();
    assert_eq!(entry["consent"]["key"], json!("withdrawn"));
    // And it does not come back.
    let report = tablet.sync().await;
    assert!(report.events_of(&case).next().is_none(), "{report:?}");
    assert_eq!(held(&tablet), BTreeSet::from([keep]));
}

async fn ending_the_meeting_purges_every_case_from_the_tablet(backend: Backend) {
    let app = spawn_app(backend).await;
    let people = app.seed();
    let mut phone = Phone::sign_in(&app.address, &people.counsellor).await;
    let first = case_with(&mut phone, None).await;
    let second = case_with(&mut phone, None).await;
    let consented = case_with(&mut phone, Some(ConsentState::Obtained)).await;
    let supervisor = token(&app, &people.supervisor).await;
    let support = create_meeting(&app, &supervisor, "support", &[&people.meeting_tablet]).await;
    for c in [first, second] {
        assert_eq!(put_case(&app, &supervisor, &support, &c).await.0, 204);
    }
    let multi = create_meeting(&app, &supervisor, "multi_layered", &[&people.meeting_tablet]).await;
    assert_eq!(put_case(&app, &supervisor, &multi, &consented).await.0, 204);
    let mut tablet = Phone::sign_in(&app.address, &people.meeting_tablet).await;
    tablet.sync().await;
    assert_eq!(held(&tablet), BTreeSet::from([first, second, consented]));

    // The 支援会議 ends: both its cases leave the tablet; the other meeting's case stays.
    let (status, body) = call(&app, &supervisor, Method::POST, &format!("/v1/meetings/{support}/end"), None).await;
    assert_eq!((status, body), (204, Value::Null));
    let report = tablet.sync().await;
    let expected = BTreeMap::from([(first, PurgeReason::MeetingEnded), (second, PurgeReason::MeetingEnded)]);
    assert_eq!(purges(&report), expected, "{report:?}");
    assert_eq!(held(&tablet), BTreeSet::from([consented]));

    let shown = get_meeting(&app, &supervisor, &support).await;
    assert_eq!(shown["open"], json!(false));
    assert!(shown["ended_at"].as_str().is_some_and(|s| s.ends_with("+09:00")), "{shown}");
    assert_eq!(agenda(&shown).len(), 2, "the record keeps its agenda");

    // Its record is final: nothing is added, removed or joined any more.
    let third = case_with(&mut phone, None).await;
    let (status, body) = put_case(&app, &supervisor, &support, &third).await;
    assert_eq!((status, body["code"].as_str()), (409, Some("conflict")), "{body}");
    let (status, _) =
        call(&app, &supervisor, Method::DELETE, &format!("/v1/meetings/{support}/agenda/{first}"), None).await;
    assert_eq!(status, 409);
    let path = format!("/v1/meetings/{support}/members/{}", people.meeting_tablet.staff);
    assert_eq!(call(&app, &supervisor, Method::DELETE, &path, None).await.0, 409);
    // Ending it again changes nothing.
    let (status, _) = call(&app, &supervisor, Method::POST, &format!("/v1/meetings/{support}/end"), None).await;
    assert_eq!(status, 204);
    assert_eq!(get_meeting(&app, &supervisor, &support).await["ended_at"], shown["ended_at"]);

    // The other meeting ends too: the tablet holds nothing.
    assert_eq!(call(&app, &supervisor, Method::POST, &format!("/v1/meetings/{multi}/end"), None).await.0, 204);
    let report = tablet.sync().await;
    assert_eq!(purges(&report), BTreeMap::from([(consented, PurgeReason::MeetingEnded)]), "{report:?}");
    assert!(held(&tablet).is_empty());
    let report = tablet.sync().await;
    assert!(report.events.is_empty(), "nothing comes back: {report:?}");
}

async fn a_meeting_of_an_earlier_day_is_closed_automatically(backend: Backend) {
    let app = spawn_app(backend).await;
    let people = app.seed();
    let mut phone = Phone::sign_in(&app.address, &people.counsellor).await;
    let case = case_with(&mut phone, None).await;
    let supervisor = token(&app, &people.supervisor).await;
    let support = create_meeting(&app, &supervisor, "support", &[&people.meeting_tablet]).await;
    assert_eq!(put_case(&app, &supervisor, &support, &case).await.0, 204);
    let mut tablet = Phone::sign_in(&app.address, &people.meeting_tablet).await;
    tablet.sync().await;
    assert_eq!(held(&tablet), BTreeSet::from([case]));

    // The day passes without anyone ending the meeting.
    move_meeting(&app, &support, day(-1));
    let report = tablet.sync().await;
    assert_eq!(purges(&report), BTreeMap::from([(case, PurgeReason::MeetingEnded)]), "{report:?}");
    assert!(held(&tablet).is_empty());

    let shown = get_meeting(&app, &supervisor, &support).await;
    assert_eq!((shown["open"].clone(), shown["ended_at"].clone()), (json!(false), Value::Null));
    let other = case_with(&mut phone, None).await;
    let (status, body) = put_case(&app, &supervisor, &support, &other).await;
    assert_eq!(status, 409, "{body}");
    assert!(body["message"].as_str().unwrap().contains("over"), "{body}");
    let (_, open) = call(&app, &supervisor, Method::GET, "/v1/meetings?open=true", None).await;
    assert_eq!(open["meetings"], json!([]));
    let (_, closed) = call(&app, &supervisor, Method::GET, "/v1/meetings?open=false", None).await;
    assert_eq!(closed["meetings"][0]["meeting_id"], json!(support));

    // A meeting cannot be prepared for a day that is over.
    let body = json!({ "kind": "support", "title": "昨日の会議", "held_on": day(-1) });
    let (status, answer) = call(&app, &supervisor, Method::POST, "/v1/meetings", Some(&body)).await;
    assert_eq!((status, answer["code"].as_str()), (400, Some("invalid_request")));
    assert!(answer["message"].as_str().unwrap().starts_with("held_on:"), "{answer}");
}

async fn taking_a_case_or_the_tablet_off_the_meeting_purges_it(backend: Backend) {
    let app = spawn_app(backend).await;
    let people = app.seed();
    let mut phone = Phone::sign_in(&app.address, &people.counsellor).await;
    let case = case_with(&mut phone, None).await;
    let keep = case_with(&mut phone, None).await;
    let supervisor = token(&app, &people.supervisor).await;
    let second = add_tablet(&app, &people, "meeting-room-2");
    let support = create_meeting(&app, &supervisor, "support", &[&people.meeting_tablet]).await;
    for c in [case, keep] {
        assert_eq!(put_case(&app, &supervisor, &support, &c).await.0, 204);
    }
    // The second tablet joins later.
    let member = |who: &Person| format!("/v1/meetings/{support}/members/{}", who.staff);
    assert_eq!(call(&app, &supervisor, Method::PUT, &member(&second), None).await.0, 204);
    assert_eq!(call(&app, &supervisor, Method::PUT, &member(&second), None).await.0, 204, "idempotent");
    let names: Vec<Value> = get_meeting(&app, &supervisor, &support).await["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["display_name"].clone())
        .collect();
    assert_eq!(names, vec![json!("会議室タブレット"), json!("第二会議室タブレット")]);
    let mut tablet = Phone::sign_in(&app.address, &people.meeting_tablet).await;
    let mut tablet2 = Phone::sign_in(&app.address, &second).await;
    tablet.sync().await;
    tablet2.sync().await;
    assert_eq!(held(&tablet), BTreeSet::from([case, keep]));
    assert_eq!(held(&tablet2), BTreeSet::from([case, keep]));

    // One case leaves the agenda: it leaves both tablets.
    let path = format!("/v1/meetings/{support}/agenda/{case}");
    assert_eq!(call(&app, &supervisor, Method::DELETE, &path, None).await.0, 204);
    assert_eq!(call(&app, &supervisor, Method::DELETE, &path, None).await.0, 204, "idempotent");
    for t in [&mut tablet, &mut tablet2] {
        let report = t.sync().await;
        assert_eq!(purges(&report), BTreeMap::from([(case, PurgeReason::MeetingEnded)]), "{report:?}");
        assert_eq!(held(t), BTreeSet::from([keep]));
    }
    // The second tablet leaves the meeting: it loses the rest; the first keeps it.
    assert_eq!(call(&app, &supervisor, Method::DELETE, &member(&second), None).await.0, 204);
    let report = tablet2.sync().await;
    assert_eq!(purges(&report), BTreeMap::from([(keep, PurgeReason::MeetingEnded)]), "{report:?}");
    assert!(held(&tablet2).is_empty());
    let report = tablet.sync().await;
    assert!(purges(&report).is_empty(), "{report:?}");
    assert_eq!(held(&tablet), BTreeSet::from([keep]));
}

async fn only_supervisors_prepare_meetings_and_every_field_is_checked(backend: Backend) {
    let app = spawn_app(backend).await;
    let people = app.seed();
    let mut phone = Phone::sign_in(&app.address, &people.counsellor).await;
    let case = case_with(&mut phone, None).await;
    let supervisor = token(&app, &people.supervisor).await;
    let meeting = create_meeting(&app, &supervisor, "support", &[]).await;
    let tablet = people.meeting_tablet.staff;

    // Every other role: 403 on every endpoint, whatever it names.
    let endpoints: Vec<(Method, String, Option<Value>)> = vec![
        (Method::POST, "/v1/meetings".into(), Some(json!({ "kind": "support", "title": "t", "held_on": day(0) }))),
        (Method::POST, "/v1/meetings".into(), Some(json!("not even an object"))),
        (Method::GET, "/v1/meetings".into(), None),
        (Method::GET, format!("/v1/meetings/{meeting}"), None),
        (Method::PUT, format!("/v1/meetings/{meeting}/agenda/{case}"), None),
        (Method::DELETE, format!("/v1/meetings/{meeting}/agenda/{case}"), None),
        (Method::PUT, format!("/v1/meetings/{meeting}/members/{tablet}"), None),
        (Method::DELETE, format!("/v1/meetings/{meeting}/members/{tablet}"), None),
        (Method::POST, format!("/v1/meetings/{meeting}/end"), None),
    ];
    for who in [&people.counsellor, &people.meeting_tablet, &people.administrator] {
        let token = token(&app, who).await;
        for (method, path, body) in &endpoints {
            let (status, answer) = call(&app, &token, method.clone(), path, body.as_ref()).await;
            assert_eq!((status, answer["code"].as_str()), (403, Some("forbidden")), "{} {method} {path}", who.login);
        }
    }
    let shown = get_meeting(&app, &supervisor, &meeting).await;
    assert!(shown["members"].as_array().unwrap().is_empty() && shown["open"] == json!(true), "nothing changed");

    // Bad input: 400 naming the field, nothing created.
    let bad = |body: Value| body;
    for (body, field) in [
        (bad(json!({ "title": "t", "held_on": day(0) })), "kind:"),
        (bad(json!({ "kind": "area", "title": "t", "held_on": day(0) })), "kind:"),
        (bad(json!({ "kind": "support", "held_on": day(0) })), "title:"),
        (bad(json!({ "kind": "support", "title": "", "held_on": day(0) })), "title:"),
        (bad(json!({ "kind": "support", "title": "t", "held_on": "2026/11/25" })), "held_on:"),
        (
            bad(json!({ "kind": "support", "title": "t", "held_on": day(0), "members": [people.counsellor.staff] })),
            "members[0]:",
        ),
        (bad(json!({ "kind": "support", "title": "t", "held_on": day(0), "members": [tablet, "x"] })), "members[1]:"),
        (bad(json!({ "kind": "support", "title": "t", "held_on": day(0), "agenda": [case] })), "agenda:"),
    ] {
        let (status, answer) = call(&app, &supervisor, Method::POST, "/v1/meetings", Some(&body)).await;
        assert_eq!((status, answer["code"].as_str()), (400, Some("invalid_request")), "{body}");
        assert!(answer["message"].as_str().unwrap().starts_with(field), "{answer}");
    }
    let response = app
        .http
        .post(app.url("/v1/meetings"))
        .bearer_auth(&supervisor)
        .header("content-type", "application/json")
        .body("{ not json")
        .send()
        .await
        .unwrap();
    assert_eq!(common::error_of(response).await, (400, "invalid_request".to_owned()));
    for query in [
        "from=tomorrow",
        "to=2026-02-30",
        "from=2026-12-01&to=2026-11-01",
        "open=maybe",
        "after=x",
        "limit=0",
        "colour=red",
    ] {
        let (status, answer) = call(&app, &supervisor, Method::GET, &format!("/v1/meetings?{query}"), None).await;
        assert_eq!((status, answer["code"].as_str()), (400, Some("invalid_request")), "{query}: {answer}");
    }

    // Members are meeting tablets of this municipality only.
    for (who, field) in [
        (people.counsellor.staff.to_string(), "staff_id:"),
        (StaffId::new_random().to_string(), "staff_id:"),
        ("nope".to_owned(), "staff_id:"),
    ] {
        for method in [Method::PUT, Method::DELETE] {
            let path = format!("/v1/meetings/{meeting}/members/{who}");
            let (status, answer) = call(&app, &supervisor, method.clone(), &path, None).await;
            assert_eq!((status, answer["code"].as_str()), (400, Some("invalid_request")), "{method} {path}");
            assert!(answer["message"].as_str().unwrap().starts_with(field), "{answer}");
        }
    }
    let other = MunicipalityCode::parse("122173").unwrap();
    admin::create_municipality(&app.db, other, "柏市").unwrap();
    let new = NewStaff {
        login: "kashiwa-tablet",
        display_name: "柏 会議室",
        role: Role::MeetingTablet,
        organisation: people.organisation,
        municipality: other,
        area: None,
    };
    let foreign = admin::create_staff(&app.db, &new, "kashiwa-tablet-passphrase-123").unwrap();
    let path = format!("/v1/meetings/{meeting}/members/{foreign}");
    assert_eq!(call(&app, &supervisor, Method::PUT, &path, None).await.0, 400);

    // Unknown meetings (or of another municipality) are 404; so are cases that do not exist.
    let nowhere = CaseId::new_random();
    for path in [
        format!("/v1/meetings/{}", CaseId::new_random()),
        "/v1/meetings/not-a-meeting".to_owned(),
        format!("/v1/meetings/{}/agenda/{case}", CaseId::new_random()),
        format!("/v1/meetings/{meeting}/agenda/{nowhere}"),
        format!("/v1/meetings/{meeting}/agenda/NOT-A-CASE"),
    ] {
        let method = if path.contains("/agenda/") { Method::PUT } else { Method::GET };
        let (status, answer) = call(&app, &supervisor, method, &path, None).await;
        assert_eq!((status, answer["code"].as_str()), (404, Some("not_found")), "{path}");
    }
    let kashiwa = admin::create_staff(
        &app.db,
        &NewStaff { login: "kashiwa-sup", display_name: "柏 主査", role: Role::Supervisor, area: None, ..new },
        "kashiwa-sup-passphrase-123",
    )
    .unwrap();
    let kashiwa_device = admin::register_device(&app.db, "kashiwa-sup", "柏の端末").unwrap();
    let kashiwa = Person {
        login: "kashiwa-sup".into(),
        password: "kashiwa-sup-passphrase-123".into(),
        staff: kashiwa,
        device: kashiwa_device,
        role: Role::Supervisor,
    };
    let kashiwa_token = token(&app, &kashiwa).await;
    let (status, _) = call(&app, &kashiwa_token, Method::GET, &format!("/v1/meetings/{meeting}"), None).await;
    assert_eq!(status, 404, "a meeting of another municipality does not exist for them");
    let (_, list) = call(&app, &kashiwa_token, Method::GET, "/v1/meetings", None).await;
    assert_eq!(list, json!({ "meetings": [], "next": null }));
    let (status, _) = call(&app, &kashiwa_token, Method::POST, &format!("/v1/meetings/{meeting}/end"), None).await;
    assert_eq!(status, 404);
    assert_eq!(get_meeting(&app, &supervisor, &meeting).await["open"], json!(true));
}

async fn meetings_are_listed_by_day_filtered_and_paged(backend: Backend) {
    let app = spawn_app(backend).await;
    let people = app.seed();
    let supervisor = token(&app, &people.supervisor).await;
    let mut made = Vec::new();
    for (offset, kind) in [(0, "support"), (3, "multi_layered"), (3, "support"), (10, "support")] {
        let body = json!({ "kind": kind, "title": format!("{offset}日後"), "held_on": day(offset) });
        let (status, meeting) = call(&app, &supervisor, Method::POST, "/v1/meetings", Some(&body)).await;
        assert_eq!(status, 201, "{meeting}");
        assert_eq!(meeting["title"], json!(format!("{offset}日後")));
        assert_eq!(meeting["created_by"], json!(people.supervisor.staff));
        assert_eq!((meeting["agenda"].clone(), meeting["ended_at"].clone()), (json!([]), Value::Null));
        made.push((day(offset), meeting["meeting_id"].as_str().unwrap().to_owned()));
    }
    // Latest day first, then by id (descending): page through one at a time.
    let mut expected = made.clone();
    expected.sort_by(|a, b| b.cmp(a));
    let expected: Vec<String> = expected.into_iter().map(|(_, id)| id).collect();
    let mut seen = Vec::new();
    let mut path = "/v1/meetings?limit=1".to_owned();
    loop {
        let (status, page) = call(&app, &supervisor, Method::GET, &path, None).await;
        assert_eq!(status, 200, "{page}");
        seen.extend(page["meetings"].as_array().unwrap().iter().map(|m| m["meeting_id"].as_str().unwrap().to_owned()));
        match page["next"].as_str() {
            Some(next) => path = format!("/v1/meetings?limit=1&after={next}"),
            None => break,
        }
        assert!(seen.len() <= made.len(), "paging ends");
    }
    assert_eq!(seen, expected);

    let ids = |page: &Value| -> Vec<String> {
        page["meetings"].as_array().unwrap().iter().map(|m| m["meeting_id"].as_str().unwrap().to_owned()).collect()
    };
    let (_, page) =
        call(&app, &supervisor, Method::GET, &format!("/v1/meetings?from={}&to={}", day(1), day(5)), None).await;
    assert_eq!(ids(&page), expected[1..3].to_vec());
    assert_eq!(page["next"], Value::Null);
    let today_id = &made[0].1;
    assert_eq!(call(&app, &supervisor, Method::POST, &format!("/v1/meetings/{today_id}/end"), None).await.0, 204);
    let (_, open) = call(&app, &supervisor, Method::GET, "/v1/meetings?open=true", None).await;
    assert_eq!(ids(&open), expected[..3].to_vec());
    let (_, closed) = call(&app, &supervisor, Method::GET, "/v1/meetings?open=false", None).await;
    assert_eq!(ids(&closed), vec![today_id.clone()]);
}

async fn every_change_is_audited(backend: Backend) {
    let app = spawn_app(backend).await;
    let people = app.seed();
    let mut phone = Phone::sign_in(&app.address, &people.counsellor).await;
    let case = case_with(&mut phone, None).await;
    let supervisor = token(&app, &people.supervisor).await;
    let meeting = create_meeting(&app, &supervisor, "support", &[&people.meeting_tablet]).await;
    assert_eq!(put_case(&app, &supervisor, &meeting, &case).await.0, 204);
    get_meeting(&app, &supervisor, &meeting).await;
    let member = format!("/v1/meetings/{meeting}/members/{}", people.meeting_tablet.staff);
    assert_eq!(call(&app, &supervisor, Method::DELETE, &member, None).await.0, 204);
    assert_eq!(call(&app, &supervisor, Method::PUT, &member, None).await.0, 204);
    assert_eq!(
        call(&app, &supervisor, Method::DELETE, &format!("/v1/meetings/{meeting}/agenda/{case}"), None).await.0,
        204
    );
    assert_eq!(call(&app, &supervisor, Method::POST, &format!("/v1/meetings/{meeting}/end"), None).await.0, 204);

    let by = Some(people.supervisor.staff.to_string());
    let case_text = Some(case.to_string());
    let on = format!("meeting {meeting}");
    let rows = |action: &str| audit_rows(&app, action);
    let created = rows("meeting.create");
    assert_eq!(created.len(), 1);
    assert_eq!((created[0].0.clone(), created[0].1.clone()), (by.clone(), None));
    assert!(created[0].2.starts_with(&format!("{on}: support, held on {}, 1 member(s)", day(0))), "{created:?}");
    assert_eq!(rows("meeting.agenda_add"), vec![(by.clone(), case_text.clone(), format!("{on}: support"))]);
    assert_eq!(rows("meeting.agenda_read"), vec![(by.clone(), case_text.clone(), on.clone())]);
    let tablet = format!("{on}: staff {}", people.meeting_tablet.staff);
    assert_eq!(rows("meeting.member_remove"), vec![(by.clone(), None, tablet.clone())]);
    assert_eq!(rows("meeting.member_add"), vec![(by.clone(), None, tablet)]);
    assert_eq!(rows("meeting.agenda_remove"), vec![(by.clone(), case_text, format!("{on}: support"))]);
    assert_eq!(rows("meeting.end"), vec![(by, None, format!("{on}: 0 agenda case(s)"))]);
    // The title never reaches the audit log.
    let everything: Vec<String> =
        ["meeting.create", "meeting.end"].iter().flat_map(|a| rows(a)).map(|(_, _, detail)| detail).collect();
    assert!(everything.iter().all(|d| !d.contains("の会議")), "{everything:?}");
}
