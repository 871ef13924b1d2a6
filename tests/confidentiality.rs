//! 守秘義務 end to end, on SQLite and on PostgreSQL: a case without consent in area `east`
//! stays with its assignees, the supervisors who oversee it and the 支援会議 that discusses it.
//! Everyone else — a counsellor not assigned to it, a supervisor of another area, an
//! administrator, a meeting tablet whose meetings do not list it — tries every endpoint of the
//! supervisors' API that names a case, every list, and sync, and learns nothing: not its
//! content, not its number, not that it exists.
//!
//! The endpoints are a table ([`ENDPOINTS`], [`LISTS`]): a new endpoint that names a case is
//! one more line there.

mod common;

use diesel::prelude::*;
use reqwest::Method;
use serde_json::{json, Value};
use tsunagi_server::admin::{self, NewStaff};
use tsunagi_server::store::documents::decode_heads;
use tsunagi_server::store::visibility::today_in_japan;
use tsunagi_server::store::{schema, StoreError};
use tsunagi_sync::document::format_date;
use tsunagi_sync::domain::{ConsentMethod, ConsentState, Role};
use tsunagi_sync::ids::{ActivityId, CaseId};
use tsunagi_sync::ops::NewPerson;
use tsunagi_sync::wire::{Hash, SYNC_PATH};

use common::phone::Phone;
use common::{spawn_app, Backend, Person, TestApp};

on_both_backends!(nobody_outside_a_case_learns_anything_of_it);

/// Roles, for the table.
const S: &[Role] = &[Role::Supervisor];
const SC: &[Role] = &[Role::Supervisor, Role::Counsellor];
const SCT: &[Role] = &[Role::Supervisor, Role::Counsellor, Role::MeetingTablet];

/// An endpoint that names a case. In `path` and `body`, `{case}` stands for the case's id,
/// `{activity}` for one of its activities, `{meeting}` for a meeting whose agenda lists it,
/// `{me}` for the caller's own staff id, `{from}`/`{to}` for the month of its activities.
struct Endpoint {
    method: &'static str,
    path: &'static str,
    body: Option<&'static str>,
    /// The roles that may use the endpoint at all; every other role gets `403 forbidden`.
    roles: &'static [Role],
    /// What a caller of those roles gets for a case they may not see: `404` for an endpoint
    /// about one case, `200` (an empty list) for a list filtered by case. Either way it is
    /// byte-identical to the answer for a random case id.
    hidden: u16,
}

const fn endpoint(
    method: &'static str,
    path: &'static str,
    body: Option<&'static str>,
    roles: &'static [Role],
    hidden: u16,
) -> Endpoint {
    Endpoint { method, path, body, roles, hidden }
}

