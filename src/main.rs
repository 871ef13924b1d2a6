//! `tsunagi`: the one command-line binary of the system.
//!
//! Subcommands available in this version:
//! - `tsunagi inspect FILE`: reads a saved case document (as a phone's replica store keeps
//!   it) and prints its typed view as JSON, conflicts included, plus every schema issue.
//! - `tsunagi catalogue`: prints the default referral catalogue as JSON, the starting point
//!   for a deployment that names its agencies differently.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
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
    /// Print a saved case document as its typed view (JSON), with conflicts and schema issues.
    Inspect {
        /// A case document file (Automerge `save()` output, e.g. `cases/<case-id>.automerge`).
        file: PathBuf,
    },
    /// Print the default referral catalogue (つなぎ先 and intake sources) as JSON.
    Catalogue,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Inspect { file } => inspect(&file),
        Command::Catalogue => {
            println!("{}", tsunagi_sync::domain::catalogue::Catalogue::default().to_json_pretty());
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn inspect(file: &std::path::Path) -> anyhow::Result<ExitCode> {
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let doc = automerge::Automerge::load(&bytes)
        .with_context(|| format!("{} is not an Automerge document", file.display()))?;
    let reading = tsunagi_sync::document::read_case(&doc);
    match &reading.view {
        Some(view) => println!("{}", serde_json::to_string_pretty(view)?),
        None => eprintln!("{} is not a readable case document", file.display()),
    }
    for issue in &reading.issues {
        eprintln!("schema issue: {issue}");
    }
    Ok(if reading.view.is_some() && reading.issues.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(2) })
}
