//! Test support (feature `testing`): a fresh database per test, on either backend, so tests
//! run in parallel and leave nothing behind.
//!
//! PostgreSQL tests connect to `TSUNAGI_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`), create a database of their own, and drop it
//! when done. If PostgreSQL cannot be reached the test **fails**: a skipped PostgreSQL suite
//! would hide exactly the bugs it exists to catch.

use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection};

use crate::store::DatabaseUrl;

/// Which backend a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file in a temporary directory.
    Sqlite,
    /// A fresh database on the PostgreSQL server.
    Postgres,
}

/// A database that exists for one test.
pub struct TestDatabase {
    /// Its URL.
    pub url: DatabaseUrl,
    dir: Option<tempfile::TempDir>,
    postgres: Option<(String, String)>,
}

fn admin_url() -> String {
    std::env::var("TSUNAGI_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

impl TestDatabase {
    /// A fresh database on `backend`.
    pub fn new(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("a temporary directory for the test database");
                let url = DatabaseUrl::Sqlite(dir.path().join("tsunagi.sqlite3"));
                Self { url, dir: Some(dir), postgres: None }
            }
            Backend::Postgres => {
                crate::store::prepare_libpq();
                let admin = admin_url();
                let mut conn = PgConnection::establish(&admin).unwrap_or_else(|e| {
                    panic!("PostgreSQL tests need a server at {admin} (set TSUNAGI_TEST_POSTGRES_URL): {e}")
                });
                let name = format!("tsunagi_test_{}", uuid::Uuid::new_v4().simple());
                conn.batch_execute(&format!("CREATE DATABASE {name}")).expect("create the test database");
                let base = admin.rsplit_once('/').map(|(base, _)| base.to_owned()).unwrap_or(admin.clone());
                let url = DatabaseUrl::Postgres(format!("{base}/{name}"));
                Self { url, dir: None, postgres: Some((admin, name)) }
            }
        }
    }

    /// The temporary directory of a SQLite test database.
    pub fn dir(&self) -> Option<&std::path::Path> {
        self.dir.as_ref().map(|d| d.path())
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Some((admin, name)) = self.postgres.take() {
            if let Ok(mut conn) = PgConnection::establish(&admin) {
                let _ = conn.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
            }
        }
    }
}
