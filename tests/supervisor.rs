//! The supervisors' API end to end over HTTP, on SQLite and PostgreSQL, with real phones:
//! the visit log and its paging, the case list and record, reviews and assignment written
//! through the API and arriving on phones, the CSV export, and the audit log.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use chrono::{FixedOffset, TimeZone};
use serde_json::{json, Value};
use tsunagi_sync::document::ActivityDetails;
use tsunagi_sync::domain::{
    CaseStatus, ConcernTag, ContactChannel, ContactOutcome, LetterItem, LetterPlace, Place, VisitOutcome,
};
use tsunagi_sync::ids::{ActivityId, CaseId};
use tsunagi_sync::ops::{NewActivity, NewPerson};
use tsunagi_sync::session::CaseEvent;
use tsunagi_sync::wire::PurgeReason;

use common::phone::Phone;
use common::{spawn_app, Backend, TestApp};

on_both_backends!(
    a_review_written_through_the_api_reaches_the_counsellors_phone,
    an_assignment_through_the_api_sends_the_case_to_one_phone_and_purges_it_from_another,
    visit_log_paging_returns_every_activity_once_while_new_ones_arrive,
    the_visit_log_filters_and_exports_csv_for_excel,
    the_case_list_filters_and_the_record_is_the_whole_case,
    reads_are_audited_and_administrators_list_the_audit_log_without_case_content,
    bad_requests_get_a_clear_400_and_change_nothing,
    forms_synced_from_the_field_are_read_in_the_record_and_a_case_closes_only_by_a_decision,
);

/// `2026-11-<day>` at `hour`:`minute` in Japan.
fn at(day: u32, hour: u32, minute: u32) -> chrono::DateTime<FixedOffset> {
    FixedOffset::east_opt(9 * 3600).unwrap().with_ymd_and_hms(2026, 11, day, hour, minute, 0).unwrap()
}

async fn call(app: &TestApp, method: reqwest::Method, token: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    app.call(method, token, path, body.as_ref()).await
}

async fn get(app: &TestApp, token: &str, path: &str) -> (u16, Value) {
    call(app, reqwest::Method::GET, token, path, None).await
}

async fn token(app: &TestApp, who: &common::Person) -> String {
    app.login(who).await.access_token
}

fn visit(at: chrono::DateTime<FixedOffset>, outcome: VisitOutcome, narrative: &str) -> NewActivity {
    NewActivity::new(
        at,
        Place::Home,
        ActivityDetails::Visit {
            outcome,
            met_person_ids: BTreeSet::new(),
            letter_left: outcome == VisitOutcome::NotHome,
        },
    )
    .with_narrative(narrative)
}

/// Logs a visit that met the case's subject (added first if the case has none).
fn log_met(phone: &mut Phone, case: &CaseId, when: chrono::DateTime<FixedOffset>, narrative: &str) -> ActivityId {
    let subject = match phone.view(case).subject() {
        Some(person) => person.id,
        None => {
            let mut person = NewPerson::new("対象 者");
            person.is_subject = true;
            phone.edit(case, |r| r.add_person(person)).unwrap()
        }
    };
    let details = ActivityDetails::Visit {
        outcome: VisitOutcome::Met,
        met_person_ids: BTreeSet::from([subject]),
        letter_left: false,
    };
    phone
        .edit(case, |r| r.log_activity(NewActivity::new(when, Place::Home, details).with_narrative(narrative)))
        .unwrap()
}

fn ids_of(page: &Value, list: &str, key: &str) -> Vec<String> {
    page[list].as_array().unwrap().iter().map(|r| r[key].as_str().unwrap().to_owned()).collect()
}

