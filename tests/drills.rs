//! Failure drills, the short ones (the long ones are scripts, see `docs/benchmarks.md`):
//!
//! - `tsunagi serve` killed with SIGKILL while phones sync under load, then started again on
//!   the same database. Every change a phone was told "ok" for must be in the database, none
//!   twice, and the phones must resume and deliver everything they logged meanwhile. On SQLite
//!   and PostgreSQL, with real processes and the real phone stack.
//! - Two server instances on one PostgreSQL database under load, every device alternating
//!   between them: one final state, whichever instance is asked, and case numbers without gap
//!   or duplicate.

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
use tsunagi_sync::ids::{ActivityId, CaseId, CaseNumber, MunicipalityCode};

use common::phone::Phone;
use common::process::Server;
use common::{server_heads, Backend, Person, MUNICIPALITY};

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

/// How long the two instances are under load.
const TWO_INSTANCES_LOAD: Duration = Duration::from_secs(4);

/// Two server instances on one PostgreSQL database, behind a balancer without affinity: two
/// counsellors, each with a phone and a tablet holding the same cases, open cases, log visits
/// and amend the same narratives offline, and sync in a loop, every device alternating
/// between the instances. Afterwards every sync was answered, the cases are numbered without
/// gap or duplicate, every visit is stored once, every device holds what the server holds,
/// both instances answer every question alike, and the projections they wrote batch by batch
/// are what rebuilding them from the documents gives.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_server_instances_under_load_end_in_one_state() {
    use tsunagi_sync::client::{RetryPolicy, SyncClient};

    let app = common::spawn_app(Backend::Postgres).await;
    let people = app.seed();
    let second = app.spawn_instance().await;
    let instances = [app.address.clone(), second.clone()];
    let mut devices = Vec::new();
    for who in [&people.counsellor, &people.counsellor2] {
        devices.push(who.clone());
        devices.push(app.add_device(who, "タブレット"));
    }
    let mut phones = Vec::new();
    for (n, who) in devices.iter().enumerate() {
        // Signed in on one instance; its tokens are good on the other (one signing key).
        let phone = Phone::sign_in(&instances[n % 2], who).await;
        let other = SyncClient::builder(&instances[(n + 1) % 2]).retry(RetryPolicy::never()).build().unwrap();
        phones.push((phone, other));
    }

    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = phones
        .into_iter()
        .map(|(phone, other)| tokio::spawn(work_on_two_instances(phone, other, stop.clone())))
        .collect();
    tokio::time::sleep(TWO_INSTANCES_LOAD).await;
    stop.store(true, Ordering::SeqCst);
    let mut done = Vec::new();
    for worker in workers {
        done.push(worker.await.unwrap());
    }
    // Two rounds, each device on the instance it did not use last: the first delivers what
    // is left, the second brings every device what the others delivered in the first.
    for _ in 0..2 {
        for (phone, other, _) in &mut done {
            std::mem::swap(&mut phone.client, other);
            phone.sync().await;
        }
    }

    let syncs: usize = done.iter().map(|(_, _, l)| l.syncs).sum();
    let failures: Vec<&String> = done.iter().flat_map(|(_, _, l)| &l.failures).collect();
    assert!(failures.is_empty(), "every sync under load is answered: {failures:?}");
    let opened: BTreeSet<CaseId> = done.iter().flat_map(|(_, _, l)| l.opened.iter().copied()).collect();
    assert!(syncs >= 8 && opened.len() >= 4, "the load ran: {syncs} syncs, {} cases", opened.len());

    // Case numbers: 1 to N, no gap, no duplicate, and each reaches every device of the case.
    let numbers: BTreeMap<String, Option<String>> = app
        .db
        .read(|c| -> Result<_, StoreError> {
            Ok(schema::cases::table.select((schema::cases::case_id, schema::cases::case_number)).load(c)?)
        })
        .unwrap()
        .into_iter()
        .collect();
    let mut serials: Vec<u32> = numbers
        .values()
        .map(|n| CaseNumber::parse(n.as_deref().expect("every case is numbered")).unwrap().serial())
        .collect();
    serials.sort_unstable();
    assert_eq!(serials, (1..=opened.len() as u32).collect::<Vec<_>>(), "numbered without gap or duplicate");
    assert_eq!(numbers.keys().cloned().collect::<BTreeSet<_>>(), opened.iter().map(|c| c.to_string()).collect());

    // Every visit logged is stored once; every device holds exactly what the server holds.
    let stored = stored(&app.db);
    let logged: BTreeSet<ActivityId> = done.iter().flat_map(|(_, _, l)| l.logged.iter().copied()).collect();
    assert_eq!(stored.len(), logged.len(), "nothing but what the devices logged");
    for id in &logged {
        assert_eq!(stored.get(&id.to_string()), Some(&1), "{id} is stored once");
    }
    for (phone, _, _) in &done {
        let held: BTreeSet<CaseId> = phone.store.case_ids().into_iter().collect();
        let own: BTreeSet<CaseId> = done
            .iter()
            .filter(|(p, _, _)| p.who.staff == phone.who.staff)
            .flat_map(|(_, _, l)| l.opened.iter().copied())
            .collect();
        assert_eq!(held, own, "{}: every case of its counsellor, no other", phone.who.login);
        for case in &held {
            let server = server_heads(&app.db, case);
            assert_eq!(phone.heads(case), server, "{}: {case} as the server holds it", phone.who.login);
            assert_eq!(phone.since(case), server, "{}: {case} acknowledged", phone.who.login);
            let number = numbers[&case.to_string()].clone();
            assert_eq!(phone.view(case).case_number.map(|n| n.to_string()), number);
        }
    }

    // Both instances answer alike: each case record, the visit log, the monthly figures.
    let supervisor = app.login(&people.supervisor).await.access_token;
    let answers = |instance: &str| {
        let (http, instance, token, cases) =
            (app.http.clone(), instance.to_owned(), supervisor.clone(), opened.clone());
        async move {
            let get = |path: String| {
                let request = http.get(format!("{instance}{path}")).bearer_auth(&token);
                async move {
                    let response = request.send().await.expect("the server answers");
                    assert_eq!(response.status(), 200, "{path}");
                    response.json::<serde_json::Value>().await.expect("JSON")
                }
            };
            let mut all = Vec::new();
            for case in &cases {
                all.push(get(format!("/v1/cases/{case}")).await);
            }
            let mut page = get("/v1/visits?limit=500".to_owned()).await;
            loop {
                let next = page["next"].as_str().map(str::to_owned);
                all.push(page);
                let Some(next) = next else { break };
                page = get(format!("/v1/visits?limit=500&after={next}")).await;
            }
            all.push(get("/v1/figures/2026".to_owned()).await);
            all
        }
    };
    let through_first = answers(&instances[0]).await;
    assert_eq!(through_first, answers(&instances[1]).await, "both instances answer alike");
    let visits: usize = through_first.iter().filter_map(|a| a["visits"].as_array()).map(Vec::len).sum();
    assert_eq!(visits, logged.len(), "the visit log shows every visit once");

    let incremental = projections(&app.db);
    tsunagi_server::store::projections::reproject_all(&app.db).unwrap();
    assert_eq!(projections(&app.db), incremental, "what the instances projected is what the documents hold");
    assert_eq!(answers(&instances[1]).await, through_first, "and rebuilding the projections changes no answer");
    eprintln!("two instances: {syncs} syncs, {} cases, {} visits, every one once", opened.len(), logged.len());
}

