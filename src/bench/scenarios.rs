//! The five sync scenarios (the sixth, `supervisor`, is in [`super::supervisor`]). Each one: a fresh database, seeded ([`super::seed`]); the server
//! started on it with the proxy in front ([`Harness`]); the devices signed in; their offline
//! work done; then the **measured phase** — the syncs only — and the replay of the same steps
//! with the standard sync protocol ([`super::baseline`]).

use std::path::Path;
use std::time::Instant;

use anyhow::Context as _;
use serde_json::json;
use tsunagi_sync::wire::SYNC_PATH;

use super::baseline::{Baseline, Input, Outcome, Step};
use super::device::{Batch, Device, Moved, Person};
use super::proxy::Proxy;
use super::report::{ms, Figures, Floor, ScenarioReport};
use super::seed::Seeder;
use super::server::{cpu_seconds, Backend, BenchDatabase, ServerProcess};
use super::text::Rng;
use super::Params;

/// What every scenario runs with.
pub struct Context<'a> {
    /// The database backend.
    pub backend: &'a Backend,
    /// The benchmark's temporary directory.
    pub dir: &'a Path,
    /// The counts.
    pub params: &'a Params,
    /// The runtime the devices run on.
    pub runtime: &'a tokio::runtime::Runtime,
}

/// The server process, the proxy in front of it, and its database (dropped in this order).
pub(super) struct Harness {
    server: ServerProcess,
    pub(super) proxy: Proxy,
    db: BenchDatabase,
}

/// The state of the counters when a measured phase began.
pub(super) struct Mark {
    started: Instant,
    cpu: f64,
    own_cpu: f64,
    database_cpu: Vec<(u32, f64)>,
}

impl Harness {
    pub(super) fn start(db: BenchDatabase, dir: &Path, tag: &str) -> anyhow::Result<Harness> {
        let server = ServerProcess::start(&db, dir, tag)?;
        let proxy = Proxy::start(server.port())?;
        Ok(Harness { server, proxy, db })
    }

    /// The base URL the devices use: the proxy's.
    pub(super) fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.proxy.port())
    }

    pub(super) fn begin(&self) -> anyhow::Result<Mark> {
        let _ = self.proxy.take();
        self.server.reset_peak_rss();
        let cpu = self.server.cpu_seconds()?;
        let database_cpu = self.db.backend_cpu();
        let own_cpu = cpu_seconds(std::process::id())?;
        Ok(Mark { started: Instant::now(), cpu, own_cpu, database_cpu })
    }

    /// tsunagi's figures of the phase since `mark` (counts of work are filled in by the caller).
    pub(super) fn end(&mut self, mark: Mark) -> anyhow::Result<Figures> {
        let wall = mark.started.elapsed();
        let exchanges = self.proxy.take();
        let cpu = self.server.cpu_seconds()? - mark.cpu;
        let own_cpu = cpu_seconds(std::process::id())? - mark.own_cpu;
        let peak = self.server.peak_rss_bytes().ok();
        self.server.check_running()?;
        let database_cpu = match self.db.backend_cpu() {
            after if !after.is_empty() => Some(
                after
                    .iter()
                    .map(|(pid, cpu)| {
                        let before = mark.database_cpu.iter().find(|(p, _)| p == pid).map(|(_, c)| *c).unwrap_or(0.0);
                        (cpu - before).max(0.0)
                    })
                    .sum(),
            ),
            _ => None,
        };
        Ok(Figures {
            round_trips: exchanges.len() as u64,
            http_errors: exchanges.iter().filter(|e| e.status.is_none_or(|s| s >= 400)).count() as u64,
            bytes_up: exchanges.iter().map(|e| e.up).sum(),
            bytes_down: exchanges.iter().map(|e| e.down).sum(),
            latencies_ms: exchanges.iter().filter(|e| e.path == SYNC_PATH).map(|e| ms(e.latency)).collect(),
            wall_s: wall.as_secs_f64(),
            server_cpu_s: Some(cpu),
            client_cpu_s: Some(own_cpu),
            database_cpu_s: database_cpu,
            peak_rss_bytes: peak,
            database_bytes: self.db.size_bytes().ok(),
            ..Figures::default()
        })
    }
}

