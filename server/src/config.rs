//! Configuration: environment variables, optionally preceded by a file of `KEY=VALUE` lines
//! (environment wins). Secrets are wrapped so they never print.
//!
//! | variable | default | meaning |
//! | --- | --- | --- |
//! | `TSUNAGI_DATABASE_URL` | `sqlite://tsunagi-data/tsunagi.sqlite3` | `postgres://…` or `sqlite://PATH` |
//! | `TSUNAGI_BIND` | `127.0.0.1:8080` | address to listen on |
//! | `TSUNAGI_SIGNING_KEY_FILE` | see below | file holding the token signing key (≥ 32 bytes) |
//! | `TSUNAGI_SIGNING_KEY` | — | the key itself, base64 (≥ 32 bytes decoded) |
//! | `TSUNAGI_ISSUER` | `tsunagi` | `iss` and `aud` of access tokens |
//! | `TSUNAGI_ACCESS_TOKEN_SECONDS` | `900` | access token lifetime |
//! | `TSUNAGI_REFRESH_TOKEN_DAYS` | `30` | refresh token lifetime |
//! | `TSUNAGI_MAX_BODY_BYTES` | `16777216` | largest request body accepted (413 above) |
//! | `TSUNAGI_MAX_CONNECTIONS` | `10` | database pool size |
//! | `TSUNAGI_LOGIN_FAILURES` | `5` | failed logins per login name within 15 minutes before 429 |
//!
//! There is no built-in signing key. With neither key variable set, the embedded default
//! (a SQLite database) generates a random key once, stores it beside the database in
//! `signing.key` with mode 0600, and says so in the log; a PostgreSQL deployment must
//! configure one, so that every instance signs with the same key.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;

use crate::store::DatabaseUrl;

/// Why the configuration could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A variable has a value that does not parse.
    #[error("{name}: {message}")]
    Invalid {
        /// The variable.
        name: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The configuration file cannot be read.
    #[error("cannot read the configuration file {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// No signing key where one is required.
    #[error(
        "no token signing key: set TSUNAGI_SIGNING_KEY_FILE (a file of at least 32 random bytes) or \
         TSUNAGI_SIGNING_KEY (base64); every server instance on one database must use the same key"
    )]
    NoSigningKey,
    /// The key file cannot be read or written.
    #[error("signing key file {path}: {message}")]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

/// The token signing key. Its `Debug` form never shows the bytes.
#[derive(Clone)]
pub struct SigningKey(Vec<u8>);

impl SigningKey {
    /// The key bytes (for the JWT library only).
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Wraps key bytes; at least 32 are required.
    pub fn new(bytes: Vec<u8>) -> Result<Self, String> {
        if bytes.len() < 32 {
            return Err(format!("the signing key has {} bytes, at least 32 are required", bytes.len()));
        }
        Ok(Self(bytes))
    }
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(redacted)")
    }
}

/// Everything the server needs to start.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The database.
    pub database_url: DatabaseUrl,
    /// Where to listen (port 0 picks a free port).
    pub bind: SocketAddr,
    /// Signs and checks access tokens.
    pub signing_key: SigningKey,
    /// `iss` and `aud` of access tokens.
    pub issuer: String,
    /// Access token lifetime.
    pub access_token_ttl: Duration,
    /// Refresh token lifetime.
    pub refresh_token_ttl: Duration,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// About how many bytes of whole documents one sync response sends to a device that
    /// receives newly visible cases; the rest follow in the next request (`more`).
    pub assigned_byte_budget: usize,
    /// About how many bytes of recently stored case documents the sync engine keeps loaded
    /// (`crate::sync::cache`); 0 keeps none.
    pub document_cache_bytes: usize,
    /// Database pool size.
    pub max_connections: u32,
    /// Failed logins per login name within the window before logins are refused with 429.
    pub login_failures: u32,
}

impl Settings {
    /// Settings with the given database and key and every other value at its default, e.g.
    /// for tests (which bind port 0).
    pub fn new(database_url: DatabaseUrl, signing_key: SigningKey) -> Self {
        Self {
            database_url,
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            signing_key,
            issuer: "tsunagi".into(),
            access_token_ttl: Duration::from_secs(900),
            refresh_token_ttl: Duration::from_secs(30 * 24 * 3600),
            max_body_bytes: 16 * 1024 * 1024,
            assigned_byte_budget: crate::sync::ASSIGNED_BYTE_BUDGET,
            document_cache_bytes: crate::sync::cache::DEFAULT_BUDGET,
            max_connections: 10,
            login_failures: 5,
        }
    }