async fn a_review_written_through_the_api_reaches_the_counsellors_phone(backend: Backend) {
    let app = spawn_app(backend).await;
    let people = app.seed();
    let mut phone = Phone::sign_in(&app.address, &people.counsellor).await;
    let case = phone.open_case();
    let activity =
        phone.edit(&case, |r| r.log_activity(visit(at(4, 10, 0), VisitOutcome::NotHome, "不在。手紙を投函。")));
    let activity = activity.unwrap();
    phone.sync().await;
    // The supervisor's own tablet holds the case too.
    let mut tablet = Phone::sign_in(&app.address, &people.supervisor).await;
    tablet.sync().await;
    assert!(tablet.store.contains(&case));

    let supervisor = token(&app, &people.supervisor).await;
    let (status, unreviewed) = get(&app, &supervisor, "/v1/visits?reviewed=false").await;
    assert_eq!(status, 200, "{unreviewed}");
    assert_eq!(ids_of(&unreviewed, "visits", "activity_id"), vec![activity.to_string()]);

    let path = format!("/v1/cases/{case}/reviews");
    let body = json!({"activity_id": activity.to_string(), "comment": "次回は夕方に訪問を。"});
    let (status, created) = call(&app, reqwest::Method::POST, &supervisor, &path, Some(body)).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["activity_id"], activity.to_string());

    // The counsellor's phone receives it on its next sync, in the supervisor's name.
    phone.sync().await;
    let view = phone.view(&case);
    let reviews = view.reviews_of(&activity);
    assert_eq!(reviews.len(), 1);
    assert_eq!(reviews[0].by, people.supervisor.staff);
    assert_eq!(reviews[0].comment, "次回は夕方に訪問を。");
    assert_eq!(reviews[0].id.to_string(), created["review_id"].as_str().unwrap());
    // So does the supervisor's tablet: the server wrote the review on the supervisor's
    // behalf, the tablet did not, so it is sent there as well.
    tablet.sync().await;
    assert_eq!(tablet.view(&case).reviews_of(&activity).len(), 1);
    assert_eq!(tablet.heads(&case), phone.heads(&case));

    // The visit log now shows it reviewed.
    let (_, reviewed) = get(&app, &supervisor, "/v1/visits?reviewed=true").await;
    assert_eq!(ids_of(&reviewed, "visits", "activity_id"), vec![activity.to_string()]);
    let (_, unreviewed) = get(&app, &supervisor, "/v1/visits?reviewed=false").await;
    assert!(unreviewed["visits"].as_array().unwrap().is_empty());

    // Counsellors do not review; an unknown activity is a 400; nothing was written.
    let counsellor = token(&app, &people.counsellor).await;
    let body = json!({"activity_id": activity.to_string(), "comment": "x"});
    let (status, error) = call(&app, reqwest::Method::POST, &counsellor, &path, Some(body)).await;
    assert_eq!((status, error["code"].as_str()), (403, Some("forbidden")));
    let body = json!({"activity_id": ActivityId::new_random().to_string()});
    let (status, error) = call(&app, reqwest::Method::POST, &supervisor, &path, Some(body)).await;
    assert_eq!((status, error["code"].as_str()), (400, Some("invalid_request")), "{error}");
    phone.sync().await;
    assert_eq!(phone.view(&case).reviews.len(), 1);
}

