//! Storage: one code base over PostgreSQL (production) and SQLite (the embedded default).
//!
//! - [`Database`] owns a connection pool of [`DbConnection`]s, each either PostgreSQL or
//!   SQLite, chosen by the database URL (`postgres://…` or `sqlite://path`), never guessed.
//! - [`Database::migrate`] applies the migrations embedded from `migrations/postgres` or
//!   `migrations/sqlite`.
//! - [`Database::write`] runs a closure in a write transaction: `BEGIN IMMEDIATE` on SQLite
//!   (one writer at a time, taken up front so it never fails half-way on a lock upgrade),
//!   an ordinary transaction on PostgreSQL, where rows are locked explicitly
//!   (`SELECT … FOR UPDATE`) by the code that needs it. Nothing is acknowledged to a client
//!   before the transaction commits; SQLite runs in WAL mode with `synchronous=FULL`, so a
//!   commit is durable.
//!
//! - When the database goes away (a restart, a failover, a network cut), a request waits for
//!   a connection only briefly ([`UNREACHABLE_WAIT`]) once an attempt to connect has failed,
//!   and fails with [`StoreError::Unavailable`] (`503` with `Retry-After`), instead of
//!   holding its thread for the whole [`CONNECTION_WAIT`]. The pool keeps trying to connect
//!   in the background, and the first connection that succeeds ends the fast failures: the
//!   server recovers without a restart.
//!
//! Queries live next to the tables they touch, in the submodules.

/// Inserts `rows` (a slice of `Insertable` rows) into `table` in multi-row statements of at
/// most `per` rows, on either backend: one statement instead of one per row, for the
/// projections and the benchmark's bulk seeder. Rows must spell out every column
/// (`treat_none_as_default_value = false`), as SQLite takes no `DEFAULT` in a multi-row insert.
#[macro_export]
macro_rules! insert_rows {
    ($conn:expr, $table:expr, $rows:expr, $per:expr) => {{
        for chunk in $rows.chunks($per) {
            match $conn {
                $crate::store::DbConnection::Pg(c) => ::diesel::insert_into($table).values(chunk).execute(c)?,
                $crate::store::DbConnection::Sqlite(c) => ::diesel::insert_into($table).values(chunk).execute(c)?,
            };
        }
    }};
}

pub mod accounts;
pub mod activity_months;
pub mod audit;
pub mod device_cases;
pub mod documents;
pub mod forms;
pub mod meetings;
pub mod projections;
pub mod quarantine;
pub mod schema;
pub mod visibility;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::pg::PgConnection;
use diesel::r2d2::{self, ManageConnection};
use diesel::sqlite::SqliteConnection;
use diesel::Connection;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/postgres");
const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/sqlite");

/// How long a request waits at most for a connection while the database answers (every
/// connection is busy).
pub const CONNECTION_WAIT: Duration = Duration::from_secs(10);

/// How long a request waits at most for a connection once the last attempt to open one
/// failed (the database is down or unreachable): a connection the pool opens meanwhile is
/// still taken.
pub const UNREACHABLE_WAIT: Duration = Duration::from_millis(500);

/// How often a waiting request looks again whether the database became unreachable.
const WAIT_SLICE: Duration = Duration::from_millis(100);

/// The pool's own connection timeout. r2d2 uses half of it as the longest pause between its
/// background attempts to open a connection to a database that refuses them, so this bounds
/// how soon after the database is back the server uses it again (about a second).
const POOL_RETRY_TIMEOUT: Duration = Duration::from_secs(2);

/// A connection to either backend. Query code is written once against this type.
#[derive(diesel::MultiConnection)]
pub enum DbConnection {
    /// PostgreSQL.
    Pg(PgConnection),
    /// SQLite.
    Sqlite(SqliteConnection),
}

/// Which database a URL names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// A PostgreSQL connection URL (`postgres://` or `postgresql://`).
    Postgres(String),
    /// A SQLite database file.
    Sqlite(PathBuf),
}

