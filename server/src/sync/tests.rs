//! The sync engine on both backends, below HTTP: what a phone sends, what it gets back, and
//! what the database holds afterwards.

use std::collections::BTreeSet;

use automerge::{AutoCommit, Change};
use chrono::{FixedOffset, NaiveDate, TimeZone};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use tsunagi_sync::document::ActivityDetails;
use tsunagi_sync::domain::{Place, Role, VisitOutcome};
use tsunagi_sync::ids::{ActivityId, CaseId, DeviceId, MunicipalityCode, StaffId};
use tsunagi_sync::ops::{CaseReplica, NewActivity, NewCase};
use tsunagi_sync::validation::Actor;
use tsunagi_sync::wire::{Bytes, DocumentErrorCode, DocumentStatus, DocumentUpload, Hash, SyncRequest, SyncResponse};

use super::*;
use crate::store::schema;
use crate::testing::{Backend, TestDatabase};

const MUNICIPALITY: &str = "122203";

struct World {
    _db: TestDatabase,
    database: Database,
    engine: SyncEngine,
}

/// The municipality and organisation every test works in.
fn seed_municipality(database: &Database) {
    database
        .write(|c| -> Result<(), StoreError> {
            c.batch_execute(
                "INSERT INTO municipalities (code, name, created_at) VALUES ('122203', '流山市', '2026-04-01 00:00:00');
                 INSERT INTO organisations (id, name, kind, created_at) VALUES ('org', '流山市', 'direct', '2026-04-01 00:00:00');",
            )?;
            Ok(())
        })
        .unwrap();
}

fn world(backend: Backend) -> World {
    let db = TestDatabase::new(backend);
    let database = Database::connect(&db.url, 8).unwrap();
    database.migrate().unwrap();
    seed_municipality(&database);
    World { engine: SyncEngine::new(database.clone()), database, _db: db }
}

/// A staff member with one device, registered in the database.
fn staff(world: &World, role: Role) -> Requester {
    let requester = Requester {
        staff: StaffId::new_random(),
        device: DeviceId::new_random(),
        role,
        municipality: MunicipalityCode::parse(MUNICIPALITY).unwrap(),
        area: None,
    };
    world
        .database
        .write(|c| -> Result<(), StoreError> {
            c.batch_execute(&format!(
                "INSERT INTO staff (id, login, display_name, role, organisation_id, municipality, password_hash, active, failed_logins, created_at)
                 VALUES ('{s}', '{s}', 'x', '{r}', 'org', '122203', 'x', TRUE, 0, '2026-04-01 00:00:00');
                 INSERT INTO devices (id, staff_id, label, registered_at) VALUES ('{d}', '{s}', 'phone', '2026-04-01 00:00:00');",
                s = requester.staff,
                d = requester.device,
                r = role.as_key()
            ))?;
            Ok(())
        })
        .unwrap();
    requester
}

fn actor(who: &Requester) -> Actor {
    Actor { staff: who.staff, device: who.device, role: who.role }
}

fn jst(day: u32, hour: u32) -> chrono::DateTime<FixedOffset> {
    FixedOffset::east_opt(9 * 3600).unwrap().with_ymd_and_hms(2026, 11, day, hour, 0, 0).unwrap()
}

fn open_case(who: &Requester) -> CaseReplica {
    CaseReplica::open(NewCase::new(who.municipality, NaiveDate::from_ymd_opt(2026, 11, 2).unwrap()), actor(who))
        .unwrap()
}

fn visit(replica: &mut CaseReplica, hour: u32, narrative: &str) -> ActivityId {
    replica
        .log_activity(
            NewActivity::new(
                jst(4, hour),
                Place::Home,
                ActivityDetails::Visit {
                    outcome: VisitOutcome::NotHome,
                    met_person_ids: BTreeSet::new(),
                    letter_left: true,
                },
            )
            .with_narrative(narrative),
        )
        .unwrap()
}

/// A phone's view of one case: its replica and the server heads it last received.
struct Phone {
    who: Requester,
    replica: CaseReplica,
    since: Vec<automerge::ChangeHash>,
}

impl Phone {
    fn upload(&mut self) -> DocumentUpload {
        let changes = self.replica.changes_since(&self.since).iter().map(|c| Bytes(c.raw_bytes().to_vec())).collect();
        DocumentUpload::new(self.replica.case_id().unwrap(), self.since.iter().map(Hash::from).collect(), changes)
    }

    fn sync(&mut self, world: &World) -> SyncResponse {
        let upload = self.upload();
        let response = world.engine.sync(&self.who, SyncRequest::new(None, vec![upload])).unwrap();
        self.absorb(&response);
        response
    }

    /// Takes in what the response answered for this phone's case.
    fn absorb(&mut self, response: &SyncResponse) {
        let case = self.replica.case_id().ok();
        for result in response.documents.iter().filter(|r| Some(r.case_id) == case) {
            if result.status == DocumentStatus::Ok {
                let changes: Vec<Change> =
                    result.changes.iter().map(|b| Change::from_bytes(b.0.clone()).unwrap()).collect();
                self.replica.apply_changes(changes).unwrap();
                self.since = result.heads.iter().map(|h| automerge::ChangeHash(h.0)).collect();
            }
        }
    }
}

