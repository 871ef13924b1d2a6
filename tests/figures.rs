//! Monthly figures end to end (`GET /v1/figures/{fiscal_year}` and its `.csv`), over real
//! HTTP, on SQLite and on PostgreSQL: counsellors' phones log a fixture of consultations,
//! visits, letters and contact attempts across April and May 2024 (令和6年度) and sync, and a
//! supervisor's phone records meeting decisions that refer people on; a supervisor reads the
//! table, and every cell is checked against numbers computed by hand.

// The field operations return the library's `OpError`, whatever its size; the tests only
// pass it through.
#![allow(clippy::result_large_err)]

mod common;

use std::collections::BTreeSet;

use chrono::{DateTime, FixedOffset, NaiveDate};
use diesel::prelude::*;
use serde_json::{json, Value};
use tsunagi_server::store::{schema, StoreError};
use tsunagi_sync::document::ActivityDetails;
use tsunagi_sync::domain::catalogue::Catalogue;
use tsunagi_sync::domain::{
    ConsultationMode, ConsultationTopic, ContactChannel, ContactOutcome, LetterItem, LetterPlace, Place, PlanVerdict,
    VisitOutcome,
};
use tsunagi_sync::ids::{ActivityId, CaseId, PersonId};
use tsunagi_sync::ops::{CaseReplica, NewActivity, NewCase, NewDecision, NewPerson};

use common::phone::{self, Phone};
use common::{error_of, spawn_app, Backend, TestApp};

on_both_backends!(
    every_cell_of_a_fixture_month_is_counted,
    the_csv_has_a_bom_a_heading_and_japanese_headers,
    only_supervisors_read_figures_and_the_year_must_be_valid,
    referrals_of_meeting_decisions_count_in_the_month_decided,
);

/// An instant, RFC 3339.
fn at(s: &str) -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339(s).expect("an RFC 3339 instant")
}

/// Opens a case on `phone` offline, with `name` as its subject; returns the case and the
/// subject.
fn open_case(phone: &mut Phone, name: &str) -> (CaseId, PersonId) {
    let mut subject = NewPerson::new(name);
    subject.is_subject = true;
    let person = subject.id;
    let mut new = NewCase::new(phone::municipality(), NaiveDate::from_ymd_opt(2024, 3, 1).unwrap());
    new.household.push(subject);
    let mut replica = CaseReplica::open(new, phone.actor()).expect("the case opens");
    let case = replica.case_id().unwrap();
    phone.store.save_doc(&case, replica.doc_mut()).expect("the case is saved");
    (case, person)
}

fn log(phone: &mut Phone, case: &CaseId, when: &str, place: Place, details: ActivityDetails) -> ActivityId {
    let activity = NewActivity::new(at(when), place, details);
    phone.edit(case, |r| r.log_activity(activity)).expect("the activity is logged")
}

fn consultation(phone: &mut Phone, case: &CaseId, when: &str, topics: &[ConsultationTopic]) -> ActivityId {
    let topics: BTreeSet<ConsultationTopic> = topics.iter().copied().collect();
    log(phone, case, when, Place::Office, ActivityDetails::Consultation { mode: ConsultationMode::InPerson, topics })
}

fn visit(phone: &mut Phone, case: &CaseId, when: &str, met: Option<PersonId>, outcome: VisitOutcome, letter: bool) {
    let details = ActivityDetails::Visit { outcome, met_person_ids: met.into_iter().collect(), letter_left: letter };
    log(phone, case, when, Place::Home, details);
}

fn letter(phone: &mut Phone, case: &CaseId, when: &str) {
    let details = ActivityDetails::LetterLeft {
        items: [LetterItem::Letter, LetterItem::Leaflet].into_iter().collect(),
        left_at: LetterPlace::Mailbox,
        reply_received_on: None,
    };
    log(phone, case, when, Place::Home, details);
}

fn contact(
    phone: &mut Phone,
    case: &CaseId,
    when: &str,
    channel: ContactChannel,
    outcome: ContactOutcome,
) -> ActivityId {
    log(phone, case, when, Place::Phone, ActivityDetails::ContactAttempt { channel, outcome })
}

