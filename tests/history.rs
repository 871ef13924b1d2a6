//! A case's history end to end (`GET /v1/cases/{case_id}/history`), over real HTTP, on
//! SQLite and on PostgreSQL: a phone works a case offline and syncs, a supervisor assigns a
//! colleague, and the history tells each step with who, from which device and when — in
//! words, without the case's content.

// The field operations return the library's `OpError`, whatever its size; the tests only
// pass it through.
#![allow(clippy::result_large_err)]

mod common;

use diesel::prelude::*;
use serde_json::Value;
use tsunagi_server::store::{schema, StoreError};
use tsunagi_server::sync::Assignment;
use tsunagi_sync::document::ActivityDetails;
use tsunagi_sync::domain::{CaseStatus, LetterItem, LetterPlace, Place};
use tsunagi_sync::ids::CaseId;
use tsunagi_sync::ops::NewActivity;

use common::phone::{jst, Phone};
use common::{error_of, spawn_app, Backend, TestApp};

on_both_backends!(
    the_history_tells_each_step_with_who_from_where_and_when,
    only_those_who_may_see_the_case_read_its_history,
);

const NARRATIVE: &str = "不在。隣の方によると夜は在宅とのこと。";
const AMENDED: &str = "不在。隣の方によると夜は在宅とのこと。母親の声が聞こえた。";

fn history_path(case: &CaseId) -> String {
    format!("/v1/cases/{case}/history")
}

async fn get_json(app: &TestApp, path: &str, token: &str) -> Value {
    let response = app.get_with_token(path, token).await;
    let status = response.status();
    let body = response.text().await.expect("a body");
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).expect("JSON")
}

fn history_audit_rows(app: &TestApp, case: &CaseId) -> Vec<(Option<String>, Option<String>, String)> {
    let case = case.to_string();
    app.db
        .read(move |c| -> Result<_, StoreError> {
            use schema::audit_log;
            Ok(audit_log::table
                .filter(audit_log::action.eq("case.history"))
                .filter(audit_log::case_id.eq(case))
                .order(audit_log::id)
                .select((audit_log::staff_id, audit_log::device_id, audit_log::detail))
                .load(c)?)
        })
        .unwrap()
}

/// A phone opens a case, logs a visit and a letter, amends the narrative and sets a status;
/// a supervisor assigns a colleague. The history reads it back step by step.
async fn the_history_tells_each_step_with_who_from_where_and_when(backend: Backend) {
    let app = spawn_app(backend).await;
    let seed = app.seed();
    let sato = &seed.counsellor;
    let mut phone = Phone::sign_in(&app.address, sato).await;

    let case = phone.open_case();
    phone.sync().await;
    let visit = phone.log_visit(&case, 10, NARRATIVE);
    let letter = NewActivity::new(
        jst(16),
        Place::Home,
        ActivityDetails::LetterLeft {
            items: [LetterItem::Letter].into(),
            left_at: LetterPlace::Door,
            reply_received_on: None,
        },
    )
    .with_narrative("手紙を玄関ドアに挟んだ");
    phone.edit(&case, |r| r.log_activity(letter)).expect("the letter is logged");
    phone.sync().await;
    phone.edit(&case, |r| r.amend_narrative(visit, AMENDED)).expect("the narrative is amended");
    phone.edit(&case, |r| r.set_status(CaseStatus::Outreach)).expect("the status is set");
    phone.sync().await;
    app.assign(&case, &seed.counsellor2.staff, Assignment::Other).expect("the assignment is made");
    let number = phone.view(&case).case_number.expect("the case has its number").to_string();

    let supervisor = app.login(&seed.supervisor).await;
    let response = app.get_with_token(&history_path(&case), &supervisor.access_token).await;
    assert_eq!(response.status(), 200);
    let raw = response.text().await.unwrap();
    for secret in [NARRATIVE, AMENDED, "母親", "玄関ドアに挟んだ"] {
        assert!(!raw.contains(secret), "{secret:?} is in the history");
    }
    let history: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(history["case_id"], case.to_string());
    assert_eq!(history["next"], Value::Null);
    let entries = history["entries"].as_array().expect("entries");
    let summaries: Vec<&str> = entries.iter().map(|e| e["summary"].as_str().unwrap()).collect();
    let colleague = seed.counsellor2.staff.to_string();
    assert_eq!(
        summaries,
        [
            "opened the case",
            &format!("set case number {number}"),
            "logged a visit (家庭訪問): not home (不在), letter left",
            "logged a letter left (置き手紙)",
            "amended the narrative of the visit of 2026-11-04",
            "status: intake (受付) → outreach (関係性構築)",
            &format!("added {colleague} to the other assignees"),
        ]
    );

    // Who, from which device, when.
    let by_phone = [0usize, 2, 3, 4, 5];
    for i in by_phone {
        let entry = &entries[i];
        assert_eq!(entry["staff_id"], sato.staff.to_string(), "{entry}");
        assert_eq!(entry["staff_name"], "佐藤 花子");
        assert_eq!(entry["device_id"], sato.device.to_string());
        assert_eq!(entry["by_server"], false);
        assert!(entry["written_at"].as_str().is_some_and(|at| at.ends_with("+09:00")), "{entry}");
    }
    for i in [1usize, 6] {
        let entry = &entries[i];
        assert_eq!(entry["by_server"], true, "{entry}");
        assert_eq!(entry["staff_id"], Value::Null);
        assert_eq!(entry["staff_name"], Value::Null);
        assert_eq!(entry["device_id"], Value::Null);
    }
    let mut seqs = Vec::new();
    for entry in entries {
        let received = entry["received_at"].as_str().expect("received_at");
        assert!(received.ends_with("+09:00"), "{received}");
        let received = chrono::DateTime::parse_from_rfc3339(received).expect("an instant");
        assert!((chrono::Utc::now() - received.to_utc()).num_minutes() < 10);
        assert_eq!(entry["hash"].as_str().map(str::len), Some(64));
        assert!(!entry["events"].as_array().unwrap().is_empty());
        seqs.push(entry["seq"].as_i64().expect("seq"));
    }
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "oldest first: {seqs:?}");

    // The typed events.
    let logged = &entries[2]["events"][0];
    assert_eq!(logged["kind"], "activity_logged");
    assert_eq!(logged["activity"]["activity_id"], visit.to_string());
    assert_eq!(logged["activity"]["activity_kind"]["label"], "家庭訪問");
    assert_eq!(logged["outcome"]["key"], "not_home");
    let status = &entries[5]["events"][0];
    assert_eq!(status["kind"], "status_changed");
    assert_eq!(status["to"]["label"], "関係性構築");
    assert_eq!(entries[6]["events"][0]["kind"], "other_assignee_added");
    assert_eq!(history["staff"][&colleague], "鈴木 一郎");
    assert_eq!(history["staff"][sato.staff.to_string()], "佐藤 花子", "the primary named at opening");

    // Paging by sequence number gives the same entries.
    let first = get_json(&app, &format!("{}?limit=3", history_path(&case)), &supervisor.access_token).await;
    assert_eq!(first["entries"].as_array().unwrap().len(), 3);
    let next = first["next"].as_str().expect("a next page").to_owned();
    assert_eq!(next, seqs[2].to_string());
    let second =
        get_json(&app, &format!("{}?after={next}&limit=3", history_path(&case)), &supervisor.access_token).await;
    let third = get_json(
        &app,
        &format!("{}?after={}&limit=3", history_path(&case), second["next"].as_str().expect("a third page")),
        &supervisor.access_token,
    )
    .await;
    assert_eq!(third["next"], Value::Null);
    let paged: Vec<Value> =
        [&first, &second, &third].iter().flat_map(|page| page["entries"].as_array().unwrap().iter().cloned()).collect();
    assert_eq!(&paged, entries);

    // The assigned counsellor reads it too.
    let own = app.login(sato).await;
    let mine = get_json(&app, &history_path(&case), &own.access_token).await;
    assert_eq!(mine["entries"].as_array().unwrap().len(), 7);

    // Bad paging parameters.
    for query in ["limit=0", "limit=1001", "limit=ten", "after=-1", "after=abc"] {
        let response = app.get_with_token(&format!("{}?{query}", history_path(&case)), &supervisor.access_token).await;
        assert_eq!(error_of(response).await, (400, "invalid_request".to_owned()), "{query}");
    }

    // Every read was audited, in the reader's name and device.
    let rows = history_audit_rows(&app, &case);
    assert_eq!(rows.len(), 5, "{rows:?}");
    assert_eq!(rows[0].0.as_deref(), Some(seed.supervisor.staff.to_string().as_str()));
    assert_eq!(rows[0].1.as_deref(), Some(seed.supervisor.device.to_string().as_str()));
    assert_eq!(rows[0].2, "7 entries after 0");
    assert_eq!(rows[4].0.as_deref(), Some(sato.staff.to_string().as_str()));
}

