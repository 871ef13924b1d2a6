//! Configuration and logging for the subcommands that touch the server or its database.

use std::io::IsTerminal;
use std::path::Path;

use anyhow::Context;
use tsunagi_server::config::{self, Settings};
use tsunagi_server::store::Database;

/// Logs to standard error; `RUST_LOG` chooses what (default `info`).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// The server's settings: the file, then the environment (which wins).
pub fn server_settings(file: Option<&Path>) -> anyhow::Result<Settings> {
    let dir = std::env::current_dir().context("cannot determine the current directory")?;
    Settings::load(file, &dir).context("configuration")
}

/// The database alone, for `migrate` and `admin`: read like the server's configuration, but
/// without the signing key, which these commands never use (so they neither need one nor
/// generate one).
pub fn database(file: Option<&Path>) -> anyhow::Result<Database> {
    let vars = config::load_vars(file).context("configuration")?;
    let dir = std::env::current_dir().context("cannot determine the current directory")?;
    let url = config::database_url(&vars, &dir).context("configuration")?;
    let db = Database::connect(&url, 2).context("cannot open the database")?;
    Ok(db)
}
