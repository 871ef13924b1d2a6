//! Nothing hidden, nothing lost: the attention queue end to end over HTTP, on SQLite and
//! PostgreSQL, with real phones working offline — conflicts and their resolution, concurrent
//! amendments, late entries, possible duplicate households, refused uploads.

mod common;

use chrono::NaiveDate;
use serde_json::{json, Value};
use tsunagi_sync::domain::CaseStatus;
use tsunagi_sync::domain::PlanVerdict;
use tsunagi_sync::ids::CaseId;
use tsunagi_sync::ops::{NewDecision, NewPerson};
use tsunagi_sync::session::CaseEvent;

use common::phone::Phone;
use common::{spawn_app, Backend, TestApp};
use tsunagi_server::sync::Assignment;

on_both_backends!(
    two_statuses_set_offline_make_one_conflict_and_choosing_leaves_one_value_everywhere,
    a_conflict_on_an_activity_s_follow_up_is_settled_by_the_supervisor,
    two_devices_amending_one_narrative_raise_a_concurrent_amendment,
    a_visit_logged_offline_on_a_case_suspended_meanwhile_is_kept_and_raises_a_late_entry,
    a_visit_logged_offline_on_a_case_closed_meanwhile_is_in_the_visit_log_and_the_figures,
    two_phones_opening_a_case_for_one_household_raise_a_possible_duplicate,
    a_refused_upload_raises_a_quarantined_batch_item,
    a_supervisor_rejects_a_refused_upload_with_a_reason_or_accepts_it_with_an_override,
    merging_a_duplicate_keeps_every_activity_and_both_numbers_lead_to_the_survivor,
    a_late_visit_on_a_case_merged_twice_over_reaches_the_last_survivor,
);

async fn call(app: &TestApp, method: reqwest::Method, token: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    app.call(method, token, path, body.as_ref()).await
}

async fn open_items(app: &TestApp, token: &str, query: &str) -> Vec<Value> {
    let (status, page) = call(app, reqwest::Method::GET, token, &format!("/v1/attention?{query}"), None).await;
    assert_eq!(status, 200, "{page}");
    page["items"].as_array().unwrap().clone()
}

