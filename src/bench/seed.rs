//! Seeding a scenario's database before the server starts.
//!
//! Accounts and devices are made with the same `tsunagi_server::admin` functions as
//! `tsunagi admin`. Case documents are built in memory with the field operations of
//! `tsunagi-sync` (so they are exactly what phones make), and go into the database through
//! the server's own sync engine, **in process**: each device's [`SyncSession`] builds its
//! request from its replica store, [`SyncEngine::sync`] checks, applies and projects it as
//! `POST /v1/sync` would (authorship, validation, case numbers, projections, audit, all in one
//! transaction per request), and the session applies the answer to the store. Only the HTTP
//! layer is skipped, which makes seeding thousands of activities take seconds, and leaves
//! every device exactly where a real sync would: in sync with the server, `since` = the
//! server's heads. Cases that no device holds (`--stored-cases`) are uploaded the same way, a
//! hundred per request, without a replica store.
//!
//! [`SyncSession`]: tsunagi_sync::session::SyncSession

use anyhow::{bail, Context};
use tsunagi_server::admin::{self, NewStaff, OrganisationKind};
use tsunagi_server::store::{Database, DatabaseUrl};
use tsunagi_server::sync::{Assignment, Requester, SyncEngine};
use tsunagi_sync::domain::Role;
use tsunagi_sync::ids::{CaseId, MunicipalityCode};
use tsunagi_sync::ops::{CaseReplica, NewCase};
use tsunagi_sync::session::SyncReport;
use tsunagi_sync::wire::{Bytes, DocumentStatus, DocumentUpload, SyncRequest};

use super::device::{self, Device, Person};
use super::text::Rng;

/// The fictional municipality of every scenario: 流山市.
const MUNICIPALITY: &str = "122203";

/// Seeds one database.
pub struct Seeder {
    db: Database,
    engine: SyncEngine,
    /// The municipality of every account and case.
    pub municipality: MunicipalityCode,
    organisation: uuid::Uuid,
}

impl Seeder {
    /// Connects, applies the migrations, and creates the municipality and an organisation.
    pub fn new(url: &DatabaseUrl) -> anyhow::Result<Seeder> {
        let db = Database::connect(url, 8).context("cannot open the benchmark's database")?;
        db.migrate().context("cannot apply the migrations")?;
        let municipality = MunicipalityCode::parse(MUNICIPALITY)?;
        admin::create_municipality(&db, municipality, "流山市")?;
        let organisation = admin::create_organisation(&db, "流山市 福祉政策課 (benchmark)", OrganisationKind::Direct)?;
        let engine = SyncEngine::new(db.clone());
        Ok(Seeder { db, engine, municipality, organisation })
    }

    /// A counsellor with one registered device.
    pub fn counsellor(&self, login: &str) -> anyhow::Result<Person> {
        self.staff(login, &format!("相談員 {login}"), Role::Counsellor, None)
    }

    /// A staff member of `role` (of `area`, if given) with one registered device.
    pub fn staff(&self, login: &str, name: &str, role: Role, area: Option<&str>) -> anyhow::Result<Person> {
        let password = format!("{login}-benchmark-passphrase");
        let new = NewStaff {
            login,
            display_name: name,
            role,
            organisation: self.organisation,
            municipality: self.municipality,
            area,
        };
        let staff = admin::create_staff(&self.db, &new, &password).with_context(|| format!("cannot create {login}"))?;
        let device = admin::register_device(&self.db, login, &format!("{login} phone"))?;
        Ok(Person { login: login.to_owned(), password, staff, device, role })
    }

    /// An area of the municipality.
    pub fn area(&self, code: &str, name: &str) -> anyhow::Result<()> {
        admin::create_area(&self.db, self.municipality, code, name)
            .with_context(|| format!("cannot create the area {code}"))?;
        Ok(())
    }

    /// The database it seeds.
    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Another registered device of the same person.
    pub fn another_device(&self, person: &Person, label: &str) -> anyhow::Result<Person> {
        let device = admin::register_device(&self.db, &person.login, label)?;
        Ok(Person { device, ..person.clone() })
    }

    fn requester(&self, person: &Person) -> Requester {
        Requester {
            staff: person.staff,
            device: person.device,
            role: person.role,
            municipality: self.municipality,
            area: None,
        }
    }

    /// Syncs a device with the sync engine in process (every round the session asks for).
    pub fn sync(&self, device: &mut Device) -> anyhow::Result<SyncReport> {
        let who = self.requester(&device.person);
        let mut report = SyncReport::default();
        for _ in 0..1000 {
            let (request, sent) = device.session.build_request(&device.store)?;
            let response = self.engine.sync(&who, request).context("the sync engine failed while seeding")?;
            let round = device.session.apply_response(&mut device.store, &sent, response, chrono::Utc::now())?;
            report.absorb(round);
            if !report.sync_again() {
                break;
            }
        }
        device::check(&report, &device.person.login)?;
        Ok(report)
    }

    /// Makes `staff` another assignee of `case` (a server change, as a supervisor's
    /// assignment is).
    pub fn assign(&self, case: &CaseId, person: &Person) -> anyhow::Result<()> {
        self.engine
            .assign(case, &person.staff, Assignment::Other, None)
            .with_context(|| format!("cannot assign {case}"))
    }

    /// `count` cases of `activities` activities each, opened by `person` and uploaded through
    /// the sync engine a hundred per request, without any replica store (cases that sit in the
    /// database while others work).
    pub fn stored_cases(
        &self,
        person: &Person,
        count: usize,
        activities: usize,
        chars: usize,
        rng: &mut Rng,
    ) -> anyhow::Result<()> {
        let who = self.requester(person);
        let mut done = 0;
        while done < count {
            let n = (count - done).min(100);
            let mut documents = Vec::with_capacity(n);
            for _ in 0..n {
                let mut replica =
                    CaseReplica::open(NewCase::new(self.municipality, device::today().date_naive()), person.actor())?;
                let case = replica.case_id()?;
                for i in 0..activities {
                    let at = device::today() - chrono::Duration::days((activities - i) as i64);
                    device::log_activity_on(&mut replica, rng, at, i, chars)?;
                }
                let changes = replica.changes_since(&[]).iter().map(|c| Bytes(c.raw_bytes().to_vec())).collect();
                documents.push(DocumentUpload::new(case, Vec::new(), changes));
            }
            let request = SyncRequest::new(None, documents);
            let response = self.engine.sync(&who, request).context("the sync engine failed while seeding")?;
            if let Some(bad) = response.documents.iter().find(|d| d.status != DocumentStatus::Ok) {
                bail!("a stored case was not accepted while seeding: {:?}", bad.error);
            }
            done += n;
        }
        Ok(())
    }
}
