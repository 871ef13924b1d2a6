//! `tsunagi demo`: a field day end to end, with nothing installed and nothing configured.
//!
//! An embedded server (SQLite in a temporary directory, a random signing key, a free port)
//! is started and seeded with a fictional municipality (流山市), two counsellors (佐藤,
//! 伊藤) and a supervisor (田中). Then the real phone stack — [`SyncClient`] +
//! [`SyncSession`] + a [`ReplicaStore`] in a temporary directory + [`CaseReplica`] field
//! operations — plays a day: a young-carer household case opened offline, an assignment,
//! concurrent offline work on two phones, a supervisor's review, and the merged record as a
//! counsellor reads it, the concurrent status change shown as a conflict.
//!
//! Without `--exit` the server keeps running (until Ctrl-C) so that it can be tried with
//! `curl`. Nothing is left behind: the temporary directory is removed at the end.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use chrono::{DateTime, FixedOffset, NaiveDate, TimeZone};
use tsunagi_server::admin::{self, NewStaff, OrganisationKind};
use tsunagi_server::config::{Settings, SigningKey};
use tsunagi_server::startup::Application;
use tsunagi_server::store::DatabaseUrl;
use tsunagi_server::sync::Assignment;
use tsunagi_sync::client::{RetryPolicy, SyncClient};
use tsunagi_sync::document::{ActivityDetails, CaseView};
use tsunagi_sync::domain::{
    CaseStatus, ConcernTag, ContactChannel, ContactOutcome, LetterItem, LetterPlace, Place, Relation, Role,
    VisitOutcome,
};
use tsunagi_sync::ids::{ActivityId, CaseId, CaseNumber, DeviceId, MunicipalityCode, StaffId};
use tsunagi_sync::ops::{CaseReplica, NewActivity, NewCase, NewPerson};
use tsunagi_sync::session::{CaseEvent, SyncReport, SyncSession};
use tsunagi_sync::store::ReplicaStore;
use tsunagi_sync::validation::Actor;

/// `tsunagi demo`.
#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Stop after printing the merged record instead of keeping the server running.
    #[arg(long)]
    exit: bool,
}

/// The fictional municipality: 流山市.
const MUNICIPALITY: &str = "122203";

/// Runs the demo.
pub fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let dir = TempDir::new()?;
    actix_web::rt::System::new().block_on(demo(&dir, args.exit))?;
    Ok(ExitCode::SUCCESS)
}