/// Every endpoint of the supervisors' API that takes a case.
const ENDPOINTS: &[Endpoint] = &[
    endpoint("GET", "/v1/cases/{case}", None, SCT, 404),
    endpoint("GET", "/v1/cases/{case}/history", None, SC, 404),
    endpoint("GET", "/v1/cases/by-number/{number}", None, SCT, 404),
    endpoint(
        "POST",
        "/v1/cases/{case}/merge",
        Some(r#"{"duplicate": "7c0e0f43-4f1e-4d6a-9d55-3f2b8f0c9a11"}"#),
        S,
        404,
    ),
    endpoint("POST", "/v1/cases/{case}/reviews", Some(r#"{"activity_id": "{activity}", "comment": "確認"}"#), S, 404),
    endpoint("PUT", "/v1/cases/{case}/assignees/{me}", Some(r#"{"role": "other"}"#), S, 404),
    endpoint("DELETE", "/v1/cases/{case}/assignees/{me}", None, S, 404),
    endpoint("GET", "/v1/visits?case={case}", None, SC, 200),
    endpoint("GET", "/v1/visits.csv?case={case}&from={from}&to={to}", None, SC, 200),
    endpoint("PUT", "/v1/meetings/{meeting}/agenda/{case}", None, S, 404),
    endpoint("DELETE", "/v1/meetings/{meeting}/agenda/{case}", None, S, 404),
    endpoint("GET", "/v1/attention?case={case}", None, S, 200),
    endpoint("GET", "/v1/attention?case={case}&state=resolved", None, S, 200),
];

/// Lists (and a meeting's agenda) that must leave the case out for those who may not see it:
/// (path, the roles that may read it; every other role gets `403 forbidden`).
const LISTS: &[(&str, &[Role])] = &[
    ("/v1/cases", SCT),
    ("/v1/cases?area=east", SCT),
    ("/v1/visits", SC),
    ("/v1/visits.csv?from={from}&to={to}", SC),
    ("/v1/meetings", S),
    ("/v1/meetings/{meeting}", S),
    ("/v1/attention", S),
    ("/v1/attention?state=resolved", S),
];

/// What a client can observe of an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Answer {
    status: u16,
    content_type: String,
    body: Vec<u8>,
}

impl Answer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

async fn send(app: &TestApp, token: &str, method: &str, path: &str, body: Option<String>) -> Answer {
    let method = Method::from_bytes(method.as_bytes()).expect("a method");
    let mut request = app.http.request(method, app.url(path)).bearer_auth(token);
    if let Some(body) = body {
        request = request.header(reqwest::header::CONTENT_TYPE, "application/json").body(body);
    }
    let response = request.send().await.expect("the server answers");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = response.bytes().await.expect("a body").to_vec();
    Answer { status, content_type, body }
}

/// What stands in for the placeholders of [`Endpoint`].
struct Names {
    case: CaseId,
    number: String,
    activity: ActivityId,
    meeting: String,
    me: String,
}

fn fill(template: &str, names: &Names) -> String {
    let month = format_date(chrono::NaiveDate::from_ymd_opt(2026, 11, 1).unwrap());
    template
        .replace("{case}", &names.case.to_string())
        .replace("{number}", &names.number)
        .replace("{activity}", &names.activity.to_string())
        .replace("{meeting}", &names.meeting)
        .replace("{me}", &names.me)
        .replace("{from}", &month)
        .replace("{to}", "2026-11-30")
}

/// Everything of the secret case that must not reach anyone outside it.
struct Secret {
    case: CaseId,
    number: String,
    activity: ActivityId,
    subject: &'static str,
    narrative: &'static str,
}

impl Secret {
    fn assert_absent(&self, text: &str, context: &str) {
        for (what, needle) in [
            ("case id", self.case.to_string()),
            ("case number", self.number.clone()),
            ("activity id", self.activity.to_string()),
            ("subject", self.subject.to_owned()),
            ("narrative", self.narrative.to_owned()),
        ] {
            assert!(!text.contains(&needle), "{context}: the {what} leaked: {text}");
        }
    }
}

/// A staff member of the seeded municipality with a device; the password is
/// `<login>-passphrase-123`.
fn staff(app: &TestApp, seed: &common::Seed, login: &str, role: Role, area: Option<&str>) -> Person {
    let password = format!("{login}-passphrase-123");
    let new = NewStaff {
        login,
        display_name: login,
        role,
        organisation: seed.organisation,
        municipality: seed.municipality,
        area,
    };
    let staff = admin::create_staff(&app.db, &new, &password).unwrap();
    let device = admin::register_device(&app.db, login, &format!("{login}の端末")).unwrap();
    Person { login: login.to_owned(), password, staff, device, role }
}

/// The case's record on the server: heads, assignments (staff, primary), how many reviews,
/// the meetings whose agenda lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CaseState {
    heads: Vec<u8>,
    assignments: Vec<(String, bool)>,
    reviews: i64,
    agendas: Vec<String>,
}

fn state_of(app: &TestApp, case: &CaseId) -> CaseState {
    let id = case.to_string();
    app.db
        .read(|c| -> Result<_, StoreError> {
            Ok(CaseState {
                heads: schema::documents::table.find(&id).select(schema::documents::heads).first::<Vec<u8>>(c)?,
                assignments: schema::assignments::table
                    .filter(schema::assignments::case_id.eq(&id))
                    .order(schema::assignments::staff_id.asc())
                    .select((schema::assignments::staff_id, schema::assignments::is_primary))
                    .load(c)?,
                reviews: schema::reviews::table.filter(schema::reviews::case_id.eq(&id)).count().get_result(c)?,
                agendas: schema::meeting_cases::table
                    .filter(schema::meeting_cases::case_id.eq(&id))
                    .select(schema::meeting_cases::meeting_id)
                    .load(c)?,
            })
        })
        .unwrap()
}

/// `POST /v1/sync` in JSON; the answer as text.
async fn sync_json(app: &TestApp, token: &str, body: &Value) -> Answer {
    send(app, token, "POST", SYNC_PATH, Some(body.to_string())).await
}

async fn nobody_outside_a_case_learns_anything_of_it(backend: Backend) {
    let app = spawn_app(backend).await;
    let people = app.seed();

    // 佐藤 opens the case in area east, with a household member and a visit; no consent.
    let mut sato = Phone::sign_in(&app.address, &people.counsellor).await;
    let case = sato.open_case();
    sato.edit(&case, |r| r.set_area("east")).unwrap();
    let mut subject = NewPerson::new("山田 太郎");
    subject.is_subject = true;
    sato.edit(&case, |r| r.add_person(subject)).unwrap();
    let activity = sato.log_visit(&case, 10, "秘密の経過記録: 家族の借金について");
    // A second case of hers, in the same area, with consent: others of the municipality's
    // supervisors see that one, which shows the rule is about this case, not about them.
    let consented = sato.open_case();
    sato.edit(&consented, |r| r.set_area("east")).unwrap();
    let on = chrono::NaiveDate::from_ymd_opt(2026, 11, 3).unwrap();
    sato.edit(&consented, |r| r.record_consent(ConsentState::Obtained, on, Some(ConsentMethod::Written))).unwrap();
    sato.sync().await;
    let number = sato.store.entry(&case).and_then(|e| e.case_number.clone()).expect("a case number");
    let secret = Secret { case, number, activity, subject: "山田 太郎", narrative: "秘密の経過記録" };

    // 鈴木 has a case of his own (so his lists are not empty by accident).
    let mut suzuki = Phone::sign_in(&app.address, &people.counsellor2).await;
    let own = suzuki.open_case();
    suzuki.log_visit(&own, 11, "鈴木の訪問");
    suzuki.sync().await;

    // A supervisor of area west; a second meeting tablet.
    admin::create_area(&app.db, people.municipality, "west", "西部").unwrap();
    let west = staff(&app, &people, "west-sup", Role::Supervisor, Some("west"));
    let room2 = staff(&app, &people, "meeting-room-2", Role::MeetingTablet, None);

    // The 支援会議 that discusses the case has the second tablet; the seeded tablet sits in
    // another meeting, about 鈴木's case.
    let supervisor = app.login(&people.supervisor).await.access_token;
    let create = |members: Vec<String>| {
        json!({ "kind": "support", "title": "支援会議", "held_on": format_date(today_in_japan()), "members": members })
            .to_string()
    };
    let meeting = send(&app, &supervisor, "POST", "/v1/meetings", Some(create(vec![room2.staff.to_string()]))).await;
    assert_eq!(meeting.status, 201, "{}", meeting.text());
    let meeting: Value = serde_json::from_slice(&meeting.body).unwrap();
    let meeting = meeting["meeting_id"].as_str().unwrap().to_owned();
    let path = format!("/v1/meetings/{meeting}/agenda/{case}");
    assert_eq!(send(&app, &supervisor, "PUT", &path, None).await.status, 204);
    let other =
        send(&app, &supervisor, "POST", "/v1/meetings", Some(create(vec![people.meeting_tablet.staff.to_string()])))
            .await;
    let other: Value = serde_json::from_slice(&other.body).unwrap();
    let path = format!("/v1/meetings/{}/agenda/{own}", other["meeting_id"].as_str().unwrap());
    assert_eq!(send(&app, &supervisor, "PUT", &path, None).await.status, 204);

    // Those inside see it: the assigned counsellor, the supervisor, the 支援会議's tablet.
    for who in [&people.counsellor, &people.supervisor] {
        let token = app.login(who).await.access_token;
        let answer = send(&app, &token, "GET", &format!("/v1/cases/{case}"), None).await;
        assert_eq!(answer.status, 200, "{}: {}", who.login, answer.text());
        assert!(answer.text().contains(&secret.number));
    }
    let mut inside = Phone::sign_in(&app.address, &room2).await;
    inside.sync().await;
    assert_eq!(inside.store.case_ids(), vec![case]);
    let before = state_of(&app, &case);

    let heads: Vec<Hash> = decode_heads(&before.heads).unwrap().iter().map(Hash::from).collect();
    let outsiders = [&people.counsellor2, &west, &people.administrator, &people.meeting_tablet];
    for who in outsiders {
        let token = app.login(who).await.access_token;
        let nowhere = CaseId::new_random();
        let real = Names {
            case,
            number: secret.number.clone(),
            activity,
            meeting: meeting.clone(),
            me: who.staff.to_string(),
        };
        let random = Names {
            case: nowhere,
            number: "2026-0999".to_owned(),
            activity,
            meeting: meeting.clone(),
            me: who.staff.to_string(),
        };

        // Every endpoint that names a case: refused exactly as for a case that does not exist.
        for e in ENDPOINTS {
            let context = format!("{} {} {}", who.login, e.method, e.path);
            let body = |names: &Names| e.body.map(|b| fill(b, names));
            let got = send(&app, &token, e.method, &fill(e.path, &real), body(&real)).await;
            let unknown = send(&app, &token, e.method, &fill(e.path, &random), body(&random)).await;
            assert_eq!(got, unknown, "{context}: the answer must not tell the case from a random id");
            let expected = if e.roles.contains(&who.role) { e.hidden } else { 403 };
            assert_eq!(got.status, expected, "{context}: {}", got.text());
            if got.status != 200 {
                let error: Value = serde_json::from_slice(&got.body).expect("an ApiError");
                let code = if got.status == 403 { "forbidden" } else { "not_found" };
                assert_eq!(error["code"], json!(code), "{context}");
            }
            secret.assert_absent(&got.text(), &context);
        }

        // Every list: the case is not in it.
        for (path, roles) in LISTS {
            let context = format!("{} GET {path}", who.login);
            let got = send(&app, &token, "GET", &fill(path, &real), None).await;
            let expected = if roles.contains(&who.role) { 200 } else { 403 };
            assert_eq!(got.status, expected, "{context}: {}", got.text());
            secret.assert_absent(&got.text(), &context);
        }

        // Sync: naming the case, with or without its heads, is answered as for a random id;
        // nothing of it is sent.
        for since in [json!([]), json!(heads)] {
            let request =
                |id: CaseId| json!({ "protocol": 1, "documents": [{ "case_id": id, "since": since.clone() }] });
            let got = sync_json(&app, &token, &request(case)).await;
            let unknown = sync_json(&app, &token, &request(nowhere)).await;
            let context = format!("{} sync", who.login);
            assert_eq!(got.status, unknown.status, "{context}");
            // Every answer carries a cursor of its own (of one length): the rest is identical.
            assert_eq!(got.body.len(), unknown.body.len(), "{context}");
            let rest = |answer: &Answer| {
                let mut body: Value = serde_json::from_slice(&answer.body).expect("a SyncResponse");
                assert!(body.as_object_mut().and_then(|o| o.remove("cursor")).is_some(), "{context}: a cursor");
                body.to_string()
            };
            assert_eq!(rest(&got).replace(&case.to_string(), &nowhere.to_string()), rest(&unknown), "{context}");
            secret.assert_absent(&got.text().replace(&case.to_string(), ""), &context);
        }
        let mut phone = Phone::sign_in(&app.address, who).await;
        if let Ok(report) = phone.try_sync().await {
            assert!(report.events_of(&case).next().is_none(), "{}: {report:?}", who.login);
        }
        assert!(!phone.store.contains(&case), "{}: the case reached the device", who.login);
        for held in phone.store.case_ids() {
            let doc = phone.store.load(&held).unwrap().unwrap_or_default();
            assert!(
                !String::from_utf8_lossy(&doc).contains(secret.narrative),
                "{}: the narrative reached the device",
                who.login
            );
        }
    }
    // The supervisor of west does see the consented case of east: the rule is about consent.
    let token = app.login(&west).await.access_token;
    assert_eq!(send(&app, &token, "GET", &format!("/v1/cases/{consented}"), None).await.status, 200);

    // Nobody's attempt changed anything.
    assert_eq!(state_of(&app, &case), before, "nothing of the case changed");
    inside.sync().await;
    assert_eq!(inside.store.case_ids(), vec![case], "the 支援会議's tablet still holds it");
}