async fn an_assignment_through_the_api_sends_the_case_to_one_phone_and_purges_it_from_another(backend: Backend) {
    let app = spawn_app(backend).await;
    let people = app.seed();
    let mut sato = Phone::sign_in(&app.address, &people.counsellor).await;
    let mut suzuki = Phone::sign_in(&app.address, &people.counsellor2).await;
    let case = sato.open_case();
    sato.sync().await;
    suzuki.sync().await;
    assert!(suzuki.store.case_ids().is_empty());

    let supervisor = token(&app, &people.supervisor).await;
    let path = format!("/v1/cases/{case}/assignees/{}", people.counsellor2.staff);
    let (status, answer) = call(&app, reqwest::Method::PUT, &supervisor, &path, Some(json!({"role": "primary"}))).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["primary"]["id"], people.counsellor2.staff.to_string());
    assert_eq!(answer["primary"]["name"], "鈴木 一郎");

    // Suzuki's phone receives the case; Sato, no longer assigned, finds it on the purge list.
    let report = suzuki.sync().await;
    assert!(report.events_of(&case).any(|e| matches!(e, CaseEvent::Assigned { .. })), "{report:?}");
    assert_eq!(suzuki.store.case_ids(), vec![case]);
    assert_eq!(suzuki.view(&case).assignees.primary, Some(people.counsellor2.staff));
    let report = sato.sync().await;
    assert!(
        report.events_of(&case).any(|e| matches!(e, CaseEvent::Purged { reason: PurgeReason::Unassigned })),
        "{report:?}"
    );
    assert!(sato.store.case_ids().is_empty());

    // Sato back as another assignee; the primary cannot be removed, only replaced.
    let path = format!("/v1/cases/{case}/assignees/{}", people.counsellor.staff);
    let (status, answer) = call(&app, reqwest::Method::PUT, &supervisor, &path, Some(json!({"role": "other"}))).await;
    assert_eq!(status, 200, "{answer}");
    sato.sync().await;
    assert_eq!(sato.store.case_ids(), vec![case]);
    let primary = format!("/v1/cases/{case}/assignees/{}", people.counsellor2.staff);
    let (status, error) = call(&app, reqwest::Method::DELETE, &supervisor, &primary, None).await;
    assert_eq!((status, error["code"].as_str()), (409, Some("conflict")), "{error}");
    let (status, _) = call(&app, reqwest::Method::DELETE, &supervisor, &path, None).await;
    assert_eq!(status, 200);
    sato.sync().await;
    assert!(sato.store.case_ids().is_empty());

    // Only counsellors and supervisors of the municipality are assigned; only supervisors assign.
    let tablet = format!("/v1/cases/{case}/assignees/{}", people.meeting_tablet.staff);
    let (status, error) = call(&app, reqwest::Method::PUT, &supervisor, &tablet, Some(json!({"role": "other"}))).await;
    assert_eq!((status, error["code"].as_str()), (400, Some("invalid_request")), "{error}");
    let counsellor = token(&app, &people.counsellor2).await;
    let (status, _) = call(&app, reqwest::Method::PUT, &counsellor, &path, Some(json!({"role": "other"}))).await;
    assert_eq!(status, 403);
    let random = format!("/v1/cases/{}/assignees/{}", CaseId::new_random(), people.counsellor.staff);
    let (status, error) = call(&app, reqwest::Method::PUT, &supervisor, &random, Some(json!({"role": "other"}))).await;
    assert_eq!((status, error["code"].as_str()), (404, Some("not_found")));
}

async fn visit_log_paging_returns_every_activity_once_while_new_ones_arrive(backend: Backend) {
    let app = spawn_app(backend).await;
    let people = app.seed();
    let mut phone = Phone::sign_in(&app.address, &people.counsellor).await;
    let cases = [phone.open_case(), phone.open_case()];
    let mut before = BTreeSet::new();
    for i in 0..24u32 {
        // Several activities share a start time, so the key must include the id.
        let when = at(1 + i / 6, 9 + (i % 3), 0);
        before.insert(log_met(&mut phone, &cases[(i % 2) as usize], when, "訪問").to_string());
    }
    phone.sync().await;

    let supervisor = token(&app, &people.supervisor).await;
    let mut seen: Vec<String> = Vec::new();
    let mut path = "/v1/visits?limit=5".to_owned();
    let mut pages = 0;
    loop {
        let (status, page) = get(&app, &supervisor, &path).await;
        assert_eq!(status, 200, "{page}");
        let rows = page["visits"].as_array().unwrap();
        // Newest first within the page.
        let times: Vec<&str> = rows.iter().map(|r| r["started_at"].as_str().unwrap()).collect();
        assert!(times.windows(2).all(|w| w[0] >= w[1]), "{times:?}");
        seen.extend(ids_of(&page, "visits", "activity_id"));
        pages += 1;
        // Between pages, new activities arrive: newer than everything, as old as the page's
        // last row, and older than everything.
        let late = [at(30, 18, 0), at(3, 10, 0), at(1, 8, 0)];
        let when = late[pages % 3];
        phone.edit(&cases[0], |r| r.log_activity(visit(when, VisitOutcome::NotHome, "追加"))).unwrap();
        phone.sync().await;
        match page["next"].as_str() {
            Some(next) => path = format!("/v1/visits?limit=5&after={next}"),
            None => break,
        }
        assert!(pages < 50, "paging does not end");
    }
    let unique: BTreeSet<String> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "no activity appears twice");
    assert!(
        before.is_subset(&unique),
        "every activity present before paging began appears: missing {:?}",
        before.difference(&unique).collect::<Vec<_>>()
    );
}

