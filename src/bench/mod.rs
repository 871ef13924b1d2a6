//! `tsunagi bench`: the benchmark harness of the sync protocol (see `docs/benchmarks.md`).
//!
//! Each scenario runs **real clients against a real server**:
//!
//! - the server is this binary's `tsunagi serve`, started as a child process on a fresh
//!   database of its own (a SQLite file in a temporary directory, or with `--postgres URL` a
//!   PostgreSQL database created for the scenario and dropped afterwards), configured through
//!   its environment variables ([`server`]);
//! - the devices are the phone stack of `tsunagi-sync` — `SyncClient` + `SyncSession` +
//!   `ReplicaStore` and the field operations of `CaseReplica` — many of them in this process,
//!   on one Tokio runtime ([`device`]);
//! - between them sits a byte-counting TCP proxy on loopback ([`proxy`]), which gives the
//!   HTTP requests, the bytes on the wire in each direction and each request's latency;
//! - the server's CPU time and peak memory come from `/proc/<pid>`, the database size from
//!   the file system or `pg_database_size`.
//!
//! The database is seeded before the server starts ([`seed`]): accounts through
//! `tsunagi_server::admin`, case documents built with the field operations and put through
//! the server's sync engine in process. Then the devices sign in over HTTP, do their offline
//! work, and the **measured phase** is only their syncs.
//!
//! Every scenario is then replayed with the **standard Automerge sync protocol** in process
//! ([`baseline`]) — the same starting documents and the very same changes — and the report
//! gives tsunagi's figures next to it, as ratios ([`report`]).
//!
//! The scenarios ([`scenarios`]):
//!
//! | name | what is measured |
//! | --- | --- |
//! | `reconnect` | `--devices` devices × `--cases-per-device` cases, all in sync, reconnect with nothing new (all at once) |
//! | `field-day` | the same fleet; each device logs `--field-activities` activities and amends `--field-amendments` narratives offline, then all sync at once |
//! | `concurrent` | two counsellors' devices edit the same `--concurrent-cases` cases offline, then sync in turn (A, B, A) |
//! | `first-sync` | a new phone of a counsellor assigned `--first-sync-cases` cases of `--first-sync-activities` activities |
//! | `load` | `--load-devices` devices sync field-day batches in a loop for `--seconds` |
//! | `supervisor` | a supervisor reads visit-log pages and a fiscal year's monthly figures over `--supervisor-cases` × `--supervisor-activities-per-case` activities, bulk-seeded ([`bulk`], [`supervisor`]) |
//!
//! `all` runs the five sync scenarios; `supervisor` runs only when named (seeding a million
//! activities takes minutes), and has no baseline: the standard protocol has no visit log.
//!
//! `--scale` multiplies every count (and the duration) by a factor (at least 1 of each), for a
//! quick run.
//!
//! A failure drill runs on the same harness but is never part of `all`:
//! `drill-postgres-restart` stops and starts a PostgreSQL server of its own under `load`
//! ([`drill`]; `--stop-command`, `--start-command`, `--outage-seconds`).

mod baseline;
mod bulk;
mod device;
mod drill;
mod proxy;
mod report;
mod scenarios;
mod seed;
mod server;
mod supervisor;
mod text;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use serde_json::{json, Value};

use self::server::{Backend, WorkDir};

/// Worker threads of the devices' runtime. The client code does blocking work (Automerge,
/// fsync) inside its async calls: with many workers, one device's work never holds up another
/// device's connection for long.
const DEVICE_THREADS: usize = 16;

/// Which scenario to run.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// Every scenario, in the order below.
    All,
    /// Devices in sync reconnect with nothing new.
    Reconnect,
    /// Each device logs a day's activities offline, then syncs.
    FieldDay,
    /// Two devices edit the same cases offline, then sync.
    Concurrent,
    /// A new phone receives its assigned cases.
    FirstSync,
    /// Many devices sync field-day batches in a loop.
    Load,
    /// A supervisor reads the visit log and the monthly figures over a million activities
    /// (not part of `all`).
    Supervisor,
    /// A drill, not a measurement (never part of `all`): the PostgreSQL server of `--postgres`
    /// is stopped and started again during `load` (`--stop-command`, `--start-command`).
    DrillPostgresRestart,
}

