//! `tsunagi field`, the command-line field client, driven as a real process, on SQLite and on
//! PostgreSQL: against the `tsunagi serve` binary (two counsellors offline on one case), and
//! against the server built in the test process where a test needs its internals (a byte
//! budget, the phone stack to stage conflicts).

mod common;

use std::path::Path;

use tsunagi_server::sync::Assignment;
use tsunagi_sync::ids::CaseId;

use common::{spawn_app, spawn_app_with, Backend, Person, MUNICIPALITY};

on_both_backends!(
    two_counsellors_log_visits_offline_sync_and_both_see_both,
    a_wrong_password_is_refused_clearly_and_writes_no_session,
    a_large_first_sync_shows_a_progress_bar_and_brings_every_case,
    a_supervisor_reads_the_attention_queue_and_a_counsellor_the_decision_on_a_refused_upload,
);

/// Runs `tsunagi field --dir DIR ARGS…` with `stdin`; returns exit code, stdout, stderr.
async fn field(dir: &Path, args: &[&str], stdin: &str) -> (i32, String, String) {
    let dir = dir.to_path_buf();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let stdin = stdin.to_owned();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        common::run_field(&dir, &args, &stdin)
    })
    .await
    .expect("the process runs")
}

/// `field …` that must succeed; returns its standard output.
async fn ok(dir: &Path, args: &[&str]) -> String {
    let (code, out, err) = field(dir, args, "").await;
    assert_eq!(code, 0, "tsunagi field {args:?} failed: {err}\n{out}");
    out
}

async fn login(dir: &Path, server: &str, who: &Person) {
    let device = who.device.to_string();
    let (code, out, err) = field(
        dir,
        &["login", "--server", server, "--login", &who.login, "--device", &device, "--password-stdin"],
        &format!("{}\n", who.password),
    )
    .await;
    assert_eq!(code, 0, "login failed: {err}\n{out}");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(dir.join("session.json")).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "the session file is private");
}

