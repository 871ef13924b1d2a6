//! Reviews pinned to a version, end to end over HTTP on SQLite and PostgreSQL, with a real
//! phone: a review written through the API records the case's heads, they reach the
//! counsellor's replica, and the case record (and `tsunagi field show`) tells exactly which
//! activities were added or amended after the last review.

mod common;

use std::path::Path;

use serde_json::{json, Value};
use tsunagi_sync::ids::ReviewId;

use common::phone::Phone;
use common::{spawn_app, Backend, Person, TestApp};

on_both_backends!(changed_since_the_last_review_lists_exactly_the_activities_added_or_amended_after_it);

async fn call(app: &TestApp, method: reqwest::Method, token: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut request = app.http.request(method, app.url(path)).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("the server answers");
    let status = response.status().as_u16();
    let bytes = response.bytes().await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// `GET /v1/cases/{case}`, which must succeed.
async fn record(app: &TestApp, token: &str, case: &str) -> Value {
    let (status, record) = call(app, reqwest::Method::GET, token, &format!("/v1/cases/{case}"), None).await;
    assert_eq!(status, 200, "{record}");
    record
}

fn ids(list: &Value) -> Vec<String> {
    list.as_array().expect("a list of ids").iter().map(|id| id.as_str().expect("an id").to_owned()).collect()
}

/// Runs `tsunagi field --dir DIR ARGS…`, which must succeed; returns its standard output.
async fn field(dir: &Path, args: &[&str], stdin: &str) -> String {
    let dir = dir.to_path_buf();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let stdin = stdin.to_owned();
    let (code, out, err) = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        common::run_field(&dir, &args, &stdin)
    })
    .await
    .expect("the process runs");
    assert_eq!(code, 0, "tsunagi field failed: {err}\n{out}");
    out
}

async fn field_login(dir: &Path, server: &str, who: &Person) {
    let device = who.device.to_string();
    let args = ["login", "--server", server, "--login", &who.login, "--device", &device, "--password-stdin"];
    field(dir, &args, &format!("{}\n", who.password)).await;
}

/// The line of `tsunagi field show` for the activity whose narrative is `narrative`.
fn line_of<'a>(show: &'a str, narrative: &str) -> &'a str {
    show.lines().find(|l| l.ends_with(narrative)).unwrap_or_else(|| panic!("no activity {narrative:?} in:\n{show}"))
}

async fn changed_since_the_last_review_lists_exactly_the_activities_added_or_amended_after_it(backend: Backend) {
    let app = spawn_app(backend).await;
    let people = app.seed();
    let supervisor = app.login(&people.supervisor).await.access_token;

    // The counsellor logs two visits and syncs.
    let mut phone = Phone::sign_in(&app.address, &people.counsellor).await;
    let case = phone.open_case();
    let first = phone.log_visit(&case, 10, "不在。手紙を投函。");
    let second = phone.log_visit(&case, 14, "不在。郵便受けに新聞がたまっている。");
    phone.sync().await;
    let before = record(&app, &supervisor, &case.to_string()).await;
    assert_eq!(before["since_last_review"], Value::Null, "no review yet: {before}");

    // The supervisor reviews the first through the API; the server records the heads it held.
    let seen = phone.since(&case);
    assert!(!seen.is_empty());
    let path = format!("/v1/cases/{case}/reviews");
    let body = json!({"activity_id": first.to_string(), "comment": "手紙の文面を次回確認したい。"});
    let (status, created) = call(&app, reqwest::Method::POST, &supervisor, &path, Some(body)).await;
    assert_eq!(status, 201, "{created}");
    let review: ReviewId = created["review_id"].as_str().unwrap().parse().unwrap();

    let reviewed = record(&app, &supervisor, &case.to_string()).await;
    let seen_hex: Vec<String> = seen.iter().map(|h| h.to_string()).collect();
    assert_eq!(ids(&reviewed["case"]["reviews"][review.to_string()]["heads"]), seen_hex);
    let since = &reviewed["since_last_review"];
    assert_eq!(since["review_id"], review.to_string(), "{reviewed}");
    assert_eq!(since["by"], people.supervisor.staff.to_string());
    assert!(since["at"].as_str().is_some_and(|at| at.ends_with("+09:00")), "{since}");
    assert_eq!((ids(&since["added"]), ids(&since["amended"])), (vec![], vec![]), "nothing changed yet");

    // The review, with its heads, reaches the counsellor's replica.
    phone.sync().await;
    let on_phone = phone.view(&case);
    assert_eq!(on_phone.reviews[&review].heads, seen);
    assert_eq!(on_phone.reviews[&review].activity_id, first);

    // The counsellor logs a third visit and amends the first one's narrative, then syncs.
    let third = phone.log_visit(&case, 17, "夕方に再訪。不在。");
    let amended = "不在。手紙を投函。隣家の方によると平日は夜に帰宅。";
    phone.edit(&case, |r| r.amend_narrative(first, amended)).unwrap();
    phone.sync().await;

    let after = record(&app, &supervisor, &case.to_string()).await;
    let since = &after["since_last_review"];
    assert_eq!(since["review_id"], review.to_string());
    assert_eq!(ids(&since["added"]), vec![third.to_string()], "{since}");
    assert_eq!(ids(&since["amended"]), vec![first.to_string()], "{since}");
    let untouched = second.to_string();
    assert!(!ids(&since["added"]).contains(&untouched) && !ids(&since["amended"]).contains(&untouched));

    // The counsellor's field client shows the same, on another of her devices.
    let tablet = app.add_device(&people.counsellor, "佐藤 花子のタブレット");
    let dir = tempfile::tempdir().unwrap();
    field_login(dir.path(), &app.address, &tablet).await;
    field(dir.path(), &["sync"], "").await;
    let show = field(dir.path(), &["show", &case.to_string()], "").await;
    assert!(line_of(&show, "夕方に再訪。不在。").contains("[new since review]"), "{show}");
    assert!(line_of(&show, amended).contains("[amended since review]"), "{show}");
    let untouched = line_of(&show, "不在。郵便受けに新聞がたまっている。");
    assert!(!untouched.contains("since review"), "{show}");
    assert!(show.contains("since the last review") && show.contains("1 new, 1 amended"), "{show}");
}
