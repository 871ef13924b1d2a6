//! Failure drills, the short ones (the long ones are scripts, see `docs/benchmarks.md`):
//! `tsunagi serve` killed with SIGKILL while phones sync under load, then started again on
//! the same database. Every change a phone was told "ok" for must be in the database, none
//! twice, and the phones must resume and deliver everything they logged meanwhile. On SQLite
//! and PostgreSQL, with real processes and the real phone stack.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::prelude::*;
use tsunagi_server::admin::{self, NewStaff, OrganisationKind};
use tsunagi_server::store::{schema, Database, StoreError};
use tsunagi_server::testing::TestDatabase;
use tsunagi_sync::domain::Role;
use tsunagi_sync::ids::{ActivityId, MunicipalityCode};

use common::phone::Phone;
use common::process::Server;
use common::{Backend, Person, MUNICIPALITY};

/// How many phones sync at once.
const PHONES: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_server_killed_under_load_loses_nothing_it_acknowledged() {
    server_killed_under_load(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_server_killed_under_load_loses_nothing_it_acknowledged() {
    server_killed_under_load(Backend::Postgres).await
}

/// What one phone logged, and what the server acknowledged.
#[derive(Default)]
struct Ledger {
    logged: BTreeSet<ActivityId>,
    acknowledged: BTreeSet<ActivityId>,
    failures: usize,
}

/// Logs a visit and syncs, again and again, until `stop`; a sync that fails (the server is
/// gone) is simply tried again at the next turn, as a phone would.
async fn work(mut phone: Phone, stop: Arc<AtomicBool>) -> (Phone, Ledger) {
    let mut ledger = Ledger::default();
    let case = phone.open_case();
    let mut hour = 0u32;
    while !stop.load(Ordering::SeqCst) {
        let id = phone.log_visit(&case, 8 + hour % 10, "巡回訪問。");
        hour += 1;
        ledger.logged.insert(id);
        match phone.try_sync().await {
            // Everything logged so far went up with this sync, or with an earlier one.
            Ok(_) => ledger.acknowledged = ledger.logged.clone(),
            Err(_) => {
                ledger.failures += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    (phone, ledger)
}

/// How many times each activity is in the server's projection.
fn stored(db: &Database) -> BTreeMap<String, i64> {
    db.read(|c| -> Result<Vec<(String, i64)>, StoreError> {
        Ok(schema::activities::table
            .group_by(schema::activities::activity_id)
            .select((schema::activities::activity_id, diesel::dsl::count_star()))
            .load(c)?)
    })
    .unwrap()
    .into_iter()
    .collect()
}

async fn server_killed_under_load(backend: Backend) {
    let database = TestDatabase::new(backend);
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::on(&Server::url_of(&database.url), tmp.path());
    let port = server.port;
    let mut running = server.start();
    let db = Database::connect(&database.url, 2).unwrap();

    // Accounts, straight in the database the server migrated.
    let municipality = MunicipalityCode::parse(MUNICIPALITY).unwrap();
    admin::create_municipality(&db, municipality, "流山市").unwrap();
    let organisation = admin::create_organisation(&db, "流山市 福祉政策課", OrganisationKind::Direct).unwrap();
    let address = format!("http://127.0.0.1:{port}");
    let mut phones = Vec::new();
    for n in 0..PHONES {
        let login = format!("counsellor{n}");
        let password = format!("{login}-passphrase-123");
        let new = NewStaff {
            login: &login,
            display_name: "相談員",
            role: Role::Counsellor,
            organisation,
            municipality,
            area: None,
        };
        let staff = admin::create_staff(&db, &new, &password).unwrap();
        let device = admin::register_device(&db, &login, "端末").unwrap();
        let who = Person { login, password, staff, device, role: Role::Counsellor };
        phones.push(Phone::sign_in(&address, &who).await);
    }

    // Load; the server is killed in the middle of it and started again.
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = phones.into_iter().map(|p| tokio::spawn(work(p, stop.clone()))).collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before_kill = stored(&db).len();
    running.kill();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let _running = server.start();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::SeqCst);

    let mut ledgers = Vec::new();
    for worker in workers {
        let (mut phone, ledger) = worker.await.unwrap();
        // After the load, each phone syncs until it succeeds: it resumes where it was.
        let deadline = Instant::now() + Duration::from_secs(30);
        while phone.try_sync().await.is_err() {
            assert!(Instant::now() < deadline, "a phone could not sync within 30 s of the restart");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        ledgers.push(ledger);
    }

    let stored = stored(&db);
    let failures: usize = ledgers.iter().map(|l| l.failures).sum();
    assert!(before_kill > 0, "the load ran before the kill");
    assert!(failures > 0, "the phones noticed the server going away");
    for (n, ledger) in ledgers.iter().enumerate() {
        for id in &ledger.acknowledged {
            assert_eq!(stored.get(&id.to_string()), Some(&1), "phone {n}: acknowledged {id} is stored once");
        }
        for id in &ledger.logged {
            assert_eq!(stored.get(&id.to_string()), Some(&1), "phone {n}: logged {id} was delivered after the restart");
        }
    }
    let logged: usize = ledgers.iter().map(|l| l.logged.len()).sum();
    assert_eq!(stored.len(), logged, "nothing but what the phones logged");
    eprintln!("{backend:?}: {logged} activities, {failures} failed syncs during the outage, all delivered once");
}
