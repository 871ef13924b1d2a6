//! Real processes for end-to-end tests: a child process that is killed and reaped even when
//! an assertion fails, and `tsunagi serve` started (and started again) on a database of the
//! test's own, configured by environment variables exactly as an operator would.

#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `tsunagi` binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_tsunagi");

/// A child process killed (SIGKILL) and reaped when dropped, even when an assertion fails.
pub struct Guard(pub Option<Child>);

impl Guard {
    pub fn child(&mut self) -> &mut Child {
        self.0.as_mut().expect("the child is running")
    }

    /// Kills (SIGKILL) and reaps the child; returns its standard output and error.
    pub fn kill(&mut self) -> (String, String) {
        let mut child = self.0.take().expect("the child is running");
        let _ = child.kill();
        collect(child)
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Waits for `child`; returns its standard output and error.
pub fn collect(child: Child) -> (String, String) {
    let output = child.wait_with_output().expect("the child is reaped");
    (String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned())
}

/// A free port on the loopback interface.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A `tsunagi serve` process (and the environment to start it again on the same database).
pub struct Server {
    /// The environment of every `tsunagi` command (database URL, bind address, signing key).
    pub env: Vec<(String, String)>,
    /// The port it listens on.
    pub port: u16,
    /// Its log file (appended to at every start).
    pub log: PathBuf,
}

impl Server {
    /// A server on `database` (a URL as `TSUNAGI_DATABASE_URL` takes it) with a fresh random
    /// signing key, on a free port, logging to `dir/server.log`. Not started yet.
    pub fn on(database: &str, dir: &std::path::Path) -> Server {
        use base64::Engine;
        let mut key = [0u8; 32];
        rand::fill(&mut key[..]);
        let port = free_port();
        Server {
            env: vec![
                ("TSUNAGI_DATABASE_URL".into(), database.to_owned()),
                ("TSUNAGI_BIND".into(), format!("127.0.0.1:{port}")),
                ("TSUNAGI_SIGNING_KEY".into(), base64::engine::general_purpose::STANDARD.encode(key)),
            ],
            port,
            log: dir.join("server.log"),
        }
    }

    /// The database URL as `TSUNAGI_DATABASE_URL` takes it.
    pub fn url_of(database: &tsunagi_server::store::DatabaseUrl) -> String {
        match database {
            tsunagi_server::store::DatabaseUrl::Postgres(url) => url.clone(),
            tsunagi_server::store::DatabaseUrl::Sqlite(path) => format!("sqlite://{}", path.display()),
        }
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(BIN);
        command.args(args).env_clear().env("RUST_LOG", "warn");
        for (k, v) in &self.env {
            command.env(k, v);
        }
        command
    }

    /// Runs `tsunagi admin …` on the server's database; returns stdout, panics on failure.
    pub fn admin(&self, args: &[&str], stdin: &str) -> String {
        use std::io::Write;
        let mut child = self
            .command(&[&["admin"], args].concat())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the tsunagi binary runs");
        child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("write stdin");
        let output = child.wait_with_output().expect("the tsunagi binary finishes");
        let (out, err) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        assert!(output.status.success(), "tsunagi admin {args:?} failed: {err}\n{out}");
        out.trim().to_owned()
    }

    /// Starts `tsunagi serve` and waits (bounded) until it answers on its port.
    pub fn start(&self) -> Guard {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let child = self
            .command(&["serve"])
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("the tsunagi binary runs");
        let mut guard = Guard(Some(child));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return guard;
            }
            if let Some(status) = guard.child().try_wait().unwrap() {
                panic!("tsunagi serve exited with {status}: {}", std::fs::read_to_string(&self.log).unwrap());
            }
            assert!(Instant::now() < deadline, "tsunagi serve did not listen within 30 s");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// `tsunagi serve` running as a process on a fresh database of `backend` (migrated by the
/// server at start), seeded like [`super::TestApp::seed`]; everything is removed when dropped.
pub struct ServedApp {
    /// How to start it again, run `tsunagi admin`, and where it listens.
    pub server: Server,
    /// The running process.
    pub running: Guard,
    /// `http://127.0.0.1:PORT`.
    pub address: String,
    /// The database, for assertions.
    pub db: tsunagi_server::store::Database,
    /// The seeded accounts.
    pub people: super::Seed,
    _dir: tempfile::TempDir,
    _database: tsunagi_server::testing::TestDatabase,
}

/// Starts [`ServedApp`] on `backend`.
pub fn serve(backend: super::Backend) -> ServedApp {
    use tsunagi_server::store::Database;
    let database = tsunagi_server::testing::TestDatabase::new(backend);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let server = Server::on(&Server::url_of(&database.url), dir.path());
    let port = server.port;
    let running = server.start();
    let db = Database::connect(&database.url, 2).expect("the served database");
    let people = super::seed_database(&db);
    ServedApp {
        server,
        running,
        address: format!("http://127.0.0.1:{port}"),
        db,
        people,
        _dir: dir,
        _database: database,
    }
}