impl DatabaseUrl {
    /// Parses `postgres://…`, `postgresql://…` or `sqlite://PATH` (also `sqlite:PATH`).
    pub fn parse(url: &str) -> Result<Self, StoreError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Self::Postgres(url.to_owned()));
        }
        let path = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"));
        match path {
            Some(path) if !path.is_empty() => Ok(Self::Sqlite(PathBuf::from(path))),
            _ => Err(StoreError::Url),
        }
    }

    /// The backend's name, for logs (never the URL: it may hold a password).
    pub fn backend(&self) -> &'static str {
        match self {
            Self::Postgres(_) => "postgresql",
            Self::Sqlite(_) => "sqlite",
        }
    }
}

/// Storage failures. Mapped to HTTP 503 (unavailable) or 500 by the API layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database URL has neither form.
    #[error("the database URL must start with postgres://, postgresql:// or sqlite://")]
    Url,
    /// The database cannot be reached (connection refused, pool exhausted, file locked).
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// A query failed.
    #[error("database error: {0}")]
    Query(#[from] diesel::result::Error),
    /// Migrations failed.
    #[error("migrations failed: {0}")]
    Migration(String),
    /// Stored data does not decode (a bug or a damaged database).
    #[error("stored data is damaged: {0}")]
    Corrupt(String),
}

impl From<r2d2::PoolError> for StoreError {
    fn from(e: r2d2::PoolError) -> Self {
        StoreError::Unavailable(e.to_string())
    }
}

/// Makes libpq safe to use from many threads in a process that later exits.
///
/// libpq uses the system OpenSSL. Whoever initialises OpenSSL first decides whether it
/// registers `OPENSSL_cleanup` to run at `exit()`; libpq lets it. That cleanup frees
/// OpenSSL's global state while other threads (pool connections, workers, the runtime's
/// blocking threads) may still be running and freeing their own OpenSSL state, which corrupts
/// the heap ("double free or corruption" as the process ends). Initialising OpenSSL here
/// first, without the exit-time cleanup, leaves that memory to the operating system. Call it
/// before the process opens its first PostgreSQL connection; calling it again is a no-op.
pub fn prepare_libpq() {
    openssl_sys::init();
}

/// Opens connections for the pool, of the backend the URL names (never guessing).
#[derive(Debug)]
pub struct Manager {
    url: DatabaseUrl,
    /// Whether the last attempt to open a connection failed.
    unreachable: Arc<AtomicBool>,
}

impl ManageConnection for Manager {
    type Connection = DbConnection;
    type Error = r2d2::Error;

    fn connect(&self) -> Result<DbConnection, r2d2::Error> {
        let connected = self.open();
        self.unreachable.store(connected.is_err(), Ordering::SeqCst);
        connected
    }

    fn is_valid(&self, conn: &mut DbConnection) -> Result<(), r2d2::Error> {
        conn.batch_execute("SELECT 1").map_err(r2d2::Error::QueryError)
    }

    fn has_broken(&self, _conn: &mut DbConnection) -> bool {
        false
    }
}

impl Manager {
    fn open(&self) -> Result<DbConnection, r2d2::Error> {
        match &self.url {
            DatabaseUrl::Postgres(url) => {
                PgConnection::establish(url).map(DbConnection::Pg).map_err(r2d2::Error::ConnectionError)
            }
            DatabaseUrl::Sqlite(path) => {
                let path = path.to_str().ok_or_else(|| {
                    r2d2::Error::ConnectionError(diesel::ConnectionError::BadConnection(
                        "the SQLite path is not valid UTF-8".into(),
                    ))
                })?;
                let mut conn = SqliteConnection::establish(path).map_err(r2d2::Error::ConnectionError)?;
                // The busy timeout comes first: every later statement, these pragmas included,
                // then waits for another connection's lock instead of failing at once. WAL mode
                // is a property of the file, set once by `Database::connect`.
                conn.batch_execute(SQLITE_CONNECTION_PRAGMAS).map_err(r2d2::Error::QueryError)?;
                Ok(DbConnection::Sqlite(conn))
            }
        }
    }
}

/// A connection borrowed from the pool; returned when dropped.
pub type PooledConnection = r2d2::PooledConnection<Manager>;

/// The database: a pool of connections to one backend.
#[derive(Clone)]
pub struct Database {
    pool: r2d2::Pool<Manager>,
    backend: &'static str,
    /// Shared with the pool's [`Manager`]: whether the last attempt to connect failed.
    unreachable: Arc<AtomicBool>,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database").field("backend", &self.backend).finish()
    }
}