    /// Reads the process environment, after the optional file (environment wins). `base_dir`
    /// is where the embedded default keeps its data (`tsunagi-data/`).
    pub fn load(file: Option<&Path>, base_dir: &Path) -> Result<Self, ConfigError> {
        Self::from_vars(&load_vars(file)?, base_dir)
    }

    /// Builds settings from a map of variables (the testable core of [`Settings::load`]).
    pub fn from_vars(vars: &HashMap<String, String>, base_dir: &Path) -> Result<Self, ConfigError> {
        fn lookup<'a>(vars: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
            vars.get(name).map(String::as_str).filter(|v| !v.is_empty())
        }
        let get = |name: &str| lookup(vars, name);
        let embedded_default = get("TSUNAGI_DATABASE_URL").is_none();
        let database_url = database_url(vars, base_dir)?;
        let signing_key = match (get("TSUNAGI_SIGNING_KEY"), get("TSUNAGI_SIGNING_KEY_FILE")) {
            (Some(b64), _) => {
                let bytes = base64::engine::general_purpose::STANDARD.decode(b64).map_err(|e| {
                    ConfigError::Invalid { name: "TSUNAGI_SIGNING_KEY", message: format!("not base64: {e}") }
                })?;
                SigningKey::new(bytes)
                    .map_err(|message| ConfigError::Invalid { name: "TSUNAGI_SIGNING_KEY", message })?
            }
            (None, Some(path)) => read_key_file(Path::new(path))?,
            (None, None) => match (&database_url, embedded_default) {
                (DatabaseUrl::Sqlite(db), true) => {
                    let dir = db.parent().unwrap_or(base_dir);
                    key_beside_database(&dir.join("signing.key"))?
                }
                _ => return Err(ConfigError::NoSigningKey),
            },
        };
        let mut settings = Settings::new(database_url, signing_key);
        if let Some(bind) = get("TSUNAGI_BIND") {
            settings.bind = bind.parse().map_err(|e| ConfigError::Invalid {
                name: "TSUNAGI_BIND",
                message: format!("expected host:port, e.g. 127.0.0.1:8080 ({e})"),
            })?;
        }
        if let Some(issuer) = get("TSUNAGI_ISSUER") {
            settings.issuer = issuer.to_owned();
        }
        fn number<T: std::str::FromStr>(
            vars: &HashMap<String, String>,
            name: &'static str,
        ) -> Result<Option<T>, ConfigError> {
            lookup(vars, name)
                .map(|v| {
                    v.parse::<T>().map_err(|_| ConfigError::Invalid { name, message: format!("not a number: {v}") })
                })
                .transpose()
        }
        if let Some(s) = number::<u64>(vars, "TSUNAGI_ACCESS_TOKEN_SECONDS")? {
            settings.access_token_ttl = Duration::from_secs(s.clamp(30, 24 * 3600));
        }
        if let Some(d) = number::<u64>(vars, "TSUNAGI_REFRESH_TOKEN_DAYS")? {
            settings.refresh_token_ttl = Duration::from_secs(d.clamp(1, 365) * 24 * 3600);
        }
        if let Some(b) = number::<usize>(vars, "TSUNAGI_MAX_BODY_BYTES")? {
            settings.max_body_bytes = b.max(1024);
        }
        if let Some(b) = number::<usize>(vars, "TSUNAGI_ASSIGNED_BYTE_BUDGET")? {
            settings.assigned_byte_budget = b.max(1);
        }
        if let Some(mb) = number::<usize>(vars, "TSUNAGI_DOCUMENT_CACHE_MB")? {
            settings.document_cache_bytes = mb.min(1 << 20) * 1024 * 1024;
        }
        if let Some(c) = number::<u32>(vars, "TSUNAGI_MAX_CONNECTIONS")? {
            settings.max_connections = c.max(1);
        }
        if let Some(n) = number::<u32>(vars, "TSUNAGI_LOGIN_FAILURES")? {
            settings.login_failures = n.max(1);
        }
        Ok(settings)
    }
}

/// The `TSUNAGI_*` variables: those of the optional `KEY=VALUE` file, overridden by the
/// process environment.
pub fn load_vars(file: Option<&Path>) -> Result<HashMap<String, String>, ConfigError> {
    let mut vars: HashMap<String, String> = HashMap::new();
    if let Some(path) = file {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::File { path: path.to_owned(), source })?;
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
            if let Some((k, v)) = line.split_once('=') {
                vars.insert(k.trim().to_owned(), v.trim().trim_matches('"').to_owned());
            }
        }
    }
    for (k, v) in std::env::vars().filter(|(k, _)| k.starts_with("TSUNAGI_")) {
        vars.insert(k, v);
    }
    Ok(vars)
}