/// A counsellor of another case gets exactly what a random id gets; administrators and
/// meeting tablets may not use the endpoint at all.
async fn only_those_who_may_see_the_case_read_its_history(backend: Backend) {
    let app = spawn_app(backend).await;
    let seed = app.seed();
    let mut phone = Phone::sign_in(&app.address, &seed.counsellor).await;
    let case = phone.open_case();
    phone.log_visit(&case, 10, NARRATIVE);
    phone.sync().await;

    // A counsellor with a case of their own, but not this one.
    let tanaka = app.add_counsellor(&seed, "tanaka", "田中 三郎");
    let mut theirs = Phone::sign_in(&app.address, &tanaka).await;
    let their_case = theirs.open_case();
    theirs.sync().await;
    let token = app.login(&tanaka).await.access_token;
    get_json(&app, &history_path(&their_case), &token).await;

    let audited_before = history_audit_rows(&app, &case).len();
    let hidden = app.get_with_token(&history_path(&case), &token).await;
    let (hidden_status, hidden_body) = (hidden.status(), hidden.bytes().await.unwrap());
    let random = app.get_with_token(&history_path(&CaseId::new_random()), &token).await;
    let (random_status, random_body) = (random.status(), random.bytes().await.unwrap());
    assert_eq!(hidden_status, 404);
    assert_eq!((hidden_status, &hidden_body), (random_status, &random_body), "identical answers");
    let malformed = app.get_with_token("/v1/cases/not-a-case/history", &token).await;
    assert_eq!(malformed.status(), 404);
    assert_eq!(malformed.bytes().await.unwrap(), random_body);
    let body: Value = serde_json::from_slice(&hidden_body).unwrap();
    assert_eq!(body["code"], "not_found");
    assert_eq!(history_audit_rows(&app, &case).len(), audited_before, "a refused read is not a read");

    for who in [&seed.administrator, &seed.meeting_tablet] {
        let token = app.login(who).await.access_token;
        let response = app.get_with_token(&history_path(&case), &token).await;
        assert_eq!(error_of(response).await, (403, "forbidden".to_owned()), "{}", who.login);
    }
    let response = app.http.get(app.url(&history_path(&case))).send().await.unwrap();
    assert_eq!(response.status(), 401);

    // The supervisor of the municipality (no area: every case) does see it.
    let supervisor = app.login(&seed.supervisor).await.access_token;
    let history = get_json(&app, &history_path(&case), &supervisor).await;
    assert_eq!(history["entries"].as_array().unwrap().len(), 3);
}