/// A temporary directory removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> anyhow::Result<Self> {
        let path = std::env::temp_dir().join(format!("tsunagi-demo-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&path).with_context(|| format!("cannot create {}", path.display()))?;
        Ok(Self(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A seeded staff member with one registered device.
#[derive(Debug, Clone)]
struct Person {
    name: &'static str,
    login: &'static str,
    password: String,
    staff: StaffId,
    device: DeviceId,
    role: Role,
}

/// A staff member's device running the real phone stack.
struct Phone {
    who: Person,
    client: SyncClient,
    token: String,
    session: SyncSession,
    store: ReplicaStore,
}

impl Phone {
    async fn sign_in(base_url: &str, who: &Person, dir: &Path) -> anyhow::Result<Phone> {
        let client = SyncClient::builder(base_url)
            .retry(RetryPolicy::never())
            .build()
            .context("cannot build the sync client")?;
        let tokens = client
            .login(who.login, &who.password, who.device)
            .await
            .with_context(|| format!("{} cannot sign in", who.name))?;
        let store = ReplicaStore::open(dir.join(format!("phone-{}", who.login)))
            .with_context(|| format!("{}'s replica store does not open", who.name))?;
        Ok(Phone { who: who.clone(), client, token: tokens.access_token, session: SyncSession::new(), store })
    }

    fn actor(&self) -> Actor {
        Actor { staff: self.who.staff, device: self.who.device, role: self.who.role }
    }

    fn replica(&self, case: &CaseId) -> anyhow::Result<CaseReplica> {
        let doc =
            self.store.load_doc(case)?.with_context(|| format!("{}'s phone does not hold the case", self.who.name))?;
        Ok(CaseReplica::from_doc(doc, self.actor()))
    }

    fn view(&self, case: &CaseId) -> anyhow::Result<CaseView> {
        Ok(self.replica(case)?.view()?)
    }

    /// A field operation on the stored case, saved afterwards.
    fn edit<T>(&mut self, case: &CaseId, op: impl FnOnce(&mut CaseReplica) -> anyhow::Result<T>) -> anyhow::Result<T> {
        let mut replica = self.replica(case)?;
        let out = op(&mut replica)?;
        self.store.save_doc(case, replica.doc_mut())?;
        Ok(out)
    }

    /// One sync; every event of `case` must be a successful `Synced`.
    async fn sync(&mut self, case: &CaseId) -> anyhow::Result<Synced> {
        let report: SyncReport = self
            .client
            .sync(&self.token, &mut self.session, &mut self.store)
            .await
            .with_context(|| format!("{}'s phone cannot sync", self.who.name))?;
        let mut out = Synced::default();
        for event in report.events_of(case) {
            match event {
                CaseEvent::Synced { uploaded, received, case_number } => {
                    out.uploaded += uploaded;
                    out.received += received;
                    out.case_number = out.case_number.or(*case_number);
                }
                CaseEvent::Assigned { case_number, .. } => {
                    out.arrived = true;
                    out.case_number = out.case_number.or(*case_number);
                }
                other => bail!("{}'s phone: unexpected sync outcome for the case: {other:?}", self.who.name),
            }
        }
        Ok(out)
    }
}

/// What one sync did for the demo's case.
#[derive(Debug, Default)]
struct Synced {
    uploaded: usize,
    received: usize,
    /// The whole case arrived, newly visible to this device.
    arrived: bool,
    case_number: Option<CaseNumber>,
}

impl std::fmt::Display for Synced {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.arrived {
            write!(f, "the whole case arrived")
        } else {
            write!(f, "{} change(s) up, {} down", self.uploaded, self.received)
        }
    }
}

fn jst(hour: u32, minute: u32) -> anyhow::Result<DateTime<FixedOffset>> {
    FixedOffset::east_opt(9 * 3600)
        .context("the JST offset")?
        .with_ymd_and_hms(2026, 11, 4, hour, minute, 0)
        .single()
        .context("a time on 2026-11-04")
}

const SATO_NARRATIVE: &str = "インターホンに応答なし。長男の自転車あり。玄関に手紙を残した。";
const ITO_LETTER_NARRATIVE: &str = "学校の欠席が続いているため、ヤングケアラー支援のチラシを郵便受けへ。";
const ITO_CALL_NARRATIVE: &str = "母の携帯に電話、応答なし。留守電は残さず。";
const REVIEW_TEXT: &str = "長男の登校状況を学校（スクールソーシャルワーカー）に確認してください。";

async fn demo(dir: &TempDir, exit: bool) -> anyhow::Result<()> {
    // -- The server ------------------------------------------------------------------------
    let mut key = uuid::Uuid::new_v4().as_bytes().to_vec();
    key.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    key.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    let signing_key = SigningKey::new(key).map_err(anyhow::Error::msg)?;
    let mut settings = Settings::new(DatabaseUrl::Sqlite(dir.path().join("tsunagi.sqlite3")), signing_key);
    settings.bind = "127.0.0.1:0".parse().context("an address")?;
    let app = Application::build(settings).context("cannot start the embedded server")?;
    let url = format!("http://127.0.0.1:{}", app.port());
    let db = app.state().db.clone();
    let engine = app.state().engine.clone();
    let server = actix_web::rt::spawn(app.run_until_stopped());
    println!("== tsunagi demo: a field day (all names are fictional) ==");
    println!("server      embedded server on {url} (SQLite in a temporary directory)");

    // -- Seed -------------------------------------------------------------------------------
    let municipality = MunicipalityCode::parse(MUNICIPALITY)?;
    admin::create_municipality(&db, municipality, "流山市")?;
    let organisation = admin::create_organisation(&db, "流山市 福祉政策課 (demo)", OrganisationKind::Direct)?;
    let person = |login: &'static str, name: &'static str, role: Role| -> anyhow::Result<Person> {
        let password = format!("{login}-demo-passphrase");
        let new = NewStaff { login, display_name: name, role, organisation, municipality, area: None };
        let staff = admin::create_staff(&db, &new, &password)?;
        let device = admin::register_device(&db, login, &format!("{name}の端末"))?;
        Ok(Person { name, login, password, staff, device, role })
    };
    let sato = person("sato", "佐藤", Role::Counsellor)?;
    let ito = person("ito", "伊藤", Role::Counsellor)?;
    let tanaka = person("tanaka", "田中", Role::Supervisor)?;
    let names: HashMap<StaffId, &str> = [&sato, &ito, &tanaka].iter().map(|p| (p.staff, p.name)).collect();
    let device_names: HashMap<DeviceId, &str> = [&sato, &ito, &tanaka].iter().map(|p| (p.device, p.name)).collect();
    println!(
        "seed        流山市 (122203); counsellors 佐藤 (sato), 伊藤 (ito); supervisor 田中 (tanaka); one device each"
    );

    let mut sato_phone = Phone::sign_in(&url, &sato, dir.path()).await?;
    let mut ito_phone = Phone::sign_in(&url, &ito, dir.path()).await?;
    let mut tanaka_tablet = Phone::sign_in(&url, &tanaka, dir.path()).await?;
    println!("sign-in     佐藤, 伊藤 and 田中 sign in on their devices (real HTTP login)");

    // -- 1. 佐藤 opens the case offline ---------------------------------------------------
    let mut case = NewCase::new(municipality, NaiveDate::from_ymd_opt(2026, 11, 2).context("a date")?);
    let mut mother = NewPerson::new("山本 恵子");
    mother.kana = Some("やまもと けいこ".into());
    mother.relation = Some(Relation::Mother);
    mother.concerns = vec![ConcernTag::Poverty];
    mother.other_concern = Some("持病の通院を経済的理由で中断".into());
    let mut elder = NewPerson::new("山本 翔太");
    elder.kana = Some("やまもと しょうた".into());
    elder.relation = Some(Relation::Son);
    elder.is_subject = true;
    elder.concerns = vec![ConcernTag::YoungCarer];
    elder.other_concern = Some("中学2年、欠席が続き家事を担う".into());
    let mut younger = NewPerson::new("山本 陽太");
    younger.kana = Some("やまもと ようた".into());
    younger.relation = Some(Relation::Son);
    younger.other_concern = Some("未就学、言葉の遅れの兆候".into());
    case.household = vec![mother, elder, younger];
    let mut replica = CaseReplica::open(case, sato_phone.actor())?;
    let case_id = replica.case_id()?;
    sato_phone.store.save_doc(&case_id, replica.doc_mut())?;
    println!("1. 佐藤     opens a young-carer household case offline (mother, elder son, younger son)");

    let synced = sato_phone.sync(&case_id).await?;
    let number = synced.case_number.context("the server gave the case no number")?;
    println!("2. 佐藤     syncs ({synced}): the server numbers the case");
    println!("   case number: {number}");

    // -- 2. The supervisor assigns 伊藤 ----------------------------------------------------
    engine.assign(&case_id, &ito.staff, Assignment::Other, Some(&tanaka.staff))?;
    println!("3. 田中     assigns 伊藤 to the case (on the server)");
    let synced = ito_phone.sync(&case_id).await?;
    if !ito_phone.store.contains(&case_id) {
        bail!("伊藤's phone did not receive the case");
    }
    println!("4. 伊藤     syncs ({synced}): the case arrives on 伊藤's phone");
    let synced = tanaka_tablet.sync(&case_id).await?;
    println!("5. 田中     syncs the supervisor's tablet ({synced})");

    // -- 3. Offline work on both phones -----------------------------------------------------
    let visit: ActivityId = sato_phone.edit(&case_id, |r| {
        let visit = NewActivity::new(
            jst(10, 0)?,
            Place::Home,
            ActivityDetails::Visit {
                outcome: VisitOutcome::NotHome,
                met_person_ids: BTreeSet::new(),
                letter_left: true,
            },
        )
        .with_narrative(SATO_NARRATIVE);
        Ok(r.log_activity(visit)?)
    })?;
    println!("6. 佐藤     offline: logs a home visit (not home, letter left)");
    ito_phone.edit(&case_id, |r| {
        r.log_activity(
            NewActivity::new(
                jst(15, 30)?,
                Place::Home,
                ActivityDetails::LetterLeft {
                    items: [LetterItem::Letter, LetterItem::Leaflet].into(),
                    left_at: LetterPlace::Mailbox,
                    reply_received_on: None,
                },
            )
            .with_narrative(ITO_LETTER_NARRATIVE),
        )?;
        r.log_activity(
            NewActivity::new(
                jst(17, 45)?,
                Place::Phone,
                ActivityDetails::ContactAttempt { channel: ContactChannel::Phone, outcome: ContactOutcome::NoAnswer },
            )
            .with_narrative(ITO_CALL_NARRATIVE),
        )?;
        Ok(())
    })?;
    println!("7. 伊藤     offline: logs a letter left and a phone contact attempt");
    sato_phone.edit(&case_id, |r| Ok(r.set_status(CaseStatus::Outreach)?))?;
    ito_phone.edit(&case_id, |r| Ok(r.set_status(CaseStatus::Planning)?))?;
    println!("8. both     offline, concurrently: 佐藤 sets the status to outreach, 伊藤 to planning");

    // -- 4. Everyone syncs, twice -----------------------------------------------------------
    for round in 1..=2 {
        let a = sato_phone.sync(&case_id).await?;
        let b = ito_phone.sync(&case_id).await?;
        let c = tanaka_tablet.sync(&case_id).await?;
        println!("{}. all     sync round {round}: 佐藤 {a}; 伊藤 {b}; 田中 {c}", 8 + round);
    }

    // -- 5. The supervisor reviews ----------------------------------------------------------
    tanaka_tablet.edit(&case_id, |r| Ok(r.add_review(visit, REVIEW_TEXT, jst(18, 30)?)?))?;
    let synced = tanaka_tablet.sync(&case_id).await?;
    println!("11. 田中    reviews 佐藤's visit and syncs ({synced})");
    let synced = sato_phone.sync(&case_id).await?;
    println!("12. 佐藤    syncs ({synced}): the review arrives");
    let synced = ito_phone.sync(&case_id).await?;
    println!("13. 伊藤    syncs ({synced})");

    let view = sato_phone.view(&case_id)?;
    if view != ito_phone.view(&case_id)? || view != tanaka_tablet.view(&case_id)? {
        bail!("the replicas did not converge");
    }
    println!("    all three replicas hold the same record");
    print_record(&view, &names, &device_names);

    if exit {
        return Ok(());
    }
    println!();
    println!("The server keeps running at {url} (Ctrl-C to stop). Try:");
    println!("  curl -s {url}/readyz");
    println!(
        "  curl -s -X POST {url}{} -H 'Content-Type: application/json' -d '{{\"login\":\"{}\",\"password\":\"{}\",\"device_id\":\"{}\"}}'",
        tsunagi_sync::wire::LOGIN_PATH,
        sato.login,
        sato.password,
        sato.device
    );
    println!(
        "  (other accounts: {} / {} device {}, {} / {} device {})",
        ito.login, ito.password, ito.device, tanaka.login, tanaka.password, tanaka.device
    );
    // The server stops by itself on SIGINT/SIGTERM (in-flight requests finish).
    server.await.context("the server task failed")?.context("the server stopped with an error")?;
    println!("stopped");
    Ok(())
}

/// The merged record as a counsellor reads it.
fn print_record(view: &CaseView, names: &HashMap<StaffId, &str>, devices: &HashMap<DeviceId, &str>) {
    let name = |s: &StaffId| names.get(s).copied().unwrap_or("?");
    println!();
    println!("== 記録 case {} ==", view.case_number.map(|n| n.to_string()).unwrap_or_else(|| "(unnumbered)".into()));
    println!("状態 (status): {} ({})", view.status.label(), view.status.as_key());
    let primary = view.assignees.primary.as_ref().map(name).unwrap_or("-");
    let others: Vec<&str> = view.assignees.others.iter().map(name).collect();
    println!("担当 (assigned): 主担当 {primary}; 他 {}", others.join("・"));
    println!("-- 世帯 (household) --");
    for person in view.household.values() {
        let mut concerns: Vec<String> = person.concerns.tags.iter().map(|t| t.label().to_owned()).collect();
        if let Some(other) = &person.concerns.other {
            concerns.push(format!("その他: {other}"));
        }
        println!(
            "  {}{} ({}) 続柄: {} 困難要素: {}",
            person.name,
            if person.is_subject { " [本人]" } else { "" },
            person.kana.as_deref().unwrap_or(""),
            person.relation.map(|r| r.label()).unwrap_or("-"),
            if concerns.is_empty() { "-".into() } else { concerns.join("・") }
        );
    }
    println!("-- 活動 (activities, in time order) --");
    for activity in view.activities_by_time() {
        let detail = match &activity.details {
            ActivityDetails::Visit { outcome, letter_left, .. } => {
                format!("{}{}", outcome.label(), if *letter_left { "・手紙を残した" } else { "" })
            }
            ActivityDetails::LetterLeft { items, left_at, .. } => {
                let items: Vec<&str> = items.iter().map(|i| i.label()).collect();
                format!("{} → {}", items.join("・"), left_at.label())
            }
            ActivityDetails::ContactAttempt { channel, outcome } => format!("{} {}", channel.label(), outcome.label()),
            _ => String::new(),
        };
        println!(
            "  {} {} [{}] {} by {}: {}",
            activity.started_at.format("%Y-%m-%d %H:%M"),
            activity.kind().label(),
            activity.place.label(),
            detail,
            name(&activity.recorded_by),
            activity.narrative
        );
        for review in view.reviews.values().filter(|r| r.activity_id == activity.id) {
            println!("      review by {} ({}): {}", name(&review.by), review.at.format("%H:%M"), review.comment);
        }
    }
    if view.conflicts.is_empty() {
        println!("-- no conflicts --");
    }
    for conflict in &view.conflicts {
        let values: Vec<String> = conflict
            .values
            .iter()
            .map(|v| {
                let who = v.device_id.and_then(|d| devices.get(&d).copied()).unwrap_or("server");
                let shown = match v.value.as_str() {
                    Some(key) if conflict.path == "/status" => match CaseStatus::from_key(key) {
                        Ok(status) => format!("{key} ({})", status.label()),
                        Err(_) => key.to_owned(),
                    },
                    Some(s) => s.to_owned(),
                    None => v.value.to_string(),
                };
                format!("{shown} by {who}")
            })
            .collect();
        println!("-- 競合 conflict on {} (for a supervisor to settle): {}", conflict.path, values.join(" / "));
    }
}
