//! Shared helpers for the end-to-end tests: the real server on a random port over a fresh
//! database of its own (SQLite or PostgreSQL), a seeded municipality with one account per
//! role, and a small HTTP client.
//!
//! ```ignore
//! let app = spawn_app(Backend::Sqlite).await;
//! let people = app.seed();
//! let tokens = app.login(&people.counsellor).await;
//! ```
//!
//! PostgreSQL tests connect to `TSUNAGI_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`) and fail if it cannot be reached.

#![allow(dead_code)]

pub mod phone;
pub mod process;
pub mod proxy;

use serde_json::{json, Value};
use tsunagi_server::admin::{self, NewStaff, OrganisationKind};
use tsunagi_server::config::{Settings, SigningKey};
use tsunagi_server::startup::Application;
use tsunagi_server::store::{Database, DatabaseUrl};
use tsunagi_server::sync::{AssignError, Assignment, SyncEngine};
pub use tsunagi_server::testing::Backend;
use tsunagi_server::testing::TestDatabase;
use tsunagi_sync::domain::Role;
use tsunagi_sync::ids::{CaseId, DeviceId, MunicipalityCode, StaffId};
use tsunagi_sync::wire::{TokenResponse, LOGIN_PATH, LOGOUT_PATH, REFRESH_PATH};
use uuid::Uuid;

/// Generates a `sqlite` and a `postgres` test for each `async fn name(backend: Backend)` named,
/// in a module of that name: `cargo test login_works` runs both.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test]
                async fn sqlite() {
                    super::$name($crate::common::Backend::Sqlite).await
                }

                #[tokio::test]
                async fn postgres() {
                    super::$name($crate::common::Backend::Postgres).await
                }
            }
        )*
    };
}

/// The municipality every seed creates (流山市).
pub const MUNICIPALITY: &str = "122203";

/// A running server and what a test needs to talk to it.
pub struct TestApp {
    /// `http://127.0.0.1:PORT`.
    pub address: String,
    /// The port.
    pub port: u16,
    /// The server's database.
    pub db: Database,
    /// The server's settings (its signing key and issuer, for forging tokens in tests).
    pub settings: Settings,
    /// An HTTP/1.1 client.
    pub http: reqwest::Client,
    /// The server's sync engine (for what a supervisor does on the web, e.g. assignments).
    pub engine: SyncEngine,
    _database: TestDatabase,
}

/// Starts the server on a fresh database of `backend`, on a random port.
pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_| {}).await
}

/// [`spawn_app`], with the default settings changed by `configure` first (e.g. a small
/// `max_body_bytes`). The database URL and the bind address are the test's own.
pub async fn spawn_app_with(backend: Backend, configure: impl FnOnce(&mut Settings)) -> TestApp {
    let database = TestDatabase::new(backend);
    let mut key = vec![0u8; 32];
    rand::fill(&mut key[..]);
    let mut settings = Settings::new(database.url.clone(), SigningKey::new(key).expect("a 32-byte key"));
    configure(&mut settings);
    settings.database_url = database.url.clone();
    settings.bind = "127.0.0.1:0".parse().expect("an address");
    let app = Application::build(settings.clone()).expect("the server starts");
    let port = app.port();
    let db = app.state().db.clone();
    let engine = app.state().engine.clone();
    // actix-web's server is a future that runs on tokio; its workers have threads of their own.
    tokio::spawn(app.run_until_stopped());
    let http = reqwest::Client::builder().no_proxy().build().expect("an HTTP client");
    TestApp { address: format!("http://127.0.0.1:{port}"), port, db, settings, http, engine, _database: database }
}

/// A seeded staff member with one registered device and a known password.
#[derive(Debug, Clone)]
pub struct Person {
    /// The login name.
    pub login: String,
    /// The password.
    pub password: String,
    /// The staff id.
    pub staff: StaffId,
    /// The registered device.
    pub device: DeviceId,
    /// The role.
    pub role: Role,
}

/// What [`TestApp::seed`] created.
#[derive(Debug, Clone)]
pub struct Seed {
    /// 流山市.
    pub municipality: MunicipalityCode,
    /// The area `east` (東部).
    pub area: Uuid,
    /// The municipality's own office.
    pub organisation: Uuid,
    /// A counsellor of area `east`.
    pub counsellor: Person,
    /// A second counsellor of area `east`.
    pub counsellor2: Person,
    /// A supervisor.
    pub supervisor: Person,
    /// The meeting tablet's account.
    pub meeting_tablet: Person,
    /// An administrator.
    pub administrator: Person,
}

