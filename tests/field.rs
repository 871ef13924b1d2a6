//! `tsunagi field`, the command-line field client, driven as a real process against the real
//! server, on SQLite and on PostgreSQL.

mod common;

use std::path::Path;

use tsunagi_server::sync::Assignment;
use tsunagi_sync::ids::CaseId;

use common::{spawn_app, Backend, Person, MUNICIPALITY};

on_both_backends!(
    two_counsellors_log_visits_offline_sync_and_both_see_both,
    a_wrong_password_is_refused_clearly_and_writes_no_session,
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

async fn two_counsellors_log_visits_offline_sync_and_both_see_both(backend: Backend) {
    let app = spawn_app(backend).await;
    let people = app.seed();
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
    let case_id = CaseId::parse(&case).expect("open-case prints the case id");
    let out = ok(&sato, &["sync"]).await;
    assert!(out.contains("uploaded 1"), "{out}");
    app.assign(&case_id, &people.counsellor2.staff, Assignment::Other).unwrap();
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