fn activity_rows(world: &World, case: &CaseId) -> i64 {
    let mut conn = world.database.conn().unwrap();
    schema::activities::table
        .filter(schema::activities::case_id.eq(case.to_string()))
        .count()
        .get_result(&mut *conn)
        .unwrap()
}

fn quarantined(world: &World) -> Vec<String> {
    let mut conn = world.database.conn().unwrap();
    schema::quarantine::table.select(schema::quarantine::code).load(&mut *conn).unwrap()
}

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[test] fn $name() { super::$name(crate::testing::Backend::Sqlite) } )*
        }
        mod postgres {
            $( #[test] fn $name() { super::$name(crate::testing::Backend::Postgres) } )*
        }
    };
}

on_both_backends!(
    two_phones_offline_on_one_case_converge_with_nothing_lost,
    a_first_upload_gets_a_case_number_and_resending_is_a_no_op,
    refused_uploads_change_nothing_and_are_quarantined,
    a_case_is_invisible_to_those_who_may_not_see_it,
    an_ended_assignment_purges_the_case_after_its_upload,
    unknown_since_falls_back_to_the_automerge_sync_protocol,
    a_cached_document_is_not_used_once_the_case_was_written_elsewhere,
    two_requests_listing_the_same_cases_in_opposite_orders_are_both_answered,
    a_request_that_fails_in_the_database_stores_nothing_and_its_retry_stores_everything_once,
    a_late_visit_on_a_merged_case_reaches_its_survivor_listed_in_the_same_request,
    a_stored_case_that_does_not_load_is_answered_unavailable_and_the_others_go_on,
);

fn two_phones_offline_on_one_case_converge_with_nothing_lost(backend: Backend) {
    let world = world(backend);
    let sato = staff(&world, Role::Counsellor);
    let sato_tablet = Requester { device: DeviceId::new_random(), ..sato.clone() };
    world
        .database
        .write(|c| -> Result<(), StoreError> {
            c.batch_execute(&format!(
                "INSERT INTO devices (id, staff_id, label, registered_at) VALUES ('{}', '{}', 'tablet', '2026-04-01 00:00:00')",
                sato_tablet.device, sato.staff
            ))?;
            Ok(())
        })
        .unwrap();
    let ito = staff(&world, Role::Counsellor);
    let mut a = Phone { who: sato.clone(), replica: open_case(&sato), since: vec![] };
    let shared = visit(&mut a.replica, 10, "インターホンに応答なし。");
    a.sync(&world);
    let case = a.replica.case_id().unwrap();
    world.engine.assign(&case, &ito.staff, Assignment::Other, None).unwrap();

    // 伊藤's phone receives the case whole; 佐藤's tablet too.
    let mut phones = Vec::new();
    for who in [ito, sato_tablet] {
        let response = world.engine.sync(&who, SyncRequest::new(None, vec![])).unwrap();
        assert_eq!(response.assigned.len(), 1, "the case is assigned to them");
        let assigned = &response.assigned[0];
        let replica = CaseReplica::from_doc(AutoCommit::load(&assigned.document.0).unwrap(), actor(&who));
        phones.push(Phone { who, replica, since: assigned.heads.iter().map(|h| automerge::ChangeHash(h.0)).collect() });
    }
    let (mut b, mut t) = (phones.remove(0), phones.remove(0));
    // Offline: everyone works.
    a.replica.amend_narrative(shared, "インターホンに応答なし。玄関に手紙を残した。").unwrap();
    t.replica.insert_into_narrative(shared, 0, "【10時】").unwrap();
    let from_b = visit(&mut b.replica, 15, "近所の方から話を聞いた。");
    let from_a = visit(&mut a.replica, 16, "再訪問。");
    // They sync in some order; then once more to pick up the others' work.
    for phone in [&mut b, &mut a, &mut t] {
        let r = phone.sync(&world);
        assert_eq!(r.documents[0].status, DocumentStatus::Ok, "{:?}", r.documents[0].error);
    }
    for phone in [&mut b, &mut a, &mut t] {
        phone.sync(&world);
    }
    let heads = a.replica.heads();
    assert_eq!(b.replica.heads(), heads);
    assert_eq!(t.replica.heads(), heads);
    let view = a.replica.view().unwrap();
    assert_eq!(view, b.replica.view().unwrap());
    assert!(view.activities.contains_key(&from_a) && view.activities.contains_key(&from_b));
    assert_eq!(view.activities[&shared].narrative, "【10時】インターホンに応答なし。玄関に手紙を残した。");
    assert_eq!(activity_rows(&world, &case), 3, "the projection holds every activity once");
    // Steady state: nothing new to send or receive.
    let again = a.sync(&world);
    assert!(again.documents[0].changes.is_empty());
    assert_eq!(a.upload().changes.len(), 0);
}