async fn the_visit_log_filters_and_exports_csv_for_excel(backend: Backend) {
    let app = spawn_app(backend).await;
    let people = app.seed();
    let mut sato = Phone::sign_in(&app.address, &people.counsellor).await;
    let mut suzuki = Phone::sign_in(&app.address, &people.counsellor2).await;
    let case = sato.open_case();
    let other = suzuki.open_case();
    let met = log_met(&mut sato, &case, at(4, 10, 0), "本人と面談。");
    let not_home =
        sato.edit(&case, |r| r.log_activity(visit(at(5, 10, 0), VisitOutcome::NotHome, "不在, \"再訪\"予定"))).unwrap();
    let letter = sato
        .edit(&case, |r| {
            r.log_activity(NewActivity::new(
                at(6, 9, 30),
                Place::Home,
                ActivityDetails::LetterLeft {
                    items: [LetterItem::Letter].into(),
                    left_at: LetterPlace::Mailbox,
                    reply_received_on: None,
                },
            ))
        })
        .unwrap();
    let voided = sato.edit(&case, |r| r.log_activity(visit(at(7, 10, 0), VisitOutcome::Refused, "誤入力"))).unwrap();
    sato.edit(&case, |r| r.void_activity(voided, "別の世帯の記録", at(7, 11, 0))).unwrap();
    let call_ = suzuki
        .edit(&other, |r| {
            r.log_activity(NewActivity::new(
                at(8, 14, 0),
                Place::Phone,
                ActivityDetails::ContactAttempt { channel: ContactChannel::Phone, outcome: ContactOutcome::NoAnswer },
            ))
        })
        .unwrap();
    sato.sync().await;
    suzuki.sync().await;

    let supervisor = token(&app, &people.supervisor).await;
    let ids = |page: &Value| ids_of(page, "visits", "activity_id");
    let s = |a: &ActivityId| a.to_string();
    let (_, all) = get(&app, &supervisor, "/v1/visits").await;
    assert_eq!(ids(&all), vec![s(&call_), s(&voided), s(&letter), s(&not_home), s(&met)]);
    let row = &all["visits"][3];
    assert_eq!(row["kind"], json!({"key": "visit", "label": "家庭訪問"}));
    assert_eq!(row["outcome"], json!({"key": "not_home", "label": "不在"}));
    assert_eq!(row["recorded_by"]["name"], "佐藤 花子");
    assert_eq!(row["date"], "2026-11-05");
    assert_eq!(row["letter_left"], true);
    assert!(row["case_number"].as_str().unwrap().ends_with("-0001"));

    let cases_filters = [
        (format!("/v1/visits?counsellor={}", people.counsellor2.staff), vec![s(&call_)]),
        (format!("/v1/visits?case={other}"), vec![s(&call_)]),
        ("/v1/visits?kind=letter_left".to_owned(), vec![s(&letter)]),
        ("/v1/visits?outcome=met".to_owned(), vec![s(&met)]),
        ("/v1/visits?outcome=no_answer".to_owned(), vec![s(&call_)]),
        ("/v1/visits?from=2026-11-05&to=2026-11-06".to_owned(), vec![s(&letter), s(&not_home)]),
        ("/v1/visits?voided=true".to_owned(), vec![s(&voided)]),
        ("/v1/visits?voided=false&kind=visit".to_owned(), vec![s(&not_home), s(&met)]),
    ];
    for (path, expected) in cases_filters {
        let (status, page) = get(&app, &supervisor, &path).await;
        assert_eq!(status, 200, "{path}: {page}");
        assert_eq!(ids(&page), expected, "{path}");
    }

    // A counsellor sees the visit log of their own cases only.
    let counsellor = token(&app, &people.counsellor).await;
    let (_, own) = get(&app, &counsellor, "/v1/visits").await;
    assert_eq!(ids(&own), vec![s(&voided), s(&letter), s(&not_home), s(&met)]);

    // CSV: UTF-8 with a BOM, a heading with the fiscal year's Reiwa label, Japanese headings.
    let response = app
        .http
        .get(app.url("/v1/visits.csv?from=2026-11-01&to=2026-11-30&voided=false"))
        .bearer_auth(&supervisor)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()["content-type"], "text/csv; charset=utf-8");
    let bytes = response.bytes().await.unwrap();
    assert_eq!(&bytes[..3], b"\xEF\xBB\xBF", "starts with the byte-order mark");
    let text = std::str::from_utf8(&bytes[3..]).unwrap();
    let lines: Vec<&str> = text.split("\r\n").collect();
    assert_eq!(lines[0], "令和8年度 活動記録 (2026-11-01〜2026-11-30)");
    assert_eq!(
        lines[1],
        "受付番号,日付,開始時刻,種別,結果,置き手紙,連絡手段,関係機関,場所,記録者,次回予定,確認済み,無効,経過記録"
    );
    assert_eq!(lines.len(), 2 + 4 + 1, "{text}");
    assert!(lines[2].contains(",2026-11-08,14:00,連絡・接触,応答なし,,電話,"), "{}", lines[2]);
    assert!(lines[4].ends_with(",家庭訪問,不在,○,,,自宅,佐藤 花子,,,,\"不在, \"\"再訪\"\"予定\""), "{}", lines[4]);
    let (status, error) = get(&app, &supervisor, "/v1/visits.csv?from=2026-11-01").await;
    assert_eq!((status, error["code"].as_str()), (400, Some("invalid_request")));
}

