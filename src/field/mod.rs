//! `tsunagi field …`: a command-line field client — what a counsellor's phone does, from a
//! terminal. It keeps Automerge replicas of cases in a [`ReplicaStore`] directory (`--dir`,
//! default `./tsunagi-field`), edits them offline with the field operations, and syncs them
//! with the server through the [`SyncClient`](tsunagi_sync::client::SyncClient).
//!
//! The session (server URL, device id, staff id, role, refresh token) is kept in
//! `DIR/session.json`, mode 0600; the access token lives in memory only and is obtained from
//! the refresh token by each command that talks to the server.
//!
//! `sync` (once, or `--every SECONDS`) catches SIGINT and SIGTERM. A first signal lets the
//! round in progress go on for up to 10 seconds — an answer in flight is then recorded — and
//! stops after it; a second signal, or the end of those 10 seconds (a round retrying against
//! a server that is down), stops it at once. Either way the replica store is intact (its
//! writes are never cut short) and whatever the server had not acknowledged stays pending for
//! the next sync.
//!
//! Exit codes: 0 success (and a periodic sync stopped by a signal), 1 failure (one line on
//! standard error), 2 wrong usage, 3 this device was revoked and its store wiped, 130 a sync
//! once stopped by a signal before it finished.
//!
//! [`ReplicaStore`]: tsunagi_sync::store::ReplicaStore

mod edit;
mod net;
mod queue;
mod read;
mod session;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

/// `tsunagi field`: arguments.
#[derive(Args)]
pub struct FieldArgs {
    /// The replica store directory (the session is kept in DIR/session.json).
    #[arg(long, value_name = "DIR", default_value = "./tsunagi-field", global = true)]
    dir: PathBuf,
    #[command(subcommand)]
    command: FieldCommand,
}

#[derive(Subcommand)]
enum FieldCommand {
    /// Sign in on this device (password from a no-echo prompt or --password-stdin).
    Login {
        /// The server's base URL, e.g. https://tsunagi.example.jp.
        #[arg(long)]
        server: String,
        /// The login name.
        #[arg(long)]
        login: String,
        /// The registered device id.
        #[arg(long, value_name = "DEVICE_ID")]
        device: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Open a new case offline; prints its id.
    OpenCase(edit::OpenCaseArgs),
    /// Log an activity on a case offline; prints its id.
    Log(Box<edit::LogArgs>),
    /// Amend the narrative of an activity you logged.
    Amend {
        case: String,
        activity: String,
        /// The new narrative (replaces the old one, merged character by character).
        #[arg(long)]
        narrative: String,
    },
    /// Void an activity (it stays visible, marked 取消).
    Void {
        case: String,
        activity: String,
        /// Why (required).
        #[arg(long)]
        reason: String,
    },
    /// The cases in the store.
    List,
    /// A case as a counsellor reads it.
    Show { case: String },
    /// Pending changes per case, the server heads known, the last successful sync, refusals kept.
    Status,
    /// Supervisors: the attention queue (online), for one case or all.
    Attention {
        /// Only this case.
        #[arg(long)]
        case: Option<String>,
    },
    /// Your refused uploads and what a supervisor decided (online).
    Refused,
    /// Sync with the server once, or every SECONDS until Ctrl-C / SIGTERM (a first signal lets
    /// the round in progress finish for up to 10 s; a second stops at once, nothing lost).
    Sync {
        /// Sync again every SECONDS.
        #[arg(long, value_name = "SECONDS")]
        every: Option<u64>,
    },
}

/// Runs a `tsunagi field` command.
pub fn run(args: FieldArgs) -> anyhow::Result<ExitCode> {
    let dir = args.dir;
    match args.command {
        FieldCommand::Login { server, login, device, password_stdin } => {
            net::login(&dir, &server, &login, &device, password_stdin)
        }
        FieldCommand::OpenCase(a) => edit::open_case(&dir, a),
        FieldCommand::Log(a) => edit::log(&dir, *a),
        FieldCommand::Amend { case, activity, narrative } => edit::amend(&dir, &case, &activity, &narrative),
        FieldCommand::Void { case, activity, reason } => edit::void(&dir, &case, &activity, &reason),
        FieldCommand::List => read::list(&dir),
        FieldCommand::Show { case } => read::show(&dir, &case),
        FieldCommand::Status => read::status(&dir),
        FieldCommand::Attention { case } => queue::attention(&dir, case.as_deref()),
        FieldCommand::Refused => queue::refused(&dir),
        FieldCommand::Sync { every } => net::sync(&dir, every),
    }
}