fn a_first_upload_gets_a_case_number_and_resending_is_a_no_op(backend: Backend) {
    let world = world(backend);
    let sato = staff(&world, Role::Counsellor);
    let mut phone = Phone { who: sato.clone(), replica: open_case(&sato), since: vec![] };
    visit(&mut phone.replica, 10, "初回訪問");
    let upload = phone.upload();
    // The response is lost: the phone never hears it and sends the same batch again.
    let first = world.engine.sync(&sato, SyncRequest::new(None, vec![upload.clone()])).unwrap();
    let second = world.engine.sync(&sato, SyncRequest::new(None, vec![upload])).unwrap();
    let number = first.documents[0].case_number.expect("numbered on first sync");
    assert!(number.to_string().ends_with("-0001"), "{number}");
    assert_eq!(second.documents[0].case_number, Some(number));
    assert_eq!(second.documents[0].heads, first.documents[0].heads);
    phone.absorb(&second);
    let case = phone.replica.case_id().unwrap();
    assert_eq!(phone.replica.view().unwrap().case_number, Some(number), "the number reaches the phone");
    assert_eq!(activity_rows(&world, &case), 1);
    let mut conn = world.database.conn().unwrap();
    let stored: i64 = schema::changes::table.count().get_result(&mut *conn).unwrap();
    assert_eq!(stored, 3, "open, visit, and the server's case number: no duplicates");
}

/// The stored document, loaded from the database (not from any cache).
fn stored_document(world: &World, case: &CaseId) -> automerge::Automerge {
    let mut conn = world.database.conn().unwrap();
    let row = documents::find(&mut conn, case).unwrap().unwrap();
    documents::load(&mut conn, &row).unwrap()
}

/// One instance keeps the case loaded after storing it; another instance, and the
/// assignment path, write the case meanwhile. The first instance must notice (the heads
/// differ) and work on the case as stored: nothing the others wrote is lost.
fn a_cached_document_is_not_used_once_the_case_was_written_elsewhere(backend: Backend) {
    let world = world(backend);
    let other_instance = SyncEngine::new(world.database.clone());
    let sato = staff(&world, Role::Counsellor);
    let ito = staff(&world, Role::Counsellor);
    let mut phone = Phone { who: sato.clone(), replica: open_case(&sato), since: vec![] };
    visit(&mut phone.replica, 9, "初回訪問");
    phone.sync(&world);
    let case = phone.replica.case_id().unwrap();
    assert_eq!(world.engine.cache_usage().0, 1, "the stored case is kept loaded");
    // A second visit through the cache.
    visit(&mut phone.replica, 10, "二回目");
    phone.sync(&world);
    assert_eq!(world.engine.cache_usage().0, 1);
    // A third through the other instance, then an assignment by the first's other path.
    visit(&mut phone.replica, 11, "三回目");
    let upload = phone.upload();
    let response = other_instance.sync(&sato, SyncRequest::new(None, vec![upload])).unwrap();
    phone.absorb(&response);
    world.engine.assign(&case, &ito.staff, Assignment::Other, None).unwrap();
    // The fourth through the first instance, whose loaded copy knows none of that.
    visit(&mut phone.replica, 12, "四回目");
    let response = phone.sync(&world);
    assert_eq!(response.documents[0].status, DocumentStatus::Ok);
    let stored = stored_document(&world, &case);
    assert_eq!(sorted_heads(&stored), sorted_heads(phone.replica.doc_mut().document()));
    let view = tsunagi_sync::document::read_case(&stored).view.unwrap();
    assert_eq!(view.activities.len(), 4, "every visit is in the stored case");
    assert!(view.assignees.others.contains(&ito.staff), "and so is the assignment");
    assert!(phone.replica.view().unwrap().assignees.others.contains(&ito.staff), "which reached the phone");
    assert_eq!(activity_rows(&world, &case), 4);
    // A refused upload leaves the stored case as it was for the next one.
    let mut forged = phone.replica.clone();
    automerge::transaction::Transactable::put(forged.doc_mut(), automerge::ROOT, "status", "closed").unwrap();
    forged.doc_mut().commit();
    let upload = DocumentUpload::new(
        case,
        phone.since.iter().map(Hash::from).collect(),
        forged.changes_since(&phone.since).iter().map(|c| Bytes(c.raw_bytes().to_vec())).collect(),
    );
    let refused = world.engine.sync(&sato, SyncRequest::new(None, vec![upload])).unwrap();
    assert_eq!(refused.documents[0].status, DocumentStatus::Refused);
    visit(&mut phone.replica, 13, "五回目");
    phone.sync(&world);
    let view = tsunagi_sync::document::read_case(&stored_document(&world, &case)).view.unwrap();
    assert_eq!((view.activities.len(), view.status), (5, tsunagi_sync::domain::CaseStatus::Intake));
}

fn sorted_heads(doc: &automerge::Automerge) -> Vec<automerge::ChangeHash> {
    let mut heads = doc.get_heads();
    heads.sort();
    heads
}