async fn two_statuses_set_offline_make_one_conflict_and_choosing_leaves_one_value_everywhere(backend: Backend) {
    let app = spawn_app(backend).await;
    let people = app.seed();
    let mut sato = Phone::sign_in(&app.address, &people.counsellor).await;
    let case = sato.open_case();
    sato.sync().await;
    app.assign(&case, &people.counsellor2.staff, Assignment::Other).unwrap();
    let mut suzuki = Phone::sign_in(&app.address, &people.counsellor2).await;
    suzuki.sync().await;

    sato.edit(&case, |r| r.set_status(CaseStatus::Outreach)).unwrap();
    suzuki.edit(&case, |r| r.set_status(CaseStatus::Suspended)).unwrap();
    sato.sync().await;
    suzuki.sync().await;

    let supervisor = app.login(&people.supervisor).await.access_token;
    let items = open_items(&app, &supervisor, "kind=conflict").await;
    assert_eq!(items.len(), 1, "{items:?}");
    let item = &items[0];
    assert_eq!(item["kind"], json!({"key": "conflict", "label": "競合"}));
    assert_eq!(item["case_id"], case.to_string());
    assert_eq!(item["detail"]["path"], "/status");
    let values = item["detail"]["values"].as_array().unwrap();
    let mut by: Vec<(String, String, String)> = values
        .iter()
        .map(|v| {
            (
                v["value"].as_str().unwrap().to_owned(),
                v["staff_id"].as_str().unwrap().to_owned(),
                v["device_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    by.sort();
    let mut expected = vec![
        ("outreach".to_owned(), people.counsellor.staff.to_string(), people.counsellor.device.to_string()),
        ("suspended".to_owned(), people.counsellor2.staff.to_string(), people.counsellor2.device.to_string()),
    ];
    expected.sort();
    assert_eq!(by, expected);
    assert!(values.iter().all(|v| v["arrived_at"].is_string()));
    // The item shows case content (the values): reading the queue is audited as a read of it.
    let admin = app.login(&people.administrator).await.access_token;
    let audit = format!("/v1/audit?case={case}&action=attention.read");
    let (status, log) = call(&app, reqwest::Method::GET, &admin, &audit, None).await;
    assert_eq!(status, 200, "{log}");
    let rows = log["entries"].as_array().cloned().unwrap_or_default();
    assert!(
        rows.iter().any(|r| r["staff_id"] == people.supervisor.staff.to_string()),
        "the supervisor's read of the queue is in the audit log: {log}"
    );

    // A cursor that is no item of an earlier page is an error, not a silent restart.
    let (status, error) = call(&app, reqwest::Method::GET, &supervisor, "/v1/attention?after=nope", None).await;
    assert_eq!((status, error["code"].as_str()), (400, Some("invalid_request")), "{error}");
    let (status, page) = call(
        &app,
        reqwest::Method::GET,
        &supervisor,
        &format!("/v1/attention?after={}", item["item_id"].as_str().unwrap()),
        None,
    )
    .await;
    assert_eq!((status, page["items"].as_array().map(Vec::len)), (200, Some(0)), "{page}");

    // A value that is not one of the conflict's is refused; then the supervisor chooses.
    let item_id = item["item_id"].as_str().unwrap();
    let path = format!("/v1/attention/{item_id}/resolve");
    let (status, error) = call(&app, reqwest::Method::POST, &supervisor, &path, Some(json!({"value": "closed"}))).await;
    assert_eq!((status, error["code"].as_str()), (400, Some("invalid_request")), "{error}");
    let (status, resolved) =
        call(&app, reqwest::Method::POST, &supervisor, &path, Some(json!({"value": "outreach", "note": "電話で確認"})))
            .await;
    assert_eq!(status, 200, "{resolved}");
    assert_eq!(resolved["resolved_by"], people.supervisor.staff.to_string());
    assert_eq!(resolved["resolution"]["chose"], "outreach");
    let (status, _) = call(&app, reqwest::Method::POST, &supervisor, &path, Some(json!({"value": "outreach"}))).await;
    assert_eq!(status, 409, "resolved once");

    // Every replica holds one value after its next sync, and no conflict.
    for phone in [&mut sato, &mut suzuki] {
        phone.sync().await;
        let view = phone.view(&case);
        assert_eq!(view.status, CaseStatus::Outreach);
        assert!(view.conflicts.is_empty(), "{:?}", view.conflicts);
    }
    assert!(open_items(&app, &supervisor, "kind=conflict").await.is_empty());
    // The change that chose is the supervisor's, from the device they called from.
    let (_, record) = call(&app, reqwest::Method::GET, &supervisor, &format!("/v1/cases/{case}"), None).await;
    assert!(record["case"]["conflicts"].as_array().unwrap().is_empty());
    let chosen_by: Vec<(Option<String>, Option<String>)> = {
        use diesel::prelude::*;
        use tsunagi_server::store::schema::changes;
        let mut conn = app.db.conn().unwrap();
        changes::table
            .filter(changes::case_id.eq(case.to_string()))
            .order(changes::seq.desc())
            .select((changes::staff_id, changes::device_id))
            .limit(1)
            .load(&mut *conn)
            .unwrap()
    };
    assert_eq!(
        chosen_by,
        vec![(Some(people.supervisor.staff.to_string()), Some(people.supervisor.device.to_string()))]
    );
}

/// Sato's phone and her tablet give one visit different follow-up dates offline: a conflict
/// on an activity's register, which only its author could amend — the supervisor settles it.
async fn a_conflict_on_an_activity_s_follow_up_is_settled_by_the_supervisor(backend: Backend) {
    let app = spawn_app(backend).await;
    let people = app.seed();
    let tablet_person = app.add_device(&people.counsellor, "佐藤 花子のタブレット");
    let mut phone = Phone::sign_in(&app.address, &people.counsellor).await;
    let case = phone.open_case();
    let visit = phone.log_visit(&case, 10, "不在。手紙を残した。");
    phone.sync().await;
    let mut tablet = Phone::sign_in(&app.address, &tablet_person).await;
    tablet.sync().await;

    let (first, second) =
        (NaiveDate::from_ymd_opt(2026, 12, 10).unwrap(), NaiveDate::from_ymd_opt(2026, 12, 17).unwrap());
    phone.edit(&case, |r| r.set_follow_up(visit, Some(first))).unwrap();
    tablet.edit(&case, |r| r.set_follow_up(visit, Some(second))).unwrap();
    phone.sync().await;
    tablet.sync().await;

    let supervisor = app.login(&people.supervisor).await.access_token;
    let items = open_items(&app, &supervisor, "kind=conflict").await;
    assert_eq!(items.len(), 1, "{items:?}");
    let path = format!("/activities/{visit}/follow_up_on");
    assert_eq!(items[0]["detail"]["path"], path);
    let values = items[0]["detail"]["values"].as_array().unwrap();
    let mut seen: Vec<(String, String)> = values
        .iter()
        .map(|v| (v["value"].as_str().unwrap().to_owned(), v["device_id"].as_str().unwrap().to_owned()))
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        vec![
            ("2026-12-10".to_owned(), people.counsellor.device.to_string()),
            ("2026-12-17".to_owned(), tablet_person.device.to_string()),
        ]
    );
    for value in values {
        assert_eq!(value["staff_id"], people.counsellor.staff.to_string(), "{value}");
        // When this value was set (its change's own time) and when that change arrived.
        assert!(value["set_at"].is_string() && value["arrived_at"].is_string(), "{value}");
        assert_eq!(value["change"].as_str().map(str::len), Some(64), "{value}");
    }
    assert_ne!(values[0]["change"], values[1]["change"]);

    let resolve = format!("/v1/attention/{}/resolve", items[0]["item_id"].as_str().unwrap());
    let (status, resolved) =
        call(&app, reqwest::Method::POST, &supervisor, &resolve, Some(json!({"value": "2026-12-17"}))).await;
    assert_eq!(status, 200, "{resolved}");
    assert_eq!(resolved["resolution"]["chose"], "2026-12-17");
    for device in [&mut phone, &mut tablet] {
        device.sync().await;
        let view = device.view(&case);
        assert_eq!(view.activities[&visit].follow_up_on, Some(second));
        assert!(view.conflicts.is_empty(), "{:?}", view.conflicts);
    }
    assert!(open_items(&app, &supervisor, "kind=conflict").await.is_empty());
    // Settling is not amending: the supervisor cannot write the register again.
    let (status, _) =
        call(&app, reqwest::Method::POST, &supervisor, &resolve, Some(json!({"value": "2026-12-10"}))).await;
    assert_eq!(status, 409);
}

async fn two_devices_amending_one_narrative_raise_a_concurrent_amendment(backend: Backend) {
    let app = spawn_app(backend).await;
    let people = app.seed();
    let tablet_person = app.add_device(&people.counsellor, "佐藤 花子のタブレット");
    let mut phone = Phone::sign_in(&app.address, &people.counsellor).await;
    let case = phone.open_case();
    let visit = phone.log_visit(&case, 10, "インターホンに応答なし。");
    phone.sync().await;
    let mut tablet = Phone::sign_in(&app.address, &tablet_person).await;
    tablet.sync().await;

    phone.edit(&case, |r| r.amend_narrative(visit, "インターホンに応答なし。手紙を残した。")).unwrap();
    tablet.edit(&case, |r| r.insert_into_narrative(visit, 0, "【10時】")).unwrap();
    phone.sync().await;
    tablet.sync().await;

    let supervisor = app.login(&people.supervisor).await.access_token;
    let items = open_items(&app, &supervisor, "kind=concurrent_amendment").await;
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0]["detail"]["activity_id"], visit.to_string());
    assert_eq!(items[0]["detail"]["field"], "narrative");
    // Read once, and marked read.
    let path = format!("/v1/attention/{}/resolve", items[0]["item_id"].as_str().unwrap());
    let (status, resolved) = call(&app, reqwest::Method::POST, &supervisor, &path, Some(json!({}))).await;
    assert_eq!(status, 200, "{resolved}");
    assert!(open_items(&app, &supervisor, "kind=concurrent_amendment").await.is_empty());
    let done = open_items(&app, &supervisor, "state=resolved").await;
    assert_eq!(done.len(), 1);
    // Edits in turn (each device saw the other's) raise nothing.
    phone.sync().await;
    phone.edit(&case, |r| r.amend_narrative(visit, "【10時】インターホンに応答なし。")).unwrap();
    phone.sync().await;
    assert!(open_items(&app, &supervisor, "kind=concurrent_amendment").await.is_empty());
}

async fn a_visit_logged_offline_on_a_case_suspended_meanwhile_is_kept_and_raises_a_late_entry(backend: Backend) {
    let app = spawn_app(backend).await;
    let people = app.seed();
    let mut sato = Phone::sign_in(&app.address, &people.counsellor).await;
    let case = sato.open_case();
    sato.sync().await;
    app.assign(&case, &people.counsellor2.staff, Assignment::Other).unwrap();
    let mut suzuki = Phone::sign_in(&app.address, &people.counsellor2).await;
    suzuki.sync().await;

    // 鈴木 visits offline; meanwhile 佐藤 suspends the case and syncs first.
    let late = suzuki.log_visit(&case, 11, "不在。");
    sato.edit(&case, |r| r.set_status(CaseStatus::Suspended)).unwrap();
    sato.sync().await;
    suzuki.sync().await;

    let supervisor = app.login(&people.supervisor).await.access_token;
    let (_, visits) = call(&app, reqwest::Method::GET, &supervisor, &format!("/v1/visits?case={case}"), None).await;
    let ids: Vec<&str> =
        visits["visits"].as_array().unwrap().iter().map(|v| v["activity_id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec![late.to_string()], "stored and in the visit log");
    let items = open_items(&app, &supervisor, "kind=late_entry").await;
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0]["subject"], late.to_string());
    assert_eq!(items[0]["detail"]["reason"], "case_suspended");
    assert_eq!(items[0]["detail"]["recorded_by"], people.counsellor2.staff.to_string());

    // A counsellor unassigned while offline: the visit is kept too, and flagged.
    let after_unassign = suzuki.log_visit(&case, 12, "再訪問。");
    app.assign(&case, &people.counsellor2.staff, Assignment::Remove).unwrap();
    sato.edit(&case, |r| r.set_status(CaseStatus::Outreach)).unwrap();
    sato.sync().await;
    suzuki.sync().await;
    let items = open_items(&app, &supervisor, "kind=late_entry").await;
    let reasons: Vec<(&str, &str)> =
        items.iter().map(|i| (i["subject"].as_str().unwrap(), i["detail"]["reason"].as_str().unwrap())).collect();
    let after = after_unassign.to_string();
    assert!(reasons.contains(&(after.as_str(), "not_assigned")), "{reasons:?}");
}

/// The case exactly: the meeting closes the case (with its decision) while 鈴木 is
/// out; her visit arrives afterwards and is stored, shown, counted and flagged.
async fn a_visit_logged_offline_on_a_case_closed_meanwhile_is_in_the_visit_log_and_the_figures(backend: Backend) {
    let app = spawn_app(backend).await;
    let people = app.seed();
    let mut sato = Phone::sign_in(&app.address, &people.counsellor).await;
    let case = sato.open_case();
    let first = sato.log_visit(&case, 9, "面談。");
    sato.sync().await;
    app.assign(&case, &people.counsellor2.staff, Assignment::Other).unwrap();
    let mut suzuki = Phone::sign_in(&app.address, &people.counsellor2).await;
    suzuki.sync().await;

    let late = suzuki.log_visit(&case, 11, "不在。手紙を残した。");
    // The supervisor records the meeting's decision to close, and closes the case.
    let mut chief = Phone::sign_in(&app.address, &people.supervisor).await;
    chief.sync().await;
    let closed_on = NaiveDate::from_ymd_opt(2026, 11, 5).unwrap();
    chief
        .edit(&case, |r| r.record_decision(NewDecision::new(closed_on, PlanVerdict::Close).decided(closed_on)))
        .unwrap();
    chief.edit(&case, |r| r.set_status(CaseStatus::Closed)).unwrap();
    let report = chief.sync().await;
    assert!(report.events_of(&case).all(|e| !matches!(e, CaseEvent::Refused { .. })), "{report:?}");
    let report = suzuki.sync().await;
    assert!(report.events_of(&case).all(|e| !matches!(e, CaseEvent::Refused { .. })), "never refused: {report:?}");

    let supervisor = app.login(&people.supervisor).await.access_token;
    let (_, record) = call(&app, reqwest::Method::GET, &supervisor, &format!("/v1/cases/{case}"), None).await;
    assert_eq!(record["case"]["status"], "closed");
    assert!(record["case"]["activities"].as_object().unwrap().contains_key(&late.to_string()), "{record}");
    let (_, visits) = call(&app, reqwest::Method::GET, &supervisor, &format!("/v1/visits?case={case}"), None).await;
    let mut ids: Vec<&str> =
        visits["visits"].as_array().unwrap().iter().map(|v| v["activity_id"].as_str().unwrap()).collect();
    ids.sort();
    let mut expected = vec![first.to_string(), late.to_string()];
    expected.sort();
    assert_eq!(ids, expected, "stored and in the visit log");
    // 2026-11-04 is in fiscal 2026, month 8 (November): both visits count, with the letter.
    let (status, figures) = call(&app, reqwest::Method::GET, &supervisor, "/v1/figures/2026", None).await;
    assert_eq!(status, 200, "{figures}");
    assert_eq!(figures["outreach"]["visits"]["months"][7], 2, "{figures}");
    assert_eq!(figures["outreach"]["letters_left"]["months"][7], 2, "{figures}");

    let items = open_items(&app, &supervisor, "kind=late_entry").await;
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0]["subject"], late.to_string());
    assert_eq!(items[0]["detail"]["reason"], "case_closed");
    assert_eq!(items[0]["detail"]["status"], "closed");
    assert_eq!(items[0]["detail"]["recorded_by"], people.counsellor2.staff.to_string());
}

