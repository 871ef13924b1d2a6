//! `tsunagi`: the one command-line binary of the system.
//!
//! - `tsunagi serve [--config FILE]`: runs the server (configuration from the environment
//!   and/or a file of `KEY=VALUE` lines; see `tsunagi_server::config`).
//! - `tsunagi migrate [--config FILE]`: applies pending database migrations.
//! - `tsunagi admin …`: municipalities, areas, organisations, staff, devices, quarantine.
//! - `tsunagi inspect FILE`: reads a saved case document (as a phone's replica store keeps
//!   it) and prints its typed view as JSON, conflicts included, plus every schema issue.
//! - `tsunagi bench …`: the benchmark harness of the sync protocol (`docs/benchmarks.md`).
//! - `tsunagi catalogue`: prints the default referral catalogue as JSON, the starting point
//!   for a deployment that names its agencies differently.
//!
//! Exit codes: 0 success, 1 failure (one line on standard error), 2 wrong usage.

mod admin;
mod bench;
mod demo;
mod field;
mod inspect;
mod serve;
mod settings;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "tsunagi",
    version,
    about = "tsunagi: backend and sync engine for field outreach (重層的支援体制整備事業)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server until stopped (SIGINT/SIGTERM).
    Serve {
        /// A file of KEY=VALUE lines (TSUNAGI_DATABASE_URL, TSUNAGI_BIND, ...); the
        /// environment overrides it.
        #[arg(long, value_name = "FILE", env = "TSUNAGI_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Apply pending database migrations, then exit.
    Migrate {
        /// A file of KEY=VALUE lines; the environment overrides it.
        #[arg(long, value_name = "FILE", env = "TSUNAGI_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Administration: accounts, devices, quarantine.
    Admin(admin::AdminArgs),
    /// Print a saved case document as its typed view (JSON), with conflicts and schema issues.
    Inspect {
        /// A case document file (Automerge `save()` output, e.g. `cases/<case-id>.automerge`).
        file: PathBuf,
    },
    /// Print the default referral catalogue (つなぎ先 and intake sources) as JSON.
    Catalogue,
    /// A field day end to end on an embedded server, with nothing to install or configure.
    Demo(demo::DemoArgs),
    /// A command-line field client: offline replicas of cases, synced with a server.
    Field(field::FieldArgs),
    /// Benchmark the sync protocol: real clients against a real server (docs/benchmarks.md).
    Bench(bench::BenchArgs),
}

fn main() -> ExitCode {
    // Before any PostgreSQL connection (serve, migrate, admin, bench, demo): see the function.
    tsunagi_server::store::prepare_libpq();
    // clap exits with 2 on wrong usage (and 0 for --help / --version).
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", format!("{e:#}").replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve { config } => serve::serve(config.as_deref()),
        Command::Migrate { config } => serve::migrate(config.as_deref()),
        Command::Admin(args) => admin::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Field(args) => field::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Inspect { file } => inspect::inspect(&file),
        Command::Catalogue => {
            println!("{}", tsunagi_sync::domain::catalogue::Catalogue::default().to_json_pretty());
            Ok(ExitCode::SUCCESS)
        }
    }
}
