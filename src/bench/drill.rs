//! `tsunagi bench --scenario drill-postgres-restart`: the PostgreSQL server is stopped and
//! started again while devices sync under load (issue #7, failure drills; see
//! `docs/benchmarks.md`).
//!
//! The drill runs on a PostgreSQL server **of its own**, which it stops and starts with the
//! commands it is given (`--stop-command`, `--start-command`, run with `sh -c`): never the
//! server other work shares. It refuses the default test server (a loopback address on port
//! 5432), and checks that the stop command really made the `--postgres` URL unreachable.
//!
//! 1. A fresh database on that server, seeded as `load` seeds it (`--load-devices` counsellors
//!    with `--load-cases` cases each), and `tsunagi serve` started on it as a child process.
//! 2. The devices (the phone stack of `tsunagi-sync`, as in every scenario) log field-day
//!    batches and sync them in a loop. Every sync is one attempt of the real `SyncClient`
//!    without retries of its own, so that each answer is seen: its status, its `Retry-After`,
//!    how long it took. After a failure a device waits as a phone does (the `Retry-After`, or
//!    a second) and tries again, with whatever it logged meanwhile.
//! 3. A probe thread asks `GET /readyz` and a read endpoint (`GET /v1/cases`) every quarter of
//!    a second, with plain HTTP/1.1, and records the same.
//! 4. After a third of `--seconds`, the stop command; `--outage-seconds` later, the start
//!    command; then the rest of `--seconds` of load. The server is never restarted.
//! 5. Each device then syncs until it succeeds (a minute at most), and the `changes` table is
//!    compared with the devices' replicas: every change the server acknowledged to a device
//!    before the drain (the change is covered by the case's `since`, which only a server's
//!    answer moves) is stored exactly once, and so is every change a device holds after it
//!    (nothing pending is left behind).
//!
//! The drill passes when every failed answer was a `503` with `Retry-After` and came within
//! [`FAIL_FAST`] of the stop (or of the request, if later), nothing answered `500` or dropped the connection, the same server process
//! answered again after the start, and the database holds every change exactly once.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use diesel::prelude::*;
use serde_json::{json, Value};
use tsunagi_server::store::{schema, Database, DatabaseUrl, StoreError};
use tsunagi_sync::client::{ClientError, RetryPolicy, SyncClient};

use super::device::{self, Device};
use super::seed::Seeder;
use super::server::{Backend, BenchDatabase, ServerProcess};
use super::text::Rng;
use super::Params;

/// The longest a failed request may take during the outage and still count as failing fast:
/// well under the database pool's wait for a connection (10 s) and a phone's patience.
pub const FAIL_FAST: Duration = Duration::from_secs(3);

/// How often the probe asks.
const PROBE_EVERY: Duration = Duration::from_millis(250);

/// How long a device may take to sync successfully after the load.
const DRAIN_LIMIT: Duration = Duration::from_secs(60);

/// The commands that stop and start the drill's PostgreSQL server.
#[derive(Debug, Clone)]
pub struct Commands {
    /// Stops it (e.g. `pg_ctlcluster 15 drill stop`).
    pub stop: String,
    /// Starts it again (e.g. `pg_ctlcluster 15 drill start`).
    pub start: String,
    /// How long it stays stopped.
    pub outage: Duration,
}

/// What one request got.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// A success (and, for a sync, a clean one).
    Ok,
    /// An HTTP status other than success.
    Status { status: u16, retry_after: Option<u64> },
    /// No answer: the connection failed, was dropped, or timed out.
    Network(String),
    /// Anything else (an unexpected sync outcome, a client-side failure).
    Other(String),
}

/// One request, on the drill's clock.
#[derive(Debug, Clone)]
struct Attempt {
    /// `sync`, `readyz`, `cases`, or `drain` (a sync after the load).
    what: &'static str,
    /// Seconds since the load began.
    at: f64,
    /// Seconds until the answer (or the failure).
    took: f64,
    outcome: Outcome,
}

/// The drill's clock: when things happened, in seconds since the load began.
#[derive(Debug, Default, Clone, Copy)]
struct Timeline {
    stop_issued: f64,
    stop_done: f64,
    start_issued: f64,
    start_done: f64,
    load_end: f64,
}

/// Which part of the drill a request belongs to: answered before the stop, overlapping the
/// outage (from the stop until the start command returned), or sent after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Before,
    Outage,
    After,
}