async fn the_case_list_filters_and_the_record_is_the_whole_case(backend: Backend) {
    let app = spawn_app(backend).await;
    let people = app.seed();
    let mut phone = Phone::sign_in(&app.address, &people.counsellor).await;
    let quiet = phone.open_case();
    let busy = phone.open_case();
    let mut mother = NewPerson::new("山田 花子");
    mother.kana = Some("やまだ はなこ".into());
    mother.is_subject = true;
    mother.concerns = vec![ConcernTag::Poverty];
    let mut son = NewPerson::new("山田 太郎");
    son.concerns = vec![ConcernTag::YoungCarer];
    phone.edit(&busy, |r| r.add_person(mother)).unwrap();
    phone.edit(&busy, |r| r.add_person(son)).unwrap();
    phone.edit(&busy, |r| r.set_status(CaseStatus::Outreach)).unwrap();
    let today = chrono::Utc::now().with_timezone(&FixedOffset::east_opt(9 * 3600).unwrap());
    log_met(&mut phone, &busy, today, "面談");
    phone.sync().await;

    let supervisor = token(&app, &people.supervisor).await;
    let (status, all) = get(&app, &supervisor, "/v1/cases").await;
    assert_eq!(status, 200, "{all}");
    let numbers: Vec<&str> =
        all["cases"].as_array().unwrap().iter().map(|c| c["case_number"].as_str().unwrap()).collect();
    assert_eq!(numbers.len(), 2);
    assert!(numbers[0] > numbers[1], "newest case number first: {numbers:?}");
    let case_ids = |page: &Value| ids_of(page, "cases", "case_id");
    let (_, outreach) = get(&app, &supervisor, "/v1/cases?status=outreach").await;
    assert_eq!(case_ids(&outreach), vec![busy.to_string()]);
    let summary = &outreach["cases"][0];
    assert_eq!(summary["status"], json!({"key": "outreach", "label": "関係性構築"}));
    assert_eq!(summary["subject"], json!({"name": "山田 花子", "kana": "やまだ はなこ"}));
    assert_eq!(summary["primary_assignee"]["name"], "佐藤 花子");
    assert_eq!(summary["days_without_contact"], 0);
    let concerns: BTreeSet<&str> =
        summary["concerns"].as_array().unwrap().iter().map(|c| c["key"].as_str().unwrap()).collect();
    assert_eq!(concerns, BTreeSet::from(["poverty", "young_carer"]));
    let (_, carers) = get(&app, &supervisor, "/v1/cases?concern=young_carer").await;
    assert_eq!(case_ids(&carers), vec![busy.to_string()]);
    let (_, silent) = get(&app, &supervisor, "/v1/cases?no_contact_days=30").await;
    assert_eq!(case_ids(&silent), vec![quiet.to_string()]);
    let (_, mine) = get(&app, &supervisor, &format!("/v1/cases?assignee={}", people.counsellor.staff)).await;
    assert_eq!(case_ids(&mine).len(), 2);
    let (_, none) = get(&app, &supervisor, &format!("/v1/cases?assignee={}", people.counsellor2.staff)).await;
    assert!(case_ids(&none).is_empty());
    let (_, first) = get(&app, &supervisor, "/v1/cases?limit=1").await;
    let next = first["next"].as_str().unwrap();
    let (_, second) = get(&app, &supervisor, &format!("/v1/cases?limit=1&after={next}")).await;
    assert_eq!(second["next"], Value::Null);
    let mut both = case_ids(&first);
    both.extend(case_ids(&second));
    assert_eq!(both.iter().collect::<BTreeSet<_>>().len(), 2);

    // The record is the whole case, with the names of the staff it mentions.
    let (status, record) = get(&app, &supervisor, &format!("/v1/cases/{busy}")).await;
    assert_eq!(status, 200, "{record}");
    assert_eq!(record["case"]["case_id"], busy.to_string());
    assert_eq!(record["case"]["household"].as_object().unwrap().len(), 2);
    assert_eq!(record["case"]["activities"].as_object().unwrap().len(), 1);
    assert_eq!(record["staff"][people.counsellor.staff.to_string()], "佐藤 花子");
    for key in ["reviews", "conflicts", "assignees", "consent"] {
        assert!(record["case"].get(key).is_some(), "the record has {key}");
    }

    // Someone who may not see it, and a case that does not exist: the same 404.
    let other = token(&app, &people.counsellor2).await;
    let (status_a, a) = get(&app, &other, &format!("/v1/cases/{busy}")).await;
    let (status_b, b) = get(&app, &supervisor, &format!("/v1/cases/{}", CaseId::new_random())).await;
    assert_eq!((status_a, status_b), (404, 404));
    assert_eq!(a, b);
    let (_, theirs) = get(&app, &other, "/v1/cases").await;
    assert!(case_ids(&theirs).is_empty());
}