impl TestApp {
    /// Creates 流山市 (122203), its area `east`, an organisation, and one account per role
    /// (two counsellors), each with a registered device and the password
    /// `<login>-passphrase-123`.
    pub fn seed(&self) -> Seed {
        seed_database(&self.db)
    }

    /// Starts another server instance on this app's database, with the same settings (and so
    /// the same signing key: tokens of one instance work on the other), on a random port;
    /// returns its base URL (`http://127.0.0.1:PORT`). It runs as long as the test does.
    pub async fn spawn_instance(&self) -> String {
        let mut settings = self.settings.clone();
        settings.bind = "127.0.0.1:0".parse().expect("an address");
        let app = Application::build(settings).expect("the second instance starts");
        let port = app.port();
        tokio::spawn(app.run_until_stopped());
        format!("http://127.0.0.1:{port}")
    }

    /// Creates one more counsellor of area `east` in the seeded municipality, with a
    /// registered device and the password `<login>-passphrase-123`.
    pub fn add_counsellor(&self, seed: &Seed, login: &str, name: &str) -> Person {
        let password = format!("{login}-passphrase-123");
        let new = NewStaff {
            login,
            display_name: name,
            role: Role::Counsellor,
            organisation: seed.organisation,
            municipality: seed.municipality,
            area: Some("east"),
        };
        let staff = admin::create_staff(&self.db, &new, &password).unwrap();
        let device = admin::register_device(&self.db, login, &format!("{name}の端末")).unwrap();
        Person { login: login.to_owned(), password, staff, device, role: Role::Counsellor }
    }

    /// Registers a further device for `who` (a tablet besides the phone): the same person,
    /// signed in on another device.
    pub fn add_device(&self, who: &Person, label: &str) -> Person {
        let device = admin::register_device(&self.db, &who.login, label).unwrap();
        Person { device, ..who.clone() }
    }

    /// What a supervisor does on the web: changes who is assigned to `case`, as one change
    /// by the server (no one named as having ordered it).
    pub fn assign(&self, case: &CaseId, staff: &StaffId, how: Assignment) -> Result<(), AssignError> {
        self.engine.assign(case, staff, how, None)
    }

    /// The database URL, as `TSUNAGI_DATABASE_URL` would give it.
    pub fn database_url(&self) -> String {
        match &self._database.url {
            DatabaseUrl::Postgres(url) => url.clone(),
            DatabaseUrl::Sqlite(path) => format!("sqlite://{}", path.display()),
        }
    }

    /// Runs the `tsunagi` binary on this app's database, with `stdin` as standard input;
    /// returns its exit code, standard output and standard error.
    pub fn cli(&self, args: &[&str], stdin: &str) -> (i32, String, String) {
        run_tsunagi(args, &[("TSUNAGI_DATABASE_URL", &self.database_url())], stdin)
    }

    /// `address` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// POSTs a JSON body.
    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.http.post(self.url(path)).json(body).send().await.expect("the server answers")
    }

    /// Calls an endpoint with a bearer token and an optional JSON body: the status and the
    /// JSON answer (`null` when the body is empty or not JSON).
    pub async fn call(&self, method: reqwest::Method, token: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let mut request = self.http.request(method, self.url(path)).bearer_auth(token);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.expect("the server answers");
        let status = response.status().as_u16();
        let bytes = response.bytes().await.expect("a body");
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    /// GETs `path` with a bearer token.
    pub async fn get_with_token(&self, path: &str, token: &str) -> reqwest::Response {
        self.http.get(self.url(path)).bearer_auth(token).send().await.expect("the server answers")
    }

    /// `POST /v1/auth/login` with these credentials.
    pub async fn try_login(&self, login: &str, password: &str, device: DeviceId) -> reqwest::Response {
        self.post_json(LOGIN_PATH, &json!({ "login": login, "password": password, "device_id": device })).await
    }

    /// Signs `who` in on their device; panics unless it succeeds.
    pub async fn login(&self, who: &Person) -> TokenResponse {
        let response = self.try_login(&who.login, &who.password, who.device).await;
        assert_eq!(response.status(), 200, "login of {}: {}", who.login, response.text().await.unwrap_or_default());
        response.json().await.expect("a TokenResponse")
    }

    /// `POST /v1/auth/refresh`.
    pub async fn refresh(&self, refresh_token: &str) -> reqwest::Response {
        self.post_json(REFRESH_PATH, &json!({ "refresh_token": refresh_token })).await
    }

    /// `POST /v1/auth/logout`.
    pub async fn logout(&self, refresh_token: &str) -> reqwest::Response {
        self.post_json(LOGOUT_PATH, &json!({ "refresh_token": refresh_token })).await
    }

    /// `GET /v1/me` with a token.
    pub async fn me(&self, token: &str) -> reqwest::Response {
        self.get_with_token("/v1/me", token).await
    }
}