impl Database {
    /// Connects (lazily: the pool opens connections as needed). A SQLite file and its
    /// directory are created if missing.
    pub fn connect(url: &DatabaseUrl, max_connections: u32) -> Result<Self, StoreError> {
        match url {
            DatabaseUrl::Sqlite(path) => {
                prepare_sqlite_file(path)?;
                enable_wal(path)?;
            }
            DatabaseUrl::Postgres(_) => prepare_libpq(),
        }
        // SQLite has one writer anyway; a few readers share the file.
        let size = match url {
            DatabaseUrl::Sqlite(_) => max_connections.clamp(1, 8),
            DatabaseUrl::Postgres(_) => max_connections.max(1),
        };
        let unreachable = Arc::new(AtomicBool::new(false));
        let pool = r2d2::Pool::builder()
            .max_size(size)
            .min_idle(Some(0))
            .connection_timeout(POOL_RETRY_TIMEOUT)
            .build_unchecked(Manager { url: url.clone(), unreachable: unreachable.clone() });
        Ok(Self { pool, backend: url.backend(), unreachable })
    }

    /// `"postgresql"` or `"sqlite"`.
    pub fn backend(&self) -> &'static str {
        self.backend
    }

    /// A connection from the pool: waits up to [`CONNECTION_WAIT`] while every connection is
    /// busy, but only up to [`UNREACHABLE_WAIT`] once the last attempt to connect failed, and
    /// then fails with [`StoreError::Unavailable`].
    pub fn conn(&self) -> Result<PooledConnection, StoreError> {
        let started = Instant::now();
        loop {
            let left = self.wait_limit().saturating_sub(started.elapsed());
            match self.pool.get_timeout(left.min(WAIT_SLICE)) {
                Ok(conn) => return Ok(conn),
                Err(e) if started.elapsed() >= self.wait_limit() => return Err(e.into()),
                Err(_) => {}
            }
        }
    }

    /// How long [`Database::conn`] waits for a connection, as things stand.
    fn wait_limit(&self) -> Duration {
        if self.unreachable.load(Ordering::SeqCst) {
            UNREACHABLE_WAIT
        } else {
            CONNECTION_WAIT
        }
    }

    /// Applies pending migrations; returns the names of those applied.
    pub fn migrate(&self) -> Result<Vec<String>, StoreError> {
        let mut conn = self.conn()?;
        let applied = match &mut *conn {
            DbConnection::Pg(c) => c.run_pending_migrations(POSTGRES_MIGRATIONS),
            DbConnection::Sqlite(c) => c.run_pending_migrations(SQLITE_MIGRATIONS),
        }
        .map_err(|e| StoreError::Migration(e.to_string()))?;
        Ok(applied.into_iter().map(|m| m.to_string()).collect())
    }

    /// Whether the database answers.
    pub fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        conn.batch_execute("SELECT 1")?;
        Ok(())
    }

    /// Runs `f` in a write transaction and commits; rolls back if `f` fails.
    pub fn write<T, E>(&self, f: impl FnOnce(&mut DbConnection) -> Result<T, E>) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        let mut conn = self.conn()?;
        write_transaction(&mut conn, f)
    }

    /// Runs `f` on a connection, outside any explicit transaction.
    pub fn read<T, E>(&self, f: impl FnOnce(&mut DbConnection) -> Result<T, E>) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        let mut conn = self.conn()?;
        f(&mut conn)
    }
}

/// `sql` written with PostgreSQL's numbered placeholders (`$1`, `$2`, …) as `conn`'s backend
/// takes it: unchanged for PostgreSQL, `?1`, `?2`, … for SQLite (the numbered form, so a
/// parameter may appear more than once). For the few statements written as SQL text
/// (aggregates, `INSERT … SELECT`).
pub fn placeholders(conn: &DbConnection, sql: &str) -> String {
    match conn {
        DbConnection::Pg(_) => sql.to_owned(),
        DbConnection::Sqlite(_) => sql.replace('$', "?"),
    }
}

/// At most this many values go into one SQL `IN` list: SQLite allows at most 32,766
/// parameters per statement.
pub const IN_LIST_MAX: usize = 1_000;

