//! A phone for end-to-end tests: a staff member's device running the real phone stack
//! (replica store, sync session, reqwest client) against a test server.

#![allow(dead_code)]

use std::collections::BTreeSet;

use automerge::{AutoCommit, ChangeHash};
use chrono::{FixedOffset, NaiveDate, TimeZone};
use tsunagi_sync::actor::random_device_actor;
use tsunagi_sync::client::{ClientError, RetryPolicy, SyncClient};
use tsunagi_sync::document::{ActivityDetails, CaseView};
use tsunagi_sync::domain::{Place, VisitOutcome};
use tsunagi_sync::ids::{ActivityId, CaseId, MunicipalityCode};
use tsunagi_sync::ops::{CaseReplica, NewActivity, NewCase};
use tsunagi_sync::session::{SyncReport, SyncSession};
use tsunagi_sync::store::ReplicaStore;
use tsunagi_sync::validation::Actor;
use tsunagi_sync::wire::SyncRequest;

use super::{Person, MUNICIPALITY};

/// A staff member's device running the real phone stack against one server instance.
pub struct Phone {
    pub who: Person,
    pub client: SyncClient,
    pub token: String,
    pub session: SyncSession,
    pub store: ReplicaStore,
    pub _dir: tempfile::TempDir,
}

pub fn municipality() -> MunicipalityCode {
    MunicipalityCode::parse(MUNICIPALITY).unwrap()
}

/// 2026-11-04 at `hour`:00 in Japan.
pub fn jst(hour: u32) -> chrono::DateTime<FixedOffset> {
    FixedOffset::east_opt(9 * 3600).unwrap().with_ymd_and_hms(2026, 11, 4, hour, 0, 0).unwrap()
}

impl Phone {
    /// Signs `who` in on their device against the server at `base_url`, with an empty store.
    /// Requests are never retried: every failure shows.
    pub async fn sign_in(base_url: &str, who: &Person) -> Phone {
        let client = SyncClient::builder(base_url).retry(RetryPolicy::never()).build().expect("a sync client");
        let tokens = client.login(&who.login, &who.password, who.device).await.expect("the phone signs in");
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = ReplicaStore::open(dir.path().join("replica")).expect("the replica store opens");
        Phone { who: who.clone(), client, token: tokens.access_token, session: SyncSession::new(), store, _dir: dir }
    }

    /// The app is killed and started again: the session (memory) is gone, the store is
    /// reopened from disk.
    pub fn restart(self) -> Phone {
        let Phone { who, client, token, store, _dir, .. } = self;
        let path = store.dir().to_path_buf();
        drop(store);
        let store = ReplicaStore::open(path).expect("the replica store reopens");
        Phone { who, client, token, session: SyncSession::new(), store, _dir }
    }

    pub fn actor(&self) -> Actor {
        Actor { staff: self.who.staff, device: self.who.device, role: self.who.role }
    }

    /// Opens a new case offline (intake on 2026-11-02) and keeps it in the store.
    pub fn open_case(&mut self) -> CaseId {
        let new = NewCase::new(municipality(), NaiveDate::from_ymd_opt(2026, 11, 2).unwrap());
        let mut replica = CaseReplica::open(new, self.actor()).expect("the case opens");
        let case = replica.case_id().unwrap();
        self.store.save_doc(&case, replica.doc_mut()).expect("the case is saved");
        case
    }

    /// The case as stored on the phone, ready to edit (with a fresh actor id of this device).
    pub fn replica(&self, case: &CaseId) -> CaseReplica {
        let doc = self.store.load_doc(case).expect("the replica loads").expect("the phone holds the case");
        CaseReplica::from_doc(doc, self.actor())
    }

    pub fn view(&self, case: &CaseId) -> CaseView {
        self.replica(case).view().expect("a readable case")
    }

    /// A field operation on the stored case, saved afterwards.
    pub fn edit<T>(&mut self, case: &CaseId, op: impl FnOnce(&mut CaseReplica) -> T) -> T {
        let mut replica = self.replica(case);
        let out = op(&mut replica);
        self.store.save_doc(case, replica.doc_mut()).expect("the case is saved");
        out
    }

    /// Raw Automerge edits, bypassing the field operations, as a buggy or hostile app might
    /// make them (as one change by this device, unless `edit` sets another actor).
    pub fn tamper(&mut self, case: &CaseId, edit: impl FnOnce(&mut AutoCommit)) {
        let doc = self.store.load_doc(case).expect("the replica loads").expect("the phone holds the case");
        let mut doc = doc.with_actor(random_device_actor(&self.who.device));
        edit(&mut doc);
        doc.commit();
        self.store.save_doc(case, &mut doc).expect("the case is saved");
    }

    /// Logs a home visit (not at home, letter left) offline.
    pub fn log_visit(&mut self, case: &CaseId, hour: u32, narrative: &str) -> ActivityId {
        let visit = NewActivity::new(
            jst(hour),
            Place::Home,
            ActivityDetails::Visit {
                outcome: VisitOutcome::NotHome,
                met_person_ids: BTreeSet::new(),
                letter_left: true,
            },
        )
        .with_narrative(narrative);
        self.edit(case, |r| r.log_activity(visit)).expect("the visit is logged")
    }

    pub async fn try_sync(&mut self) -> Result<SyncReport, ClientError> {
        self.client.sync(&self.token, &mut self.session, &mut self.store).await
    }

    pub async fn sync(&mut self) -> SyncReport {
        match self.try_sync().await {
            Ok(report) => report,
            Err(e) => panic!("{} syncs: {e}", self.who.login),
        }
    }

    /// The heads of the phone's replica, sorted.
    pub fn heads(&self, case: &CaseId) -> Vec<ChangeHash> {
        let mut doc = self.store.load_doc(case).unwrap().expect("the phone holds the case");
        sorted(doc.get_heads())
    }

    /// The server heads the phone last received for `case`, sorted.
    pub fn since(&self, case: &CaseId) -> Vec<ChangeHash> {
        sorted(self.store.since(case).unwrap())
    }

    /// The next request the phone would send, without sending it.
    pub fn next_request(&self) -> SyncRequest {
        self.session.build_request(&self.store).expect("a request").0
    }
}

pub fn sorted(mut heads: Vec<ChangeHash>) -> Vec<ChangeHash> {
    heads.sort();
    heads
}