/// The heads the server stored for `case`, sorted (empty if it does not hold the case).
pub fn server_heads(db: &Database, case: &CaseId) -> Vec<automerge::ChangeHash> {
    use diesel::prelude::*;
    use tsunagi_server::store::{documents::decode_heads, schema, StoreError};
    let bytes: Option<Vec<u8>> = db
        .read(|c| -> Result<_, StoreError> {
            Ok(schema::documents::table
                .find(case.to_string())
                .select(schema::documents::heads)
                .first::<Vec<u8>>(c)
                .optional()?)
        })
        .unwrap();
    bytes.map(|b| phone::sorted(decode_heads(&b).unwrap())).unwrap_or_default()
}

/// The status and the `code` of an error answer.
pub async fn error_of(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("an ApiError body in JSON");
    (status, body["code"].as_str().unwrap_or_default().to_owned())
}

/// Runs the `tsunagi` binary with `args`, an otherwise empty environment plus `env`, the
/// temporary directory as working directory, and `stdin` as standard input; returns its exit
/// code, standard output and standard error (trimmed).
pub fn run_tsunagi<S: AsRef<std::ffi::OsStr>>(args: &[S], env: &[(&str, &str)], stdin: &str) -> (i32, String, String) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_tsunagi"))
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .env("RUST_LOG", "warn")
        .current_dir(std::env::temp_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the tsunagi binary runs");
    child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("write stdin");
    let output = child.wait_with_output().expect("the tsunagi binary finishes");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).trim().to_owned(),
        String::from_utf8_lossy(&output.stderr).trim().to_owned(),
    )
}

/// `tsunagi field --dir DIR ARGS…`, as [`run_tsunagi`].
pub fn run_field(dir: &std::path::Path, args: &[&str], stdin: &str) -> (i32, String, String) {
    let mut all: Vec<&std::ffi::OsStr> = vec!["field".as_ref(), "--dir".as_ref(), dir.as_os_str()];
    all.extend(args.iter().map(|a| std::ffi::OsStr::new(*a)));
    run_tsunagi(&all, &[], stdin)
}

/// What [`TestApp::seed`] does, on any database of the schema (e.g. that of a `tsunagi serve`
/// process).
pub fn seed_database(db: &Database) -> Seed {
    let municipality = MunicipalityCode::parse(MUNICIPALITY).unwrap();
    admin::create_municipality(db, municipality, "流山市").unwrap();
    let area = admin::create_area(db, municipality, "east", "東部").unwrap();
    let organisation = admin::create_organisation(db, "流山市 福祉政策課", OrganisationKind::Direct).unwrap();
    let person = |login: &str, name: &str, role: Role, area: Option<&str>| {
        let password = format!("{login}-passphrase-123");
        let new = NewStaff { login, display_name: name, role, organisation, municipality, area };
        let staff = admin::create_staff(db, &new, &password).unwrap();
        let device = admin::register_device(db, login, &format!("{name}の端末")).unwrap();
        Person { login: login.to_owned(), password, staff, device, role }
    };

    Seed {
        municipality,
        area,
        organisation,
        counsellor: person("sato", "佐藤 花子", Role::Counsellor, Some("east")),
        counsellor2: person("suzuki", "鈴木 一郎", Role::Counsellor, Some("east")),
        supervisor: person("takahashi", "高橋 恵", Role::Supervisor, None),
        meeting_tablet: person("meeting-room-1", "会議室タブレット", Role::MeetingTablet, None),
        administrator: person("admin", "システム管理者", Role::Administrator, None),
    }
}