/// The case ids of `cases`, as the text columns hold them, in chunks of at most
/// [`IN_LIST_MAX`] for `IN` lists.
pub fn id_chunks(cases: &[tsunagi_sync::ids::CaseId]) -> Vec<Vec<String>> {
    cases.chunks(IN_LIST_MAX).map(|chunk| chunk.iter().map(ToString::to_string).collect()).collect()
}

/// Which of `cases` `query` finds: it is given their ids a chunk at a time ([`id_chunks`]) and
/// returns the ids it found in `table`'s column.
pub fn cases_among(
    cases: &[tsunagi_sync::ids::CaseId],
    table: &str,
    mut query: impl FnMut(&[String]) -> Result<Vec<String>, StoreError>,
) -> Result<std::collections::HashSet<tsunagi_sync::ids::CaseId>, StoreError> {
    let mut found = std::collections::HashSet::new();
    for chunk in id_chunks(cases) {
        for id in query(&chunk)? {
            found.insert(
                tsunagi_sync::ids::CaseId::parse(&id).map_err(|e| StoreError::Corrupt(format!("{table}: {e}")))?,
            );
        }
    }
    Ok(found)
}

/// Runs `f` in a write transaction on `conn` (`BEGIN IMMEDIATE` on SQLite).
pub fn write_transaction<T, E>(
    conn: &mut DbConnection,
    f: impl FnOnce(&mut DbConnection) -> Result<T, E>,
) -> Result<T, E>
where
    E: From<StoreError>,
{
    let begun = match conn {
        DbConnection::Sqlite(c) => AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE"),
        DbConnection::Pg(c) => AnsiTransactionManager::begin_transaction(c),
    };
    begun.map_err(|e| E::from(StoreError::Unavailable(e.to_string())))?;
    match f(conn) {
        Ok(value) => {
            let committed = match conn {
                DbConnection::Sqlite(c) => AnsiTransactionManager::commit_transaction(c),
                DbConnection::Pg(c) => AnsiTransactionManager::commit_transaction(c),
            };
            match committed {
                Ok(()) => Ok(value),
                Err(e) => {
                    rollback(conn);
                    Err(E::from(StoreError::Query(e)))
                }
            }
        }
        Err(e) => {
            rollback(conn);
            Err(e)
        }
    }
}

fn rollback(conn: &mut DbConnection) {
    let result = match conn {
        DbConnection::Sqlite(c) => AnsiTransactionManager::rollback_transaction(c),
        DbConnection::Pg(c) => AnsiTransactionManager::rollback_transaction(c),
    };
    if let Err(e) = result {
        tracing::warn!(error = %e, "rollback failed; the connection will be discarded by the pool");
    }
}

/// Creates a missing SQLite database file, and a missing directory for it, readable by the
/// owner only: the file holds case records under statutory secrecy. (SQLite gives its `-wal`
/// and `-shm` files the main file's permissions.)
fn prepare_sqlite_file(path: &Path) -> Result<(), StoreError> {
    let fail =
        |what: &Path, e: std::io::Error| StoreError::Unavailable(format!("cannot create {}: {e}", what.display()));
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            let mut builder = std::fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
            builder.create(dir).map_err(|e| fail(dir, e))?;
        }
    }
    if !path.exists() {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        match options.open(path) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(fail(path, e)),
        }
    }
    Ok(())
}

/// What every SQLite connection sets first. The busy timeout leads, so that none of the
/// others fails on a lock another connection holds (a writer in this process, or `tsunagi
/// admin` beside a running server).
const SQLITE_CONNECTION_PRAGMAS: &str =
    "PRAGMA busy_timeout = 10000; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;";