/// Creates `count` counsellors with one device each, holding `cases` cases of `activities`
/// activities, in sync with the server.
fn fleet(
    ctx: &Context<'_>,
    seeder: &Seeder,
    prefix: &str,
    count: usize,
    cases: usize,
    activities: usize,
) -> anyhow::Result<Vec<Device>> {
    let people = (0..count)
        .map(|i| Ok((seeder.counsellor(&format!("{prefix}-{i:04}"))?, cases)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    build(ctx, seeder, people, activities)
}

/// A device for each person, which opens its number of cases of `activities` activities
/// offline and syncs them through the sync engine: on every core at once (the documents are
/// built in parallel; the database serialises what it must).
fn build(
    ctx: &Context<'_>,
    seeder: &Seeder,
    people: Vec<(Person, usize)>,
    activities: usize,
) -> anyhow::Result<Vec<Device>> {
    let workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).clamp(1, people.len().max(1));
    let (dir, seed, chars) = (ctx.dir, ctx.params.seed, ctx.params.narrative_chars);
    let one = |i: usize| -> anyhow::Result<Device> {
        let (person, cases) = people[i].clone();
        let mut device = Device::new(dir, person, Rng::derive(seed, i as u64))?;
        for _ in 0..cases {
            device.open_case(seeder.municipality, activities, chars)?;
        }
        seeder.sync(&mut device)?;
        Ok(device)
    };
    let mut built: Vec<(usize, Device)> = std::thread::scope(|scope| {
        let tasks: Vec<_> = (0..workers)
            .map(|w| {
                let (one, count) = (&one, people.len());
                scope.spawn(move || {
                    (w..count).step_by(workers).map(|i| one(i).map(|d| (i, d))).collect::<anyhow::Result<Vec<_>>>()
                })
            })
            .collect();
        let mut all = Vec::new();
        for task in tasks {
            match task.join() {
                Ok(done) => all.extend(done?),
                Err(_) => anyhow::bail!("a seeding thread panicked"),
            }
        }
        Ok(all)
    })?;
    built.sort_by_key(|(i, _)| *i);
    Ok(built.into_iter().map(|(_, d)| d).collect())
}

/// Signs every device in, over HTTP (before the measured phase).
fn sign_in(ctx: &Context<'_>, harness: &Harness, devices: &mut [Device]) -> anyhow::Result<()> {
    let url = harness.url();
    ctx.runtime.block_on(async {
        for device in devices.iter_mut() {
            device.sign_in(&url).await?;
        }
        Ok(())
    })
}

/// Every device syncs at the same time.
async fn sync_all(devices: Vec<Device>) -> anyhow::Result<Vec<Device>> {
    let tasks: Vec<_> = devices
        .into_iter()
        .map(|mut device| {
            tokio::spawn(async move {
                let result = device.sync().await;
                (device, result)
            })
        })
        .collect();
    let mut out = Vec::with_capacity(tasks.len());
    let mut failure = None;
    for task in tasks {
        let (device, result) = task.await.context("a device's task failed")?;
        if let Err(e) = result {
            failure.get_or_insert(e);
        }
        out.push(device);
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// The baseline's starting point: the devices' replicas, all in sync with the server.
fn input_of(devices: &[Device]) -> anyhow::Result<Input> {
    let mut input = Input::default();
    for device in devices {
        let docs = device.documents()?;
        for (case, bytes) in &docs {
            input.server.entry(*case).or_insert_with(|| bytes.clone());
        }
        input.devices.push(docs.into_iter().map(|(case, bytes)| (case, Some(bytes))).collect());
    }
    Ok(input)
}

/// The baseline's figures for the same work.
fn baseline_figures(input: &Input, steps: &[Step], changes: u64, activities: u64) -> anyhow::Result<Figures> {
    let mut baseline = Baseline::new(input)?;
    let outcome: Outcome = baseline.run(steps)?;
    Ok(Figures {
        syncs: outcome.syncs,
        round_trips: outcome.round_trips,
        bytes_up: outcome.bytes_up,
        bytes_down: outcome.bytes_down,
        latencies_ms: outcome.latencies.iter().map(|d| ms(*d)).collect(),
        wall_s: outcome.wall.as_secs_f64(),
        changes,
        activities,
        server_cpu_s: Some(outcome.server_time.as_secs_f64()),
        ..Figures::default()
    })
}

fn floor_of(moved: &Moved) -> Floor {
    Floor {
        up_bytes: moved.up_bytes as u64,
        up_changes: moved.up_changes as u64,
        down_bytes: moved.down_bytes as u64,
        down_changes: moved.down_changes as u64,
    }
}

/// `reconnect`: the fleet, in sync, reconnects with nothing new.
pub fn reconnect(ctx: &Context<'_>) -> anyhow::Result<ScenarioReport> {
    let p = ctx.params;
    let description = format!(
        "{} devices × {} assigned cases ({} activities each), all in sync, reconnect at once with nothing new",
        p.devices, p.cases_per_device, p.case_activities
    );
    fleet_day(ctx, "reconnect", description, 0, 0)
}

/// `field-day`: each device of the fleet works offline, then all sync at once.
pub fn field_day(ctx: &Context<'_>) -> anyhow::Result<ScenarioReport> {
    let p = ctx.params;
    let description = format!(
        "{} devices × {} cases; each logs {} activities offline (visits, letters, contact attempts, \
         {}-character narratives) and amends {} narratives, then all sync at once",
        p.devices, p.cases_per_device, p.field_activities, p.narrative_chars, p.field_amendments
    );
    fleet_day(ctx, "field-day", description, p.field_activities, p.field_amendments)
}

fn fleet_day(
    ctx: &Context<'_>,
    name: &'static str,
    description: String,
    activities: usize,
    amendments: usize,
) -> anyhow::Result<ScenarioReport> {
    let p = ctx.params;
    let seeding = Instant::now();
    let db = BenchDatabase::create(ctx.backend, ctx.dir, name)?;
    let seeder = Seeder::new(&db.url)?;
    let mut devices = fleet(ctx, &seeder, &name[..2], p.devices, p.cases_per_device, p.case_activities)?;
    drop(seeder);
    let seeding_s = seeding.elapsed().as_secs_f64();
    let mut harness = Harness::start(db, ctx.dir, name)?;
    sign_in(ctx, &harness, &mut devices)?;
    let input = input_of(&devices)?;

    // Offline work (the phones' own, not measured).
    let mut steps = Vec::new();
    let mut logged = 0;
    for (i, device) in devices.iter_mut().enumerate() {
        if activities + amendments == 0 {
            break;
        }
        let cases = device.cases();
        let batch = device.field_day(&cases, activities, amendments, p.narrative_chars)?;
        logged += batch.activities;
        steps.extend(batch.edits.into_iter().map(|edit| Step::Edit { device: i, edit }));
    }
    let before = devices.iter().map(Device::before).collect::<anyhow::Result<Vec<_>>>()?;

    let mark = harness.begin()?;
    let devices = ctx.runtime.block_on(sync_all(devices))?;
    let mut tsunagi = harness.end(mark)?;
    drop(harness);

    let mut moved = Moved::default();
    for (device, before) in devices.iter().zip(&before) {
        moved.add(device.moved(before)?);
    }
    tsunagi.syncs = devices.len() as u64;
    tsunagi.changes = (moved.up_changes + moved.down_changes) as u64;
    tsunagi.activities = (logged + moved.down_activities) as u64;
    steps.extend((0..devices.len()).map(|device| Step::Sync { device }));
    let baseline = baseline_figures(&input, &steps, tsunagi.changes, tsunagi.activities)?;
    Ok(ScenarioReport {
        name,
        description,
        backend: ctx.backend.label(),
        params: json!({
            "devices": p.devices,
            "cases_per_device": p.cases_per_device,
            "case_activities": p.case_activities,
            "field_activities": activities,
            "field_amendments": amendments,
            "narrative_chars": p.narrative_chars,
        }),
        floor: floor_of(&moved),
        saved_bytes: None,
        seeding_s,
        tsunagi,
        baseline,
    })
}

/// `concurrent`: two counsellors' devices edit the same cases offline, then sync in turn.
pub fn concurrent(ctx: &Context<'_>) -> anyhow::Result<ScenarioReport> {
    let p = ctx.params;
    let name = "concurrent";
    let seeding = Instant::now();
    let db = BenchDatabase::create(ctx.backend, ctx.dir, name)?;
    let seeder = Seeder::new(&db.url)?;
    let mut a = Device::new(ctx.dir, seeder.counsellor("cc-a")?, Rng::derive(p.seed, 1))?;
    let mut b = Device::new(ctx.dir, seeder.counsellor("cc-b")?, Rng::derive(p.seed, 2))?;
    for _ in 0..p.concurrent_cases {
        a.open_case(seeder.municipality, p.case_activities, p.narrative_chars)?;
    }
    seeder.sync(&mut a)?;
    let cases = a.cases();
    for case in &cases {
        seeder.assign(case, &b.person)?;
    }
    seeder.sync(&mut b)?;
    // B has an activity of its own in each case (to amend later).
    b.log_activities(&cases, cases.len(), p.narrative_chars)?;
    seeder.sync(&mut b)?;
    seeder.sync(&mut a)?;
    drop(seeder);
    let seeding_s = seeding.elapsed().as_secs_f64();

    let mut harness = Harness::start(db, ctx.dir, name)?;
    let mut devices = vec![a, b];
    sign_in(ctx, &harness, &mut devices)?;
    let input = input_of(&devices)?;

    // Both work offline on every shared case: an activity logged and a narrative amended each.
    let mut steps = Vec::new();
    let mut logged = 0;
    for (i, device) in devices.iter_mut().enumerate() {
        let mut batch: Batch = device.log_activities(&cases, cases.len(), p.narrative_chars)?;
        batch.edits.extend(device.amend_narratives(&cases, cases.len())?.edits);
        logged += batch.activities;
        steps.extend(batch.edits.into_iter().map(|edit| Step::Edit { device: i, edit }));
    }
    let before = devices.iter().map(Device::before).collect::<anyhow::Result<Vec<_>>>()?;

    let mark = harness.begin()?;
    let order = [0, 1, 0];
    ctx.runtime.block_on(async {
        for i in order {
            devices[i].sync().await?;
        }
        anyhow::Ok(())
    })?;
    let mut tsunagi = harness.end(mark)?;
    drop(harness);

    let mut moved = Moved::default();
    for (device, before) in devices.iter().zip(&before) {
        moved.add(device.moved(before)?);
    }
    let heads = |d: &Device| -> anyhow::Result<Vec<_>> {
        cases.iter().map(|c| Ok(d.store.load_doc(c)?.map(|mut doc| doc.get_heads()))).collect()
    };
    if heads(&devices[0])? != heads(&devices[1])? {
        anyhow::bail!("the two devices did not converge");
    }
    tsunagi.syncs = order.len() as u64;
    tsunagi.changes = (moved.up_changes + moved.down_changes) as u64;
    tsunagi.activities = (logged + moved.down_activities) as u64;
    steps.extend(order.iter().map(|&device| Step::Sync { device }));
    let baseline = baseline_figures(&input, &steps, tsunagi.changes, tsunagi.activities)?;
    Ok(ScenarioReport {
        name,
        description: format!(
            "two counsellors' devices each log an activity and amend a narrative in the same {} cases offline, \
             then sync in turn: A, B, A (until both hold everything)",
            p.concurrent_cases
        ),
        backend: ctx.backend.label(),
        params: json!({
            "cases": p.concurrent_cases,
            "case_activities": p.case_activities,
            "narrative_chars": p.narrative_chars,
        }),
        floor: floor_of(&moved),
        saved_bytes: None,
        seeding_s,
        tsunagi,
        baseline,
    })
}

/// `first-sync`: a counsellor's new phone receives every case assigned to them.
pub fn first_sync(ctx: &Context<'_>) -> anyhow::Result<ScenarioReport> {
    let p = ctx.params;
    let name = "first-sync";
    let seeding = Instant::now();
    let db = BenchDatabase::create(ctx.backend, ctx.dir, name)?;
    let seeder = Seeder::new(&db.url)?;
    let person: Person = seeder.counsellor("fs-counsellor")?;
    // The counsellor's cases were opened on their earlier devices (one per core, so that
    // seeding runs in parallel); the new phone must receive all of them.
    let earlier = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).clamp(1, p.first_sync_cases);
    let mut people = vec![(person.clone(), 0)];
    for i in 1..earlier {
        people.push((seeder.another_device(&person, &format!("earlier device {i}"))?, 0));
    }
    for i in 0..p.first_sync_cases {
        people[i % earlier].1 += 1;
    }
    let old = build(ctx, &seeder, people, p.first_sync_activities)?;
    let new_phone = seeder.another_device(&person, "new phone")?;
    drop(seeder);
    let seeding_s = seeding.elapsed().as_secs_f64();

    let mut harness = Harness::start(db, ctx.dir, name)?;
    let mut devices = vec![Device::new(ctx.dir, new_phone, Rng::derive(p.seed, u64::MAX - 1))?];
    sign_in(ctx, &harness, &mut devices)?;
    let mut server_docs = Vec::new();
    for device in &old {
        server_docs.extend(device.documents()?);
    }
    let input = Input {
        devices: vec![server_docs.iter().map(|(case, _)| (*case, None)).collect()],
        server: server_docs.into_iter().collect(),
    };
    let before = devices[0].before()?;

    let mark = harness.begin()?;
    ctx.runtime.block_on(devices[0].sync())?;
    let mut tsunagi = harness.end(mark)?;
    drop(harness);

    let moved = devices[0].moved(&before)?;
    if devices[0].cases().len() != p.first_sync_cases {
        anyhow::bail!("the new phone holds {} cases, not {}", devices[0].cases().len(), p.first_sync_cases);
    }
    let mut saved = 0u64;
    for case in devices[0].cases() {
        if let Some(mut doc) = devices[0].store.load_doc(&case)? {
            saved += doc.save().len() as u64;
        }
    }
    tsunagi.syncs = 1;
    tsunagi.changes = moved.down_changes as u64;
    tsunagi.activities = moved.down_activities as u64;
    let baseline = baseline_figures(&input, &[Step::Sync { device: 0 }], tsunagi.changes, tsunagi.activities)?;
    Ok(ScenarioReport {
        name,
        description: format!(
            "a counsellor's new phone, assigned {} cases of {} activities each, syncs for the first time",
            p.first_sync_cases, p.first_sync_activities
        ),
        backend: ctx.backend.label(),
        params: json!({
            "cases": p.first_sync_cases,
            "case_activities": p.first_sync_activities,
            "narrative_chars": p.narrative_chars,
        }),
        floor: floor_of(&moved),
        saved_bytes: Some(saved),
        seeding_s,
        tsunagi,
        baseline,
    })
}

/// What one device did in `load`.
struct LoadRun {
    device: Device,
    steps: Vec<Step>,
    /// Successful syncs.
    batches: u64,
    activities: u64,
    changes: u64,
    bytes: u64,
    received: u64,
    /// Syncs that failed (the client gave up on them); their work went up with a later sync.
    failures: u64,
    first_failure: Option<String>,
}

/// `load`: every device syncs field-day batches in a loop until the time is up.
pub fn load(ctx: &Context<'_>) -> anyhow::Result<ScenarioReport> {
    let p = ctx.params;
    let name = "load";
    let seeding = Instant::now();
    let db = BenchDatabase::create(ctx.backend, ctx.dir, name)?;
    let seeder = Seeder::new(&db.url)?;
    let mut devices = fleet(ctx, &seeder, "ld", p.load_devices, p.load_cases, p.case_activities)?;
    if p.stored_cases > 0 {
        let archive = seeder.counsellor("ld-archive")?;
        let workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).clamp(1, p.stored_cases);
        std::thread::scope(|scope| {
            let tasks: Vec<_> = (0..workers)
                .map(|w| {
                    let (seeder, archive) = (&seeder, &archive);
                    let count = p.stored_cases / workers + usize::from(w < p.stored_cases % workers);
                    scope.spawn(move || {
                        let mut rng = Rng::derive(p.seed, u64::MAX - w as u64);
                        seeder.stored_cases(archive, count, p.case_activities, p.narrative_chars, &mut rng)
                    })
                })
                .collect();
            for task in tasks {
                task.join().map_err(|_| anyhow::anyhow!("a seeding thread panicked"))??;
            }
            anyhow::Ok(())
        })?;
    }
    drop(seeder);
    let seeding_s = seeding.elapsed().as_secs_f64();

    let mut harness = Harness::start(db, ctx.dir, name)?;
    sign_in(ctx, &harness, &mut devices)?;
    let input = input_of(&devices)?;

    let (activities, amendments, chars) = (p.field_activities, p.field_amendments, p.narrative_chars);
    let mark = harness.begin()?;
    let deadline = Instant::now() + std::time::Duration::from_secs_f64(p.seconds);
    let runs = ctx.runtime.block_on(async {
        let tasks: Vec<_> = devices
            .into_iter()
            .enumerate()
            .map(|(i, device)| {
                tokio::spawn(async move {
                    let mut run = LoadRun {
                        device,
                        steps: Vec::new(),
                        batches: 0,
                        activities: 0,
                        changes: 0,
                        bytes: 0,
                        received: 0,
                        failures: 0,
                        first_failure: None,
                    };
                    let cases = run.device.cases();
                    let result = async {
                        // Work not yet acknowledged: a failed sync leaves it for the next one,
                        // as a phone would.
                        let (mut pending_activities, mut pending_changes, mut pending_bytes) = (0, 0, 0);
                        while Instant::now() < deadline {
                            // The offline work is blocking (Automerge, fsync): off the async
                            // workers, so that other devices' connections keep moving.
                            let batch = tokio::task::block_in_place(|| {
                                run.device.field_day(&cases, activities, amendments, chars)
                            })?;
                            pending_activities += batch.activities as u64;
                            pending_changes += batch.changes() as u64;
                            pending_bytes += batch.bytes() as u64;
                            run.steps.extend(batch.edits.into_iter().map(|edit| Step::Edit { device: i, edit }));
                            match run.device.sync().await {
                                Ok(report) => {
                                    run.steps.push(Step::Sync { device: i });
                                    run.batches += 1;
                                    run.activities += std::mem::take(&mut pending_activities);
                                    run.changes += std::mem::take(&mut pending_changes);
                                    run.bytes += std::mem::take(&mut pending_bytes);
                                    run.received += report.received() as u64;
                                }
                                Err(e) => {
                                    run.failures += 1;
                                    run.first_failure.get_or_insert_with(|| format!("{e:#}"));
                                }
                            }
                        }
                        // Whatever is still pending goes up now (outside the time limit).
                        if pending_changes > 0 {
                            run.device.sync().await?;
                            run.steps.push(Step::Sync { device: i });
                            run.batches += 1;
                            run.activities += pending_activities;
                            run.changes += pending_changes;
                            run.bytes += pending_bytes;
                        }
                        anyhow::Ok(())
                    }
                    .await;
                    (run, result)
                })
            })
            .collect();
        let mut runs = Vec::new();
        for task in tasks {
            let (run, result) = task.await.context("a device's task failed")?;
            result?;
            runs.push(run);
        }
        anyhow::Ok(runs)
    })?;
    let mut tsunagi = harness.end(mark)?;
    drop(harness);

    let sum = |f: fn(&LoadRun) -> u64| runs.iter().map(f).sum::<u64>();
    tsunagi.failed_syncs = sum(|r| r.failures);
    if let Some(failure) = runs.iter().find_map(|r| r.first_failure.as_deref()) {
        eprintln!("load: {} sync(s) failed and were retried; the first: {failure}", tsunagi.failed_syncs);
    }
    tsunagi.syncs = sum(|r| r.batches);
    tsunagi.changes = sum(|r| r.changes) + sum(|r| r.received);
    tsunagi.activities = sum(|r| r.activities);
    let floor = Floor {
        up_bytes: sum(|r| r.bytes),
        up_changes: sum(|r| r.changes),
        down_bytes: 0,
        down_changes: sum(|r| r.received),
    };
    let steps: Vec<Step> = runs.into_iter().flat_map(|r| r.steps).collect();
    let baseline = baseline_figures(&input, &steps, tsunagi.changes, tsunagi.activities)?;
    Ok(ScenarioReport {
        name,
        description: format!(
            "{} devices × {} cases, each syncing field-day batches ({} activities, {} amendments) in a loop for {:.0} s{}",
            p.load_devices,
            p.load_cases,
            p.field_activities,
            p.field_amendments,
            p.seconds,
            if p.stored_cases > 0 { format!("; {} further cases stored", p.stored_cases) } else { String::new() }
        ),
        backend: ctx.backend.label(),
        params: json!({
            "devices": p.load_devices,
            "cases_per_device": p.load_cases,
            "case_activities": p.case_activities,
            "field_activities": p.field_activities,
            "field_amendments": p.field_amendments,
            "narrative_chars": p.narrative_chars,
            "stored_cases": p.stored_cases,
            "seconds": p.seconds,
        }),
        floor,
        saved_bytes: None,
        seeding_s,
        tsunagi,
        baseline,
    })
}