/// `tsunagi bench`.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// The scenario to run.
    #[arg(long, value_enum, default_value = "all")]
    scenario: Scenario,
    /// Multiplies every count and the load duration (at least 1 of each): 0.05 is a quick run.
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    /// Run on PostgreSQL: a URL of a role that may create databases (a database of the
    /// benchmark's own is created per scenario and dropped afterwards). Default: SQLite.
    #[arg(long, value_name = "URL")]
    postgres: Option<String>,
    /// Also write the results as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Devices (one counsellor each) of `reconnect` and `field-day`.
    #[arg(long, default_value_t = 20)]
    devices: usize,
    /// Cases assigned to each of those devices.
    #[arg(long, default_value_t = 50)]
    cases_per_device: usize,
    /// Activities already in each seeded case (`reconnect`, `field-day`, `concurrent`, `load`).
    #[arg(long, default_value_t = 10)]
    case_activities: usize,
    /// Activities a device logs in a field day (`field-day`, `load`).
    #[arg(long, default_value_t = 5)]
    field_activities: usize,
    /// Narratives a device amends in a field day (`field-day`, `load`).
    #[arg(long, default_value_t = 2)]
    field_amendments: usize,
    /// Cases the two devices of `concurrent` both edit.
    #[arg(long, default_value_t = 10)]
    concurrent_cases: usize,
    /// Cases assigned to the new phone of `first-sync`.
    #[arg(long, default_value_t = 200)]
    first_sync_cases: usize,
    /// Activities in each of those cases.
    #[arg(long, default_value_t = 40)]
    first_sync_activities: usize,
    /// Devices of `load`.
    #[arg(long, default_value_t = 50)]
    load_devices: usize,
    /// Cases assigned to each device of `load`.
    #[arg(long, default_value_t = 10)]
    load_cases: usize,
    /// Further cases stored in the database during `load` (held by no benchmark device).
    #[arg(long, default_value_t = 0)]
    stored_cases: usize,
    /// Duration of `load`, in seconds.
    #[arg(long, default_value_t = 30.0)]
    seconds: f64,
    /// Cases stored for `supervisor` (bulk-seeded).
    #[arg(long, default_value_t = 20_000)]
    supervisor_cases: usize,
    /// Activities of each of those cases, over one fiscal year.
    #[arg(long, default_value_t = 50)]
    supervisor_activities_per_case: usize,
    /// Rounds of requests of `supervisor` (each: every filter set, and the figures once).
    #[arg(long, default_value_t = 10)]
    supervisor_rounds: usize,
    /// Visit-log pages read per filter set in `supervisor`: the first and those following
    /// it by `next` (not scaled).
    #[arg(long, default_value_t = 5)]
    supervisor_pages: usize,
    /// `supervisor` on PostgreSQL: keep the seeded database afterwards (its URL is printed),
    /// to look at its query plans; drop it by hand (`DROP DATABASE …`) when done.
    #[arg(long)]
    keep_database: bool,
    /// Characters of each narrative (not scaled).
    #[arg(long, default_value_t = 300)]
    narrative_chars: usize,
    /// Seed of the pseudo-random choices (cases, kinds, sentences).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// `drill-postgres-restart`: the shell command that stops the PostgreSQL server of
    /// `--postgres` (e.g. `pg_ctlcluster 15 drill stop`). Never the server tests share.
    #[arg(long, value_name = "COMMAND")]
    stop_command: Option<String>,
    /// `drill-postgres-restart`: the shell command that starts it again.
    #[arg(long, value_name = "COMMAND")]
    start_command: Option<String>,
    /// `drill-postgres-restart`: seconds between the stop and the start (not scaled).
    #[arg(long, default_value_t = 5.0)]
    outage_seconds: f64,
}

/// The counts a run uses, after scaling.
#[derive(Debug, Clone)]
pub struct Params {
    devices: usize,
    cases_per_device: usize,
    case_activities: usize,
    field_activities: usize,
    field_amendments: usize,
    concurrent_cases: usize,
    first_sync_cases: usize,
    first_sync_activities: usize,
    load_devices: usize,
    load_cases: usize,
    stored_cases: usize,
    seconds: f64,
    supervisor_cases: usize,
    supervisor_activities: usize,
    supervisor_rounds: usize,
    supervisor_pages: usize,
    keep_database: bool,
    narrative_chars: usize,
    seed: u64,
}

impl Params {
    fn from_args(args: &BenchArgs) -> anyhow::Result<Params> {
        let scale = args.scale;
        if !(scale.is_finite() && scale > 0.0) {
            bail!("--scale must be a positive number, not {scale}");
        }
        if !(args.seconds.is_finite() && args.seconds > 0.0) {
            bail!("--seconds must be a positive number");
        }
        let n = |count: usize| ((count as f64 * scale).round() as usize).max(1);
        Ok(Params {
            devices: n(args.devices),
            cases_per_device: n(args.cases_per_device),
            case_activities: n(args.case_activities),
            field_activities: n(args.field_activities),
            field_amendments: n(args.field_amendments),
            concurrent_cases: n(args.concurrent_cases),
            first_sync_cases: n(args.first_sync_cases),
            first_sync_activities: n(args.first_sync_activities),
            load_devices: n(args.load_devices),
            load_cases: n(args.load_cases),
            stored_cases: if args.stored_cases == 0 { 0 } else { n(args.stored_cases) },
            seconds: (args.seconds * scale).max(1.0),
            supervisor_cases: n(args.supervisor_cases),
            supervisor_activities: n(args.supervisor_activities_per_case),
            supervisor_rounds: n(args.supervisor_rounds),
            supervisor_pages: args.supervisor_pages.max(1),
            keep_database: args.keep_database,
            narrative_chars: args.narrative_chars.max(1),
            seed: args.seed,
        })
    }
}