async fn two_phones_opening_a_case_for_one_household_raise_a_possible_duplicate(backend: Backend) {
    let app = spawn_app(backend).await;
    let people = app.seed();
    let mut sato = Phone::sign_in(&app.address, &people.counsellor).await;
    let mut suzuki = Phone::sign_in(&app.address, &people.counsellor2).await;
    let person = |kana: &str| {
        let mut p = NewPerson::new("山田 一郎");
        p.kana = Some(kana.to_owned());
        p.birth_date = NaiveDate::from_ymd_opt(1974, 5, 6);
        p.is_subject = true;
        p
    };
    let first = sato.open_case();
    sato.edit(&first, |r| r.add_person(person("やまだ いちろう"))).unwrap();
    let second = suzuki.open_case();
    suzuki.edit(&second, |r| r.add_person(person("やまだ　いちろう"))).unwrap();
    let unrelated = suzuki.open_case();
    let mut other = person("やまだ いちろう");
    other.birth_date = NaiveDate::from_ymd_opt(1975, 5, 6);
    suzuki.edit(&unrelated, |r| r.add_person(other)).unwrap();
    sato.sync().await;
    suzuki.sync().await;

    let supervisor = app.login(&people.supervisor).await.access_token;
    let items = open_items(&app, &supervisor, "kind=possible_duplicate").await;
    assert_eq!(items.len(), 1, "{items:?}");
    let pair = [items[0]["case_id"].as_str().unwrap(), items[0]["detail"]["other_case_id"].as_str().unwrap()];
    let mut pair: Vec<String> = pair.iter().map(|s| s.to_string()).collect();
    pair.sort();
    let mut expected = vec![first.to_string(), second.to_string()];
    expected.sort();
    assert_eq!(pair, expected);
    // Not the same household after all.
    let path = format!("/v1/attention/{}/resolve", items[0]["item_id"].as_str().unwrap());
    let (status, _) = call(&app, reqwest::Method::POST, &supervisor, &path, Some(json!({"action": "keep"}))).await;
    assert_eq!(status, 400);
    let (status, _) = call(&app, reqwest::Method::POST, &supervisor, &path, Some(json!({"action": "dismiss"}))).await;
    assert_eq!(status, 200);
    assert!(open_items(&app, &supervisor, "kind=possible_duplicate").await.is_empty());
}

