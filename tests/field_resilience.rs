//! `tsunagi field` when things go wrong: the periodic sync killed (SIGKILL) in the middle of a
//! round — while its upload is on the wire, and after the server stored it but before the
//! client heard — and restarted, and the server stopped (SIGKILL) and restarted while a field client
//! syncs every second. Real processes throughout; nothing may be lost or duplicated.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use diesel::prelude::*;
use tsunagi_server::store::{schema, Database, DatabaseUrl, StoreError};
use tsunagi_sync::ids::CaseId;

use common::process::{Guard, Server, BIN};
use common::proxy::{self, Moment, Proxy};
use common::{spawn_app, Backend, Person, MUNICIPALITY};

on_both_backends!(a_periodic_sync_killed_mid_round_and_restarted_loses_and_duplicates_nothing);

/// Sends `tsunagi` child `guard` the signal `name` (e.g. `TERM`).
fn send_signal(guard: &mut Guard, name: &str) {
    let pid = guard.child().id().to_string();
    assert!(Command::new("kill").args([&format!("-{name}"), &pid]).status().unwrap().success());
}

/// Once the client is well into a round (1.5 s), sends it `signal` twice, 0.3 s apart; it
/// must exit within 5 s. Returns its exit code and output.
fn interrupted_twice(guard: &mut Guard, signal: &str) -> (Option<i32>, String, String) {
    std::thread::sleep(Duration::from_millis(1500));
    send_signal(guard, signal);
    std::thread::sleep(Duration::from_millis(300));
    send_signal(guard, signal);
    exit_within(guard, 5)
}

/// Waits (bounded) for the child to exit; returns its exit code and output.
fn exit_within(guard: &mut Guard, secs: u64) -> (Option<i32>, String, String) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(status) = guard.child().try_wait().unwrap() {
            let child = guard.0.take().unwrap();
            let (out, err) = common::process::collect(child);
            return (status.code(), out, err);
        }
        assert!(Instant::now() < deadline, "the client did not exit within {secs} s of the signals");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A round that is retrying against an unreachable server (~15 s of back-off) is not waited