fn refused_uploads_change_nothing_and_are_quarantined(backend: Backend) {
    let world = world(backend);
    let sato = staff(&world, Role::Counsellor);
    let ito = staff(&world, Role::Counsellor);
    let mut a = Phone { who: sato.clone(), replica: open_case(&sato), since: vec![] };
    let activity = visit(&mut a.replica, 10, "訪問");
    a.sync(&world);
    let case = a.replica.case_id().unwrap();
    world.engine.assign(&case, &ito.staff, Assignment::Other, None).unwrap();
    a.sync(&world); // picks up the server's assignment change
    let heads = a.since.clone();
    let saved = a.replica.save();

    let attempt = |who: &Requester, edit: &dyn Fn(&mut AutoCommit)| -> tsunagi_sync::wire::DocumentResult {
        let mut doc =
            AutoCommit::load(&saved).unwrap().with_actor(tsunagi_sync::actor::random_device_actor(&who.device));
        edit(&mut doc);
        doc.commit();
        let changes = doc.get_changes(&heads).iter().map(|c| Bytes(c.raw_bytes().to_vec())).collect();
        let upload = DocumentUpload::new(case, heads.iter().map(Hash::from).collect(), changes);
        world.engine.sync(who, SyncRequest::new(None, vec![upload])).unwrap().documents.remove(0)
    };
    use automerge::transaction::Transactable;
    use automerge::{ReadDoc, ROOT};
    let activities = |d: &AutoCommit| d.get(ROOT, "activities").unwrap().unwrap().1;
    // A change written under another device's actor.
    let foreign = attempt(&Requester { device: ito.device, ..sato.clone() }, &|d| {
        d.set_actor(tsunagi_sync::actor::random_device_actor(&DeviceId::new_random()));
        d.put(ROOT, "status", "outreach").unwrap();
    });
    // Deleting an activity; setting the case number; amending someone else's activity.
    let deleting = attempt(&sato, &|d| {
        let acts = activities(d);
        d.delete(&acts, activity.to_string()).unwrap();
    });
    let numbering = attempt(&sato, &|d| d.put(ROOT, "case_number", "2026-0999").unwrap());
    let amending = attempt(&ito, &|d| {
        let acts = activities(d);
        let a = d.get(&acts, activity.to_string()).unwrap().unwrap().1;
        d.put(&a, "place", "office").unwrap();
    });
    let corrupt = {
        let upload = DocumentUpload::new(
            case,
            heads.iter().map(Hash::from).collect(),
            vec![Bytes(vec![0x85, 0x6f, 0x4a, 0x83, 1, 2, 3])],
        );
        world.engine.sync(&sato, SyncRequest::new(None, vec![upload])).unwrap().documents.remove(0)
    };
    let codes: Vec<_> = [&foreign, &deleting, &numbering, &amending, &corrupt]
        .iter()
        .map(|r| {
            assert_eq!(r.status, DocumentStatus::Refused);
            assert_eq!(r.heads, heads.iter().map(Hash::from).collect::<Vec<_>>(), "nothing was applied");
            r.error.as_ref().unwrap().code
        })
        .collect();
    assert_eq!(
        codes,
        [
            DocumentErrorCode::ForeignActor,
            DocumentErrorCode::InvalidChange,
            DocumentErrorCode::InvalidChange,
            DocumentErrorCode::InvalidChange,
            DocumentErrorCode::CorruptChange
        ]
    );
    let reasons: Vec<_> = [&deleting, &numbering, &amending]
        .iter()
        .map(|r| r.error.as_ref().unwrap().violations[0].code.as_str())
        .collect();
    assert_eq!(reasons, ["deleted_entity", "server_only_field", "not_own_activity"]);
    assert_eq!(quarantined(&world).len(), 5, "every refused upload is kept");
    assert_eq!(activity_rows(&world, &case), 1);
    // A meeting tablet may not write at all.
    let tablet = staff(&world, Role::MeetingTablet);
    let mut t = Phone { who: tablet.clone(), replica: open_case(&sato), since: vec![] };
    t.replica = CaseReplica::from_doc(AutoCommit::load(&t.replica.save()).unwrap(), actor(&sato));
    let mut forged = AutoCommit::new().with_actor(tsunagi_sync::actor::random_device_actor(&tablet.device));
    forged.put(ROOT, "schema", 1).unwrap();
    forged.commit();
    let upload = DocumentUpload::new(
        CaseId::new_random(),
        vec![],
        forged.get_changes(&[]).iter().map(|c| Bytes(c.raw_bytes().to_vec())).collect(),
    );
    let result = world.engine.sync(&tablet, SyncRequest::new(None, vec![upload])).unwrap().documents.remove(0);
    assert_eq!(result.error.map(|e| e.code), Some(DocumentErrorCode::ReadOnly));
}

