//! The server under test: a fresh database of the benchmark's own, and `tsunagi serve` run as a
//! child process (this very binary), configured through its environment variables exactly as
//! `docs/operations.md` describes, with its CPU time and memory read from `/proc`.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection, RunQueryDsl};
use tsunagi_server::store::DatabaseUrl;

/// The kernel's clock ticks per second for `/proc/<pid>/stat` (`USER_HZ`): 100 on every Linux
/// architecture tsunagi runs on.
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;

/// A directory of the benchmark's own under the system's temporary directory, readable by
/// its owner only (it holds case data and a signing key); removed when dropped.
pub struct WorkDir(PathBuf);

impl WorkDir {
    /// A fresh directory.
    pub fn new() -> anyhow::Result<Self> {
        let path = std::env::temp_dir().join(format!("tsunagi-bench-{}", uuid::Uuid::new_v4().simple()));
        let mut builder = std::fs::DirBuilder::new();
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(&path).with_context(|| format!("cannot create {}", path.display()))?;
        Ok(Self(path))
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Where the benchmark's databases live.
#[derive(Debug, Clone)]
pub enum Backend {
    /// A SQLite file in the work directory.
    Sqlite,
    /// A fresh database on this PostgreSQL server, created through this URL (a role that may
    /// create databases) and dropped afterwards.
    Postgres(String),
}

impl Backend {
    /// `SQLite` or `PostgreSQL`.
    pub fn label(&self) -> &'static str {
        match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres(_) => "PostgreSQL",
        }
    }
}

/// A database that exists for one scenario.
pub struct BenchDatabase {
    /// Its URL.
    pub url: DatabaseUrl,
    /// The PostgreSQL server's URL and the database's name, to drop it.
    postgres: Option<(String, String)>,
}

/// `admin` with its database name replaced by `name` (query parameters kept).
fn with_database(admin: &str, name: &str) -> anyhow::Result<String> {
    let (main, query) = match admin.split_once('?') {
        Some((main, query)) => (main, Some(query)),
        None => (admin, None),
    };
    let scheme_end = main.find("://").context("a PostgreSQL URL: postgres://user@host:port/database")? + 3;
    let authority_end = main[scheme_end..].find('/').map(|i| scheme_end + i).unwrap_or(main.len());
    let mut url = format!("{}/{name}", &main[..authority_end]);
    if let Some(query) = query {
        url.push('?');
        url.push_str(query);
    }
    Ok(url)
}

#[derive(diesel::QueryableByName)]
struct Size {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    size: i64,
}

#[derive(diesel::QueryableByName)]
struct Pid {
    #[diesel(sql_type = diesel::sql_types::Integer)]
    pid: i32,
}

impl BenchDatabase {
    /// A fresh, empty database on `backend` (`tag` goes into its name).
    pub fn create(backend: &Backend, dir: &Path, tag: &str) -> anyhow::Result<Self> {
        match backend {
            Backend::Sqlite => {
                Ok(Self { url: DatabaseUrl::Sqlite(dir.join(format!("{tag}.sqlite3"))), postgres: None })
            }
            Backend::Postgres(admin) => {
                let name = format!(
                    "tsunagi_bench_{}_{}",
                    tag.replace('-', "_"),
                    &uuid::Uuid::new_v4().simple().to_string()[..12]
                );
                let mut conn = PgConnection::establish(admin)
                    .with_context(|| "cannot connect to PostgreSQL (the --postgres URL)".to_owned())?;
                conn.batch_execute(&format!("CREATE DATABASE {name}"))
                    .context("cannot create the benchmark's database (does the role have CREATEDB?)")?;
                let url = with_database(admin, &name)?;
                Ok(Self { url: DatabaseUrl::Postgres(url), postgres: Some((admin.clone(), name)) })
            }
        }
    }

    /// Leaves a PostgreSQL database in place when this value is dropped, and says where it
    /// is (a SQLite file goes with the benchmark's temporary directory).
    pub fn keep(&mut self) {
        if self.postgres.take().is_some() {
            eprintln!("the database is kept: {}", self.url_string());
        }
    }

    /// The URL for `TSUNAGI_DATABASE_URL`.
    pub fn url_string(&self) -> String {
        match &self.url {
            DatabaseUrl::Sqlite(path) => format!("sqlite://{}", path.display()),
            DatabaseUrl::Postgres(url) => url.clone(),
        }
    }

    /// The size on disk: the SQLite file with its `-wal` and `-shm` files, or
    /// `pg_database_size` of the PostgreSQL database.
    pub fn size_bytes(&self) -> anyhow::Result<u64> {
        match (&self.url, &self.postgres) {
            (DatabaseUrl::Sqlite(path), _) => {
                let mut total = 0;
                for suffix in ["", "-wal", "-shm"] {
                    let file = PathBuf::from(format!("{}{suffix}", path.display()));
                    total += std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
                }
                Ok(total)
            }
            (DatabaseUrl::Postgres(_), Some((admin, name))) => {
                let mut conn = PgConnection::establish(admin).context("cannot connect to PostgreSQL")?;
                let size: Size = diesel::sql_query("SELECT pg_database_size($1) AS size")
                    .bind::<diesel::sql_types::Text, _>(name)
                    .get_result(&mut conn)
                    .context("cannot read the database size")?;
                Ok(u64::try_from(size.size).unwrap_or(0))
            }
            (DatabaseUrl::Postgres(_), None) => Ok(0),
        }
    }

