//! The database goes away under a running server and comes back, without touching the
//! PostgreSQL server the tests share: a second server instance reaches the test's database
//! through a TCP relay, which the test cuts (every connection dropped, new ones refused, as
//! when PostgreSQL stops) and then restores. Meanwhile `POST /v1/sync`, a read endpoint and
//! `/readyz` must answer `503` with `Retry-After` promptly, not after the pool's full wait
//! for a connection; afterwards the same server answers normally, and what a phone logged
//! during the outage is delivered once. The long version, with PostgreSQL itself restarted
//! under load, is the drill `tsunagi bench --scenario drill-postgres-restart`
//! (`docs/benchmarks.md`).

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use diesel::prelude::*;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tsunagi_server::startup::Application;
use tsunagi_server::store::{schema, DatabaseUrl, StoreError};
use tsunagi_sync::client::ClientError;

use common::phone::Phone;
use common::{spawn_app, Backend};

/// What "promptly" means here: far below the pool's 10 s wait for a connection, with room for
/// a busy test machine.
const PROMPT: Duration = Duration::from_secs(5);

/// A TCP relay from a loopback port to the PostgreSQL server.
struct Relay {
    port: u16,
    upstream: SocketAddr,
    /// The accepting task and one task per relayed connection.
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Relay {
    async fn start(upstream: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let relay = Relay { port, upstream, tasks: Arc::default() };
        relay.serve(listener);
        relay
    }

    fn serve(&self, listener: TcpListener) {
        let (tasks, upstream) = (self.tasks.clone(), self.upstream);
        let accepting = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let connection = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                tasks.lock().unwrap().push(connection);
            }
        });
        self.tasks.lock().unwrap().push(accepting);
    }

    /// The database "stops": every relayed connection is dropped, new ones are refused.
    fn cut(&self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }

    /// The database is back, on the same port.
    async fn resume(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", self.port)).await {
                Ok(listener) => break listener,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("the relay's port is not free yet: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("the relay cannot listen on its port again: {e}"),
            }
        };
        self.serve(listener);
    }
}

/// `host:port` of a PostgreSQL URL, and the URL with them replaced by `127.0.0.1:port`.
fn relayed(url: &str, port: u16) -> (String, String) {
    let (scheme, rest) = url.split_once("://").unwrap();
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (user, host_port) = match authority.rsplit_once('@') {
        Some((user, host_port)) => (format!("{user}@"), host_port),
        None => (String::new(), authority),
    };
    let upstream = if host_port.contains(':') { host_port.to_owned() } else { format!("{host_port}:5432") };
    (upstream, format!("{scheme}://{user}127.0.0.1:{port}/{path}"))
}

/// Asserts `503` with a `Retry-After`, answered within [`PROMPT`].
fn assert_prompt_503(what: &str, status: u16, retry_after: Option<String>, took: Duration) {
    assert_eq!(status, 503, "{what}: 503 while the database is away");
    assert!(retry_after.is_some(), "{what}: the 503 carries Retry-After");
    assert!(took < PROMPT, "{what}: answered in {took:?}, not after the pool's full wait");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_away_answers_503_promptly_and_the_server_recovers() {
    let app = spawn_app(Backend::Postgres).await;
    let seed = app.seed();
    let DatabaseUrl::Postgres(url) = app.settings.database_url.clone() else { unreachable!() };
    let (upstream, _) = relayed(&url, 0);
    let upstream = tokio::net::lookup_host(&upstream).await.unwrap().next().unwrap();
    let relay = Relay::start(upstream).await;
    let (_, through_relay) = relayed(&url, relay.port);

    // A second instance on the same database, through the relay.
    let mut settings = app.settings.clone();
    settings.database_url = DatabaseUrl::Postgres(through_relay);
    settings.bind = "127.0.0.1:0".parse().unwrap();
    let instance = tokio::task::spawn_blocking(move || Application::build(settings)).await.unwrap().unwrap();
    let address = format!("http://127.0.0.1:{}", instance.port());
    tokio::spawn(instance.run_until_stopped());

    let mut phone = Phone::sign_in(&address, &seed.counsellor).await;
    let case = phone.open_case();
    phone.log_visit(&case, 10, "巡回訪問。");
    phone.sync().await;

    relay.cut();
    let during = phone.log_visit(&case, 11, "データベース停止中に記録。");
    for attempt in 0..2 {
        let started = Instant::now();
        let failure = match phone.try_sync().await {
            Err(ClientError::RetriesExhausted { last, .. }) => *last,
            Err(e) => e,
            Ok(_) => panic!("POST /v1/sync succeeded while the database is away"),
        };
        match failure {
            ClientError::Api { status, retry_after, .. } => assert_prompt_503(
                &format!("POST /v1/sync, attempt {attempt}"),
                status,
                retry_after.map(|d| d.as_secs().to_string()),
                started.elapsed(),
            ),
            other => panic!("POST /v1/sync while the database is away: {other}"),
        }
    }
    for path in ["/v1/cases", "/readyz"] {
        let started = Instant::now();
        let response = app.http.get(format!("{address}{path}")).bearer_auth(&phone.token).send().await.unwrap();
        let retry_after = response.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
        assert_prompt_503(&format!("GET {path}"), response.status().as_u16(), retry_after, started.elapsed());
    }

    // The database is back: the same server answers again, soon, and nothing is lost.
    relay.resume().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match phone.try_sync().await {
            Ok(_) => break,
            Err(e) => {
                assert!(Instant::now() < deadline, "the server did not recover within 20 s: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    let ready = app.http.get(format!("{address}/readyz")).send().await.unwrap();
    assert_eq!(ready.status().as_u16(), 200, "ready again");
    let stored: i64 = app
        .db
        .read(|c| -> Result<i64, StoreError> {
            Ok(schema::activities::table
                .filter(schema::activities::activity_id.eq(during.to_string()))
                .count()
                .get_result(c)?)
        })
        .unwrap();
    assert_eq!(stored, 1, "the visit logged during the outage is stored once");
}

#[test]
fn relays_the_url_to_the_relay() {
    assert_eq!(
        relayed("postgres://postgres@127.0.0.1:5432/tsunagi_test_x", 7000),
        ("127.0.0.1:5432".into(), "postgres://postgres@127.0.0.1:7000/tsunagi_test_x".into())
    );
    assert_eq!(
        relayed("postgres://u:p@localhost/d", 7001),
        ("localhost:5432".into(), "postgres://u:p@127.0.0.1:7001/d".into())
    );
}