fn a_case_is_invisible_to_those_who_may_not_see_it(backend: Backend) {
    let world = world(backend);
    let sato = staff(&world, Role::Counsellor);
    let other = staff(&world, Role::Counsellor);
    let supervisor = staff(&world, Role::Supervisor);
    let admin = staff(&world, Role::Administrator);
    let mut a = Phone { who: sato.clone(), replica: open_case(&sato), since: vec![] };
    visit(&mut a.replica, 10, "訪問");
    a.sync(&world);
    let case = a.replica.case_id().unwrap();
    for who in [other, admin] {
        let asked = DocumentUpload::new(case, vec![], vec![]);
        let r = world.engine.sync(&who, SyncRequest::new(None, vec![asked])).unwrap();
        assert_eq!(r.documents[0].status, DocumentStatus::NotFound);
        assert!(r.documents[0].changes.is_empty() && r.documents[0].heads.is_empty());
        assert!(r.assigned.is_empty());
        // Exactly what an id that does not exist gets.
        let r2 = world
            .engine
            .sync(&who, SyncRequest::new(None, vec![DocumentUpload::new(CaseId::new_random(), vec![], vec![])]))
            .unwrap();
        assert_eq!(r2.documents[0].status, r.documents[0].status);
    }
    let r = world.engine.sync(&supervisor, SyncRequest::new(None, vec![])).unwrap();
    assert_eq!(r.assigned.len(), 1, "a supervisor sees the cases of their municipality");
}

fn an_ended_assignment_purges_the_case_after_its_upload(backend: Backend) {
    let world = world(backend);
    let sato = staff(&world, Role::Counsellor);
    let ito = staff(&world, Role::Counsellor);
    let mut a = Phone { who: sato.clone(), replica: open_case(&sato), since: vec![] };
    a.sync(&world);
    let case = a.replica.case_id().unwrap();
    world.engine.assign(&case, &ito.staff, Assignment::Other, None).unwrap();
    let r = world.engine.sync(&ito, SyncRequest::new(None, vec![])).unwrap();
    let mut b = Phone {
        who: ito.clone(),
        replica: CaseReplica::from_doc(AutoCommit::load(&r.assigned[0].document.0).unwrap(), actor(&ito)),
        since: r.assigned[0].heads.iter().map(|h| automerge::ChangeHash(h.0)).collect(),
    };
    // 伊藤 logs a visit offline; meanwhile the assignment ends.
    let late = visit(&mut b.replica, 11, "不在");
    world.engine.assign(&case, &ito.staff, Assignment::Remove, None).unwrap();
    let r = b.sync(&world);
    assert_eq!(r.documents[0].status, DocumentStatus::Ok, "the visit is kept: {:?}", r.documents[0].error);
    assert_eq!(r.purge.len(), 1);
    assert_eq!(r.purge[0].case_id, case);
    a.sync(&world);
    assert!(a.replica.view().unwrap().activities.contains_key(&late));
    // Until 伊藤's phone confirms the purge, by sending back the cursor of a response that
    // carried it, a request that lists the case is told again, and sent nothing of it.
    let again =
        world.engine.sync(&ito, SyncRequest::new(None, vec![DocumentUpload::new(case, vec![], vec![])])).unwrap();
    assert_eq!(again.purge.len(), 1);
    assert!(again.documents[0].changes.is_empty() && again.documents[0].heads.is_empty());
    // Once confirmed, the case is simply not there for 伊藤.
    let listed = vec![DocumentUpload::new(case, vec![], vec![])];
    let r = world.engine.sync(&ito, SyncRequest::new(again.cursor.clone(), listed)).unwrap();
    assert_eq!(r.documents[0].status, DocumentStatus::NotFound);
    assert!(r.purge.is_empty());
}

fn unknown_since_falls_back_to_the_automerge_sync_protocol(backend: Backend) {
    use automerge::sync::{self, SyncDoc};
    let world = world(backend);
    let sato = staff(&world, Role::Counsellor);
    let mut a = Phone { who: sato.clone(), replica: open_case(&sato), since: vec![] };
    visit(&mut a.replica, 9, "一回目");
    a.sync(&world);
    let case = a.replica.case_id().unwrap();
    visit(&mut a.replica, 10, "二回目");
    // The phone claims server heads the server never had (as after a server restore).
    let bogus = DocumentUpload::new(case, vec![Hash([7; 32])], vec![]);
    let r = world.engine.sync(&sato, SyncRequest::new(None, vec![bogus])).unwrap();
    assert_eq!(r.documents[0].status, DocumentStatus::Resync);
    let mut state = sync::State::new();
    let mut message = r.documents[0].sync_message.clone();
    let mut rounds = 0;
    loop {
        rounds += 1;
        assert!(rounds < 10, "fallback converges");
        let doc = a.replica.doc_mut().document().clone();
        let mut doc = doc;
        if let Some(m) = message.take() {
            doc.receive_sync_message(&mut state, sync::Message::decode(&m.0).unwrap()).unwrap();
        }
        a.replica = CaseReplica::from_doc(AutoCommit::load(&doc.save()).unwrap(), actor(&sato));
        match doc.generate_sync_message(&mut state) {
            Some(reply) => {
                let upload = DocumentUpload::with_sync_message(case, Bytes(reply.encode()));
                let r = world.engine.sync(&sato, SyncRequest::new(None, vec![upload])).unwrap();
                match r.documents[0].status {
                    DocumentStatus::Resync => message = r.documents[0].sync_message.clone(),
                    DocumentStatus::Ok => break,
                    other => panic!("unexpected {other:?}"),
                }
            }
            None => break,
        }
    }
    assert_eq!(activity_rows(&world, &case), 2, "the change made while out of step arrived");
}