/// Puts the SQLite file in WAL mode (readers never block the writer). The mode is stored in
/// the file, so this is done once, on one connection, before the pool opens any; switching
/// needs an exclusive lock, which the busy timeout waits for.
fn enable_wal(path: &Path) -> Result<(), StoreError> {
    use diesel::sql_types::Text;
    #[derive(diesel::QueryableByName)]
    struct Mode {
        #[diesel(sql_type = Text)]
        journal_mode: String,
    }
    let unavailable = |e: &dyn std::fmt::Display| StoreError::Unavailable(e.to_string());
    let path = path.to_str().ok_or_else(|| unavailable(&"the SQLite path is not valid UTF-8"))?;
    let mut conn = SqliteConnection::establish(path).map_err(|e| unavailable(&e))?;
    conn.batch_execute(SQLITE_CONNECTION_PRAGMAS).map_err(|e| unavailable(&e))?;
    let mode: Mode = diesel::RunQueryDsl::get_result(diesel::sql_query("PRAGMA journal_mode = WAL"), &mut conn)
        .map_err(|e| unavailable(&e))?;
    if mode.journal_mode.eq_ignore_ascii_case("wal") {
        Ok(())
    } else {
        Err(StoreError::Unavailable(format!("SQLite refused WAL mode (it is in {} mode)", mode.journal_mode)))
    }
}