impl Phase {
    fn of(a: &Attempt, t: &Timeline) -> Phase {
        if a.at + a.took < t.stop_issued {
            Phase::Before
        } else if a.at < t.start_done {
            Phase::Outage
        } else {
            Phase::After
        }
    }

    fn label(self) -> &'static str {
        match self {
            Phase::Before => "before the stop",
            Phase::Outage => "during the outage",
            Phase::After => "after the start",
        }
    }
}

/// `host` and `port` of a PostgreSQL URL (port 5432 when none is given).
fn host_and_port(url: &str) -> Option<(String, u16)> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    if let Some(bracketed) = host_port.strip_prefix('[') {
        let (host, after) = bracketed.split_once(']')?;
        let port = after.strip_prefix(':').map_or(Some(5432), |p| p.parse().ok())?;
        return Some((host.to_owned(), port));
    }
    match host_port.rsplit_once(':') {
        Some((host, port)) => Some((host.to_owned(), port.parse().ok()?)),
        None => Some((host_port.to_owned(), 5432)),
    }
}

/// Refuses the PostgreSQL server the tests share (a loopback address, port 5432).
fn refuse_shared_server(url: &str) -> anyhow::Result<()> {
    let (host, port) = host_and_port(url).context("a PostgreSQL URL: postgres://user@host:port/database")?;
    let loopback = host.is_empty()
        || host.eq_ignore_ascii_case("localhost")
        || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if loopback && port == 5432 {
        bail!(
            "the drill stops and starts the PostgreSQL server of --postgres; it refuses the one on this \
             machine's port 5432, which tests share. Make a cluster of its own on another port \
             (docs/benchmarks.md, drills)"
        );
    }
    Ok(())
}

/// Runs `command` with `sh -c`; fails unless it exits successfully.
fn run_command(what: &str, command: &str) -> anyhow::Result<()> {
    let output =
        Command::new("sh").arg("-c").arg(command).output().with_context(|| format!("cannot run the {what} command"))?;
    if !output.status.success() {
        bail!("the {what} command failed ({}): {}", output.status, String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(())
}

/// Whether the PostgreSQL server of `url` accepts a connection.
fn postgres_answers(url: &str) -> bool {
    PgConnection::establish(url).is_ok()
}

/// `GET path` with plain HTTP/1.1 on the server's port: the status and `Retry-After`.
fn http_get(port: u16, path: &str, token: &str) -> Outcome {
    let mut stream = match TcpStream::connect((Ipv4Addr::LOCALHOST, port)) {
        Ok(stream) => stream,
        Err(e) => return Outcome::Network(e.to_string()),
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(120)));
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nAccept: application/json\r\n\
         Connection: close\r\n\r\n"
    );
    if let Err(e) = stream.write_all(request.as_bytes()) {
        return Outcome::Network(e.to_string());
    }
    let mut answer = Vec::new();
    if let Err(e) = stream.read_to_end(&mut answer) {
        return Outcome::Network(e.to_string());
    }
    let head_end = answer.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(answer.len());
    let head = String::from_utf8_lossy(&answer[..head_end]);
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|s| s.parse::<u16>().ok());
    let retry_after = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("retry-after"))
        .and_then(|(_, value)| value.trim().parse::<u64>().ok());
    match status {
        Some(200) => Outcome::Ok,
        Some(status) => Outcome::Status { status, retry_after },
        None => Outcome::Network("an answer without a status line".into()),
    }
}

/// What a failed sync says.
fn outcome_of(error: &ClientError) -> Outcome {
    match error {
        ClientError::Api { status, retry_after, .. } => {
            Outcome::Status { status: *status, retry_after: retry_after.map(|d| d.as_secs()) }
        }
        ClientError::Network(e) => Outcome::Network(e.to_string()),
        ClientError::RetriesExhausted { last, .. } => outcome_of(last),
        other => Outcome::Other(other.to_string()),
    }
}

/// A device of the drill: the harness's device, with a client that never retries by itself.
struct DrillDevice {
    device: Device,
    client: SyncClient,
    token: String,
}

impl DrillDevice {
    async fn sign_in(device: Device, url: &str) -> anyhow::Result<DrillDevice> {
        let client = SyncClient::builder(url)
            .retry(RetryPolicy::never())
            .timeout(Duration::from_secs(120))
            .build()
            .context("cannot build the sync client")?;
        let tokens = client
            .login(&device.person.login, &device.person.password, device.person.device)
            .await
            .with_context(|| format!("{} cannot sign in", device.person.login))?;
        Ok(DrillDevice { device, client, token: tokens.access_token })
    }