/// Both sides as processes: `tsunagi serve` (the binary, configured by environment as an
/// operator would) and two `tsunagi field` clients.
async fn two_counsellors_log_visits_offline_sync_and_both_see_both(backend: Backend) {
    let app = tokio::task::spawn_blocking(move || common::process::serve(backend)).await.unwrap();
    let people = app.people.clone();
    let tmp = tempfile::tempdir().unwrap();
    let (sato, suzuki) = (tmp.path().join("sato"), tmp.path().join("suzuki"));

    login(&sato, &app.address, &people.counsellor).await;
    login(&suzuki, &app.address, &people.counsellor2).await;

    // 佐藤 opens the case and syncs it; the supervisor assigns 鈴木 too; 鈴木 receives it.
    let case = ok(
        &sato,
        &[
            "open-case",
            "--municipality",
            MUNICIPALITY,
            "--opened-on",
            "2026-11-02",
            "--subject-name",
            "高橋 健一",
            "--subject-kana",
            "たかはし けんいち",
        ],
    )
    .await;
    CaseId::parse(&case).expect("open-case prints the case id");
    let status = ok(&sato, &["status"]).await;
    assert!(status.contains("server heads known: none (never synced)"), "{status}");
    let out = ok(&sato, &["sync"]).await;
    assert!(out.contains("uploaded 1"), "{out}");
    // Now the server's heads are known: twelve hex digits of each, and when they were heard.
    let status = ok(&sato, &["status"]).await;
    let heads = status.lines().find_map(|l| l.trim().strip_prefix("server heads known: ")).unwrap_or_default();
    let first = heads.split_whitespace().next().unwrap_or_default();
    assert!(first.len() == 12 && first.chars().all(|c| c.is_ascii_hexdigit()), "{status}");
    assert!(heads.contains("(as of 20"), "{status}");
    app.server.admin(&["assign", &case, "--login", &people.counsellor2.login, "--other"], "");
    let out = ok(&suzuki, &["sync"]).await;
    assert!(out.contains("assigned 1"), "{out}");

    // Both log a visit offline.
    let sato_visit = ok(
        &sato,
        &[
            "log",
            &case,
            "visit",
            "--at",
            "2026-11-04T10:00:00+09:00",
            "--outcome",
            "not_home",
            "--letter-left",
            "--narrative",
            "インターホンに応答なし。手紙を残した。",
        ],
    )
    .await;
    let suzuki_visit = ok(
        &suzuki,
        &[
            "log",
            &case,
            "visit",
            "--at",
            "2026-11-04T15:30:00+09:00",
            "--outcome",
            "refused",
            "--narrative",
            "玄関先で面会を断られた。",
        ],
    )
    .await;
    assert_ne!(sato_visit, suzuki_visit);
    let list = ok(&sato, &["list"]).await;
    assert!(list.contains(&case) && list.contains("pending: yes"), "{list}");

    // Both sync (佐藤 twice, to receive 鈴木's visit uploaded after hers).
    ok(&sato, &["sync"]).await;
    ok(&suzuki, &["sync"]).await;
    ok(&sato, &["sync"]).await;

    for dir in [&sato, &suzuki] {
        let shown = ok(dir, &["show", &case]).await;
        assert!(shown.contains("インターホンに応答なし。手紙を残した。"), "{shown}");
        assert!(shown.contains("玄関先で面会を断られた。"), "{shown}");
        assert!(shown.contains("家庭訪問") && shown.contains("自宅"), "{shown}");
        assert!(shown.contains("高橋 健一"), "{shown}");
        // In time order: the morning visit first.
        assert!(shown.find("インターホン").unwrap() < shown.find("玄関先").unwrap(), "{shown}");
    }
    let list = ok(&sato, &["list"]).await;
    assert!(list.contains("activities: 2") && list.contains("pending: no"), "{list}");
    // The same record on both devices, and on the server.
    let (a, b) = (ok(&sato, &["show", &case]).await, ok(&suzuki, &["show", &case]).await);
    assert_eq!(a, b, "both field clients show the same record");
    let stored: Vec<String> = app
        .db
        .read(|c| -> Result<_, tsunagi_server::store::StoreError> {
            use diesel::prelude::*;
            use tsunagi_server::store::schema::activities;
            Ok(activities::table.filter(activities::case_id.eq(&case)).select(activities::activity_id).load(c)?)
        })
        .unwrap();
    let mut expected = vec![sato_visit.clone(), suzuki_visit.clone()];
    expected.sort();
    let mut stored = stored;
    stored.sort();
    assert_eq!(stored, expected);

    // Mistakes in input are refused clearly, with exit code 1, and change nothing.
    let (code, _, err) =
        field(&sato, &["log", &case, "visit", "--at", "2026-11-04T10:00:00+09:00", "--outcome", "someday"], "").await;
    assert_eq!(code, 1);
    assert!(err.contains("--outcome"), "{err}");
    let (code, _, err) = field(&sato, &["amend", &case, &suzuki_visit, "--narrative", "書き換え"], "").await;
    assert_eq!(code, 1);
    assert!(err.contains("only its author amends it"), "{err}");
}

async fn a_wrong_password_is_refused_clearly_and_writes_no_session(backend: Backend) {
    let app = spawn_app(backend).await;
    let people = app.seed();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("sato");
    let who = &people.counsellor;
    let device = who.device.to_string();
    let (code, _, err) = field(
        &dir,
        &["login", "--server", &app.address, "--login", &who.login, "--device", &device, "--password-stdin"],
        "not-the-password\n",
    )
    .await;
    assert_ne!(code, 0);
    assert!(err.contains("sign-in failed: wrong login or password"), "{err}");
    assert!(!dir.join("session.json").exists(), "no session was written");

    // Without a session, commands say so.
    let (code, _, err) = field(&dir, &["sync"], "").await;
    assert_eq!(code, 1);
    assert!(err.contains("not signed in"), "{err}");
}