fn void(phone: &mut Phone, case: &CaseId, activity: ActivityId) {
    phone
        .edit(case, |r| r.void_activity(activity, "別のケースに記録した", at("2024-06-01T09:00:00+09:00")))
        .expect("voided");
}

/// The cases of the fixture.
struct Fixture {
    /// 花子: new in April, continuing in May.
    hanako: CaseId,
    /// 健一: new in May (a voided consultation in April does not count).
    kenichi: CaseId,
}

/// Two counsellors log the fixture on their phones and sync.
///
/// | case | activity | Japan time | counts in |
/// | --- | --- | --- | --- |
/// | 花子 | consultation: finances, debt, housing | 2024-04-01 01:00 (2024-03-31 UTC) | April |
/// | 花子 | consultation: debt | 04-15 | April |
/// | 花子 | consultation: employment | 05-10 | May |
/// | 花子 | visit, met | 04-02 | April |
/// | 花子 | visit, not home, letter left | 04-09 | April |
/// | 花子 | visit, not home, no letter | 05-07 | May |
/// | 花子 | letter left | 04-10 | April |
/// | 花子 | contact attempt (phone, no answer) | 04-11 | April |
/// | 花子 | contact attempt, **voided** | 05-20 | — |
/// | 健一 | consultation: health, **voided** | 04-20 | — |
/// | 健一 | consultation: elderly care | 2024-05-01 00:30 (04-30 UTC) | May |
/// | 健一 | visit, met, letter left | 05-14 | May |
/// | 健一 | visit, refused | 05-21 | May |
/// | 健一 | letter left | 05-22 | May |
/// | 健一 | contact attempt (SNS, reached) | 05-23 | May |
/// | 誠 | consultation: withdrawal | 2024-03-15 | March of fiscal 2023 |
/// | 誠 | consultation: withdrawal, mental health | 04-25 | April (continuing) |
/// | 誠 | visit, met, letter left | 2024-03-31 23:00 | March of fiscal 2023 |
/// | 誠 | consultation: legal | 2025-04-01 00:10 (03-31 UTC) | April of fiscal 2025 |
async fn log_the_fixture(app: &TestApp, people: &common::Seed) -> Fixture {
    use ConsultationTopic::*;
    let mut sato = Phone::sign_in(&app.address, &people.counsellor).await;
    let mut suzuki = Phone::sign_in(&app.address, &people.counsellor2).await;

    let (hanako, hanako_self) = open_case(&mut sato, "山田 花子");
    consultation(&mut sato, &hanako, "2024-03-31T16:00:00Z", &[Finances, Debt, Housing]);
    consultation(&mut sato, &hanako, "2024-04-15T10:00:00+09:00", &[Debt]);
    consultation(&mut sato, &hanako, "2024-05-10T14:00:00+09:00", &[Employment]);
    visit(&mut sato, &hanako, "2024-04-02T10:00:00+09:00", Some(hanako_self), VisitOutcome::Met, false);
    visit(&mut sato, &hanako, "2024-04-09T10:00:00+09:00", None, VisitOutcome::NotHome, true);
    visit(&mut sato, &hanako, "2024-05-07T10:00:00+09:00", None, VisitOutcome::NotHome, false);
    letter(&mut sato, &hanako, "2024-04-10T17:00:00+09:00");
    contact(&mut sato, &hanako, "2024-04-11T09:00:00+09:00", ContactChannel::Phone, ContactOutcome::NoAnswer);
    let wrong =
        contact(&mut sato, &hanako, "2024-05-20T09:00:00+09:00", ContactChannel::Phone, ContactOutcome::Reached);
    void(&mut sato, &hanako, wrong);

    let (makoto, makoto_self) = open_case(&mut sato, "佐々木 誠");
    consultation(&mut sato, &makoto, "2024-03-15T10:00:00+09:00", &[Withdrawal]);
    consultation(&mut sato, &makoto, "2024-04-25T10:00:00+09:00", &[Withdrawal, MentalHealth]);
    visit(&mut sato, &makoto, "2024-03-31T23:00:00+09:00", Some(makoto_self), VisitOutcome::Met, true);
    consultation(&mut sato, &makoto, "2025-04-01T00:10:00+09:00", &[Legal]);

    let (kenichi, kenichi_self) = open_case(&mut suzuki, "高橋 健一");
    let wrong = consultation(&mut suzuki, &kenichi, "2024-04-20T10:00:00+09:00", &[Health]);
    void(&mut suzuki, &kenichi, wrong);
    consultation(&mut suzuki, &kenichi, "2024-05-01T00:30:00+09:00", &[ElderlyCare]);
    visit(&mut suzuki, &kenichi, "2024-05-14T10:00:00+09:00", Some(kenichi_self), VisitOutcome::Met, true);
    visit(&mut suzuki, &kenichi, "2024-05-21T10:00:00+09:00", None, VisitOutcome::Refused, false);
    letter(&mut suzuki, &kenichi, "2024-05-22T18:00:00+09:00");
    contact(&mut suzuki, &kenichi, "2024-05-23T20:00:00+09:00", ContactChannel::Sns, ContactOutcome::Reached);

    for phone in [&mut sato, &mut suzuki] {
        let report = phone.sync().await;
        assert!(report.uploaded() > 0 && report.refusals().next().is_none(), "{report:?}");
        assert!(!report.sync_again(), "{report:?}");
    }
    Fixture { hanako, kenichi }
}