/// The database the variables name: `TSUNAGI_DATABASE_URL`, or the embedded default under
/// `base_dir`. Commands that only need the database, like `migrate`, use this alone and so
/// need no signing key.
pub fn database_url(vars: &HashMap<String, String>, base_dir: &Path) -> Result<DatabaseUrl, ConfigError> {
    match vars.get("TSUNAGI_DATABASE_URL").map(String::as_str).filter(|v| !v.is_empty()) {
        Some(url) => DatabaseUrl::parse(url)
            .map_err(|e| ConfigError::Invalid { name: "TSUNAGI_DATABASE_URL", message: e.to_string() }),
        None => Ok(DatabaseUrl::Sqlite(crate::store::default_sqlite_path(base_dir))),
    }
}

fn read_key_file(path: &Path) -> Result<SigningKey, ConfigError> {
    let bytes =
        std::fs::read(path).map_err(|e| ConfigError::KeyFile { path: path.to_owned(), message: e.to_string() })?;
    SigningKey::new(bytes).map_err(|message| ConfigError::KeyFile { path: path.to_owned(), message })
}

/// The embedded default's key: read it, or generate it once (0600) and say so.
fn key_beside_database(path: &Path) -> Result<SigningKey, ConfigError> {
    if path.exists() {
        return read_key_file(path);
    }
    let err = |message: String| ConfigError::KeyFile { path: path.to_owned(), message };
    if let Some(dir) = path.parent().filter(|d| !d.exists()) {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(dir).map_err(|e| err(e.to_string()))?;
    }
    let mut key = vec![0u8; 64];
    rand::Rng::fill(&mut rand::rng(), key.as_mut_slice());
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(|e| err(e.to_string()))?;
    std::io::Write::write_all(&mut file, &key).map_err(|e| err(e.to_string()))?;
    file.sync_all().map_err(|e| err(e.to_string()))?;
    tracing::warn!(path = %path.display(), "no signing key configured: generated a random one (mode 0600) beside the database");
    SigningKey::new(key).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn the_embedded_default_generates_its_key_once_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let first = Settings::from_vars(&HashMap::new(), dir.path()).unwrap();
        let key_path = dir.path().join("tsunagi-data/signing.key");
        assert!(key_path.exists());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&key_path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let second = Settings::from_vars(&HashMap::new(), dir.path()).unwrap();
        assert_eq!(first.signing_key.expose(), second.signing_key.expose());
        assert_eq!(first.bind.to_string(), "127.0.0.1:8080");
        assert!(!format!("{first:?}").contains(&format!("{:?}", &first.signing_key.expose()[..4])));
    }

    #[test]
    fn postgres_without_a_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let v = vars(&[("TSUNAGI_DATABASE_URL", "postgres://postgres@127.0.0.1/test")]);
        assert!(matches!(Settings::from_vars(&v, dir.path()), Err(ConfigError::NoSigningKey)));
        let v = vars(&[("TSUNAGI_DATABASE_URL", "postgres://x@y/z"), ("TSUNAGI_SIGNING_KEY", "c2hvcnQ=")]);
        assert!(matches!(Settings::from_vars(&v, dir.path()), Err(ConfigError::Invalid { .. })));
    }

    #[test]
    fn bad_values_name_their_variable() {
        let dir = tempfile::tempdir().unwrap();
        let key = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        for (name, value) in [
            ("TSUNAGI_BIND", "nowhere"),
            ("TSUNAGI_DATABASE_URL", "mysql://x"),
            ("TSUNAGI_MAX_CONNECTIONS", "ten"),
            ("TSUNAGI_DOCUMENT_CACHE_MB", "-1"),
        ] {
            let v = vars(&[("TSUNAGI_SIGNING_KEY", &key), (name, value)]);
            let err = Settings::from_vars(&v, dir.path()).unwrap_err().to_string();
            assert!(err.contains(name), "{err}");
        }
    }

    #[test]
    fn the_document_cache_is_sized_in_megabytes_and_may_be_turned_off() {
        let dir = tempfile::tempdir().unwrap();
        let key = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        let with = |mb: Option<&str>| {
            let mut v = vars(&[("TSUNAGI_SIGNING_KEY", &key)]);
            if let Some(mb) = mb {
                v.insert("TSUNAGI_DOCUMENT_CACHE_MB".into(), mb.into());
            }
            Settings::from_vars(&v, dir.path()).unwrap().document_cache_bytes
        };
        assert_eq!(with(None), 64 * 1024 * 1024);
        assert_eq!(with(Some("16")), 16 * 1024 * 1024);
        assert_eq!(with(Some("0")), 0);
    }
}