async fn a_refused_upload_raises_a_quarantined_batch_item(backend: Backend) {
    let app = spawn_app(backend).await;
    let people = app.seed();
    let mut phone = Phone::sign_in(&app.address, &people.counsellor).await;
    let case = phone.open_case();
    phone.sync().await;
    // A buggy app writes the case number itself: refused and quarantined.
    phone.tamper(&case, |doc| {
        use automerge::transaction::Transactable;
        doc.put(automerge::ROOT, "case_number", "2026-9999").unwrap();
    });
    phone.sync().await;

    let supervisor = app.login(&people.supervisor).await.access_token;
    let items = open_items(&app, &supervisor, "kind=quarantined_batch").await;
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0]["case_id"], case.to_string());
    assert_eq!(items[0]["detail"]["code"], "invalid_change");
    assert_eq!(items[0]["detail"]["staff_id"], people.counsellor.staff.to_string());

    // Counsellors and administrators do not read the queue; a random item is a 404.
    for who in [&people.counsellor, &people.administrator] {
        let token = app.login(who).await.access_token;
        let (status, _) = call(&app, reqwest::Method::GET, &token, "/v1/attention", None).await;
        assert_eq!(status, 403);
    }
    let (status, _) =
        call(&app, reqwest::Method::GET, &supervisor, &format!("/v1/attention/{}", CaseId::new_random()), None).await;
    assert_eq!(status, 404);
}