async fn get_json(app: &TestApp, path: &str, token: &str) -> Value {
    let response = app.get_with_token(path, token).await;
    let status = response.status();
    let body = response.text().await.expect("a body");
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).expect("JSON")
}

/// Twelve months from `(month index, n)` pairs (0 = April).
fn months(cells: &[(usize, i64)]) -> Value {
    let mut all = [0i64; 12];
    for (i, n) in cells {
        all[*i] = *n;
    }
    json!(all)
}

/// Checks one row of counts: its key, label, twelve cells and total.
fn check_row(row: &Value, key: &str, label: &str, cells: &[(usize, i64)]) {
    assert_eq!(row["key"], key, "{row}");
    assert_eq!(row["label"], label, "{key}");
    assert_eq!(row["months"], months(cells), "{key}");
    let total: i64 = cells.iter().map(|(_, n)| n).sum();
    assert_eq!(row["total"], total, "{key}");
}

/// How many audit rows `figures.read` the supervisor has.
fn figures_reads(app: &TestApp) -> Vec<(Option<String>, String)> {
    app.db
        .read(|c| -> Result<_, StoreError> {
            use schema::audit_log;
            Ok(audit_log::table
                .filter(audit_log::action.eq("figures.read"))
                .order(audit_log::id)
                .select((audit_log::staff_id, audit_log::detail))
                .load(c)?)
        })
        .unwrap()
}