#[test]
fn fifty_cases_from_two_server_instances_get_numbers_without_gap_or_duplicate() {
    let db = TestDatabase::new(Backend::Postgres);
    let world = World {
        database: Database::connect(&db.url, 16).unwrap(),
        engine: SyncEngine::new(Database::connect(&db.url, 16).unwrap()),
        _db: db,
    };
    world.database.migrate().unwrap();
    seed_municipality(&world.database);
    let instances =
        [SyncEngine::new(world.database.clone()), SyncEngine::new(Database::connect(&world._db.url, 16).unwrap())];
    let phones: Vec<Requester> = (0..5).map(|_| staff(&world, Role::Counsellor)).collect();
    let numbers = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for (i, who) in phones.iter().enumerate() {
            let engine = &instances[i % 2];
            let numbers = &numbers;
            scope.spawn(move || {
                for _ in 0..10 {
                    let mut phone = Phone { who: who.clone(), replica: open_case(who), since: vec![] };
                    let upload = phone.upload();
                    let r = engine.sync(who, SyncRequest::new(None, vec![upload])).unwrap();
                    numbers.lock().unwrap().push(r.documents[0].case_number.unwrap().serial());
                }
            });
        }
    });
    let mut numbers = numbers.into_inner().unwrap();
    numbers.sort();
    assert_eq!(numbers, (1..=50).collect::<Vec<u32>>());
}

/// A phone of `who` holding a copy of `replica`'s case (as the server sent it).
fn phone_of(who: &Requester, replica: &mut CaseReplica) -> Phone {
    let bytes = replica.doc_mut().save();
    let since = replica.doc_mut().get_heads();
    Phone { who: who.clone(), replica: CaseReplica::load(&bytes, actor(who)).unwrap(), since }
}

/// Two phones write into the same cases and sync at the same moment, again and again, one
/// listing the cases in ascending order and the other in descending order. Each request
/// locks all its cases in one transaction, so locking them in the order listed would make
/// the two wait on each other in a cycle (a deadlock PostgreSQL breaks by failing one). Both
/// must be answered `ok` every time, and every visit must be stored once.
fn two_requests_listing_the_same_cases_in_opposite_orders_are_both_answered(backend: Backend) {
    let world = world(backend);
    let sato = staff(&world, Role::Counsellor);
    let ito = staff(&world, Role::Counsellor);
    let mut mine = Vec::new();
    for n in 0..6 {
        let mut phone = Phone { who: sato.clone(), replica: open_case(&sato), since: vec![] };
        visit(&mut phone.replica, 8, &format!("初回訪問 {n}"));
        phone.sync(&world);
        world.engine.assign(&phone.replica.case_id().unwrap(), &ito.staff, Assignment::Other, None).unwrap();
        phone.sync(&world);
        mine.push(phone);
    }
    let mut theirs: Vec<Phone> = mine.iter_mut().map(|p| phone_of(&ito, &mut p.replica)).collect();
    let rounds = 8;
    for round in 0..rounds {
        for phone in mine.iter_mut().chain(theirs.iter_mut()) {
            visit(&mut phone.replica, 9 + round, "訪問");
        }
        let ascending = SyncRequest::new(None, mine.iter_mut().map(Phone::upload).collect());
        let descending = SyncRequest::new(None, theirs.iter_mut().rev().map(Phone::upload).collect());
        let (first, second) = std::thread::scope(|s| {
            let first = s.spawn(|| world.engine.sync(&sato, ascending));
            let second = s.spawn(|| world.engine.sync(&ito, descending));
            (first.join().unwrap(), second.join().unwrap())
        });
        for (phones, response) in [(&mut mine, first), (&mut theirs, second)] {
            let response = response.unwrap_or_else(|e| panic!("round {round}: {e}"));
            assert!(response.documents.iter().all(|d| d.status == DocumentStatus::Ok), "round {round}");
            for phone in phones.iter_mut() {
                phone.absorb(&response);
            }
        }
    }
    for phone in &mine {
        let case = phone.replica.case_id().unwrap();
        assert_eq!(activity_rows(&world, &case), 1 + 2 * i64::from(rounds), "every visit stored once");
    }
}

/// How many sync responses the server has numbered for `who`'s device.
fn responses_numbered(world: &World, who: &Requester) -> i64 {
    let mut conn = world.database.conn().unwrap();
    schema::devices::table
        .find(who.device.to_string())
        .select(schema::devices::sync_responses)
        .first(&mut conn)
        .unwrap()
}

