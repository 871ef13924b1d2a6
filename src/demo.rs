//! `tsunagi demo`: a field day end to end, with nothing installed and nothing configured.
//!
//! An embedded server (SQLite in a temporary directory, a random signing key, a free port)
//! is started and seeded with a fictional municipality (流山市), three counsellors (佐藤,
//! 伊藤, 鈴木), a supervisor (田中) and a meeting tablet, and two households already known
//! (an 8050 household, a hoarding case). Then the real phone stack — [`SyncClient`] +
//! [`SyncSession`] + a [`ReplicaStore`] in a temporary directory + [`CaseReplica`] field
//! operations — plays a day: a young-carer household case opened offline, an assignment
//! through the supervisors' API, concurrent offline work on two phones (visits, a letter
//! left, a contact attempt, one household note amended by both, a status set differently),
//! a third counsellor opening a case in the field, a review written through the API, the
//! attention queue with the conflict settled by the supervisor, a case meeting whose tablet
//! receives only the agenda's case and purges it afterwards, the merged record, the day's
//! visit log and the month's figures.
//!
//! Without `--exit` the server keeps running (until Ctrl-C) so that it can be tried with
//! `curl`. Nothing is left behind: the temporary directory is removed at the end.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use automerge::transaction::Transactable;
use automerge::ReadDoc;
use chrono::{DateTime, FixedOffset, NaiveDate, TimeZone};
use tsunagi_server::admin::{self, NewStaff, OrganisationKind};
use tsunagi_server::config::{Settings, SigningKey};
use tsunagi_server::startup::Application;
use tsunagi_server::store::DatabaseUrl;
use tsunagi_sync::client::{Method, RetryPolicy, SyncClient};
use tsunagi_sync::document::{ActivityDetails, CaseView};
use tsunagi_sync::domain::{
    CaseStatus, ConcernTag, ConsentMethod, ConsentState, ConsultationMode, ConsultationTopic, ContactChannel,
    ContactOutcome, LetterItem, LetterPlace, Place, Relation, Role, VisitOutcome,
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
const ITO_8050_CALL_NARRATIVE: &str = "長男の携帯に電話、応答なし。";
const REJECT_REASON: &str = "次回の訪問予定は佐藤さんの記録で佐藤さんが入れてください。";
const REVIEW_TEXT: &str = "長男の登校状況を学校（スクールソーシャルワーカー）に確認してください。";
const MOTHER_NOTE: &str = "通院を中断している。";
const SATO_NOTE: &str = "通院を中断している。医療費の相談先を案内予定。";
const ITO_NOTE_PREFIX: &str = "【伊藤】";

/// The fiscal year of the field day (2026-11-04): 令和8年度.
const FISCAL_YEAR: i32 = 2026;
/// The field day's month among the fiscal year's months (April = 0).
const NOVEMBER: usize = 7;

/// An HTTP call of the supervisors' API, as the supervisor's tablet makes it.
struct Api<'a> {
    client: &'a SyncClient,
    token: &'a str,
}

impl Api<'_> {
    async fn get(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        self.client.get_json(path, self.token).await.with_context(|| format!("GET {path}"))
    }

    async fn send(&self, method: Method, path: &str, body: serde_json::Value) -> anyhow::Result<serde_json::Value> {
        let what = format!("{method} {path}");
        self.client.send_json(method, path, self.token, &body).await.with_context(|| what)
    }
}