    /// One sync (one attempt), timed.
    async fn sync(&mut self, what: &'static str, clock: Instant) -> Attempt {
        let at = clock.elapsed().as_secs_f64();
        let started = Instant::now();
        let result = self.client.sync(&self.token, &mut self.device.session, &mut self.device.store).await;
        let took = started.elapsed().as_secs_f64();
        let outcome = match result {
            Ok(report) => match device::check(&report, &self.device.person.login) {
                Ok(()) => Outcome::Ok,
                Err(e) => Outcome::Other(format!("{e:#}")),
            },
            Err(e) => outcome_of(&e),
        };
        Attempt { what, at, took, outcome }
    }

    /// Every change of every replica, by case: (acknowledged by the server, not yet).
    fn ledger(&self) -> anyhow::Result<Ledger> {
        let mut ledger = Ledger::default();
        for case in self.device.cases() {
            let Some(mut doc) = self.device.store.load_doc(&case)? else { continue };
            let since = self.device.store.since(&case)?;
            let pending: HashSet<Vec<u8>> = doc.get_changes(&since).iter().map(|c| c.hash().0.to_vec()).collect();
            for change in doc.get_changes(&[]) {
                let hash = change.hash().0.to_vec();
                let entry = (case.to_string(), hash.clone());
                if pending.contains(&hash) {
                    ledger.pending.push(entry);
                } else {
                    ledger.acknowledged.push(entry);
                }
            }
        }
        Ok(ledger)
    }
}

/// Changes a device holds, as `(case id, change hash)`.
#[derive(Debug, Default)]
struct Ledger {
    acknowledged: Vec<(String, Vec<u8>)>,
    pending: Vec<(String, Vec<u8>)>,
}

/// How many times each `(case id, change hash)` is in the `changes` table.
fn stored_changes(url: &DatabaseUrl) -> anyhow::Result<HashMap<(String, Vec<u8>), i64>> {
    let db = Database::connect(url, 1).context("cannot open the drill's database")?;
    let rows = db
        .read(|c| -> Result<Vec<(String, Vec<u8>, i64)>, StoreError> {
            Ok(schema::changes::table
                .group_by((schema::changes::case_id, schema::changes::hash))
                .select((schema::changes::case_id, schema::changes::hash, diesel::dsl::count_star()))
                .load(c)?)
        })
        .context("cannot read the changes table")?;
    Ok(rows.into_iter().map(|(case, hash, n)| ((case, hash), n)).collect())
}

/// What the comparison of ledgers with the `changes` table found.
#[derive(Debug, Default)]
struct Tally {
    checked: usize,
    missing: usize,
    duplicated: usize,
}

fn compare(entries: &[(String, Vec<u8>)], stored: &HashMap<(String, Vec<u8>), i64>) -> Tally {
    let mut tally = Tally::default();
    for entry in entries {
        tally.checked += 1;
        match stored.get(entry).copied().unwrap_or(0) {
            0 => tally.missing += 1,
            1 => {}
            _ => tally.duplicated += 1,
        }
    }
    tally
}

/// The drill's seeding: as `load`'s, on the calling thread.
fn seed(seeder: &Seeder, dir: &std::path::Path, p: &Params) -> anyhow::Result<Vec<Device>> {
    let mut devices = Vec::with_capacity(p.load_devices);
    for i in 0..p.load_devices {
        let person = seeder.counsellor(&format!("dr-{i:04}"))?;
        let mut device = Device::new(dir, person, Rng::derive(p.seed, i as u64))?;
        for _ in 0..p.load_cases {
            device.open_case(seeder.municipality, p.case_activities, p.narrative_chars)?;
        }
        seeder.sync(&mut device)?;
        devices.push(device);
    }
    Ok(devices)
}

/// Nearest-rank percentile of `values` (sorted here), in seconds.
fn percentile(values: &mut [f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * values.len() as f64).ceil().max(1.0) as usize;
    values.get(rank.min(values.len()) - 1).copied()
}

fn describe(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Ok => "200".into(),
        Outcome::Status { status, retry_after: Some(s) } => format!("{status} (Retry-After: {s})"),
        Outcome::Status { status, retry_after: None } => format!("{status} without Retry-After"),
        Outcome::Network(_) => "no answer (network)".into(),
        Outcome::Other(_) => "unexpected".into(),
    }
}