/// One request listing every phone's case.
fn every_case(phones: &mut [Phone]) -> SyncRequest {
    SyncRequest::new(None, phones.iter_mut().map(Phone::upload).collect())
}

/// A request whose second case fails in the database stores nothing of the first either and
/// is not answered; sent again once the database works, it stores both, once.
fn a_request_that_fails_in_the_database_stores_nothing_and_its_retry_stores_everything_once(backend: Backend) {
    let world = world(backend);
    let sato = staff(&world, Role::Counsellor);
    let mut phones: Vec<Phone> = (0..2)
        .map(|_| {
            let mut phone = Phone { who: sato.clone(), replica: open_case(&sato), since: vec![] };
            visit(&mut phone.replica, 8, "初回訪問");
            phone.sync(&world);
            phone
        })
        .collect();
    let failing = phones[1].replica.case_id().unwrap();
    // The database refuses any change stored for the second case.
    let trigger = match backend {
        Backend::Sqlite => format!(
            "CREATE TRIGGER refuse BEFORE INSERT ON changes WHEN NEW.case_id = '{failing}'
             BEGIN SELECT RAISE(ABORT, 'refused for the test'); END;"
        ),
        Backend::Postgres => format!(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN IF NEW.case_id = '{failing}' THEN RAISE EXCEPTION 'refused for the test'; END IF; RETURN NEW; END $$;
             CREATE TRIGGER refuse BEFORE INSERT ON changes FOR EACH ROW EXECUTE FUNCTION refuse();"
        ),
    };
    let execute = |sql: &str| world.database.write(|c| c.batch_execute(sql).map_err(StoreError::from)).unwrap();
    execute(&trigger);
    for phone in &mut phones {
        visit(&mut phone.replica, 10, "二回目");
    }
    let responses_before = responses_numbered(&world, &sato);
    assert!(world.engine.sync(&sato, every_case(&mut phones)).is_err(), "the request fails");
    for phone in &phones {
        assert_eq!(activity_rows(&world, &phone.replica.case_id().unwrap()), 1, "nothing of it is stored");
        let view = tsunagi_sync::document::read_case(&stored_document(&world, &phone.replica.case_id().unwrap())).view;
        assert_eq!(view.unwrap().activities.len(), 1);
    }
    let responses_after = responses_numbered(&world, &sato);
    assert_eq!(responses_after, responses_before, "not even its response number");
    execute(match backend {
        Backend::Sqlite => "DROP TRIGGER refuse;",
        Backend::Postgres => "DROP TRIGGER refuse ON changes; DROP FUNCTION refuse();",
    });
    let response = world.engine.sync(&sato, every_case(&mut phones)).unwrap();
    assert!(response.documents.iter().all(|d| d.status == DocumentStatus::Ok));
    for phone in &mut phones {
        phone.absorb(&response);
        let case = phone.replica.case_id().unwrap();
        assert_eq!(activity_rows(&world, &case), 2, "stored once");
        let stored = stored_document(&world, &case);
        assert_eq!(sorted_heads(&stored), sorted_heads(phone.replica.doc_mut().document()));
    }
}

/// A phone that held both cases logs a visit on the duplicate after a supervisor merged it,
/// and syncs listing the survivor first. The visit is carried into the survivor within the
/// same request, before the survivor is answered: the phone receives it there, and the
/// survivor's stored heads are those of its document.
fn a_late_visit_on_a_merged_case_reaches_its_survivor_listed_in_the_same_request(backend: Backend) {
    let world = world(backend);
    let sato = staff(&world, Role::Counsellor);
    let supervisor = staff(&world, Role::Supervisor);
    let mut survivor = Phone { who: sato.clone(), replica: open_case(&sato), since: vec![] };
    let mut duplicate = Phone { who: sato.clone(), replica: open_case(&sato), since: vec![] };
    visit(&mut survivor.replica, 8, "訪問");
    visit(&mut duplicate.replica, 9, "同じ世帯への訪問");
    survivor.sync(&world);
    duplicate.sync(&world);
    let (s, d) = (survivor.replica.case_id().unwrap(), duplicate.replica.case_id().unwrap());
    world.engine.merge_cases(&supervisor, &s, &d).unwrap();
    let late = visit(&mut duplicate.replica, 15, "統合後の訪問");
    let request = SyncRequest::new(None, vec![survivor.upload(), duplicate.upload()]);
    let response = world.engine.sync(&sato, request).unwrap();
    assert!(response.purge.iter().any(|p| p.case_id == d && p.reason == PurgeReason::Merged));
    let answer = response.documents.iter().find(|r| r.case_id == s).unwrap();
    assert_eq!(answer.status, DocumentStatus::Ok);
    survivor.absorb(&SyncResponse { documents: vec![answer.clone()], ..SyncResponse::new() });
    let stored = stored_document(&world, &s);
    assert!(tsunagi_sync::document::read_case(&stored).view.unwrap().activities.contains_key(&late));
    assert!(survivor.replica.view().unwrap().activities.contains_key(&late), "the phone has it on the survivor");
    assert_eq!(sorted_heads(&stored), sorted_heads(survivor.replica.doc_mut().document()));
    let mut conn = world.database.conn().unwrap();
    let row = documents::find(&mut conn, &s).unwrap().unwrap();
    let mut heads = documents::decode_heads(&row.heads).unwrap();
    heads.sort();
    assert_eq!(heads, sorted_heads(&stored), "the row's heads are the document's");
    drop(conn);
    // Nothing new: the next sync of the survivor sends nothing.
    let again = survivor.sync(&world);
    assert!(again.documents[0].changes.is_empty());
}