async fn every_cell_of_a_fixture_month_is_counted(backend: Backend) {
    use ConsultationTopic::*;
    let app = spawn_app(backend).await;
    let people = app.seed();
    log_the_fixture(&app, &people).await;
    let token = app.login(&people.supervisor).await.access_token;

    let f = get_json(&app, "/v1/figures/2024", &token).await;
    assert_eq!(f["fiscal_year"], 2024);
    assert_eq!(f["fiscal_year_label"], "令和6年度");
    assert_eq!(f["municipality"], common::MUNICIPALITY);
    let month_keys: Vec<&str> = f["months"].as_array().unwrap().iter().map(|m| m["key"].as_str().unwrap()).collect();
    assert_eq!(
        month_keys,
        [
            "2024-04", "2024-05", "2024-06", "2024-07", "2024-08", "2024-09", "2024-10", "2024-11", "2024-12",
            "2025-01", "2025-02", "2025-03"
        ]
    );
    assert_eq!(f["months"][0]["label"], "2024年4月");
    assert_eq!(f["months"][11]["label"], "2025年3月");

    // 相談件数: April 花子 ×2 + 誠; May 花子 + 健一. New: 花子 in April, 健一 in May.
    let c = &f["consultations"];
    check_row(&c["consultations"], "consultations", "相談件数(延べ)", &[(0, 3), (1, 2)]);
    check_row(&c["new_persons"], "new_persons", "新規相談者", &[(0, 1), (1, 1)]);
    check_row(&c["continuing_persons"], "continuing_persons", "継続相談者", &[(0, 1), (1, 1)]);
    check_row(&c["persons"], "persons", "相談者計", &[(0, 2), (1, 2)]);

    // 内容別: April finances, debt ×2, housing, withdrawal, mental health; May employment,
    // elderly care. The voided consultation's health topic does not count.
    let t = &f["topics"];
    let expected: &[(ConsultationTopic, &[(usize, i64)])] = &[
        (Finances, &[(0, 1)]),
        (Debt, &[(0, 2)]),
        (Housing, &[(0, 1)]),
        (Withdrawal, &[(0, 1)]),
        (MentalHealth, &[(0, 1)]),
        (Employment, &[(1, 1)]),
        (ElderlyCare, &[(1, 1)]),
    ];
    let by_topic = t["by_topic"].as_array().unwrap();
    assert_eq!(by_topic.len(), ConsultationTopic::ALL.len());
    for (row, topic) in by_topic.iter().zip(ConsultationTopic::ALL) {
        let cells = expected.iter().find(|(t, _)| t == topic).map(|(_, c)| *c).unwrap_or(&[]);
        check_row(row, topic.as_key(), topic.label(), cells);
    }
    check_row(&t["total"], "topic_total", "内容別相談件数計", &[(0, 6), (1, 2)]);
    check_row(&t["difference"], "difference", "差(内容別相談件数計−相談件数)", &[(0, 3)]);
    check_row(&t["difference_from_persons"], "difference_from_persons", "差(内容別相談件数計−相談者計)", &[(0, 4)]);

    // つないだ件数: no meeting decision in this fixture.
    let catalogue = Catalogue::default();
    let by_destination = f["referrals"]["by_destination"].as_array().unwrap();
    assert_eq!(by_destination.len(), catalogue.referral_destinations.len());
    for (row, entry) in by_destination.iter().zip(&catalogue.referral_destinations) {
        check_row(row, &entry.key, &entry.label, &[]);
    }
    check_row(&f["referrals"]["total"], "referral_total", "つないだ件数計", &[]);

    // アウトリーチ: April visits 花子 ×2 (one met, one with a letter), letters: that visit +
    // 花子's letter; May visits 花子, 健一 ×2 (one met with a letter), letters: that visit +
    // 健一's letter. Contact attempts: 花子 in April, 健一 in May (花子's in May is voided).
    let o = &f["outreach"];
    check_row(&o["visits"], "visits", "家庭訪問", &[(0, 2), (1, 3)]);
    check_row(&o["letters_left"], "letters_left", "置き手紙", &[(0, 2), (1, 2)]);
    check_row(&o["contact_attempts"], "contact_attempts", "連絡・接触", &[(0, 1), (1, 1)]);
    check_row(&o["visits_met"], "visits_met", "家庭訪問(会えた)", &[(0, 1), (1, 1)]);
    let share = &o["met_share"];
    assert_eq!(share["key"], "met_share");
    assert_eq!(share["label"], "家庭訪問で会えた割合(%)");
    assert_eq!(share["months"], json!([50.0, 33.3, null, null, null, null, null, null, null, null, null, null]));
    assert_eq!(share["total"], json!(40.0));

    // The years either side: 誠's March 2024 consultation and visit (Japan time) belong to
    // fiscal 2023, where he is new; 花子's first consultation, on 31 March in UTC, does not.
    let before = get_json(&app, "/v1/figures/2023", &token).await;
    assert_eq!(before["fiscal_year_label"], "令和5年度");
    check_row(&before["consultations"]["consultations"], "consultations", "相談件数(延べ)", &[(11, 1)]);
    check_row(&before["consultations"]["new_persons"], "new_persons", "新規相談者", &[(11, 1)]);
    check_row(&before["outreach"]["visits_met"], "visits_met", "家庭訪問(会えた)", &[(11, 1)]);
    check_row(&before["outreach"]["letters_left"], "letters_left", "置き手紙", &[(11, 1)]);
    let after = get_json(&app, "/v1/figures/2025", &token).await;
    check_row(&after["consultations"]["consultations"], "consultations", "相談件数(延べ)", &[(0, 1)]);
    check_row(&after["consultations"]["continuing_persons"], "continuing_persons", "継続相談者", &[(0, 1)]);
    check_row(&after["consultations"]["new_persons"], "new_persons", "新規相談者", &[]);

    // Each read is audited, without content.
    let supervisor = Some(people.supervisor.staff.to_string());
    assert_eq!(
        figures_reads(&app),
        vec![
            (supervisor.clone(), "fiscal_year=2024 format=json".to_owned()),
            (supervisor.clone(), "fiscal_year=2023 format=json".to_owned()),
            (supervisor, "fiscal_year=2025 format=json".to_owned()),
        ]
    );
}