    /// The PostgreSQL server processes serving this database, with their CPU seconds so far
    /// (none on SQLite, or when `/proc` does not show them).
    pub fn backend_cpu(&self) -> Vec<(u32, f64)> {
        let Some((admin, name)) = &self.postgres else { return Vec::new() };
        let Ok(mut conn) = PgConnection::establish(admin) else { return Vec::new() };
        let pids: Vec<Pid> = diesel::sql_query("SELECT pid FROM pg_stat_activity WHERE datname = $1")
            .bind::<diesel::sql_types::Text, _>(name)
            .load(&mut conn)
            .unwrap_or_default();
        pids.into_iter()
            .filter_map(|p| u32::try_from(p.pid).ok())
            .filter_map(|pid| cpu_seconds(pid).ok().map(|cpu| (pid, cpu)))
            .collect()
    }
}

impl Drop for BenchDatabase {
    fn drop(&mut self) {
        if let Some((admin, name)) = self.postgres.take() {
            if let Ok(mut conn) = PgConnection::establish(&admin) {
                let _ = conn.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
            }
        }
    }
}

/// CPU seconds (user + system, all threads) a process has used so far.
pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).context("cannot read /proc/<pid>/stat")?;
    // The command name is in parentheses and may hold spaces: fields count after the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, rest)| rest).context("an unexpected /proc/<pid>/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state (field 3 of the man page) is fields[0]; utime is 14, stime 15.
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).context("an unexpected /proc/<pid>/stat");
    Ok((ticks(11)? + ticks(12)?) as f64 / CLOCK_TICKS_PER_SECOND)
}

/// The child process `tsunagi serve`, killed when dropped.
pub struct ServerProcess {
    child: Child,
    port: u16,
    log: PathBuf,
}

/// A port that was free a moment ago.
fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("no free loopback port")?;
    Ok(listener.local_addr().context("a loopback address")?.port())
}

impl ServerProcess {
    /// Starts `tsunagi serve` (this executable) on `database`, on a free loopback port, with a
    /// random signing key in `dir`, and waits until `/readyz` answers.
    pub fn start(database: &BenchDatabase, dir: &Path, tag: &str) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("cannot find this executable to run `tsunagi serve`")?;
        let key = dir.join(format!("{tag}-signing.key"));
        let mut bytes = Vec::with_capacity(48);
        for _ in 0..3 {
            bytes.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
        }
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        options
            .open(&key)
            .and_then(|mut f| f.write_all(&bytes))
            .with_context(|| format!("cannot write {}", key.display()))?;
        let port = free_port()?;
        let log = dir.join(format!("{tag}-server.log"));
        let log_file = std::fs::File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
        let mut command = Command::new(exe);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("TSUNAGI_") {
                command.env_remove(name);
            }
        }
        let child = command
            .arg("serve")
            .env("TSUNAGI_DATABASE_URL", database.url_string())
            .env("TSUNAGI_BIND", format!("127.0.0.1:{port}"))
            .env("TSUNAGI_SIGNING_KEY_FILE", &key)
            .env("TSUNAGI_ACCESS_TOKEN_SECONDS", "86400")
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log_file))
            .spawn()
            .context("cannot start `tsunagi serve`")?;
        let mut server = ServerProcess { child, port, log };
        server.wait_ready()?;
        Ok(server)
    }

    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().context("cannot watch the server")? {
                bail!("`tsunagi serve` exited ({status}) before it was ready: {}", self.log_tail());
            }
            if self.ready() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("`tsunagi serve` was not ready within 60 s: {}", self.log_tail())
    }

    /// Whether `GET /readyz` answers 200.
    fn ready(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)) else { return false };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let request = "GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
        if stream.write_all(request.as_bytes()).is_err() {
            return false;
        }
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        answer.starts_with(b"HTTP/1.1 200")
    }

    /// The last lines of the server's log, for error messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().rev().take(5).collect();
        lines.into_iter().rev().collect::<Vec<_>>().join(" | ")
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// CPU seconds the server has used so far.
    pub fn cpu_seconds(&self) -> anyhow::Result<f64> {
        cpu_seconds(self.child.id())
    }

    /// Resets the peak resident set size (`VmHWM`) to the current one, where the kernel
    /// allows it (`/proc/<pid>/clear_refs`); returns whether it did.
    pub fn reset_peak_rss(&self) -> bool {
        std::fs::write(format!("/proc/{}/clear_refs", self.child.id()), "5").is_ok()
    }

    /// The peak resident set size in bytes (`VmHWM`).
    pub fn peak_rss_bytes(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .context("cannot read /proc/<pid>/status")?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).context("no VmHWM in /proc/<pid>/status")?;
        let kib: u64 =
            line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).context("an unexpected VmHWM line")?;
        Ok(kib * 1024)
    }

    /// Whether the server is still running.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait().context("cannot watch the server")? {
            bail!("`tsunagi serve` stopped ({status}): {}", self.log_tail());
        }
        Ok(())
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_another_database_on_the_same_server() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "b").unwrap(),
            "postgres://postgres@127.0.0.1:5432/b"
        );
        assert_eq!(with_database("postgres://u@h:1", "b").unwrap(), "postgres://u@h:1/b");
        assert_eq!(with_database("postgres://u@h/x?sslmode=disable", "b").unwrap(), "postgres://u@h/b?sslmode=disable");
        assert!(with_database("nonsense", "b").is_err());
    }

    #[test]
    fn reads_its_own_cpu_time() {
        assert!(cpu_seconds(std::process::id()).unwrap() >= 0.0);
    }
}