/// A counsellor newly assigned many cases: the server sends them in several responses (a tiny
/// byte budget here), and the field client shows how many have arrived of how many.
async fn a_large_first_sync_shows_a_progress_bar_and_brings_every_case(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.assigned_byte_budget = 1).await;
    let people = app.seed();
    let tmp = tempfile::tempdir().unwrap();
    let (sato, suzuki) = (tmp.path().join("sato"), tmp.path().join("suzuki"));
    login(&sato, &app.address, &people.counsellor).await;
    let mut cases = Vec::new();
    for _ in 0..5 {
        let out = ok(&sato, &["open-case", "--municipality", MUNICIPALITY, "--opened-on", "2026-11-02"]).await;
        cases.push(CaseId::parse(out.trim()).unwrap());
    }
    ok(&sato, &["sync"]).await;
    for case in &cases {
        app.assign(case, &people.counsellor2.staff, Assignment::Other).unwrap();
    }
    login(&suzuki, &app.address, &people.counsellor2).await;
    let (code, out, err) = field(&suzuki, &["sync"], "").await;
    assert_eq!(code, 0, "{err}\n{out}");
    assert!(err.contains("receiving cases ["), "{err}");
    assert!(err.contains("] 5/5"), "{err}");
    let list = ok(&suzuki, &["list"]).await;
    for case in &cases {
        assert!(list.contains(&case.to_string()), "{list}");
    }
}

/// A supervisor's tablet shows the attention queue; a counsellor's phone shows why a
/// supervisor rejected an upload of theirs.
async fn a_supervisor_reads_the_attention_queue_and_a_counsellor_the_decision_on_a_refused_upload(backend: Backend) {
    use tsunagi_sync::domain::CaseStatus;
    let app = spawn_app(backend).await;
    let people = app.seed();
    let mut sato = common::phone::Phone::sign_in(&app.address, &people.counsellor).await;
    let case = sato.open_case();
    sato.sync().await;
    app.assign(&case, &people.counsellor2.staff, Assignment::Other).unwrap();
    let mut suzuki = common::phone::Phone::sign_in(&app.address, &people.counsellor2).await;
    suzuki.sync().await;
    sato.edit(&case, |r| r.set_status(CaseStatus::Outreach)).unwrap();
    suzuki.edit(&case, |r| r.set_status(CaseStatus::Planning)).unwrap();
    sato.sync().await;
    suzuki.sync().await;
    // A buggy app writes the case number itself: refused, then rejected with a reason.
    sato.tamper(&case, |doc| {
        use automerge::transaction::Transactable;
        doc.put(automerge::ROOT, "case_number", "2026-9999").unwrap();
    });
    sato.sync().await;

    let tmp = tempfile::tempdir().unwrap();
    let (tablet, phone) = (tmp.path().join("tablet"), tmp.path().join("phone"));
    login(&tablet, &app.address, &people.supervisor).await;
    let out = ok(&tablet, &["attention"]).await;
    assert!(out.contains("競合 [2026-0001] /status: concurrent values"), "{out}");
    assert!(out.contains("\"outreach\"") && out.contains("\"planning\""), "{out}");
    assert!(out.contains(&people.counsellor.device.to_string()), "{out}");
    assert!(out.contains("保留中の送信 [2026-0001]"), "{out}");
    let case_arg = case.to_string();
    let only = ok(&tablet, &["attention", "--case", &case_arg]).await;
    assert!(only.contains("競合"), "{only}");
    // `show` on the supervisor's tablet lists the case's items too.
    ok(&tablet, &["sync"]).await;
    let shown = ok(&tablet, &["show", &case_arg]).await;
    assert!(shown.contains("== 要確認 (attention queue) ==") && shown.contains("競合 [2026-0001] /status"), "{shown}");

    let quarantine_id = out
        .lines()
        .find(|l| l.starts_with("保留中の送信"))
        .and_then(|l| l.split_whitespace().find(|w| w.len() == 36 && w.contains('-')))
        .map(str::to_owned)
        .expect("the refused upload's id");
    let supervisor = app.login(&people.supervisor).await.access_token;
    let response = app
        .http
        .post(app.url(&format!("/v1/quarantine/{quarantine_id}/decision")))
        .bearer_auth(&supervisor)
        .json(&serde_json::json!({"decision": "reject", "reason": "受付番号はサーバーが付けます"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);

    login(&phone, &app.address, &people.counsellor).await;
    let out = ok(&phone, &["refused"]).await;
    assert!(out.contains("rejected: 受付番号はサーバーが付けます"), "{out}");
    assert!(out.contains("server_only_field at /case_number"), "{out}");
    // Counsellors have no attention queue.
    let (code, _, err) = field(&phone, &["attention"], "").await;
    assert_eq!(code, 1);
    assert!(err.contains("for supervisors"), "{err}");
}