async fn the_csv_has_a_bom_a_heading_and_japanese_headers(backend: Backend) {
    let app = spawn_app(backend).await;
    let people = app.seed();
    log_the_fixture(&app, &people).await;
    let token = app.login(&people.supervisor).await.access_token;

    let response = app.get_with_token("/v1/figures/2024.csv", &token).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/csv; charset=utf-8");
    let disposition = response.headers()["content-disposition"].to_str().unwrap().to_owned();
    assert!(disposition.contains("figures-2024.csv"), "{disposition}");
    let bytes = response.bytes().await.unwrap();
    assert_eq!(&bytes[..3], b"\xEF\xBB\xBF", "UTF-8 with a byte-order mark");
    let text = std::str::from_utf8(&bytes[3..]).expect("UTF-8");
    assert!(text.ends_with("\r\n"));
    let lines: Vec<&str> = text.split("\r\n").collect();
    assert_eq!(lines[0], "令和6年度 (2024年4月〜2025年3月) 月別集計");
    assert_eq!(
        lines[1],
        "区分,項目,2024年4月,2024年5月,2024年6月,2024年7月,2024年8月,2024年9月,2024年10月,2024年11月,\
         2024年12月,2025年1月,2025年2月,2025年3月,合計"
    );
    let zeros = ",0,0,0,0,0,0,0,0,0,0";
    for expected in [
        format!("相談件数,相談件数(延べ),3,2{zeros},5"),
        format!("相談件数,新規相談者,1,1{zeros},2"),
        format!("相談件数,継続相談者,1,1{zeros},2"),
        format!("相談件数,相談者計,2,2{zeros},4"),
        format!("内容別相談件数,債務,2,0{zeros},2"),
        format!("内容別相談件数,内容別相談件数計,6,2{zeros},8"),
        format!("内容別相談件数,差(内容別相談件数計−相談件数),3,0{zeros},3"),
        format!("内容別相談件数,差(内容別相談件数計−相談者計),4,0{zeros},4"),
        format!("つないだ件数,ハローワーク,0,0{zeros},0"),
        format!("つないだ件数,その他,0,0{zeros},0"),
        format!("つないだ件数,つないだ件数計,0,0{zeros},0"),
        format!("アウトリーチ,家庭訪問,2,3{zeros},5"),
        format!("アウトリーチ,置き手紙,2,2{zeros},4"),
        format!("アウトリーチ,連絡・接触,1,1{zeros},2"),
        format!("アウトリーチ,家庭訪問(会えた),1,1{zeros},2"),
        "アウトリーチ,家庭訪問で会えた割合(%),50.0,33.3,,,,,,,,,,,40.0".to_owned(),
    ] {
        assert!(lines.contains(&expected.as_str()), "missing {expected}\n{text}");
    }
    // Heading, header, 4 + topics + 3 + destinations + 1 + 5 rows, and the empty rest after
    // the last CRLF.
    let rows = 4 + ConsultationTopic::ALL.len() + 3 + Catalogue::default().referral_destinations.len() + 1 + 5;
    assert_eq!(lines.len(), 2 + rows + 1, "{text}");
    assert_eq!(lines.last(), Some(&""));
    assert!(lines.iter().all(|l| !l.contains("令和") || l == &lines[0]), "Western dates only below the heading");
    assert_eq!(figures_reads(&app).len(), 1);
    assert_eq!(figures_reads(&app)[0].1, "fiscal_year=2024 format=csv");
}