/// The server's `WARN` and `ERROR` lines, without their time and request span, counted (in
/// the order they first appear; at most twenty kinds).
fn log_warnings(path: &std::path::Path) -> Vec<(String, usize)> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut out: Vec<(String, usize)> = Vec::new();
    for line in text.lines() {
        let Some(level) = line.find(" WARN ").or_else(|| line.find(" ERROR ")) else { continue };
        let rest = &line[level..];
        // `request{…}: sync{…}: target: message`: keep the target and the message.
        let message = rest.rsplit_once("}: ").map_or(rest, |(_, m)| m).trim();
        let level = if rest.starts_with(" WARN") { "WARN" } else { "ERROR" };
        let message = format!("{level} {message}");
        match out.iter().position(|(m, _)| *m == message) {
            Some(i) => out[i].1 += 1,
            None if out.len() < 20 => out.push((message, 1)),
            None => {}
        }
    }
    out
}

/// The result of a drill: whether every check passed, and the JSON record.
pub struct DrillResult {
    /// Every check passed.
    pub passed: bool,
    /// The record (for `--json`).
    pub json: Value,
}

/// Runs the drill (see the module documentation).
pub fn run(
    backend: &Backend,
    dir: &std::path::Path,
    params: &Params,
    runtime: &tokio::runtime::Runtime,
    commands: &Commands,
) -> anyhow::Result<DrillResult> {
    let Backend::Postgres(admin) = backend else {
        bail!("the drill needs --postgres URL: a PostgreSQL server of its own, which it stops and starts")
    };
    refuse_shared_server(admin)?;
    if !postgres_answers(admin) {
        bail!("the PostgreSQL server of --postgres does not answer before the drill");
    }
    let p = params;
    let seeding = Instant::now();
    let db = BenchDatabase::create(backend, dir, "drill")?;
    let seeder = Seeder::new(&db.url)?;
    let devices = seed(&seeder, dir, p)?;
    drop(seeder);
    println!(
        "drill-postgres-restart: {} devices × {} cases seeded in {:.1} s",
        p.load_devices,
        p.load_cases,
        seeding.elapsed().as_secs_f64()
    );
    let mut server = ServerProcess::start(&db, dir, "drill")?;
    let port = server.port();
    let url = format!("http://127.0.0.1:{port}");
    let devices = runtime.block_on(async {
        let mut out = Vec::with_capacity(devices.len());
        for device in devices {
            out.push(DrillDevice::sign_in(device, &url).await?);
        }
        anyhow::Ok(out)
    })?;
    let probe_token = devices.first().map(|d| d.token.clone()).context("the drill needs at least one device")?;

    let before = (p.seconds / 3.0).max(3.0);
    let after = (p.seconds - before).max(10.0);
    let (activities, amendments, chars) = (p.field_activities, p.field_amendments, p.narrative_chars);
    let clock = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let attempts: Arc<Mutex<Vec<Attempt>>> = Arc::default();

    // The probe: /readyz and a read endpoint, four times a second.
    let probe = {
        let (stop, attempts, token) = (stop.clone(), attempts.clone(), probe_token);
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                for (what, path) in [("readyz", "/readyz"), ("cases", "/v1/cases?limit=1")] {
                    let at = clock.elapsed().as_secs_f64();
                    let started = Instant::now();
                    let outcome = http_get(port, path, &token);
                    let took = started.elapsed().as_secs_f64();
                    if let Ok(mut all) = attempts.lock() {
                        all.push(Attempt { what, at, took, outcome });
                    }
                }
                std::thread::sleep(PROBE_EVERY);
            }
        })
    };

    // The devices: field-day batches and a sync, in a loop.
    let tasks: Vec<_> = devices
        .into_iter()
        .map(|mut d| {
            let (stop, attempts) = (stop.clone(), attempts.clone());
            runtime.spawn(async move {
                let cases = d.device.cases();
                while !stop.load(Ordering::SeqCst) {
                    let batch =
                        tokio::task::block_in_place(|| d.device.field_day(&cases, activities, amendments, chars));
                    if let Err(e) = batch {
                        return (d, Err(e));
                    }
                    let attempt = d.sync("sync", clock).await;
                    let wait = match &attempt.outcome {
                        Outcome::Ok => None,
                        Outcome::Status { retry_after: Some(s), .. } => Some(Duration::from_secs(*s)),
                        _ => Some(Duration::from_secs(1)),
                    };
                    if let Ok(mut all) = attempts.lock() {
                        all.push(attempt);
                    }
                    if let Some(wait) = wait {
                        // As a phone: wait, but not past the end of the load.
                        let until = Instant::now() + wait;
                        while Instant::now() < until && !stop.load(Ordering::SeqCst) {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
                (d, Ok(()))
            })
        })
        .collect();

    // The outage.
    let mut t = Timeline::default();
    let mut notes = Vec::new();
    std::thread::sleep(Duration::from_secs_f64(before));
    t.stop_issued = clock.elapsed().as_secs_f64();
    let stopped = run_command("stop", &commands.stop);
    t.stop_done = clock.elapsed().as_secs_f64();
    let mut unreachable = false;
    if stopped.is_ok() {
        unreachable = !postgres_answers(admin);
        if !unreachable {
            notes.push("the stop command returned, but the --postgres URL still connects".to_owned());
        }
        std::thread::sleep(commands.outage);
    }
    t.start_issued = clock.elapsed().as_secs_f64();
    let started = run_command("start", &commands.start);
    t.start_done = clock.elapsed().as_secs_f64();
    if let Err(e) = &stopped {
        notes.push(format!("{e:#}"));
    }
    if let Err(e) = &started {
        notes.push(format!("{e:#}"));
    }
    if started.is_ok() {
        std::thread::sleep(Duration::from_secs_f64(after));
    }
    t.load_end = clock.elapsed().as_secs_f64();
    stop.store(true, Ordering::SeqCst);
    let _ = probe.join();
    let mut devices = Vec::new();
    let mut device_errors = Vec::new();
    for task in tasks {
        let (d, result) = runtime.block_on(task).context("a device's task failed")?;
        if let Err(e) = result {
            device_errors.push(format!("{e:#}"));
        }
        devices.push(d);
    }
    started.context("the drill could not start its PostgreSQL server again; start it by hand")?;
    stopped?;
    let server_alive = server.check_running().is_ok();

    // What the server acknowledged during the load, before the drain.
    let mut acknowledged = Vec::new();
    let mut pending_before_drain = 0usize;
    for d in &devices {
        let ledger = d.ledger()?;
        acknowledged.extend(ledger.acknowledged);
        pending_before_drain += ledger.pending.len();
    }

    // The drain: each device syncs until it succeeds.
    let mut drain_ok = true;
    runtime.block_on(async {
        for d in devices.iter_mut() {
            let deadline = Instant::now() + DRAIN_LIMIT;
            loop {
                let attempt = d.sync("drain", clock).await;
                let ok = attempt.outcome == Outcome::Ok;
                if let Ok(mut all) = attempts.lock() {
                    all.push(attempt);
                }
                if ok {
                    break;
                }
                if Instant::now() > deadline {
                    drain_ok = false;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    });
    let mut held = Vec::new();
    let mut pending_after_drain = 0usize;
    for d in &devices {
        let ledger = d.ledger()?;
        pending_after_drain += ledger.pending.len();
        held.extend(ledger.acknowledged);
        held.extend(ledger.pending);
    }
    let server_alive = server_alive && server.check_running().is_ok();
    let stored = stored_changes(&db.url)?;
    let duplicated_rows = stored.values().filter(|n| **n > 1).count();
    let acked = compare(&acknowledged, &stored);
    let delivered = compare(&held, &stored);
    let attempts = attempts.lock().map(|a| a.clone()).unwrap_or_default();

    // The report.
    println!();
    println!("== drill-postgres-restart ==");
    println!(
        "load {:.1} s with {} devices; stop issued at {:.1} s (took {:.1} s), start issued at {:.1} s \
         (took {:.1} s), load ended at {:.1} s",
        t.load_end,
        p.load_devices,
        t.stop_issued,
        t.stop_done - t.stop_issued,
        t.start_issued,
        t.start_done - t.start_issued,
        t.load_end
    );
    println!("PostgreSQL unreachable after the stop command: {}", if unreachable { "yes" } else { "NO" });
    let mut phases_json = Vec::new();
    for what in ["sync", "cases", "readyz"] {
        for phase in [Phase::Before, Phase::Outage, Phase::After] {
            let these: Vec<&Attempt> =
                attempts.iter().filter(|a| a.what == what && Phase::of(a, &t) == phase).collect();
            if these.is_empty() {
                continue;
            }
            let mut counts: BTreeMap<String, usize> = BTreeMap::new();
            for a in &these {
                *counts.entry(describe(&a.outcome)).or_default() += 1;
            }
            let mut ok: Vec<f64> = these.iter().filter(|a| a.outcome == Outcome::Ok).map(|a| a.took).collect();
            let mut failed: Vec<f64> = these.iter().filter(|a| a.outcome != Outcome::Ok).map(|a| a.took).collect();
            let fmt = |v: Option<f64>| v.map(|s| format!("{:.0}", s * 1000.0)).unwrap_or_else(|| "–".into());
            println!(
                "{what:>6} {:<16} {:>4} requests: {}; ok p50/max {} / {} ms; failed p50/max {} / {} ms",
                phase.label(),
                these.len(),
                counts.iter().map(|(k, n)| format!("{n}× {k}")).collect::<Vec<_>>().join(", "),
                fmt(percentile(&mut ok.clone(), 50.0)),
                fmt(percentile(&mut ok, 100.0)),
                fmt(percentile(&mut failed.clone(), 50.0)),
                fmt(percentile(&mut failed, 100.0)),
            );
            phases_json.push(json!({
                "request": what,
                "phase": phase.label(),
                "requests": these.len(),
                "outcomes": counts,
                "ok_p50_s": percentile(&mut ok.clone(), 50.0),
                "ok_max_s": percentile(&mut ok, 100.0),
                "failed_p50_s": percentile(&mut failed.clone(), 50.0),
                "failed_max_s": percentile(&mut failed, 100.0),
            }));
        }
    }
    let first_ok_after = |what: &str| {
        attempts
            .iter()
            .filter(|a| a.what == what && a.at >= t.start_done && a.outcome == Outcome::Ok)
            .map(|a| a.at + a.took - t.start_done)
            .min_by(|a, b| a.total_cmp(b))
    };
    let first_failure_after_stop = attempts
        .iter()
        .filter(|a| a.what == "readyz" && a.at >= t.stop_issued && a.outcome != Outcome::Ok)
        .map(|a| a.at + a.took - t.stop_issued)
        .min_by(|a, b| a.total_cmp(b));
    let last_failure = attempts
        .iter()
        .filter(|a| a.what != "drain" && a.outcome != Outcome::Ok)
        .map(|a| a.at + a.took - t.start_done)
        .max_by(|a, b| a.total_cmp(b));
    let secs = |v: Option<f64>| v.map(|s| format!("{s:.2} s")).unwrap_or_else(|| "never".into());
    let load: Vec<&Attempt> = attempts.iter().filter(|a| a.what != "drain").collect();
    let failures: Vec<&&Attempt> = load.iter().filter(|a| a.outcome != Outcome::Ok).collect();
    // How long a failed request waited for its answer once the database was going away: from
    // the stop (or the request, if later) to the answer.
    let slowest_failure = failures.iter().map(|a| a.at + a.took - a.at.max(t.stop_issued)).fold(0.0f64, f64::max);
    println!(
        "slowest failed request, from the stop (or its start, if later) to its answer: {slowest_failure:.2} s \
         (limit {} s)",
        FAIL_FAST.as_secs()
    );
    println!("readyz first failed {} after the stop was issued", secs(first_failure_after_stop));
    println!(
        "after the start returned: readyz 200 after {}, first successful sync after {}, last failure at {}",
        secs(first_ok_after("readyz")),
        secs(first_ok_after("sync")),
        secs(last_failure)
    );
    println!("the same server process throughout, still running: {}", if server_alive { "yes" } else { "NO" });
    let drained = attempts.iter().filter(|a| a.what == "drain").count();
    println!(
        "acknowledged during the load: {} changes, {} missing, {} stored twice",
        acked.checked, acked.missing, acked.duplicated
    );
    println!(
        "pending at the end of the load: {pending_before_drain} changes; after the drain ({drained} sync(s)): \
         {pending_after_drain} pending; of {} changes the devices hold, {} missing, {} stored twice; \
         rows of the changes table stored twice: {duplicated_rows}",
        delivered.checked, delivered.missing, delivered.duplicated
    );

    // The checks.
    let checks = [
        ("the stop command made PostgreSQL unreachable", unreachable),
        ("the devices saw the outage (some request failed)", !failures.is_empty()),
        (
            "every failed request was a 503 with Retry-After (no 500, no dropped connection)",
            failures.iter().all(|a| matches!(a.outcome, Outcome::Status { status: 503, retry_after: Some(_) })),
        ),
        ("failed requests answered within the fail-fast limit", slowest_failure <= FAIL_FAST.as_secs_f64()),
        ("the same server process answered again after the start (no restart)", server_alive),
        ("readyz answered 200 again after the start", first_ok_after("readyz").is_some()),
        ("devices synced successfully after the start", first_ok_after("sync").is_some()),
        ("every change acknowledged during the load is stored exactly once", acked.missing + acked.duplicated == 0),
        ("every device synced after the load", drain_ok),
        ("nothing left pending after the drain", pending_after_drain == 0),
        ("every change the devices hold is stored exactly once", delivered.missing + delivered.duplicated == 0),
        ("no device failed otherwise", device_errors.is_empty()),
    ];
    println!();
    for (name, ok) in &checks {
        println!("  [{}] {name}", if *ok { "ok" } else { "FAILED" });
    }
    for note in notes.iter().chain(&device_errors) {
        println!("  note: {note}");
    }
    if let Some(example) = failures.iter().find_map(|a| match &a.outcome {
        Outcome::Network(m) | Outcome::Other(m) => Some(m.clone()),
        _ => None,
    }) {
        println!("  an unexpected failure: {example}");
    }
    let passed = checks.iter().all(|(_, ok)| *ok);
    println!("drill {}", if passed { "passed" } else { "FAILED" });
    let warnings = log_warnings(&dir.join("drill-server.log"));
    if !warnings.is_empty() {
        println!("the server's warnings and errors (how many, the first of each):");
        for (message, count) in &warnings {
            println!("  {count:>5}× {message}");
        }
    }
    let json = json!({
        "devices": p.load_devices,
        "cases_per_device": p.load_cases,
        "outage_seconds": commands.outage.as_secs_f64(),
        "timeline_s": {
            "stop_issued": t.stop_issued,
            "stop_done": t.stop_done,
            "start_issued": t.start_issued,
            "start_done": t.start_done,
            "load_end": t.load_end,
        },
        "postgres_unreachable_after_stop": unreachable,
        "requests": phases_json,
        "readyz_failed_after_stop_s": first_failure_after_stop,
        "readyz_ok_after_start_s": first_ok_after("readyz"),
        "sync_ok_after_start_s": first_ok_after("sync"),
        "slowest_failure_during_outage_s": slowest_failure,
        "server_kept_running": server_alive,
        "acknowledged_during_load": { "changes": acked.checked, "missing": acked.missing, "duplicated": acked.duplicated },
        "pending_at_load_end": pending_before_drain,
        "pending_after_drain": pending_after_drain,
        "held_after_drain": { "changes": delivered.checked, "missing": delivered.missing, "duplicated": delivered.duplicated },
        "server_warnings": warnings.iter().map(|(m, n)| json!({ "message": m, "count": n })).collect::<Vec<_>>(),
        "checks": checks.iter().map(|(name, ok)| json!({ "check": name, "passed": ok })).collect::<Vec<_>>(),
        "passed": passed,
    });
    drop(server);
    Ok(DrillResult { passed, json })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_host_and_port_of_postgres_urls() {
        assert_eq!(host_and_port("postgres://postgres@127.0.0.1:5433/postgres"), Some(("127.0.0.1".into(), 5433)));
        assert_eq!(host_and_port("postgres://u:p@db.internal/x"), Some(("db.internal".into(), 5432)));
        assert_eq!(host_and_port("postgresql://[::1]:5433/x?sslmode=disable"), Some(("::1".into(), 5433)));
        assert_eq!(host_and_port("postgres://localhost"), Some(("localhost".into(), 5432)));
        assert_eq!(host_and_port("nonsense"), None);
    }

    #[test]
    fn refuses_the_shared_test_server() {
        assert!(refuse_shared_server("postgres://postgres@127.0.0.1:5432/postgres").is_err());
        assert!(refuse_shared_server("postgres://postgres@localhost/postgres").is_err());
        assert!(refuse_shared_server("postgres://postgres@127.0.0.1:5433/postgres").is_ok());
        assert!(refuse_shared_server("postgres://postgres@db.internal:5432/postgres").is_ok());
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        assert_eq!(percentile(&mut [3.0, 1.0, 2.0], 50.0), Some(2.0));
        assert_eq!(percentile(&mut [], 50.0), None);
    }
}