async fn reads_are_audited_and_administrators_list_the_audit_log_without_case_content(backend: Backend) {
    let app = spawn_app(backend).await;
    let people = app.seed();
    let mut phone = Phone::sign_in(&app.address, &people.counsellor).await;
    let case = phone.open_case();
    log_met(&mut phone, &case, at(4, 10, 0), "秘密の経過記録");
    phone.sync().await;
    let supervisor = token(&app, &people.supervisor).await;
    assert_eq!(get(&app, &supervisor, &format!("/v1/cases/{case}")).await.0, 200);
    assert_eq!(get(&app, &supervisor, "/v1/visits").await.0, 200);

    let admin = token(&app, &people.administrator).await;
    // Administrators read no case content.
    for path in [format!("/v1/cases/{case}"), "/v1/cases".to_owned(), "/v1/visits".to_owned()] {
        let (status, error) = get(&app, &admin, &path).await;
        assert_eq!((status, error["code"].as_str()), (403, Some("forbidden")), "{path}");
    }
    let (status, log) = get(&app, &admin, &format!("/v1/audit?staff={}&case={case}", people.supervisor.staff)).await;
    assert_eq!(status, 200, "{log}");
    let actions: Vec<&str> = log["entries"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, vec!["visits.read", "case.read"], "newest first");
    let entry = &log["entries"][1];
    assert_eq!(entry["case_id"], case.to_string());
    assert_eq!(entry["device_id"], people.supervisor.device.to_string());
    assert!(!log.to_string().contains("秘密"), "the audit log holds no case content");
    let (_, uploads) = get(&app, &admin, &format!("/v1/audit?case={case}&action=sync.upload")).await;
    assert_eq!(uploads["entries"].as_array().unwrap().len(), 1);
    let (_, paged) = get(&app, &admin, "/v1/audit?limit=1").await;
    assert!(paged["next"].is_string());
    // Only administrators list it.
    assert_eq!(get(&app, &supervisor, "/v1/audit").await.0, 403);
}

async fn bad_requests_get_a_clear_400_and_change_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let people = app.seed();
    let supervisor = token(&app, &people.supervisor).await;
    let bad: BTreeMap<&str, &str> = BTreeMap::from([
        ("/v1/visits?kind=picnic", "kind"),
        ("/v1/visits?from=2026-13-01", "from"),
        ("/v1/visits?from=2026-11-05&to=2026-11-01", "from"),
        ("/v1/visits?limit=0", "limit"),
        ("/v1/visits?after=garbage", "after"),
        ("/v1/visits?reviewed=maybe", "reviewed"),
        ("/v1/cases?status=happy", "status"),
        ("/v1/cases?no_contact_days=-1", "no_contact_days"),
        ("/v1/cases?assignee=sato", "assignee"),
    ]);
    for (path, field) in bad {
        let (status, error) = get(&app, &supervisor, path).await;
        assert_eq!((status, error["code"].as_str()), (400, Some("invalid_request")), "{path}: {error}");
        assert!(error["message"].as_str().unwrap().starts_with(field), "{path}: {error}");
    }
    let case = CaseId::new_random();
    let (status, error) =
        call(&app, reqwest::Method::POST, &supervisor, &format!("/v1/cases/{case}/reviews"), Some(json!({"nope": 1})))
            .await;
    assert_eq!((status, error["code"].as_str()), (400, Some("invalid_request")), "{error}");
    let (status, _) = get(&app, "not-a-token", "/v1/cases").await;
    assert_eq!(status, 401);
}