/// out: a first SIGTERM/SIGINT gives it a grace period, a second stops it at once. Nothing is
/// lost: the visit goes up once the server is reachable again.
#[tokio::test]
async fn a_signal_stops_a_sync_that_is_retrying_against_an_unreachable_server() {
    let app = spawn_app(Backend::Sqlite).await;
    let people = app.seed();
    let (port, db) = (app.port, app.db.clone());
    let result = tokio::task::spawn_blocking(move || {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("sato");
        let proxy = Proxy::start(port);
        let who = &people.counsellor;
        login(&dir, &proxy.url(), &who.login, &who.password, &who.device.to_string());
        let case = open_case(&dir, "高橋 健一");
        let visit = log_visit(&dir, &case, "2026-11-04T10:00:00+09:00", "インターホンに応答なし。");
        proxy.set_down(true);

        // The tablet's periodic sync: two SIGTERMs, and it stops cleanly at once.
        let mut periodic = spawn_field(&dir, &["sync", "--every", "1"]);
        let (code, out, err) = interrupted_twice(&mut periodic, "TERM");
        assert_eq!(code, Some(0), "{out}\n{err}");
        assert!(err.contains("stopping: finishing the current sync"), "stdout: {out}\nstderr: {err}");
        assert!(err.contains("nothing is lost"), "{err}");
        assert!(out.trim_end().ends_with("stopped"), "{out}");

        // A sync once, interrupted the same way with Ctrl-C: exit code 130.
        let mut once = spawn_field(&dir, &["sync"]);
        let (code, out, err) = interrupted_twice(&mut once, "INT");
        assert_eq!(code, Some(130), "{out}\n{err}");
        assert!(err.contains("interrupted; nothing is lost"), "{err}");

        // The replica loads, the visit is still pending, and it goes up when the server is back.
        let status = ok(&dir, &["status"]);
        assert!(pending_in_status(&status) > 0, "{status}");
        proxy.set_down(false);
        let out = ok(&dir, &["sync"]);
        assert!(out.starts_with("uploaded "), "{out}");
        assert_all_delivered_once(&dir, &db, &[(case, visit)]);
    })
    .await;
    if let Err(e) = result {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// Starts `tsunagi field --dir DIR ARGS…` in the background, output piped.
fn spawn_field(dir: &Path, args: &[&str]) -> Guard {
    let child = Command::new(BIN)
        .arg("field")
        .arg("--dir")
        .arg(dir)
        .args(args)
        .env_clear()
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the tsunagi binary runs");
    Guard(Some(child))
}

/// Runs `tsunagi field --dir DIR ARGS…` with `stdin`; returns exit code, stdout, stderr.
fn field(dir: &Path, args: &[&str], stdin: &str) -> (i32, String, String) {
    common::run_field(dir, args, stdin)
}

/// `field …` that must succeed; returns its standard output.
fn ok(dir: &Path, args: &[&str]) -> String {
    let (code, out, err) = field(dir, args, "");
    assert_eq!(code, 0, "tsunagi field {args:?} failed: {err}\n{out}");
    out
}

fn login(dir: &Path, server: &str, login: &str, password: &str, device: &str) {
    let (code, out, err) = field(
        dir,
        &["login", "--server", server, "--login", login, "--device", device, "--password-stdin"],
        &format!("{password}\n"),
    );
    assert_eq!(code, 0, "login failed: {err}\n{out}");
}

fn open_case(dir: &Path, name: &str) -> String {
    let case = ok(
        dir,
        &[
            "open-case",
            "--municipality",
            MUNICIPALITY,
            "--opened-on",
            "2026-11-02",
            "--subject-name",
            name,
            "--subject-kana",
            "てすと",
        ],
    );
    CaseId::parse(&case).expect("open-case prints the case id");
    case
}

/// Logs a visit on `case`; returns the activity id.
fn log_visit(dir: &Path, case: &str, at: &str, narrative: &str) -> String {
    let id = ok(dir, &["log", case, "visit", "--at", at, "--outcome", "not_home", "--narrative", narrative]);
    assert!(!id.is_empty() && !id.contains(char::is_whitespace), "log prints the activity id: {id:?}");
    id
}

/// The total of `pending changes: N` over the cases `status` lists.
fn pending_in_status(status: &str) -> usize {
    status
        .lines()
        .filter_map(|l| l.split("pending changes: ").nth(1))
        .map(|n| n.trim().parse::<usize>().expect("a count"))
        .sum()
}

/// How many rows of the server's `activities` projection each activity id has.
fn activity_counts(db: &Database) -> BTreeMap<String, usize> {
    let ids = db
        .read(|c| -> Result<_, StoreError> {
            Ok(schema::activities::table.select(schema::activities::activity_id).load::<String>(c)?)
        })
        .unwrap();
    let mut counts = BTreeMap::new();
    for id in ids {
        *counts.entry(id).or_insert(0) += 1;
    }
    counts
}

/// Asserts the server's `changes` table has no (case_id, hash) twice.
fn assert_no_duplicate_changes(db: &Database) {
    let rows = db
        .read(|c| -> Result<_, StoreError> {
            Ok(schema::changes::table
                .select((schema::changes::case_id, schema::changes::hash))
                .load::<(String, Vec<u8>)>(c)?)
        })
        .unwrap();
    let distinct: BTreeSet<_> = rows.iter().cloned().collect();
    assert_eq!(rows.len(), distinct.len(), "the server's changes table holds a (case_id, hash) twice");
}

/// Asserts each id in `logged` is on the server exactly once and in `show` of its case exactly
/// once, that nothing is pending, and that the replica loads (`list`).
fn assert_all_delivered_once(dir: &Path, db: &Database, logged: &[(String, String)]) {
    let status = ok(dir, &["status"]);
    assert_eq!(pending_in_status(&status), 0, "nothing pending after the final sync:\n{status}");
    let counts = activity_counts(db);
    let mut shown = BTreeMap::new();
    for (case, id) in logged {
        assert_eq!(counts.get(id).copied().unwrap_or(0), 1, "activity {id} on the server exactly once");
        let text = shown.entry(case.clone()).or_insert_with(|| ok(dir, &["show", case]));
        assert_eq!(text.matches(&format!("id: {id}")).count(), 1, "activity {id} shown exactly once:\n{text}");
    }
    assert_no_duplicate_changes(db);
    let list = ok(dir, &["list"]);
    for case in shown.keys() {
        assert!(list.contains(case.as_str()) && !list.contains("pending: yes"), "{list}");
    }
}

async fn a_periodic_sync_killed_mid_round_and_restarted_loses_and_duplicates_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let people = app.seed();
    let address = app.address.clone();
    let db = app.db.clone();
    let result = tokio::task::spawn_blocking(move || killed_mid_round(&address, &db, &people.counsellor)).await;
    if let Err(e) = result {
        std::panic::resume_unwind(e.into_panic());
    }
}

fn killed_mid_round(address: &str, db: &Database, who: &Person) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("sato");
    // The client talks to the server through a proxy that can hold a sync request at a chosen
    // moment, so that the kill provably lands while a request is in flight.
    let upstream: u16 = address.rsplit(':').next().and_then(|p| p.parse().ok()).expect("the server's port");
    let proxy = Proxy::start(upstream);
    login(&dir, &proxy.url(), &who.login, &who.password, &who.device.to_string());

    let mut logged: Vec<(String, String)> = Vec::new();
    let mut cases: Vec<String> = Vec::new();
    // Three moments to kill at: while the upload is on its way (the server has the headers,
    // not the body); after the server stored the batch and answered, before the client heard;
    // and at a fixed delay, wherever the round then is (e.g. writing the replica store).
    let moments = [Some(Moment::Uploading), Some(Moment::Answered), None];
    for (round, moment) in moments.into_iter().enumerate() {
        // Each round: a new case and ~40 activities spread over the cases, all offline.
        cases.push(open_case(&dir, &format!("試験 {round}")));
        let mut this_round = Vec::new();
        for i in 0..40 {
            let case = cases[i % cases.len()].clone();
            let at = format!("2026-11-{:02}T{:02}:{:02}:00+09:00", 3 + round, 8 + i / 6, (i % 6) * 10);
            let id = log_visit(&dir, &case, &at, &format!("第{round}回 {i}件目の訪問。不在。"));
            this_round.push(id.clone());
            logged.push((case, id));
        }

        let held = moment.map(|m| proxy.arm(m));
        let mut sync = spawn_field(&dir, &["sync", "--every", "1"]);
        match &held {
            Some(rx) => assert!(proxy::wait(rx, 30), "round {round}: no sync request reached {moment:?} within 30 s"),
            None => std::thread::sleep(Duration::from_millis(250)),
        }
        let (out, err) = sync.kill();
        proxy.release();
        eprintln!("round {round}: killed at {moment:?}; stdout: {out:?} stderr: {err:?}");
        let stored = activity_counts(db);
        let arrived = this_round.iter().filter(|id| stored.contains_key(*id)).count();
        match moment {
            // The body never arrived whole: nothing of this round is stored.
            Some(Moment::Uploading) => assert_eq!(arrived, 0, "round {round}: a cut-off upload stored something"),
            // The server stored the batch; the client never heard so.
            Some(Moment::Answered) => assert!(arrived > 0, "round {round}: the held answer was for no upload"),
            None => {}
        }

        // Restarted: a sync runs to completion (the lock of the killed process is gone).
        let out = ok(&dir, &["sync"]);
        assert!(!out.contains("refused 1") && !out.contains("sync failed"), "{out}");
        assert_all_delivered_once(&dir, db, &logged);
    }
    // One more sync changes nothing.
    let out = ok(&dir, &["sync"]);
    assert!(out.starts_with("uploaded 0"), "{out}");
    assert_all_delivered_once(&dir, db, &logged);
    assert_eq!(activity_counts(db).len(), logged.len(), "no activity besides those logged");
}