/// The machine, as far as the results depend on it (no host names, no paths).
fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    let memory_bytes = std::fs::read_to_string("/proc/meminfo").ok().and_then(|info| {
        info.lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kib| kib.parse::<u64>().ok())
            .map(|kib| kib * 1024)
    });
    json!({
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "cpu_model": cpu,
        "memory_bytes": memory_bytes,
        "os": std::env::consts::OS,
        "arch": std::env::consts::ARCH,
        "optimised_build": !cfg!(debug_assertions),
    })
}

/// Runs the benchmark.
pub fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let params = Params::from_args(&args)?;
    let backend = match &args.postgres {
        Some(url) => Backend::Postgres(url.clone()),
        None => Backend::Sqlite,
    };
    if args.scenario == Scenario::DrillPostgresRestart {
        return run_drill(&args, &params, &backend);
    }
    let order = [Scenario::Reconnect, Scenario::FieldDay, Scenario::Concurrent, Scenario::FirstSync, Scenario::Load];
    let chosen: Vec<Scenario> = match args.scenario {
        Scenario::All => order.to_vec(),
        one => vec![one],
    };
    let machine = machine();
    println!(
        "tsunagi bench {} on {} ({} CPU(s): {}, {:.1} GiB){}",
        env!("CARGO_PKG_VERSION"),
        backend.label(),
        machine["cpus"],
        machine["cpu_model"].as_str().unwrap_or("unknown"),
        machine["memory_bytes"].as_u64().unwrap_or(0) as f64 / (1024.0 * 1024.0 * 1024.0),
        if cfg!(debug_assertions) { " — a debug build: use --release for figures worth recording" } else { "" }
    );
    // Declared before the runtime, so dropped after it: no device task outlives the directory.
    let dir = WorkDir::new()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(DEVICE_THREADS)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let mut reports: Vec<(&'static str, Value)> = Vec::new();
    for scenario in chosen {
        let ctx = scenarios::Context { backend: &backend, dir: dir.path(), params: &params, runtime: &runtime };
        let (name, table, json) = if scenario == Scenario::Supervisor {
            let report = supervisor::run(&ctx).context("scenario Supervisor")?;
            (report.name, report.table(), report.to_json())
        } else {
            let report = match scenario {
                Scenario::Reconnect => scenarios::reconnect(&ctx),
                Scenario::FieldDay => scenarios::field_day(&ctx),
                Scenario::Concurrent => scenarios::concurrent(&ctx),
                Scenario::FirstSync => scenarios::first_sync(&ctx),
                Scenario::Load => scenarios::load(&ctx),
                Scenario::All | Scenario::DrillPostgresRestart | Scenario::Supervisor => continue,
            }
            .with_context(|| format!("scenario {scenario:?}"))?;
            (report.name, report.table(), report.to_json())
        };
        println!();
        print!("{table}");
        reports.push((name, json));
    }
    if let Some(path) = &args.json {
        let scenarios: serde_json::Map<String, Value> =
            reports.into_iter().map(|(name, json)| (name.to_owned(), json)).collect();
        let out = json!({
            "tool": "tsunagi bench",
            "version": env!("CARGO_PKG_VERSION"),
            "backend": backend.label(),
            "scale": args.scale,
            "machine": machine,
            "scenarios": scenarios,
        });
        let text = serde_json::to_string_pretty(&out).context("cannot encode the results")?;
        std::fs::write(path, text + "\n").with_context(|| format!("cannot write {}", path.display()))?;
        println!();
        println!("results written to {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// `--scenario drill-postgres-restart`: exits with failure unless every check of the drill
/// passed.
fn run_drill(args: &BenchArgs, params: &Params, backend: &Backend) -> anyhow::Result<ExitCode> {
    let (Some(stop), Some(start)) = (&args.stop_command, &args.start_command) else {
        bail!("drill-postgres-restart needs --stop-command and --start-command (see docs/benchmarks.md, drills)");
    };
    if !(args.outage_seconds.is_finite() && args.outage_seconds >= 0.0 && args.outage_seconds <= 3600.0) {
        bail!("--outage-seconds must be between 0 and 3600");
    }
    let commands = drill::Commands {
        stop: stop.clone(),
        start: start.clone(),
        outage: std::time::Duration::from_secs_f64(args.outage_seconds),
    };
    println!(
        "tsunagi bench {}: drill-postgres-restart{}",
        env!("CARGO_PKG_VERSION"),
        if cfg!(debug_assertions) { " (a debug build: use --release for figures worth recording)" } else { "" }
    );
    let dir = WorkDir::new()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(DEVICE_THREADS)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let result = drill::run(backend, dir.path(), params, &runtime, &commands)?;
    if let Some(path) = &args.json {
        let out = json!({
            "tool": "tsunagi bench",
            "version": env!("CARGO_PKG_VERSION"),
            "scenario": "drill-postgres-restart",
            "machine": machine(),
            "drill": result.json,
        });
        let text = serde_json::to_string_pretty(&out).context("cannot encode the results")?;
        std::fs::write(path, text + "\n").with_context(|| format!("cannot write {}", path.display()))?;
        println!("results written to {}", path.display());
    }
    drop(runtime);
    Ok(if result.passed { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