/// Form 1 and form 2 from a counsellor's phone, form 2-2 from a supervisor's tablet, read back
/// through the API; closing without a decision to close is refused by the server.
async fn forms_synced_from_the_field_are_read_in_the_record_and_a_case_closes_only_by_a_decision(backend: Backend) {
    use tsunagi_sync::domain::{ObservedChange, PlanVerdict};
    use tsunagi_sync::ops::{NewDecision, NewEvaluation, NewPlan, NewPlanAction};
    use tsunagi_sync::session::CaseEvent;
    let app = spawn_app(backend).await;
    let people = app.seed();
    let mut phone = Phone::sign_in(&app.address, &people.counsellor).await;
    let case = phone.open_case();
    let day = |d: u32| chrono::NaiveDate::from_ymd_opt(2026, 11, d).unwrap();
    let plan = phone
        .edit(&case, |r| r.add_plan(NewPlan::new(1, day(5)).with_issues("長男の登校").with_goals("週3日の登校")))
        .unwrap();
    phone
        .edit(&case, |r| r.add_plan_action(plan, NewPlanAction::new("学校", "登校状況の共有").with_frequency("週1回")))
        .unwrap();
    phone
        .edit(&case, |r| {
            r.add_evaluation(
                NewEvaluation::new(1, day(20))
                    .with_goal_attainment("週2日登校")
                    .with_change(ObservedChange::RelationshipsImproved),
            )
        })
        .unwrap();
    phone.sync().await;

    // The supervisor's tablet tries to close the case without a decision: refused.
    let mut tablet = Phone::sign_in(&app.address, &people.supervisor).await;
    tablet.sync().await;
    tablet.tamper(&case, |doc| {
        use automerge::transaction::Transactable;
        doc.put(automerge::ROOT, "status", "closed").unwrap();
    });
    let report = tablet.sync().await;
    let refused = report.events_of(&case).find_map(|e| match e {
        CaseEvent::Refused { error, .. } => Some(error.violations.iter().map(|v| v.code.as_str()).collect::<Vec<_>>()),
        _ => None,
    });
    assert_eq!(refused, Some(vec!["closing_without_decision"]), "{report:?}");

    // With the meeting's decision to close (referred on to ハローワーク), it closes.
    tablet
        .edit(&case, |r| {
            r.record_decision(
                NewDecision::new(day(25), PlanVerdict::Close).decided(day(25)).referred_to(["hello_work"]),
            )
        })
        .unwrap();
    tablet.edit(&case, |r| r.set_status(CaseStatus::Closed)).unwrap();
    tablet.sync().await;

    let supervisor = token(&app, &people.supervisor).await;
    let (status, record) = get(&app, &supervisor, &format!("/v1/cases/{case}")).await;
    assert_eq!(status, 200, "{record}");
    let case_json = &record["case"];
    assert_eq!(case_json["status"], "closed");
    let plan_json = &case_json["plans"][plan.to_string()];
    assert_eq!(plan_json["goals"], "週3日の登校", "{plan_json}");
    assert_eq!(plan_json["actions"].as_object().unwrap().len(), 1, "{plan_json}");
    let evaluations = case_json["evaluations"].as_object().unwrap();
    assert_eq!(evaluations.len(), 1);
    let decisions = case_json["decisions"].as_object().unwrap();
    assert_eq!(decisions.len(), 1);
    let decision = decisions.values().next().unwrap();
    assert_eq!(decision["verdict"], "close", "{decision}");
    assert_eq!(record["staff"][people.supervisor.staff.to_string()], "高橋 恵");
    // The counsellor's phone receives the decision and the closing.
    phone.sync().await;
    let view = phone.view(&case);
    assert_eq!((view.status, view.decisions.len()), (CaseStatus::Closed, 1));
}