/// The snapshot stored for `case`.
fn stored_snapshot(world: &World, case: &CaseId) -> Vec<u8> {
    let mut conn = world.database.conn().unwrap();
    schema::documents::table.find(case.to_string()).select(schema::documents::snapshot).first(&mut conn).unwrap()
}

fn set_snapshot(world: &World, case: &CaseId, snapshot: &[u8]) {
    let mut conn = world.database.conn().unwrap();
    diesel::update(schema::documents::table.find(case.to_string()))
        .set(schema::documents::snapshot.eq(snapshot))
        .execute(&mut conn)
        .unwrap();
}

/// One stored case is damaged so that it no longer loads. A request listing it and another
/// case is answered: the damaged case `unavailable`, with nothing of its upload stored, and
/// the other `ok`; a colleague newly assigned both receives the other whole. Once the case
/// is repaired, the same phone's next request stores the visit it kept.
fn a_stored_case_that_does_not_load_is_answered_unavailable_and_the_others_go_on(backend: Backend) {
    let world = world(backend);
    // No document kept loaded: every request reads the case from the database.
    let engine = SyncEngine::new(world.database.clone()).with_document_cache(0);
    let sato = staff(&world, Role::Counsellor);
    let ito = staff(&world, Role::Counsellor);
    let mut phones: Vec<Phone> = (0..2)
        .map(|_| {
            let mut phone = Phone { who: sato.clone(), replica: open_case(&sato), since: vec![] };
            visit(&mut phone.replica, 8, "初回訪問");
            phone.sync(&world);
            phone
        })
        .collect();
    let (damaged, sound) = (phones[0].replica.case_id().unwrap(), phones[1].replica.case_id().unwrap());
    for case in [&damaged, &sound] {
        world.engine.assign(case, &ito.staff, Assignment::Other, None).unwrap();
    }
    let snapshot = stored_snapshot(&world, &damaged);
    set_snapshot(&world, &damaged, b"not an automerge document");
    for phone in &mut phones {
        visit(&mut phone.replica, 10, "二回目");
    }

    // A client of protocol version 1, which has no `unavailable`, is answered an error.
    let mut version_1 = every_case(&mut phones);
    version_1.protocol = 1;
    assert!(matches!(engine.sync(&sato, version_1), Err(StoreError::Corrupt(_))));
    let response = engine.sync(&sato, every_case(&mut phones)).unwrap();
    assert_eq!(response.protocol, tsunagi_sync::wire::PROTOCOL_VERSION);
    let status = |response: &SyncResponse, case| response.documents.iter().find(|d| d.case_id == case).unwrap().status;
    assert_eq!(status(&response, damaged), DocumentStatus::Unavailable);
    assert_eq!(status(&response, sound), DocumentStatus::Ok);
    let answer = response.documents.iter().find(|d| d.case_id == damaged).unwrap();
    assert!(answer.heads.is_empty() && answer.changes.is_empty(), "nothing of the case is sent");
    for phone in &mut phones {
        phone.absorb(&response);
    }
    assert_eq!(activity_rows(&world, &damaged), 1, "nothing of the damaged case's upload is stored");
    assert_eq!(activity_rows(&world, &sound), 2, "the other case's visit is stored");
    assert!(phones[0].upload().changes.len() == 1, "the phone still holds its visit to send");

    // The colleague's first sync brings the case that loads, and the answer still comes.
    let first = engine.sync(&ito, SyncRequest::new(None, vec![])).unwrap();
    let assigned: Vec<CaseId> = first.assigned.iter().map(|a| a.case_id).collect();
    assert_eq!(assigned, vec![sound]);

    // Repaired, the case takes the visit the phone kept, once.
    set_snapshot(&world, &damaged, &snapshot);
    let response = engine.sync(&sato, every_case(&mut phones)).unwrap();
    assert!(response.documents.iter().all(|d| d.status == DocumentStatus::Ok));
    phones[0].absorb(&response);
    assert_eq!(activity_rows(&world, &damaged), 2, "the kept visit is stored");
    assert_eq!(sorted_heads(&stored_document(&world, &damaged)), sorted_heads(phones[0].replica.doc_mut().document()));
    let again = engine.sync(&ito, SyncRequest::new(None, vec![])).unwrap();
    assert!(again.assigned.iter().any(|a| a.case_id == damaged), "and reaches the colleague whole");
}