fn person(name: &str, kana: &str, relation: Relation, concerns: &[ConcernTag], other: Option<&str>) -> NewPerson {
    let mut person = NewPerson::new(name);
    person.kana = Some(kana.into());
    person.relation = Some(relation);
    person.concerns = concerns.to_vec();
    person.other_concern = other.map(Into::into);
    person
}

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
    let server = actix_web::rt::spawn(app.run_until_stopped());
    println!("== tsunagi demo: a field day (all names are fictional) ==");
    println!("server      embedded server on {url} (SQLite in a temporary directory)");

    // -- Seed -------------------------------------------------------------------------------
    let municipality = MunicipalityCode::parse(MUNICIPALITY)?;
    admin::create_municipality(&db, municipality, "流山市")?;
    let organisation = admin::create_organisation(&db, "流山市 福祉政策課 (demo)", OrganisationKind::Direct)?;
    let staff = |login: &'static str, name: &'static str, role: Role| -> anyhow::Result<Person> {
        let password = format!("{login}-demo-passphrase");
        let new = NewStaff { login, display_name: name, role, organisation, municipality, area: None };
        let staff = admin::create_staff(&db, &new, &password)?;
        let device = admin::register_device(&db, login, &format!("{name}の端末"))?;
        Ok(Person { name, login, password, staff, device, role })
    };
    let sato = staff("sato", "佐藤", Role::Counsellor)?;
    let ito = staff("ito", "伊藤", Role::Counsellor)?;
    let suzuki = staff("suzuki", "鈴木", Role::Counsellor)?;
    let tanaka = staff("tanaka", "田中", Role::Supervisor)?;
    let tablet = staff("meeting-room", "会議室タブレット", Role::MeetingTablet)?;
    let everyone = [&sato, &ito, &suzuki, &tanaka, &tablet];
    let names: HashMap<StaffId, &str> = everyone.iter().map(|p| (p.staff, p.name)).collect();
    let device_names: HashMap<DeviceId, &str> = everyone.iter().map(|p| (p.device, p.name)).collect();
    println!(
        "seed        流山市 (122203); counsellors 佐藤 (sato), 伊藤 (ito), 鈴木 (suzuki); supervisor 田中 (tanaka); \
         a meeting tablet; one device each"
    );

    let mut sato_phone = Phone::sign_in(&url, &sato, dir.path()).await?;
    let mut ito_phone = Phone::sign_in(&url, &ito, dir.path()).await?;
    let mut suzuki_phone = Phone::sign_in(&url, &suzuki, dir.path()).await?;
    let mut tanaka_tablet = Phone::sign_in(&url, &tanaka, dir.path()).await?;
    let mut meeting_tablet = Phone::sign_in(&url, &tablet, dir.path()).await?;
    let api_client = tanaka_tablet.client.clone();
    let api_token = tanaka_tablet.token.clone();
    let api = Api { client: &api_client, token: &api_token };
    println!("sign-in     everyone signs in on their device (real HTTP login)");

    // -- 0. A household already known: an 8050 household, 伊藤's ---------------------------
    let mut earlier = NewCase::new(municipality, NaiveDate::from_ymd_opt(2026, 10, 20).context("a date")?);
    let mut mother = person("小林 トメ", "こばやし とめ", Relation::Mother, &[ConcernTag::Dementia], None);
    mother.birth_date = NaiveDate::from_ymd_opt(1944, 3, 8);
    let mut son = person(
        "小林 正人",
        "こばやし まさと",
        Relation::Son,
        &[ConcernTag::Withdrawal],
        Some("8050、20年以上ひきこもり"),
    );
    son.is_subject = true;
    son.birth_date = NaiveDate::from_ymd_opt(1973, 7, 21);
    earlier.household = vec![mother, son];
    let mut replica = CaseReplica::open(earlier, ito_phone.actor())?;
    let household_8050 = replica.case_id()?;
    ito_phone.store.save_doc(&household_8050, replica.doc_mut())?;
    ito_phone.edit(&household_8050, |r| {
        let consultation = NewActivity::new(
            jst(9, 0)?,
            Place::Home,
            ActivityDetails::Consultation {
                mode: ConsultationMode::InPerson,
                topics: [ConsultationTopic::ElderlyCare, ConsultationTopic::Withdrawal].into(),
            },
        )
        .with_narrative("母と面談。介護保険の申請と、長男への関わり方について相談を受けた。");
        Ok(r.log_activity(consultation)?)
    })?;
    let synced = ito_phone.sync(&household_8050).await?;
    println!(
        "0. 伊藤     an 8050 household (母82歳・長男53歳) already known; a consultation (介護・ひきこもり) this morning; synced as {}",
        synced.case_number.map(|n| n.to_string()).unwrap_or_default()
    );

    // -- 1. 佐藤 opens the case offline ---------------------------------------------------
    let mut case = NewCase::new(municipality, NaiveDate::from_ymd_opt(2026, 11, 2).context("a date")?);
    let mother = person(
        "山本 恵子",
        "やまもと けいこ",
        Relation::Mother,
        &[ConcernTag::Poverty],
        Some("持病の通院を経済的理由で中断"),
    );
    let mut elder = person(
        "山本 翔太",
        "やまもと しょうた",
        Relation::Son,
        &[ConcernTag::YoungCarer],
        Some("中学2年、欠席が続き家事を担う"),
    );
    elder.is_subject = true;
    let younger = person("山本 陽太", "やまもと ようた", Relation::Son, &[], Some("未就学、言葉の遅れの兆候"));
    case.household = vec![mother, elder, younger];
    let mut replica = CaseReplica::open(case, sato_phone.actor())?;
    let case_id = replica.case_id()?;
    sato_phone.store.save_doc(&case_id, replica.doc_mut())?;
    let mother_id = sato_phone
        .view(&case_id)?
        .household
        .values()
        .find(|p| p.relation == Some(Relation::Mother))
        .map(|p| p.id)
        .context("the mother")?;
    sato_phone.edit(&case_id, |r| Ok(r.amend_person_note(mother_id, MOTHER_NOTE)?))?;
    println!("1. 佐藤     opens a young-carer household case offline (mother, elder son, younger son)");

    let synced = sato_phone.sync(&case_id).await?;
    let number = synced.case_number.context("the server gave the case no number")?;
    println!("2. 佐藤     syncs ({synced}): the server numbers the case");
    println!("   case number: {number}");

    // -- 2. The supervisor assigns 伊藤 through the API --------------------------------------
    let answer = api
        .send(
            Method::PUT,
            &format!("/v1/cases/{case_id}/assignees/{}", ito.staff),
            serde_json::json!({"role": "other"}),
        )
        .await?;
    let others: Vec<&str> =
        answer["others"].as_array().map(|o| o.iter().filter_map(|s| s["name"].as_str()).collect()).unwrap_or_default();
    println!("3. 田中     assigns 伊藤 to the case (PUT /v1/cases/…/assignees): others now {}", others.join("・"));
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
    sato_phone.edit(&case_id, |r| Ok(r.amend_person_note(mother_id, SATO_NOTE)?))?;
    ito_phone.edit(&case_id, |r| Ok(r.amend_person_note(mother_id, &format!("{ITO_NOTE_PREFIX}{MOTHER_NOTE}"))?))?;
    println!("8. both     offline, concurrently: both amend the mother's note (佐藤 adds a sentence, 伊藤 a tag)");
    sato_phone.edit(&case_id, |r| Ok(r.set_status(CaseStatus::Outreach)?))?;
    ito_phone.edit(&case_id, |r| Ok(r.set_status(CaseStatus::Planning)?))?;
    println!("9. both     offline, concurrently: 佐藤 sets the status to outreach, 伊藤 to planning");

    // -- 4. A third counsellor opens a case in the field ------------------------------------
    let mut hoarding = NewCase::new(municipality, NaiveDate::from_ymd_opt(2026, 11, 4).context("a date")?);
    let mut resident =
        person("渡辺 茂", "わたなべ しげる", Relation::Subject, &[ConcernTag::Hoarding, ConcernTag::Isolation], None);
    resident.is_subject = true;
    resident.birth_date = NaiveDate::from_ymd_opt(1951, 1, 15);
    hoarding.household = vec![resident];
    let mut replica = CaseReplica::open(hoarding, suzuki_phone.actor())?;
    let hoarding_case = replica.case_id()?;
    suzuki_phone.store.save_doc(&hoarding_case, replica.doc_mut())?;
    suzuki_phone.edit(&hoarding_case, |r| {
        let visit = NewActivity::new(
            jst(13, 0)?,
            Place::Home,
            ActivityDetails::Visit {
                outcome: VisitOutcome::MetOther,
                met_person_ids: BTreeSet::new(),
                letter_left: false,
            },
        )
        .with_narrative("自治会長の通報で訪問。本人は不在、隣人から庭のごみの状況を聞いた。");
        Ok(r.log_activity(visit)?)
    })?;
    let synced = suzuki_phone.sync(&hoarding_case).await?;
    let hoarding_number = synced.case_number.map(|n| n.to_string()).unwrap_or_default();
    println!(
        "10. 鈴木    opens a hoarding case in the field (自治会長からの通報), logs a visit, syncs: {hoarding_number}"
    );

    // 伊藤 heard of the same household from the neighbourhood association and opens a case too.
    let mut same = NewCase::new(municipality, NaiveDate::from_ymd_opt(2026, 11, 4).context("a date")?);
    let mut again = person("渡辺 茂", "わたなべ　しげる", Relation::Subject, &[ConcernTag::Hoarding], None);
    again.is_subject = true;
    again.birth_date = NaiveDate::from_ymd_opt(1951, 1, 15);
    same.household = vec![again];
    let mut replica = CaseReplica::open(same, ito_phone.actor())?;
    let duplicate_case = replica.case_id()?;
    ito_phone.store.save_doc(&duplicate_case, replica.doc_mut())?;
    let synced = ito_phone.sync(&duplicate_case).await?;
    let duplicate_number = synced.case_number.map(|n| n.to_string()).unwrap_or_default();
    println!(
        "10b. 伊藤   opens a case for the same household offline (渡辺 茂, 1951-01-15), syncs: {duplicate_number}"
    );

    ito_phone.edit(&household_8050, |r| {
        Ok(r.log_activity(
            NewActivity::new(
                jst(16, 30)?,
                Place::Phone,
                ActivityDetails::ContactAttempt { channel: ContactChannel::Phone, outcome: ContactOutcome::NoAnswer },
            )
            .with_narrative(ITO_8050_CALL_NARRATIVE),
        )?)
    })?;
    tanaka_tablet.sync(&household_8050).await?;
    tanaka_tablet.edit(&household_8050, |r| Ok(r.set_status(CaseStatus::Suspended)?))?;
    tanaka_tablet.sync(&household_8050).await?;
    println!(
        "10c. 伊藤   offline again: calls the 8050 household's son (no answer); meanwhile 田中 suspends that case (長男の入院) and syncs"
    );

    // -- 5. Everyone syncs, twice -----------------------------------------------------------
    for round in 1..=2 {
        let a = sato_phone.sync(&case_id).await?;
        if round == 1 {
            let late = ito_phone.sync(&household_8050).await?;
            println!(
                "    伊藤's call on the 8050 household arrives after the suspension ({late}): stored, not refused"
            );
        }
        let b = ito_phone.sync(&case_id).await?;
        let c = tanaka_tablet.sync(&case_id).await?;
        println!("{}. all    sync round {round}: 佐藤 {a}; 伊藤 {b}; 田中 {c}", 10 + round);
    }

    // -- 6. The supervisor reviews through the API ----------------------------------------
    api.send(
        Method::POST,
        &format!("/v1/cases/{case_id}/reviews"),
        serde_json::json!({"activity_id": visit.to_string(), "comment": REVIEW_TEXT}),
    )
    .await?;
    println!("13. 田中    reviews 佐藤's visit (POST /v1/cases/…/reviews)");
    let synced = sato_phone.sync(&case_id).await?;
    println!("14. 佐藤    syncs ({synced}): the review arrives");

    // -- 7. The attention queue ---------------------------------------------------------------
    let queue = api.get("/v1/attention").await?;
    let items = queue["items"].as_array().cloned().unwrap_or_default();
    println!("15. 田中    reads the attention queue (GET /v1/attention): {} item(s)", items.len());
    let mut conflict_item = None;
    for item in &items {
        let kind = item["kind"]["label"].as_str().unwrap_or("?");
        match item["kind"]["key"].as_str() {
            Some("conflict") => {
                let values: Vec<String> = item["detail"]["values"]
                    .as_array()
                    .map(|values| {
                        values
                            .iter()
                            .map(|v| {
                                let value = v["value"].as_str().unwrap_or("?");
                                let label = CaseStatus::from_key(value).map(|s| s.label()).unwrap_or("");
                                let who = v["device_id"]
                                    .as_str()
                                    .and_then(|d| DeviceId::parse(d).ok())
                                    .and_then(|d| device_names.get(&d).copied())
                                    .unwrap_or("server");
                                format!("{value} ({label}) by {who}")
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                println!(
                    "    {kind} conflict on {}: {}",
                    item["detail"]["path"].as_str().unwrap_or("?"),
                    values.join(" / ")
                );
                conflict_item = item["item_id"].as_str().map(str::to_owned);
            }
            Some("possible_duplicate") => {
                let other = item["detail"]["other_case_id"].as_str().unwrap_or("?");
                let other = if other == hoarding_case.to_string() { hoarding_number.as_str() } else { other };
                println!(
                    "    {kind} possible duplicate: {} and {other} (same reading and date of birth)",
                    item["case_number"].as_str().unwrap_or("?"),
                );
            }
            Some("late_entry") => {
                let detail = &item["detail"];
                let kind_label = tsunagi_sync::domain::ActivityKind::from_key(detail["kind"].as_str().unwrap_or(""))
                    .map(|k| k.label())
                    .unwrap_or("?");
                println!(
                    "    {kind} late entry on {}: {kind_label} of {} by {}, after the case was {} — kept and counted",
                    item["case_number"].as_str().unwrap_or("?"),
                    detail["started_at"].as_str().unwrap_or("?"),
                    detail["recorded_by"]
                        .as_str()
                        .and_then(|s| StaffId::parse(s).ok())
                        .and_then(|s| names.get(&s).copied())
                        .unwrap_or("?"),
                    detail["status"].as_str().unwrap_or("?"),
                );
                let id = item["item_id"].as_str().unwrap_or_default();
                api.send(
                    Method::POST,
                    &format!("/v1/attention/{id}/resolve"),
                    serde_json::json!({"note": "入院中も連絡は継続"}),
                )
                .await?;
            }
            Some("concurrent_amendment") => {
                println!(
                    "    {kind} concurrent amendment of {} (merged; read it once)",
                    item["subject"].as_str().unwrap_or("?")
                );
                let id = item["item_id"].as_str().unwrap_or_default();
                api.send(Method::POST, &format!("/v1/attention/{id}/resolve"), serde_json::json!({})).await?;
            }
            _ => println!("    {kind} {}", item["subject"].as_str().unwrap_or("")),
        }
    }
    let conflict_item = conflict_item.context("the concurrent status change raised no conflict")?;
    api.send(
        Method::POST,
        &format!("/v1/attention/{conflict_item}/resolve"),
        serde_json::json!({"value": "outreach", "note": "二人に確認し、関係性構築の段階とした"}),
    )
    .await?;
    println!("16. 田中    settles the conflict: outreach (関係性構築); one change supersedes both values");
    for phone in [&mut sato_phone, &mut ito_phone, &mut tanaka_tablet] {
        phone.sync(&case_id).await?;
    }
    println!("17. all     sync: the supervisor's choice reaches every replica");
    let merged = api
        .send(
            Method::POST,
            &format!("/v1/cases/{hoarding_case}/merge"),
            serde_json::json!({"duplicate": duplicate_case.to_string()}),
        )
        .await?;
    println!(
        "17b. 田中   merges {} into {} ({} entries copied); both numbers now lead to {}",
        merged["merged"]["case_number"].as_str().unwrap_or("?"),
        merged["case_number"].as_str().unwrap_or("?"),
        merged["copied"],
        merged["case_number"].as_str().unwrap_or("?"),
    );
    let report = ito_phone.client.sync(&ito_phone.token, &mut ito_phone.session, &mut ito_phone.store).await?;
    let purged = report.events_of(&duplicate_case).any(|e| matches!(e, CaseEvent::Purged { .. }));
    if !purged || ito_phone.store.contains(&duplicate_case) || !ito_phone.store.contains(&hoarding_case) {
        bail!("伊藤's phone did not trade the merged duplicate for the surviving case");
    }
    println!("17c. 伊藤   syncs: the duplicate is deleted from the phone (merged), and {hoarding_number} arrives");

    // 伊藤 tries to set a follow-up date on 佐藤's visit: only its author amends it.
    ito_phone.edit(&case_id, |r| {
        let doc = r.doc_mut();
        let activities = match doc.get(automerge::ROOT, tsunagi_sync::document::keys::ACTIVITIES)? {
            Some((automerge::Value::Object(_), id)) => id,
            _ => bail!("the case has no activities"),
        };
        let activity = match doc.get(&activities, visit.to_string())? {
            Some((automerge::Value::Object(_), id)) => id,
            _ => bail!("佐藤's visit is not on 伊藤's phone"),
        };
        doc.put(&activity, tsunagi_sync::document::keys::FOLLOW_UP_ON, "2026-11-11")?;
        doc.commit_with(
            automerge::transaction::CommitOptions::default()
                .with_message("set follow-up")
                .with_time(chrono::Utc::now().timestamp()),
        );
        Ok(())
    })?;
    let report = ito_phone.client.sync(&ito_phone.token, &mut ito_phone.session, &mut ito_phone.store).await?;
    let refusal = report.events_of(&case_id).find_map(|e| match e {
        CaseEvent::Refused { error, kept, .. } => Some((error.clone(), kept.is_some())),
        _ => None,
    });
    let Some((error, kept)) = refusal else { bail!("伊藤's change to 佐藤's visit was not refused") };
    let reasons: Vec<String> = error.violations.iter().map(|v| format!("{}: {}", v.code.as_str(), v.message)).collect();
    println!(
        "17d. 伊藤   sets a follow-up date on 佐藤's visit and syncs: refused ({}); the change leaves the replica{}",
        reasons.join("; "),
        if kept { " and is kept on the phone" } else { "" }
    );
    let queue = api.get("/v1/attention?kind=quarantined_batch").await?;
    let quarantine_id = queue["items"]
        .as_array()
        .and_then(|items| items.first())
        .and_then(|item| item["detail"]["quarantine_id"].as_str())
        .context("the refused upload raised no quarantined-batch item")?
        .to_owned();
    api.send(
        Method::POST,
        &format!("/v1/quarantine/{quarantine_id}/decision"),
        serde_json::json!({"decision": "reject", "reason": REJECT_REASON}),
    )
    .await?;
    println!("17e. 田中   sees it in the queue (保留中の送信) and rejects it with a reason");
    let ito_api = Api { client: &ito_phone.client, token: &ito_phone.token };
    let mine = ito_api.get("/v1/quarantine/mine").await?;
    let decided = mine["uploads"]
        .as_array()
        .and_then(|uploads| uploads.iter().find(|u| u["id"] == quarantine_id.as_str()))
        .context("伊藤 does not see his refused upload")?;
    println!(
        "17f. 伊藤   reads what became of it (GET /v1/quarantine/mine): {} — 「{}」",
        decided["decision"].as_str().unwrap_or("?"),
        decided["reason"].as_str().unwrap_or("")
    );

    // 佐藤 calls again after the review: the record shows what is new since it.
    sato_phone.edit(&case_id, |r| {
        Ok(r.log_activity(
            NewActivity::new(
                jst(19, 0)?,
                Place::Phone,
                ActivityDetails::ContactAttempt { channel: ContactChannel::Phone, outcome: ContactOutcome::Reached },
            )
            .with_narrative("母と電話がつながった。来週の訪問を約束。"),
        )?)
    })?;
    sato_phone.sync(&case_id).await?;
    let record = api.get(&format!("/v1/cases/{case_id}")).await?;
    let since = &record["since_last_review"];
    let count = |key: &str| since[key].as_array().map(|a| a.len()).unwrap_or(0);
    println!(
        "17g. 佐藤   calls the mother after the review; the record shows since the last review: {} new, {} amended",
        count("added"),
        count("amended")
    );

    // -- 8. Consent, and a case meeting ----------------------------------------------------
    sato_phone.edit(&case_id, |r| {
        Ok(r.record_consent(
            ConsentState::Obtained,
            NaiveDate::from_ymd_opt(2026, 11, 4).context("a date")?,
            Some(ConsentMethod::Written),
        )?)
    })?;
    sato_phone.sync(&case_id).await?;
    println!("18. 佐藤    records the mother's written consent (本人同意) and syncs");
    let today = chrono::Utc::now().with_timezone(&tsunagi_sync::ids::JAPAN).date_naive();
    let meeting = api
        .send(
            Method::POST,
            "/v1/meetings",
            serde_json::json!({
                "kind": "multi_layered",
                "title": "重層的支援会議 (11月)",
                "held_on": tsunagi_sync::document::format_date(today),
                "members": [tablet.staff.to_string()],
            }),
        )
        .await?;
    let meeting_id =
        meeting["meeting_id"].as_str().or_else(|| meeting["id"].as_str()).context("a meeting id")?.to_owned();
    api.send(Method::PUT, &format!("/v1/meetings/{meeting_id}/agenda/{case_id}"), serde_json::json!({})).await?;
    println!("19. 田中    prepares a 重層的支援会議 with the case on its agenda (it has consent)");
    let report = meeting_tablet
        .client
        .sync(&meeting_tablet.token, &mut meeting_tablet.session, &mut meeting_tablet.store)
        .await?;
    let held: Vec<CaseId> = meeting_tablet.store.case_ids();
    println!(
        "20. tablet  the meeting tablet syncs: it holds {} case(s), only the agenda's ({}), read-only",
        held.len(),
        report.events.len()
    );
    if held != vec![case_id] {
        bail!("the meeting tablet holds {held:?}, not just the agenda's case");
    }
    api.send(Method::POST, &format!("/v1/meetings/{meeting_id}/end"), serde_json::json!({})).await?;
    let report = meeting_tablet
        .client
        .sync(&meeting_tablet.token, &mut meeting_tablet.session, &mut meeting_tablet.store)
        .await?;
    let purged = report.events.iter().any(|e| matches!(e.event, CaseEvent::Purged { .. }));
    println!(
        "21. tablet  the meeting ends; at its next sync the tablet {} the case (meeting_ended)",
        if purged && meeting_tablet.store.case_ids().is_empty() { "deletes" } else { "still holds" }
    );

    // -- 9. The merged record -----------------------------------------------------------------
    let synced = ito_phone.sync(&case_id).await?;
    println!("22. 伊藤    syncs ({synced})");
    let view = sato_phone.view(&case_id)?;
    if view != ito_phone.view(&case_id)? {
        bail!("the replicas did not converge");
    }
    tanaka_tablet.sync(&case_id).await?;
    if view != tanaka_tablet.view(&case_id)? {
        bail!("the supervisor's replica did not converge");
    }
    println!("    all three replicas hold the same record");
    print_record(&view, &names, &device_names);

    // -- 10. The day's visit log and the month's figures ----------------------------------
    let log = api.get("/v1/visits?from=2026-11-01&to=2026-11-30&limit=500").await?;
    println!();
    println!("== 活動記録 visit log, November 2026 (GET /v1/visits) ==");
    let mut rows: Vec<&serde_json::Value> = log["visits"].as_array().map(|v| v.iter().collect()).unwrap_or_default();
    rows.reverse();
    for row in rows {
        let mut what = row["kind"]["label"].as_str().unwrap_or("?").to_owned();
        if let Some(outcome) = row["outcome"]["label"].as_str() {
            what.push_str(&format!(" {outcome}"));
        }
        if row["kind"]["key"] == "visit" && row["letter_left"] == true {
            what.push_str("・手紙を残した");
        }
        println!(
            "  visit-log {} {} {} by {}",
            row["date"].as_str().unwrap_or(""),
            row["case_number"].as_str().unwrap_or("-"),
            what,
            row["recorded_by"]["name"].as_str().unwrap_or("?")
        );
    }
    let figures = api.get(&format!("/v1/figures/{FISCAL_YEAR}")).await?;
    println!();
    println!(
        "== 月別集計 figures, {} (GET /v1/figures/{FISCAL_YEAR}), November 2026 ==",
        figures["fiscal_year_label"].as_str().unwrap_or("")
    );
    let cell = |row: &serde_json::Value| -> String {
        match &row["months"][NOVEMBER] {
            serde_json::Value::Null => "-".to_owned(),
            value => value.to_string(),
        }
    };
    for (group, key) in [
        ("consultations", "consultations"),
        ("consultations", "new_persons"),
        ("consultations", "continuing_persons"),
        ("consultations", "persons"),
        ("outreach", "visits"),
        ("outreach", "letters_left"),
        ("outreach", "contact_attempts"),
        ("outreach", "visits_met"),
        ("outreach", "met_share"),
    ] {
        let row = &figures[group][key];
        println!("  figure {key} {} = {}", row["label"].as_str().unwrap_or(""), cell(row));
    }
    for row in figures["topics"]["by_topic"].as_array().into_iter().flatten() {
        if row["months"][NOVEMBER].as_i64().unwrap_or(0) > 0 {
            println!(
                "  figure topic:{} {} = {}",
                row["key"].as_str().unwrap_or(""),
                row["label"].as_str().unwrap_or(""),
                cell(row)
            );
        }
    }

    if exit {
        return Ok(());
    }
    println!();
    println!("The server keeps running at {url} (Ctrl-C to stop). Try:");
    println!("  curl -s {url}/readyz");
    println!(
        "  TOKEN=$(curl -s -X POST {url}{} -H 'Content-Type: application/json' -d '{{\"login\":\"{}\",\"password\":\"{}\",\"device_id\":\"{}\"}}' | sed 's/.*\"access_token\":\"\\([^\"]*\\)\".*/\\1/')",
        tsunagi_sync::wire::LOGIN_PATH,
        tanaka.login,
        tanaka.password,
        tanaka.device
    );
    println!("  curl -s -H \"Authorization: Bearer $TOKEN\" {url}/v1/visits");
    println!("  curl -s -H \"Authorization: Bearer $TOKEN\" {url}/v1/figures/{FISCAL_YEAR}.csv");
    println!("A field client of your own (in another terminal):");
    println!(
        "  echo '{}' | tsunagi field --dir ./sato-phone login --server {url} --login {} --device {} --password-stdin",
        sato.password, sato.login, sato.device
    );
    println!("  tsunagi field --dir ./sato-phone sync && tsunagi field --dir ./sato-phone list");
    println!(
        "(other accounts: {} / {} device {}, {} / {} device {}, {} / {} device {})",
        ito.login,
        ito.password,
        ito.device,
        suzuki.login,
        suzuki.password,
        suzuki.device,
        tanaka.login,
        tanaka.password,
        tanaka.device
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
        if !person.note.is_empty() {
            println!("      メモ (note): {}", person.note);
        }
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