/// What one device did against two instances.
#[derive(Default)]
struct Turns {
    syncs: usize,
    opened: BTreeSet<CaseId>,
    logged: BTreeSet<ActivityId>,
    failures: Vec<String>,
}

/// Opens a case every fifth turn, logs a visit into the cases it holds in turn, every third
/// turn rewrites the narrative of the case's first visit of its counsellor (the other device
/// of the counsellor does the same, concurrently), and syncs, on the other instance each turn.
async fn work_on_two_instances(
    mut phone: Phone,
    mut other: tsunagi_sync::client::SyncClient,
    stop: Arc<AtomicBool>,
) -> (Phone, tsunagi_sync::client::SyncClient, Turns) {
    let mut turns = Turns::default();
    let mut turn = 0u32;
    while !stop.load(Ordering::SeqCst) {
        if turn.is_multiple_of(5) {
            turns.opened.insert(phone.open_case());
        }
        let held = phone.store.case_ids();
        let case = held[turn as usize % held.len()];
        let id = phone.log_visit(&case, 8 + turn % 10, &format!("巡回訪問 {turn}。"));
        turns.logged.insert(id);
        if turn % 3 == 2 {
            let staff = phone.who.staff;
            let first = phone.view(&case).activities.iter().find(|(_, a)| a.recorded_by == staff).map(|(id, _)| *id);
            if let Some(first) = first {
                let text = format!("巡回訪問。{} が {turn} 回目に追記。", phone.who.device);
                phone.edit(&case, |r| r.amend_narrative(first, &text)).unwrap();
            }
        }
        match phone.try_sync().await {
            Ok(_) => turns.syncs += 1,
            Err(e) => turns.failures.push(format!("{}: {e}", phone.who.login)),
        }
        std::mem::swap(&mut phone.client, &mut other);
        turn += 1;
    }
    (phone, other, turns)
}

/// A `cases` row: id, number, status, primary assignee, conflicts.
type CaseColumns = (String, Option<String>, String, Option<String>, i32);
/// An `activities` row: id, case, kind, outcome, voided, letter left, narrative.
type ActivityColumns = (String, String, String, Option<String>, bool, bool, String);
/// An `activity_months` row: case, month, municipality and the four counts and `met`.
type MonthColumns = (String, String, String, i64, i64, i64, i64, i64);

/// The projection rows the supervisors' queries read (timestamps of the writes left out).
fn projections(db: &Database) -> Vec<String> {
    use schema::{activities as a, activity_month_topics as mt, activity_months as m, cases};
    db.read(|c| -> Result<Vec<String>, StoreError> {
        let mut rows = Vec::new();
        let case_rows: Vec<CaseColumns> = cases::table
            .order(cases::case_id)
            .select((cases::case_id, cases::case_number, cases::status, cases::primary_assignee, cases::conflicts))
            .load(c)?;
        rows.extend(case_rows.iter().map(|r| format!("case {r:?}")));
        let activity_rows: Vec<ActivityColumns> = a::table
            .order(a::activity_id)
            .select((a::activity_id, a::case_id, a::kind, a::outcome, a::voided, a::letter_left, a::narrative))
            .load(c)?;
        rows.extend(activity_rows.iter().map(|r| format!("activity {r:?}")));
        let months: Vec<MonthColumns> = m::table
            .order((m::case_id, m::month, m::municipality))
            .select((
                m::case_id,
                m::month,
                m::municipality,
                m::consultations,
                m::visits,
                m::letters,
                m::contacts,
                m::met,
            ))
            .load(c)?;
        rows.extend(months.iter().map(|r| format!("month {r:?}")));
        let topics: Vec<(String, String, String, i64)> = mt::table
            .order((mt::case_id, mt::month, mt::topic))
            .select((mt::case_id, mt::month, mt::topic, mt::n))
            .load(c)?;
        rows.extend(topics.iter().map(|r| format!("topic {r:?}")));
        Ok(rows)
    })
    .unwrap()
}