/// The default SQLite database when nothing is configured: `tsunagi-data/tsunagi.sqlite3`
/// under `dir`.
pub fn default_sqlite_path(dir: &Path) -> PathBuf {
    dir.join("tsunagi-data").join("tsunagi.sqlite3")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sqlite() -> (tempfile::TempDir, Database) {
        let dir = tempfile::tempdir().unwrap();
        let url = DatabaseUrl::Sqlite(dir.path().join("nested/dir/t.sqlite3"));
        let db = Database::connect(&url, 4).unwrap();
        (dir, db)
    }

    /// Every `table.column` of a migrated database, sorted.
    fn columns(db: &Database) -> Vec<String> {
        use diesel::sql_types::Text;
        #[derive(diesel::QueryableByName)]
        struct Column {
            #[diesel(sql_type = Text)]
            name: String,
        }
        let query = match db.backend() {
            "postgresql" => {
                "SELECT table_name || '.' || column_name AS name FROM information_schema.columns \
                 WHERE table_schema = 'public' AND table_name <> '__diesel_schema_migrations'"
            }
            _ => {
                "SELECT m.name || '.' || p.name AS name FROM sqlite_master m, pragma_table_info(m.name) p \
                 WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND m.name <> '__diesel_schema_migrations'"
            }
        };
        let mut conn = db.conn().unwrap();
        let mut names: Vec<String> = diesel::RunQueryDsl::load::<Column>(diesel::sql_query(query), &mut *conn)
            .unwrap()
            .into_iter()
            .map(|c| c.name)
            .collect();
        names.sort();
        names
    }

    #[test]
    fn both_backends_migrate_to_the_same_tables_and_columns() {
        let (_dir, sqlite) = sqlite();
        sqlite.migrate().unwrap();
        let pg = crate::testing::TestDatabase::new(crate::testing::Backend::Postgres);
        let postgres = Database::connect(&pg.url, 2).unwrap();
        postgres.migrate().unwrap();
        let (a, b) = (columns(&sqlite), columns(&postgres));
        assert!(a.len() > 100, "{} columns", a.len());
        assert_eq!(a, b, "migrations/sqlite and migrations/postgres must stay in step");
    }

    #[cfg(unix)]
    #[test]
    fn a_new_sqlite_database_is_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let (dir, db) = sqlite();
        db.migrate().unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.path().join("nested/dir/t.sqlite3")), 0o600);
        assert_eq!(mode(&dir.path().join("nested/dir")), 0o700);
    }

    #[test]
    fn an_unreachable_database_fails_fast_and_is_tried_again() {
        // A port nothing listens on: every attempt to connect is refused at once.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let url = DatabaseUrl::Postgres(format!("postgres://postgres@127.0.0.1:{port}/tsunagi?connect_timeout=2"));
        let db = Database::connect(&url, 2).unwrap();
        for attempt in 0..3 {
            let started = Instant::now();
            let result = db.conn();
            let took = started.elapsed();
            assert!(matches!(result, Err(StoreError::Unavailable(_))), "attempt {attempt}");
            assert!(took < Duration::from_secs(3), "attempt {attempt} took {took:?}, not the pool's full wait");
        }
        assert!(db.ping().is_err());
    }

    #[test]
    fn urls_name_their_backend_explicitly() {
        assert_eq!(DatabaseUrl::parse("sqlite://a/b.db").unwrap(), DatabaseUrl::Sqlite("a/b.db".into()));
        assert_eq!(DatabaseUrl::parse("sqlite:b.db").unwrap(), DatabaseUrl::Sqlite("b.db".into()));
        assert!(matches!(DatabaseUrl::parse("postgresql://u@h/d").unwrap(), DatabaseUrl::Postgres(_)));
        for bad in ["", "b.db", "mysql://x", "sqlite://", "postgress://x"] {
            assert!(DatabaseUrl::parse(bad).is_err(), "{bad}");
        }
    }

    /// New connections open while another connection of the pool holds the write lock
    /// (a sync being stored while a supervisor reads): each waits for the lock instead of
    /// failing with "database is locked".
    #[test]
    fn sqlite_connections_open_while_another_one_writes() {
        let (_dir, db) = sqlite();
        db.migrate().unwrap();
        for round in 0..5 {
            let (locked_tx, locked_rx) = std::sync::mpsc::channel();
            let writer = {
                let db = db.clone();
                std::thread::spawn(move || {
                    db.write(|c| -> Result<(), StoreError> {
                        c.batch_execute(&format!(
                            "INSERT INTO municipalities (code, name, created_at) \
                             VALUES ('9{round:05}', 'x', '2026-11-23 00:00:00')"
                        ))?;
                        locked_tx.send(()).unwrap();
                        std::thread::sleep(Duration::from_millis(200));
                        Ok(())
                    })
                })
            };
            locked_rx.recv().unwrap();
            // Connections held at once, so that the pool must open new ones under the lock.
            let readers: Vec<_> = (0..3)
                .map(|_| {
                    let db = db.clone();
                    std::thread::spawn(move || -> Result<PooledConnection, StoreError> {
                        let mut conn = db.conn()?;
                        conn.batch_execute("SELECT count(*) FROM municipalities")?;
                        Ok(conn)
                    })
                })
                .collect();
            let held: Vec<_> = readers.into_iter().map(|r| r.join().unwrap()).collect();
            writer.join().unwrap().unwrap();
            for conn in held {
                conn.unwrap_or_else(|e| panic!("round {round}: {e}"));
            }
        }
    }

    /// The pool opens connections on threads of its own, several at once when requests
    /// arrive together at a server that just started. On a new file every attempt succeeds:
    /// one that failed with "database is locked" would make requests fail fast with `503` as
    /// if the database were gone (or the server fail to start).
    #[test]
    fn connections_opened_at_once_on_a_new_sqlite_file_all_succeed() {
        for _ in 0..10 {
            let dir = tempfile::tempdir().unwrap();
            let url = DatabaseUrl::Sqlite(dir.path().join("t.sqlite3"));
            let _db = Database::connect(&url, 4).unwrap();
            let manager = Arc::new(Manager { url, unreachable: Arc::new(AtomicBool::new(false)) });
            let start = Arc::new(std::sync::Barrier::new(4));
            let openers: Vec<_> = (0..4)
                .map(|_| {
                    let (manager, start) = (manager.clone(), start.clone());
                    std::thread::spawn(move || {
                        start.wait();
                        manager.connect().map(|_| ()).map_err(|e| e.to_string())
                    })
                })
                .collect();
            for opener in openers {
                opener.join().unwrap().unwrap();
            }
        }
    }

    #[test]
    fn sqlite_migrates_once_in_wal_mode_and_rolls_back_failed_writes() {
        let (_dir, db) = sqlite();
        assert!(!db.migrate().unwrap().is_empty());
        assert!(db.migrate().unwrap().is_empty(), "migrations apply once");
        let result: Result<(), StoreError> = db.write(|c| {
            c.batch_execute(
                "INSERT INTO municipalities (code, name, created_at) VALUES ('122173', '柏市', '2026-11-23 00:00:00')",
            )?;
            Err(StoreError::Corrupt("abandon".into()))
        });
        assert!(result.is_err());
        db.write(|c| -> Result<(), StoreError> {
            c.batch_execute("INSERT INTO municipalities (code, name, created_at) VALUES ('122203', '流山市', '2026-11-23 00:00:00')")?;
            Ok(())
        })
        .unwrap();
        use diesel::prelude::*;
        let mut conn = db.conn().unwrap();
        let codes: Vec<String> =
            schema::municipalities::table.select(schema::municipalities::code).load(&mut *conn).unwrap();
        assert_eq!(codes, vec!["122203".to_owned()]);
    }
}