async fn only_supervisors_read_figures_and_the_year_must_be_valid(backend: Backend) {
    let app = spawn_app(backend).await;
    let people = app.seed();
    for who in [&people.counsellor, &people.meeting_tablet, &people.administrator] {
        let token = app.login(who).await.access_token;
        for path in ["/v1/figures/2024", "/v1/figures/2024.csv"] {
            assert_eq!(error_of(app.get_with_token(path, &token).await).await, (403, "forbidden".to_owned()), "{path}");
        }
    }
    let response = app.http.get(app.url("/v1/figures/2024")).send().await.unwrap();
    assert_eq!(response.status(), 401);

    let token = app.login(&people.supervisor).await.access_token;
    for bad in ["2024x", "1999", "24", "abcd.csv", "2024.xlsx", "%EF%BC%92%EF%BC%90%EF%BC%92%EF%BC%94"] {
        let (status, code) = error_of(app.get_with_token(&format!("/v1/figures/{bad}"), &token).await).await;
        assert_eq!((status, code.as_str()), (400, "invalid_request"), "{bad}");
    }
    assert!(figures_reads(&app).is_empty(), "refused requests read nothing");

    // A year with nothing logged is a table of zeros.
    let f = get_json(&app, "/v1/figures/2030", &token).await;
    assert_eq!(f["fiscal_year_label"], "令和12年度");
    check_row(&f["consultations"]["consultations"], "consultations", "相談件数(延べ)", &[]);
    assert_eq!(f["outreach"]["met_share"]["total"], Value::Null);
}

/// Meeting decisions recorded on a supervisor's phone: their referral destinations count in
/// the month of the decision, one row per destination; a destination outside the catalogue
/// (その他, free text) counts as `other`.
async fn referrals_of_meeting_decisions_count_in_the_month_decided(backend: Backend) {
    let app = spawn_app(backend).await;
    let people = app.seed();
    let fixture = log_the_fixture(&app, &people).await;
    let mut supervisor = Phone::sign_in(&app.address, &people.supervisor).await;
    supervisor.sync().await;
    let april = NaiveDate::from_ymd_opt(2024, 4, 25).unwrap();
    let decision = NewDecision::new(april, PlanVerdict::Close).referred_to(["hello_work", "legal_support"]);
    supervisor.edit(&fixture.hanako, |r| r.record_decision(decision)).expect("the decision is recorded");
    // Decided at the May meeting, dated 31 May.
    let may = NaiveDate::from_ymd_opt(2024, 5, 28).unwrap();
    let decision = NewDecision::new(may, PlanVerdict::Close)
        .decided(NaiveDate::from_ymd_opt(2024, 5, 31).unwrap())
        .referred_to(["hello_work"])
        .referred_to_other("子ども食堂");
    supervisor.edit(&fixture.kenichi, |r| r.record_decision(decision)).expect("the decision is recorded");
    // A decision without referral counts nowhere.
    let decision = NewDecision::new(may, PlanVerdict::Replan);
    supervisor.edit(&fixture.kenichi, |r| r.record_decision(decision)).expect("the decision is recorded");
    supervisor.sync().await;

    let token = app.login(&people.supervisor).await.access_token;
    let f = get_json(&app, "/v1/figures/2024", &token).await;
    let catalogue = Catalogue::default();
    let expected: &[(&str, &[(usize, i64)])] =
        &[("hello_work", &[(0, 1), (1, 1)]), ("legal_support", &[(0, 1)]), ("other", &[(1, 1)])];
    let by_destination = f["referrals"]["by_destination"].as_array().unwrap();
    assert_eq!(by_destination.len(), catalogue.referral_destinations.len());
    for (row, entry) in by_destination.iter().zip(&catalogue.referral_destinations) {
        let cells = expected.iter().find(|(k, _)| *k == entry.key).map(|(_, c)| *c).unwrap_or(&[]);
        check_row(row, &entry.key, &entry.label, cells);
    }
    check_row(&f["referrals"]["total"], "referral_total", "つないだ件数計", &[(0, 2), (1, 2)]);

    let response = app.get_with_token("/v1/figures/2024.csv", &token).await;
    let bytes = response.bytes().await.unwrap();
    let text = std::str::from_utf8(&bytes[3..]).expect("UTF-8 after the byte-order mark");
    let zeros = ",0,0,0,0,0,0,0,0,0,0";
    for expected in [
        format!("つないだ件数,ハローワーク,1,1{zeros},2"),
        format!("つないだ件数,法テラス・弁護士・司法書士,1,0{zeros},1"),
        format!("つないだ件数,その他,0,1{zeros},1"),
        format!("つないだ件数,つないだ件数計,2,2{zeros},4"),
    ] {
        assert!(text.split("\r\n").any(|l| l == expected), "missing {expected}\n{text}");
    }
}