/// A free port on 127.0.0.1 (bound, then released).
#[test]
fn the_server_stopped_and_restarted_while_a_field_client_syncs_periodically() {
    let tmp = tempfile::tempdir().unwrap();
    let db_path = tmp.path().join("server").join("tsunagi.sqlite3");
    let url = format!("sqlite://{}", db_path.display());
    let server = Server::on(&url, tmp.path());
    let port = server.port;

    // The server runs first (it applies the migrations), then accounts are made.
    let mut running = server.start();
    server.admin(&["create-municipality", MUNICIPALITY, "流山市"], "");
    server.admin(&["create-area", MUNICIPALITY, "east", "東部"], "");
    let organisation = server.admin(&["create-organisation", "流山市 福祉政策課", "--kind", "direct"], "");
    let password = "sato-passphrase-123";
    server.admin(
        &[
            "create-staff",
            "--login",
            "sato",
            "--name",
            "佐藤 花子",
            "--role",
            "counsellor",
            "--organisation",
            &organisation,
            "--municipality",
            MUNICIPALITY,
            "--area",
            "east",
            "--password-stdin",
        ],
        &format!("{password}\n"),
    );
    let device = server.admin(&["register-device", "--login", "sato", "--label", "佐藤の端末"], "");

    let dir = tmp.path().join("sato");
    let address = format!("http://127.0.0.1:{port}");
    login(&dir, &address, "sato", password, &device);
    let case = open_case(&dir, "高橋 健一");
    let first = log_visit(&dir, &case, "2026-11-04T10:00:00+09:00", "インターホンに応答なし。");
    let second = log_visit(&dir, &case, "2026-11-05T10:00:00+09:00", "玄関先で面会を断られた。");

    // The server goes away; the field client starts syncing every second meanwhile.
    running.kill();
    let mut sync = spawn_field(&dir, &["sync", "--every", "1"]);
    // Its standard output, read as it comes (a round retries for up to ~15 s before failing).
    let output = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let reader = {
        let output = output.clone();
        let mut stdout = sync.child().stdout.take().expect("stdout");
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                output.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(40);
    while !output.lock().unwrap().contains("sync failed") {
        if let Some(status) = sync.child().try_wait().unwrap() {
            panic!("sync --every exited with {status} while the server was down: {}", output.lock().unwrap());
        }
        assert!(Instant::now() < deadline, "no failed round reported within 40 s of the server going away");
        std::thread::sleep(Duration::from_millis(200));
    }

    // The server comes back on the same port and database; the client delivers, bounded.
    let _running = server.start();
    let db = Database::connect(&DatabaseUrl::parse(&url).unwrap(), 2).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let counts = activity_counts(&db);
        if counts.contains_key(&first) && counts.contains_key(&second) {
            break;
        }
        if let Some(status) = sync.child().try_wait().unwrap() {
            panic!("sync --every exited with {status} before delivering: {}", output.lock().unwrap());
        }
        assert!(Instant::now() < deadline, "the client did not deliver within 30 s of the restart");
        std::thread::sleep(Duration::from_millis(200));
    }

    // Let the round finish writing to the store, then SIGTERM: it stops cleanly.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !output.lock().unwrap().contains("uploaded 3") {
        assert!(Instant::now() < deadline, "no successful round reported: {}", output.lock().unwrap());
        std::thread::sleep(Duration::from_millis(200));
    }
    let pid = sync.child().id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = sync.child().try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "sync --every did not stop within 15 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    };
    reader.join().unwrap();
    let out = output.lock().unwrap().clone();
    let mut err = String::new();
    sync.child().stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert_eq!(status.code(), Some(0), "SIGTERM stops sync --every cleanly: {err}\n{out}");
    let failed = out.find("sync failed").unwrap_or_else(|| panic!("a failed round is reported:\n{out}\n{err}"));
    let uploaded = out.find("uploaded 3").unwrap_or_else(|| panic!("the case is uploaded:\n{out}\n{err}"));
    assert!(failed < uploaded, "the failure comes before the success:\n{out}");
    assert!(out.trim_end().ends_with("stopped"), "{out}");
    eprintln!("sync --every output:\n{out}");

    let counts = activity_counts(&db);
    assert_eq!((counts.get(&first), counts.get(&second)), (Some(&1), Some(&1)), "{counts:?}");
    assert_no_duplicate_changes(&db);
    let status = ok(&dir, &["status"]);
    assert_eq!(pending_in_status(&status), 0, "nothing pending:\n{status}");
    assert!(status.contains(&case), "{status}");
    let shown = ok(&dir, &["show", &case]);
    assert!(shown.contains(&first) && shown.contains(&second), "{shown}");
}
