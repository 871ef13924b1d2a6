//! Configuration and logging for the subcommands that touch the server or its database.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::Path;

use anyhow::Context;
use tsunagi_server::config::Settings;
use tsunagi_server::store::Database;

/// 32 zero bytes in base64: satisfies the configuration's key check for the commands that
/// never sign anything. Never used to sign.
const PLACEHOLDER_KEY: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

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
    let mut vars: HashMap<String, String> = HashMap::new();
    if let Some(path) = file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the configuration file {}", path.display()))?;
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
            if let Some((k, v)) = line.split_once('=') {
                vars.insert(k.trim().to_owned(), v.trim().trim_matches('"').to_owned());
            }
        }
    }
    vars.extend(std::env::vars().filter(|(k, _)| k.starts_with("TSUNAGI_")));
    vars.remove("TSUNAGI_SIGNING_KEY_FILE");
    vars.insert("TSUNAGI_SIGNING_KEY".into(), PLACEHOLDER_KEY.into());
    let dir = std::env::current_dir().context("cannot determine the current directory")?;
    let settings = Settings::from_vars(&vars, &dir).context("configuration")?;
    let db = Database::connect(&settings.database_url, settings.max_connections.min(2))
        .context("cannot open the database")?;
    Ok(db)
}