async fn a_supervisor_rejects_a_refused_upload_with_a_reason_or_accepts_it_with_an_override(backend: Backend) {
    let app = spawn_app(backend).await;
    let people = app.seed();
    let mut sato = Phone::sign_in(&app.address, &people.counsellor).await;
    let case = sato.open_case();
    let visit = sato.log_visit(&case, 10, "不在。");
    sato.sync().await;
    app.assign(&case, &people.counsellor2.staff, Assignment::Other).unwrap();
    let mut suzuki = Phone::sign_in(&app.address, &people.counsellor2).await;
    suzuki.sync().await;

    // 鈴木's app sets a follow-up date on 佐藤's visit (only its author may): refused.
    suzuki.tamper(&case, |doc| {
        use automerge::transaction::Transactable;
        use automerge::ReadDoc;
        let (_, activities) = doc.get(automerge::ROOT, "activities").unwrap().unwrap();
        let (_, activity) = doc.get(&activities, visit.to_string()).unwrap().unwrap();
        doc.put(&activity, "follow_up_on", "2026-11-20").unwrap();
    });
    suzuki.sync().await;
    // 佐藤's app writes the case number itself: refused for a rule no override lifts.
    sato.tamper(&case, |doc| {
        use automerge::transaction::Transactable;
        doc.put(automerge::ROOT, "case_number", "2026-9999").unwrap();
    });
    sato.sync().await;

    let supervisor = app.login(&people.supervisor).await.access_token;
    let items = open_items(&app, &supervisor, "kind=quarantined_batch").await;
    assert_eq!(items.len(), 2, "{items:?}");
    let by_staff = |staff: &tsunagi_sync::ids::StaffId| {
        items.iter().find(|i| i["detail"]["staff_id"] == staff.to_string()).unwrap()["subject"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (follow_up, number) = (by_staff(&people.counsellor2.staff), by_staff(&people.counsellor.staff));
    let (status, upload) =
        call(&app, reqwest::Method::GET, &supervisor, &format!("/v1/quarantine/{follow_up}"), None).await;
    assert_eq!(status, 200, "{upload}");
    assert_eq!(upload["violations"][0]["code"], "not_own_activity");
    assert_eq!(upload["changes"], 1);

    // The case number cannot be accepted; rejected with a reason, which 佐藤 sees.
    let decide = |id: &str| format!("/v1/quarantine/{id}/decision");
    let (status, error) =
        call(&app, reqwest::Method::POST, &supervisor, &decide(&number), Some(json!({"decision": "accept"}))).await;
    assert_eq!((status, error["code"].as_str()), (409, Some("conflict")), "{error}");
    let (status, _) =
        call(&app, reqwest::Method::POST, &supervisor, &decide(&number), Some(json!({"decision": "reject"}))).await;
    assert_eq!(status, 400, "a rejection needs a reason");
    let reason = "受付番号はサーバーが付けます。アプリを更新してください。";
    let body = json!({"decision": "reject", "reason": reason});
    let (status, rejected) = call(&app, reqwest::Method::POST, &supervisor, &decide(&number), Some(body)).await;
    assert_eq!(status, 200, "{rejected}");
    let counsellor = app.login(&people.counsellor).await.access_token;
    let (status, mine) = call(&app, reqwest::Method::GET, &counsellor, "/v1/quarantine/mine", None).await;
    assert_eq!(status, 200, "{mine}");
    assert_eq!(mine["uploads"][0]["decision"], "rejected");
    assert_eq!(mine["uploads"][0]["reason"], reason);

    // The follow-up date is accepted with the supervisor's override and reaches 佐藤's phone.
    let body = json!({"decision": "accept"});
    let (status, accepted) =
        call(&app, reqwest::Method::POST, &supervisor, &decide(&follow_up), Some(body.clone())).await;
    assert_eq!(status, 200, "{accepted}");
    assert_eq!(accepted["decision"], "accepted");
    let (status, _) = call(&app, reqwest::Method::POST, &supervisor, &decide(&follow_up), Some(body)).await;
    assert_eq!(status, 409, "decided once");
    sato.sync().await;
    let view = sato.view(&case);
    assert_eq!(view.activities[&visit].follow_up_on, NaiveDate::from_ymd_opt(2026, 11, 20));
    assert!(open_items(&app, &supervisor, "kind=quarantined_batch").await.is_empty());
}

async fn merging_a_duplicate_keeps_every_activity_and_both_numbers_lead_to_the_survivor(backend: Backend) {
    let app = spawn_app(backend).await;
    let people = app.seed();
    let mut sato = Phone::sign_in(&app.address, &people.counsellor).await;
    let mut suzuki = Phone::sign_in(&app.address, &people.counsellor2).await;
    let household = || {
        let mut p = NewPerson::new("山田 一郎");
        p.kana = Some("やまだ いちろう".to_owned());
        p.birth_date = NaiveDate::from_ymd_opt(1974, 5, 6);
        p.is_subject = true;
        p
    };
    let survivor = sato.open_case();
    sato.edit(&survivor, |r| r.add_person(household())).unwrap();
    let visit = sato.log_visit(&survivor, 10, "不在。");
    let duplicate = suzuki.open_case();
    suzuki.edit(&duplicate, |r| r.add_person(household())).unwrap();
    let call_ = suzuki.log_visit(&duplicate, 14, "近所の方から話を聞いた。");
    sato.sync().await;
    suzuki.sync().await;
    let number_of = |phone: &Phone, case: &CaseId| phone.view(case).case_number.unwrap().to_string();
    let (survivor_number, duplicate_number) = (number_of(&sato, &survivor), number_of(&suzuki, &duplicate));

    let supervisor = app.login(&people.supervisor).await.access_token;
    assert_eq!(open_items(&app, &supervisor, "kind=possible_duplicate").await.len(), 1);
    // The supervisor reviewed 鈴木's visit on the duplicate before anyone saw the match.
    let body = json!({"activity_id": call_.to_string(), "comment": "近所の方の話を次回確認。"});
    let (status, review) =
        call(&app, reqwest::Method::POST, &supervisor, &format!("/v1/cases/{duplicate}/reviews"), Some(body)).await;
    assert_eq!(status, 201, "{review}");
    let review = review["review_id"].as_str().unwrap().to_owned();
    let members_of = |phone: &Phone, case: &CaseId| -> Vec<String> {
        phone.view(case).household.keys().map(|p| p.to_string()).collect()
    };
    let mut members = members_of(&sato, &survivor);
    members.extend(members_of(&suzuki, &duplicate));
    members.sort();
    // 鈴木 logs one more visit on the duplicate offline, before hearing of the merge.
    let late = suzuki.log_visit(&duplicate, 16, "再訪問。");

    let path = format!("/v1/cases/{survivor}/merge");
    let (status, error) =
        call(&app, reqwest::Method::POST, &supervisor, &path, Some(json!({"duplicate": survivor.to_string()}))).await;
    assert_eq!((status, error["code"].as_str()), (400, Some("invalid_request")), "not into itself");
    let (status, merged) =
        call(&app, reqwest::Method::POST, &supervisor, &path, Some(json!({"duplicate": duplicate.to_string()}))).await;
    assert_eq!(status, 200, "{merged}");
    assert_eq!(merged["merged"]["case_number"], duplicate_number);
    assert!(open_items(&app, &supervisor, "kind=possible_duplicate").await.is_empty(), "settled by the merge");
    let (status, _) =
        call(&app, reqwest::Method::POST, &supervisor, &path, Some(json!({"duplicate": duplicate.to_string()}))).await;
    assert_eq!(status, 409, "merged once");

    // Every activity is in the survivor, once; the visit log shows each once.
    let (status, record) = call(&app, reqwest::Method::GET, &supervisor, &format!("/v1/cases/{survivor}"), None).await;
    assert_eq!(status, 200, "{record}");
    let activities = record["case"]["activities"].as_object().unwrap();
    assert!(activities.contains_key(&visit.to_string()) && activities.contains_key(&call_.to_string()));
    let assignees: Vec<&str> =
        record["case"]["assignees"]["others"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
    assert!(assignees.contains(&people.counsellor2.staff.to_string().as_str()), "{assignees:?}");
    // Both households' members (the same person twice, each with the visits naming them) and
    // the review moved too.
    let mut kept: Vec<String> = record["case"]["household"].as_object().unwrap().keys().cloned().collect();
    kept.sort();
    assert_eq!(kept, members);
    let reviews = record["case"]["reviews"].as_object().unwrap();
    assert_eq!(reviews[&review]["activity_id"], call_.to_string(), "{reviews:?}");
    let (_, log) = call(&app, reqwest::Method::GET, &supervisor, "/v1/visits", None).await;
    let mut ids: Vec<&str> =
        log["visits"].as_array().unwrap().iter().map(|v| v["activity_id"].as_str().unwrap()).collect();
    ids.sort();
    let mut expected = vec![visit.to_string(), call_.to_string()];
    expected.sort();
    assert_eq!(ids, expected);

    // Both case numbers, and the merged case's id, lead to the survivor.
    for path in [
        format!("/v1/cases/{duplicate}"),
        format!("/v1/cases/by-number/{duplicate_number}"),
        format!("/v1/cases/by-number/{survivor_number}"),
    ] {
        let (status, record) = call(&app, reqwest::Method::GET, &supervisor, &path, None).await;
        assert_eq!(status, 200, "{path}: {record}");
        assert_eq!(record["case"]["case_id"], survivor.to_string(), "{path}");
    }
    let (_, listed) = call(&app, reqwest::Method::GET, &supervisor, "/v1/cases", None).await;
    let listed: Vec<&str> =
        listed["cases"].as_array().unwrap().iter().map(|c| c["case_id"].as_str().unwrap()).collect();
    assert_eq!(listed, vec![survivor.to_string()]);

    // 鈴木's phone: the late visit goes up (kept, flagged on the survivor), the duplicate is
    // purged as merged, and the survivor arrives.
    let report = suzuki.sync().await;
    assert!(
        report.events_of(&duplicate).any(|e| matches!(
            e,
            tsunagi_sync::session::CaseEvent::Purged { reason: tsunagi_sync::wire::PurgeReason::Merged }
        )),
        "{report:?}"
    );
    let report = if suzuki.store.contains(&survivor) { report } else { suzuki.sync().await };
    assert!(suzuki.store.contains(&survivor), "{report:?}");
    assert!(!suzuki.store.contains(&duplicate));
    let late_items = open_items(&app, &supervisor, "kind=late_entry").await;
    assert_eq!(late_items.len(), 1, "{late_items:?}");
    assert_eq!(late_items[0]["case_id"], survivor.to_string());
    assert_eq!(late_items[0]["subject"], late.to_string());
    assert_eq!(late_items[0]["detail"]["reason"], "case_merged");
    // The late visit itself reached the survivor: its record, the visit log, the figures, and
    // 鈴木's replica of it.
    let (_, record) = call(&app, reqwest::Method::GET, &supervisor, &format!("/v1/cases/{survivor}"), None).await;
    assert!(record["case"]["activities"].as_object().unwrap().contains_key(&late.to_string()), "{record}");
    let (_, log) = call(&app, reqwest::Method::GET, &supervisor, "/v1/visits", None).await;
    let logged: Vec<&str> =
        log["visits"].as_array().unwrap().iter().map(|v| v["activity_id"].as_str().unwrap()).collect();
    assert_eq!(logged.len(), 3, "{logged:?}");
    assert!(logged.contains(&late.to_string().as_str()));
    suzuki.sync().await;
    assert!(suzuki.view(&survivor).activities.contains_key(&late), "the survivor on 鈴木's phone has it");
    // Carried once: another sync of the same devices copies nothing again.
    sato.sync().await;
    assert_eq!(sato.view(&survivor).activities.len(), 3);
}

/// A was merged into B, and B later into C, while a tablet still held A offline: its visit
/// lands in C, where A lives on.
async fn a_late_visit_on_a_case_merged_twice_over_reaches_the_last_survivor(backend: Backend) {
    let app = spawn_app(backend).await;
    let people = app.seed();
    let tablet_person = app.add_device(&people.counsellor, "佐藤 花子のタブレット");
    let mut phone = Phone::sign_in(&app.address, &people.counsellor).await;
    let (a, b, c) = (phone.open_case(), phone.open_case(), phone.open_case());
    phone.sync().await;
    let mut tablet = Phone::sign_in(&app.address, &tablet_person).await;
    tablet.sync().await;
    let late = tablet.log_visit(&a, 16, "再訪問。不在。");

    let supervisor = app.login(&people.supervisor).await.access_token;
    for (survivor, duplicate) in [(&b, &a), (&c, &b)] {
        let path = format!("/v1/cases/{survivor}/merge");
        let body = json!({"duplicate": duplicate.to_string()});
        let (status, merged) = call(&app, reqwest::Method::POST, &supervisor, &path, Some(body)).await;
        assert_eq!(status, 200, "{merged}");
    }
    // Merging a case already merged away is refused at once.
    let body = json!({"duplicate": a.to_string()});
    let (status, _) = call(&app, reqwest::Method::POST, &supervisor, &format!("/v1/cases/{c}/merge"), Some(body)).await;
    assert_eq!(status, 409);

    tablet.sync().await;
    let (status, record) = call(&app, reqwest::Method::GET, &supervisor, &format!("/v1/cases/{c}"), None).await;
    assert_eq!(status, 200, "{record}");
    assert!(record["case"]["activities"].as_object().unwrap().contains_key(&late.to_string()), "{record}");
    let items = open_items(&app, &supervisor, "kind=late_entry").await;
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0]["case_id"], c.to_string());
}
