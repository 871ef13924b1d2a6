//! Validation, rule by rule: each test tells one story of a device uploading a change, shows
//! that the forbidden version is refused with the right code at the right path, and that the
//! allowed version of the same thing is accepted (so no rule is broader than it should be).
//!
//! Forbidden changes are forged with the raw Automerge API on a replica's document, the way a
//! buggy or hostile client could write them; the server's side is [`apply_and_validate`] on
//! the raw change bytes, exactly as a sync request delivers them.

use std::collections::BTreeSet;

use automerge::transaction::Transactable;
use automerge::{ActorId, AutoCommit, Automerge, ChangeHash, ObjId, ObjType, ReadDoc, Value, ROOT};
use chrono::{DateTime, FixedOffset, NaiveDate, TimeZone};

use super::*;
use crate::actor::random_device_actor;
use crate::document::{ActivityDetails, CaseView, Limits};
use crate::domain::{
    CaseStatus, ConcernTag, ConsentMethod, ConsentState, ConsultationMode, ConsultationTopic, ContactChannel,
    ContactOutcome, LetterItem, LetterPlace, ObservedChange, Place, PlanVerdict, Relation, SexKind, VisitOutcome,
};
use crate::ids::{ActivityId, DecisionId, EvaluationId, MunicipalityCode, PersonId, PlanActionId, PlanId, ReviewId};
use crate::ops::{
    CaseReplica, FormText, NewActivity, NewCase, NewDecision, NewEvaluation, NewPerson, NewPlan, NewPlanAction,
    PersonUpdate,
};

type Outcome = Result<CaseView, BatchError>;

// ---------------------------------------------------------------------------------------------
// The people, the case, and the server's side of an upload.
// ---------------------------------------------------------------------------------------------

fn jst(day: u32, hour: u32) -> DateTime<FixedOffset> {
    FixedOffset::east_opt(9 * 3600).unwrap().with_ymd_and_hms(2026, 11, day, hour, 0, 0).unwrap()
}

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

fn counsellor() -> Actor {
    Actor::counsellor(StaffId::new_random(), DeviceId::new_random())
}

fn supervisor() -> Actor {
    Actor::supervisor(StaffId::new_random(), DeviceId::new_random())
}

fn with_role(role: Role) -> Actor {
    Actor { staff: StaffId::new_random(), device: DeviceId::new_random(), role }
}

fn new_case() -> NewCase {
    let mut case = NewCase::new(MunicipalityCode::parse("122203").unwrap(), date(2026, 11, 2));
    let mut mother = NewPerson::new("山田 花子");
    mother.is_subject = true;
    mother.relation = Some(Relation::Subject);
    mother.concerns = vec![ConcernTag::Poverty];
    case.household.push(mother);
    let mut son = NewPerson::new("山田 太郎");
    son.relation = Some(Relation::Son);
    son.concerns = vec![ConcernTag::YoungCarer];
    case.household.push(son);
    case
}

/// A case counsellor Sato opened and has logged one visit in (she met the mother); Ito is
/// another counsellor, the chief a supervisor.
struct Case {
    sato: Actor,
    ito: Actor,
    chief: Actor,
    /// Sato's phone, in sync with the server.
    phone: CaseReplica,
    mother: PersonId,
    son: PersonId,
    /// Sato's visit.
    visit: ActivityId,
}

impl Case {
    fn new() -> Self {
        let sato = counsellor();
        let case = new_case();
        let (mother, son) = (case.household[0].id, case.household[1].id);
        let mut phone = CaseReplica::open(case, sato).unwrap();
        let visit = phone
            .log_activity(
                NewActivity::new(
                    jst(4, 10),
                    Place::Home,
                    ActivityDetails::Visit {
                        outcome: VisitOutcome::Met,
                        met_person_ids: [mother].into(),
                        letter_left: false,
                    },
                )
                .with_narrative("母と面談。生活費の相談あり。"),
            )
            .unwrap();
        Self { sato, ito: counsellor(), chief: supervisor(), phone, mother, son, visit }
    }

    /// Another device's replica of the case as the server has it now.
    fn replica_for(&mut self, actor: Actor) -> CaseReplica {
        CaseReplica::load(&self.phone.save(), actor).unwrap()
    }

    fn visit_path(&self) -> String {
        format!("/activities/{}", self.visit)
    }
}

/// The raw bytes of every change `doc` has after `heads`: what a sync request carries.
fn raw_changes(doc: &mut AutoCommit, heads: &[ChangeHash]) -> Vec<Vec<u8>> {
    doc.get_changes(heads).iter().map(|c| c.raw_bytes().to_vec()).collect()
}

/// Lets `edit` change `doc` (an operation, or raw writes, which are committed here), then
/// validates the new changes on the server's side as `acting`, against `doc` as it was before.
fn upload_doc(doc: &mut AutoCommit, acting: Acting, edit: impl FnOnce(&mut AutoCommit)) -> Outcome {
    let before = doc.document().clone();
    let heads = before.get_heads();
    edit(doc);
    doc.commit();
    let raw = raw_changes(doc, &heads);
    assert!(!raw.is_empty(), "the edit changed nothing");
    server_side(&before, &raw, &acting)
}

/// What the server answers when `replica`'s device uploads the change `edit` makes.
fn upload(replica: &mut CaseReplica, edit: impl FnOnce(&mut CaseReplica)) -> Outcome {
    let acting = Acting::Staff(*replica.actor());
    let before = replica.doc_mut().document().clone();
    let heads = before.get_heads();
    edit(replica);
    replica.doc_mut().commit();
    let raw = raw_changes(replica.doc_mut(), &heads);
    assert!(!raw.is_empty(), "the edit changed nothing");
    server_side(&before, &raw, &acting)
}

/// [`apply_and_validate`] on `before`; when `before` reads without issues (as a stored case
/// does), also [`apply_and_validate_from`] given its view, which must decide exactly alike.
fn server_side(before: &Automerge, raw: &[Vec<u8>], acting: &Acting) -> Outcome {
    let whole = apply_and_validate(before, raw, acting).map(|(_, view)| view);
    let earlier = crate::document::read_case(before);
    if earlier.issues.is_empty() && earlier.view.is_some() {
        let partial = apply_and_validate_from(before, earlier.view, raw, acting).map(|(_, view, _)| view);
        match (&whole, &partial) {
            (Ok(whole), Ok(partial)) => assert_eq!(whole, partial, "reading only what was written differs"),
            (Err(BatchError::Refused(whole)), Err(BatchError::Refused(partial))) => {
                let codes =
                    |v: &[Violation]| v.iter().map(|v| (v.code.as_str(), v.path.clone())).collect::<BTreeSet<_>>();
                assert_eq!(codes(whole), codes(partial), "reading only what was written refuses differently");
            }
            (Err(_), Err(_)) => {}
            _ => panic!("whole read {whole:?}, reading only what was written {partial:?}"),
        }
    }
    whole
}

/// Like [`upload`], for raw writes on the replica's document.
fn upload_raw(replica: &mut CaseReplica, edit: impl FnOnce(&mut AutoCommit)) -> Outcome {
    upload(replica, |r| edit(r.doc_mut()))
}

/// The object at a path of keys.
fn obj(doc: &AutoCommit, path: &[&str]) -> ObjId {
    let mut obj = ROOT;
    for key in path {
        obj = match doc.get(&obj, *key).unwrap() {
            Some((Value::Object(_), id)) => id,
            other => panic!("no object at {key} of {path:?}: {other:?}"),
        };
    }
    obj
}

/// An activity written field by field, as another client might; `kind` may be left out.
fn forge_activity(doc: &mut AutoCommit, key: &str, kind: Option<&str>, staff: StaffId, device: DeviceId) -> ObjId {
    let activities = obj(doc, &["activities"]);
    let a = doc.put_object(&activities, key, ObjType::Map).unwrap();
    if let Some(kind) = kind {
        doc.put(&a, "kind", kind).unwrap();
    }
    doc.put(&a, "started_at", "2026-11-04T10:00:00+09:00").unwrap();
    doc.put(&a, "recorded_by", staff.to_string()).unwrap();
    doc.put(&a, "device_id", device.to_string()).unwrap();
    doc.put(&a, "place", "phone").unwrap();
    doc.put_object(&a, "narrative", ObjType::Text).unwrap();
    doc.put_object(&a, "voided", ObjType::Map).unwrap();
    a
}

/// A complete, valid phone call, recorded in the name of `staff` from `device`.
fn forge_call(doc: &mut AutoCommit, key: &str, staff: StaffId, device: DeviceId) -> ObjId {
    let a = forge_activity(doc, key, Some("contact_attempt"), staff, device);
    doc.put(&a, "channel", "phone").unwrap();
    doc.put(&a, "outcome", "reached").unwrap();
    a
}

/// A visit with the given outcome (or none) that met `met`.
fn forge_visit(doc: &mut AutoCommit, key: &str, actor: &Actor, outcome: Option<&str>, met: &[String]) -> ObjId {
    let a = forge_activity(doc, key, Some("visit"), actor.staff, actor.device);
    if let Some(outcome) = outcome {
        doc.put(&a, "outcome", outcome).unwrap();
    }
    let set = doc.put_object(&a, "met_person_ids", ObjType::Map).unwrap();
    for person in met {
        doc.put(&set, person.as_str(), true).unwrap();
    }
    doc.put(&a, "letter_left", false).unwrap();
    a
}

fn forge_person(doc: &mut AutoCommit, key: &str, name: &str) -> ObjId {
    let household = obj(doc, &["household"]);
    let p = doc.put_object(&household, key, ObjType::Map).unwrap();
    doc.put(&p, "name", name).unwrap();
    doc.put(&p, "is_subject", false).unwrap();
    doc.put_object(&p, "concerns", ObjType::Map).unwrap();
    doc.put_object(&p, "note", ObjType::Text).unwrap();
    p
}

fn forge_review(doc: &mut AutoCommit, key: &str, activity: ActivityId, by: StaffId) {
    let reviews = obj(doc, &["reviews"]);
    let r = doc.put_object(&reviews, key, ObjType::Map).unwrap();
    doc.put(&r, "activity_id", activity.to_string()).unwrap();
    doc.put(&r, "by", by.to_string()).unwrap();
    doc.put(&r, "at", "2026-11-05T09:00:00+09:00").unwrap();
    let comment = doc.put_object(&r, "comment", ObjType::Text).unwrap();
    doc.splice_text(&comment, 0, 0, "確認しました").unwrap();
}

#[track_caller]
fn assert_accepted(outcome: Outcome) -> CaseView {
    match outcome {
        Ok(view) => view,
        Err(e) => panic!("expected the upload to be accepted, got {e:#?}"),
    }
}

/// Asserts the upload was refused with exactly these violations (code and path).
#[track_caller]
fn assert_refused(outcome: Outcome, expected: &[(ViolationCode, &str)]) {
    let violations = match outcome {
        Err(BatchError::Refused(violations)) => violations,
        Err(other) => panic!("expected a refusal with {expected:?}, got {other:#?}"),
        Ok(_) => panic!("expected a refusal with {expected:?}, but the upload was accepted"),
    };
    let got: BTreeSet<(&str, &str)> = violations.iter().map(|v| (v.code.as_str(), v.path.as_str())).collect();
    let want: BTreeSet<(&str, &str)> = expected.iter().map(|(code, path)| (code.as_str(), *path)).collect();
    assert_eq!(got, want, "violations: {violations:#?}");
}

fn one(code: ViolationCode, path: &str) -> [(ViolationCode, &str); 1] {
    [(code, path)]
}

// ---------------------------------------------------------------------------------------------
// Containers are created once.
// ---------------------------------------------------------------------------------------------

#[test]
fn a_container_is_never_recreated_at_an_existing_path() {
    let mut case = Case::new();
    let narrative_path = format!("{}/narrative", case.visit_path());

    // A buggy client "initialises" the activities map again: every activity would vanish.
    let mut phone = case.phone.clone();
    let outcome = upload_raw(&mut phone, |doc| {
        doc.put_object(ROOT, "activities", ObjType::Map).unwrap();
    });
    assert_refused(outcome, &one(ViolationCode::ContainerRecreated, "/activities"));

    // Sato replaces her own narrative with a new Text instead of editing it: a concurrent
    // amendment on another device would be lost.
    let visit = case.visit.to_string();
    let mut phone = case.phone.clone();
    let outcome = upload_raw(&mut phone, |doc| {
        let activity = obj(doc, &["activities", &visit]);
        let text = doc.put_object(&activity, "narrative", ObjType::Text).unwrap();
        doc.splice_text(&text, 0, 0, "書き直し").unwrap();
    });
    assert_refused(outcome, &one(ViolationCode::ContainerRecreated, &narrative_path));

    // Editing the narrative in place is how it is done.
    let visit = case.visit;
    let view =
        assert_accepted(upload(&mut case.phone, |r| r.amend_narrative(visit, "母と面談。家計の相談あり。").unwrap()));
    assert_eq!(view.activities[&visit].narrative, "母と面談。家計の相談あり。");
}

#[test]
fn two_phones_adding_the_same_new_entity_concurrently_are_refused_on_merge() {
    // A household member added on two phones under one id (a retried add restored onto a
    // second phone) makes two objects at one key: one would silently hide the other.
    let mut case = Case::new();
    let mut server = case.phone.doc_mut().document().clone();
    let mut ito_phone = case.replica_for(case.ito);
    let grandmother = PersonId::new_random().to_string();

    let heads = server.get_heads();
    forge_person(case.phone.doc_mut(), &grandmother, "山田 ウメ");
    case.phone.doc_mut().commit();
    forge_person(ito_phone.doc_mut(), &grandmother, "山田 梅");
    ito_phone.doc_mut().commit();
    let from_sato = raw_changes(case.phone.doc_mut(), &heads);
    let from_ito = raw_changes(ito_phone.doc_mut(), &heads);

    // Each alone is a fine new member.
    assert_accepted(apply_and_validate(&server, &from_ito, &Acting::Staff(case.ito)).map(|(_, v)| v));
    let (after_sato, _) = apply_and_validate(&server, &from_sato, &Acting::Staff(case.sato)).unwrap();
    server = after_sato;
    // Once Sato's is on the server, Ito's concurrent one is refused.
    let outcome = apply_and_validate(&server, &from_ito, &Acting::Staff(case.ito)).map(|(_, v)| v);
    assert_refused(outcome, &one(ViolationCode::ContainerRecreated, &format!("/household/{grandmother}")));
}

#[test]
fn two_phones_recreating_the_household_concurrently_are_refused() {
    // Two phones each load the case and (wrongly) create `household` anew; merged, Automerge
    // keeps two household maps at one key.
    let mut case = Case::new();
    let heads = case.phone.heads();
    let mut sato_phone = case.phone.clone();
    let mut ito_phone = case.replica_for(case.ito);
    for phone in [&mut sato_phone, &mut ito_phone] {
        phone.doc_mut().put_object(ROOT, "household", ObjType::Map).unwrap();
        phone.doc_mut().commit();
    }
    sato_phone.merge(&mut ito_phone).unwrap();
    let merged = sato_phone.doc_mut().document().clone();
    assert_eq!(merged.get_all(ROOT, "household").unwrap().len(), 2, "two concurrent household maps");
    let refused = validate_update(&merged, &heads, &Acting::Staff(case.sato)).unwrap_err();
    // One household hides the other: the one shown is empty, so Sato's visit now names a
    // mother the household no longer shows.
    let met_mother = format!("{}/met_person_ids/{}", case.visit_path(), case.mother);
    assert_refused(
        Err(BatchError::Refused(refused)),
        &[(ViolationCode::ContainerRecreated, "/household"), (ViolationCode::UnknownPerson, &met_mother)],
    );

    // The same two phones adding members into the one household merge fine.
    let mut sato_phone = case.phone.clone();
    let mut ito_phone = case.replica_for(case.ito);
    sato_phone.add_person(NewPerson::new("山田 ウメ")).unwrap();
    ito_phone.add_person(NewPerson::new("佐藤 一郎")).unwrap();
    sato_phone.merge(&mut ito_phone).unwrap();
    let merged = sato_phone.doc_mut().document().clone();
    let view = validate_update(&merged, &heads, &Acting::Staff(case.sato)).unwrap();
    assert_eq!(view.household.len(), 4);
}

// ---------------------------------------------------------------------------------------------
// Nothing is deleted.
// ---------------------------------------------------------------------------------------------

#[test]
fn an_activity_is_voided_never_deleted() {
    let mut case = Case::new();
    let visit = case.visit;
    let mut phone = case.phone.clone();
    let outcome = upload_raw(&mut phone, |doc| {
        let activities = obj(doc, &["activities"]);
        doc.delete(&activities, visit.to_string()).unwrap();
    });
    assert_refused(outcome, &one(ViolationCode::DeletedEntity, &case.visit_path()));

    let view = assert_accepted(upload(&mut case.phone, |r| {
        r.void_activity(visit, "別ケースの記録だった", jst(5, 9)).unwrap()
    }));
    assert_eq!(view.activities[&visit].voided.as_ref().unwrap().by, case.sato.staff);
}

#[test]
fn a_household_member_is_never_deleted() {
    let mut case = Case::new();
    let son = case.son;
    let mut phone = case.phone.clone();
    let outcome = upload_raw(&mut phone, |doc| {
        let household = obj(doc, &["household"]);
        doc.delete(&household, son.to_string()).unwrap();
    });
    assert_refused(outcome, &one(ViolationCode::DeletedEntity, &format!("/household/{son}")));

    // Removing a concern tag or clearing a field of the member is an ordinary amendment.
    assert_accepted(upload(&mut case.phone, |r| r.set_concern(son, ConcernTag::YoungCarer, false).unwrap()));
    assert_accepted(upload(&mut case.phone, |r| {
        r.amend_person(son, PersonUpdate { relation: Some(None), ..Default::default() }).unwrap()
    }));
}

// ---------------------------------------------------------------------------------------------
// Activities belong to whoever logged them.
// ---------------------------------------------------------------------------------------------

#[test]
fn a_counsellor_amends_only_activities_they_recorded() {
    let mut case = Case::new();
    let visit = case.visit.to_string();
    let visit_path = case.visit_path();
    let ito_phone = case.replica_for(case.ito);

    // Ito adds a line to Sato's narrative.
    let mut phone = ito_phone.clone();
    let outcome = upload_raw(&mut phone, |doc| {
        let text = obj(doc, &["activities", &visit, "narrative"]);
        doc.splice_text(&text, 0, 0, "【伊藤追記】").unwrap();
    });
    assert_refused(outcome, &one(ViolationCode::NotOwnActivity, &visit_path));

    // Ito changes the outcome of Sato's visit.
    let mut phone = ito_phone.clone();
    let outcome = upload_raw(&mut phone, |doc| {
        let activity = obj(doc, &["activities", &visit]);
        doc.put(&activity, "outcome", "refused").unwrap();
    });
    assert_refused(outcome, &one(ViolationCode::NotOwnActivity, &visit_path));

    // Ito schedules a follow-up on Sato's visit.
    let mut phone = ito_phone.clone();
    let outcome = upload_raw(&mut phone, |doc| {
        let activity = obj(doc, &["activities", &visit]);
        doc.put(&activity, "follow_up_on", "2026-11-20").unwrap();
    });
    assert_refused(outcome, &one(ViolationCode::NotOwnActivity, &visit_path));

    // Sato does the same three things to her own visit.
    let (id, mother) = (case.visit, case.mother);
    assert_accepted(upload(&mut case.phone, |r| r.insert_into_narrative(id, 0, "【追記】").unwrap()));
    assert_accepted(upload(&mut case.phone, |r| {
        r.set_visit_outcome(id, VisitOutcome::Met, &[mother, case.son]).unwrap()
    }));
    let view = assert_accepted(upload(&mut case.phone, |r| r.set_follow_up(id, Some(date(2026, 11, 20))).unwrap()));
    assert_eq!(view.activities[&id].follow_up_on, Some(date(2026, 11, 20)));
}

#[test]
fn a_new_activity_is_recorded_in_the_actors_own_name_from_their_own_device() {
    let mut case = Case::new();
    let ito = case.ito;
    let sato = case.sato;
    let mut ito_phone = case.replica_for(ito);

    // Ito logs a call in Sato's name.
    let call = ActivityId::new_random().to_string();
    let outcome = upload_raw(&mut ito_phone.clone(), |doc| {
        forge_call(doc, &call, sato.staff, ito.device);
    });
    assert_refused(outcome, &one(ViolationCode::AuthorMismatch, &format!("/activities/{call}")));

    // Ito logs a call in his own name but claims Sato's phone made it.
    let outcome = upload_raw(&mut ito_phone.clone(), |doc| {
        forge_call(doc, &call, ito.staff, sato.device);
    });
    assert_refused(outcome, &one(ViolationCode::AuthorMismatch, &format!("/activities/{call}")));

    // His own name, his own phone.
    let view = assert_accepted(upload_raw(&mut ito_phone, |doc| {
        forge_call(doc, &call, ito.staff, ito.device);
    }));
    assert_eq!(view.activities[&call.parse().unwrap()].recorded_by, ito.staff);
}

// ---------------------------------------------------------------------------------------------
// The case number is the server's.
// ---------------------------------------------------------------------------------------------

#[test]
fn only_the_server_assigns_the_case_number_and_only_once() {
    let mut case = Case::new();

    // Sato's phone makes up a case number.
    let outcome = upload_raw(&mut case.phone.clone(), |doc| {
        doc.put(ROOT, "case_number", "2026-0001").unwrap();
    });
    assert_refused(outcome, &one(ViolationCode::ServerOnlyField, "/case_number"));

    // The server assigns it on first sync, with its own actor.
    let mut server = AutoCommit::load(&case.phone.save()).unwrap().with_actor(ActorId::random());
    let view = assert_accepted(upload_doc(&mut server, Acting::Server, |doc| {
        doc.put(ROOT, "case_number", "2026-0001").unwrap();
    }));
    assert_eq!(view.case_number.map(|n| n.to_string()).as_deref(), Some("2026-0001"));

    // Once assigned it never changes, not even by the server.
    let outcome = upload_doc(&mut server.clone(), Acting::Server, |doc| {
        doc.put(ROOT, "case_number", "2026-0002").unwrap();
    });
    assert_refused(outcome, &one(ViolationCode::ImmutableField, "/case_number"));
}

#[test]
fn the_servers_own_changes_write_only_the_case_number_and_assignments() {
    let mut case = Case::new();
    let mut server = AutoCommit::load(&case.phone.save()).unwrap().with_actor(ActorId::random());
    let outcome = upload_doc(&mut server.clone(), Acting::Server, |doc| {
        doc.put(ROOT, "status", "closed").unwrap();
    });
    assert_refused(outcome, &one(ViolationCode::ReadOnlyRole, "/status"));

    assert_accepted(upload_doc(&mut server.clone(), Acting::Server, |doc| {
        let assignees = obj(doc, &["assignees"]);
        doc.put(&assignees, "primary", StaffId::new_random().to_string()).unwrap();
    }));
    assert_accepted(upload_doc(&mut server, Acting::Server, |doc| {
        doc.put(ROOT, "case_number", "2026-0042").unwrap();
    }));
}

// ---------------------------------------------------------------------------------------------
// Supervisors review and assign.
// ---------------------------------------------------------------------------------------------

#[test]
fn only_supervisors_review_activities_and_in_their_own_name() {
    let mut case = Case::new();
    let visit = case.visit;
    let review = ReviewId::new_random().to_string();
    let review_path = format!("/reviews/{review}");

    // Sato reviews her own visit.
    let sato = case.sato;
    let outcome = upload_raw(&mut case.phone.clone(), |doc| forge_review(doc, &review, visit, sato.staff));
    assert_refused(outcome, &one(ViolationCode::SupervisorOnly, &review_path));

    // The chief writes a review signed by another supervisor.
    let mut tablet = case.replica_for(case.chief);
    let deputy = StaffId::new_random();
    let outcome = upload_raw(&mut tablet.clone(), |doc| forge_review(doc, &review, visit, deputy));
    assert_refused(outcome, &one(ViolationCode::AuthorMismatch, &review_path));

    // The chief reviews in her own name, by hand or through the operation.
    let chief = case.chief;
    assert_accepted(upload_raw(&mut tablet.clone(), |doc| forge_review(doc, &review, visit, chief.staff)));
    let view = assert_accepted(upload(&mut tablet, |r| {
        r.add_review(visit, "次回は同行を検討", jst(5, 9)).unwrap();
    }));
    assert_eq!(view.reviews_of(&visit)[0].by, chief.staff);
}

#[test]
fn a_review_s_heads_are_changes_of_the_case_and_fixed_once_written() {
    let mut case = Case::new();
    let visit = case.visit;
    let mut tablet = case.replica_for(case.chief);
    let chief = case.chief;
    let review = ReviewId::new_random().to_string();
    let heads_path = format!("/reviews/{review}/heads");
    let with_heads = |heads: String| {
        let review = review.clone();
        move |doc: &mut AutoCommit| {
            forge_review(doc, &review, visit, chief.staff);
            let r = obj(doc, &["reviews", &review]);
            doc.put(&r, "heads", heads).unwrap();
        }
    };

    // Heads naming a change the server does not have: the review would point at a version
    // of the case nobody can show.
    let unknown = crate::document::format_heads(&[ChangeHash([7; 32])]);
    let outcome = upload_raw(&mut tablet.clone(), with_heads(unknown));
    assert_refused(outcome, &one(ViolationCode::Inconsistent, &heads_path));
    // Not change hashes at all.
    let outcome = upload_raw(&mut tablet.clone(), with_heads("HEAD".to_owned()));
    assert_refused(outcome, &one(ViolationCode::InvalidId, &heads_path));
    // The heads the tablet has: accepted (and a review without heads stays valid, above).
    let mut seen = tablet.heads();
    seen.sort();
    let view = assert_accepted(upload_raw(&mut tablet, with_heads(crate::document::format_heads(&seen))));
    assert_eq!(view.reviews.values().next().unwrap().heads, seen);

    // Once written, they are fixed, even for the review's author.
    let mut later = tablet.heads();
    later.sort();
    let outcome = upload_raw(&mut tablet.clone(), |doc| {
        let r = obj(doc, &["reviews", &review]);
        doc.put(&r, "heads", crate::document::format_heads(&later)).unwrap();
    });
    assert_refused(outcome, &one(ViolationCode::ImmutableField, &heads_path));

    // The operation records them itself, and they pass.
    let view = assert_accepted(upload(&mut tablet, |r| {
        r.add_review(visit, "", jst(6, 9)).unwrap();
    }));
    assert_eq!(view.reviews.values().filter(|r| r.heads == later).count(), 1);
}

#[test]
fn only_supervisors_change_the_primary_assignee() {
    let mut case = Case::new();
    let ito = case.ito;
    let mut ito_phone = case.replica_for(ito);

    // Ito takes the case over.
    let outcome = upload_raw(&mut ito_phone.clone(), |doc| {
        let assignees = obj(doc, &["assignees"]);
        doc.put(&assignees, "primary", ito.staff.to_string()).unwrap();
    });
    assert_refused(outcome, &one(ViolationCode::SupervisorOnly, "/assignees/primary"));

    // Ito adds himself as another assignee.
    let outcome = upload_raw(&mut ito_phone, |doc| {
        let others = obj(doc, &["assignees", "others"]);
        doc.put(&others, ito.staff.to_string(), true).unwrap();
    });
    assert_refused(outcome, &one(ViolationCode::SupervisorOnly, &format!("/assignees/others/{}", ito.staff)));

    // The chief reassigns it to him.
    let mut tablet = case.replica_for(case.chief);
    let view = assert_accepted(upload(&mut tablet, |r| r.set_primary_assignee(ito.staff).unwrap()));
    assert_eq!(view.assignees.primary, Some(ito.staff));
}

/// A write the diff does not show is judged all the same: two supervisors set the primary
/// assignee at once (a conflict), and a counsellor who saw neither sets it too, with a value
/// that loses to both. Nothing visible changes, no patch names the field, and yet the upload
/// writes it (a third value of the conflict, which a supervisor settling it could pick).
#[test]
fn a_write_hidden_by_a_conflict_is_checked_like_any_other() {
    let mut case = Case::new();
    let ito = case.ito;
    let mut ito_phone = case.replica_for(ito);
    let mut server = case.replica_for(case.chief);
    let mut other_tablet = case.replica_for(supervisor());
    // Each supervisor writes the area first, so that the primary assignee's value carries a
    // later counter than Ito's and his loses to both.
    for (tablet, staff) in [(&mut server, StaffId::new_random()), (&mut other_tablet, StaffId::new_random())] {
        tablet.set_area("北部").unwrap();
        tablet.set_primary_assignee(staff).unwrap();
    }
    let theirs = other_tablet.doc_mut().get_changes(&[]);
    server.apply_changes(theirs).unwrap();
    server.doc_mut().commit();
    let before = server.doc_mut().document().clone();
    let stored = crate::document::read_case(&before).view.unwrap();
    let conflict = stored.conflicts.iter().find(|c| c.path == "/assignees/primary").expect("a conflict");
    assert_eq!(conflict.values.len(), 2);

    let heads = ito_phone.doc_mut().get_heads();
    let assignees = obj(ito_phone.doc(), &["assignees"]);
    ito_phone.doc_mut().put(&assignees, "primary", ito.staff.to_string()).unwrap();
    ito_phone.doc_mut().commit();
    let raw = raw_changes(ito_phone.doc_mut(), &heads);
    let mut merged = before.clone();
    merged.apply_changes(raw.iter().map(|r| automerge::Change::from_bytes(r.clone()).unwrap())).unwrap();
    assert!(merged.diff(&before.get_heads(), &merged.get_heads()).is_empty(), "the write shows in no patch");

    let outcome = server_side(&before, &raw, &Acting::Staff(ito));
    assert_refused(outcome, &one(ViolationCode::SupervisorOnly, "/assignees/primary"));
}

/// The first upload of a case Sato's phone opens and, in the same batch, assigns to `primary`.
fn first_upload_assigning(sato: Actor, primary: StaffId) -> Outcome {
    let mut phone = CaseReplica::open(new_case(), sato).unwrap();
    let assignees = obj(phone.doc(), &["assignees"]);
    phone.doc_mut().put(&assignees, "primary", primary.to_string()).unwrap();
    phone.doc_mut().commit();
    let raw = raw_changes(phone.doc_mut(), &[]);
    apply_and_validate(&Automerge::new(), &raw, &Acting::Staff(sato)).map(|(_, v)| v)
}

#[test]
fn a_counsellor_opening_a_case_assigns_it_to_themselves_only() {
    let sato = counsellor();
    let ito = counsellor();

    // Sato's phone opens a case and names Ito primary in the same first upload: the refusal
    // concerns the primary assignee, not the (empty, innocent) other assignees.
    let outcome = first_upload_assigning(sato, ito.staff);
    assert_refused(outcome, &one(ViolationCode::SupervisorOnly, "/assignees/primary"));

    // Opening it as her own is fine.
    let view = assert_accepted(first_upload_assigning(sato, sato.staff));
    assert_eq!(view.assignees.primary, Some(sato.staff));
}

#[test]
fn a_supervisor_opening_a_case_assigns_it_to_anyone() {
    let sato = counsellor();
    let ito = counsellor();

    // A counsellor doing so is refused (the exact report is checked by the test above).
    match first_upload_assigning(sato, ito.staff) {
        Err(BatchError::Refused(violations)) => assert!(
            violations.iter().any(|v| v.code == ViolationCode::SupervisorOnly && v.path == "/assignees/primary"),
            "{violations:#?}"
        ),
        other => panic!("expected a refusal, got {other:#?}"),
    }

    // ...and naming herself is fine.
    let view = assert_accepted(first_upload_assigning(sato, sato.staff));
    assert_eq!(view.assignees.primary, Some(sato.staff));

    // A supervisor opening a case may assign it to whoever.
    let chief = supervisor();
    let mut tablet = CaseReplica::open(new_case(), chief).unwrap();
    tablet.set_primary_assignee(ito.staff).unwrap();
    tablet.set_other_assignee(sato.staff, true).unwrap();
    let raw = raw_changes(tablet.doc_mut(), &[]);
    let view = apply_and_validate(&Automerge::new(), &raw, &Acting::Staff(chief)).unwrap().1;
    assert_eq!(view.assignees.primary, Some(ito.staff));
}

// ---------------------------------------------------------------------------------------------
// Read-only roles.
// ---------------------------------------------------------------------------------------------

#[test]
fn meeting_tablets_and_administrators_write_nothing() {
    let mut case = Case::new();
    for role in [Role::MeetingTablet, Role::Administrator] {
        let mut device = case.replica_for(with_role(role));
        let outcome = upload_raw(&mut device.clone(), |doc| {
            doc.put(ROOT, "status", "closed").unwrap();
        });
        assert_refused(outcome, &one(ViolationCode::ReadOnlyRole, "/"));

        let outcome = upload_raw(&mut device.clone(), |doc| {
            let text = obj(doc, &["household", &case.mother.to_string(), "note"]);
            doc.splice_text(&text, 0, 0, "会議メモ").unwrap();
        });
        assert_refused(outcome, &one(ViolationCode::ReadOnlyRole, "/"));

        // Syncing without writing (an empty batch) is what these devices do, and it is fine.
        let before = device.doc_mut().document().clone();
        let (_, view) = apply_and_validate(&before, &[], &Acting::Staff(*device.actor())).unwrap();
        assert_eq!(view.activities.len(), 1);
    }
}

// ---------------------------------------------------------------------------------------------
// Schema of the result.
// ---------------------------------------------------------------------------------------------

#[test]
fn enum_values_come_from_their_closed_lists() {
    let mut case = Case::new();
    let outcome = upload_raw(&mut case.phone.clone(), |doc| {
        doc.put(ROOT, "status", "on_holiday").unwrap();
    });
    assert_refused(outcome, &one(ViolationCode::InvalidEnum, "/status"));

    let view = assert_accepted(upload(&mut case.phone, |r| r.set_status(CaseStatus::Suspended).unwrap()));
    assert_eq!(view.status, CaseStatus::Suspended);
}

#[test]
fn dates_are_real_dates_and_instants_carry_an_offset() {
    // A phone opens a case dated 30 February.
    let sato = counsellor();
    let mut phone = CaseReplica::open(new_case(), sato).unwrap();
    phone.doc_mut().put(ROOT, "opened_on", "2026-02-30").unwrap();
    phone.doc_mut().commit();
    let raw = raw_changes(phone.doc_mut(), &[]);
    let outcome = apply_and_validate(&Automerge::new(), &raw, &Acting::Staff(sato)).map(|(_, v)| v);
    assert_refused(outcome, &one(ViolationCode::InvalidDate, "/opened_on"));

    let mut case = Case::new();
    let visit = case.visit.to_string();
    // A follow-up on 30 February.
    let outcome = upload_raw(&mut case.phone.clone(), |doc| {
        let activity = obj(doc, &["activities", &visit]);
        doc.put(&activity, "follow_up_on", "2026-02-30").unwrap();
    });
    assert_refused(outcome, &one(ViolationCode::InvalidDate, &format!("{}/follow_up_on", case.visit_path())));

    // A call whose start has no offset: which time zone?
    let sato = case.sato;
    let call = ActivityId::new_random().to_string();
    let outcome = upload_raw(&mut case.phone.clone(), |doc| {
        let a = forge_call(doc, &call, sato.staff, sato.device);
        doc.put(&a, "started_at", "2026-11-04T10:00:00").unwrap();
    });
    assert_refused(outcome, &one(ViolationCode::InvalidDate, &format!("/activities/{call}/started_at")));

    // The same with real values.
    assert_accepted(upload_raw(&mut case.phone, |doc| {
        let activity = obj(doc, &["activities", &visit]);
        doc.put(&activity, "follow_up_on", "2026-02-28").unwrap();
        let a = forge_call(doc, &call, sato.staff, sato.device);
        doc.put(&a, "started_at", "2026-11-04T10:00:00+09:00").unwrap();
    }));
}

#[test]
fn entities_are_keyed_by_canonical_ids() {
    let mut case = Case::new();
    let sato = case.sato;
    let outcome = upload_raw(&mut case.phone.clone(), |doc| {
        forge_call(doc, "call-1", sato.staff, sato.device);
    });
    assert_refused(outcome, &one(ViolationCode::InvalidId, "/activities/call-1"));

    // An upper-case UUID is a second spelling of one id: refused too.
    let id = ActivityId::new_random().to_string();
    let upper = id.to_uppercase();
    let outcome = upload_raw(&mut case.phone.clone(), |doc| {
        forge_call(doc, &upper, sato.staff, sato.device);
    });
    assert_refused(outcome, &one(ViolationCode::InvalidId, &format!("/activities/{upper}")));

    assert_accepted(upload_raw(&mut case.phone, |doc| {
        forge_call(doc, &id, sato.staff, sato.device);
    }));
}

#[test]
fn values_have_their_schema_type() {
    let mut case = Case::new();
    let outcome = upload_raw(&mut case.phone.clone(), |doc| {
        doc.put(ROOT, "status", 3).unwrap();
    });
    assert_refused(outcome, &one(ViolationCode::WrongType, "/status"));

    let mother = case.mother.to_string();
    let outcome = upload_raw(&mut case.phone.clone(), |doc| {
        let person = obj(doc, &["household", &mother]);
        doc.put(&person, "is_subject", "yes").unwrap();
    });
    assert_refused(outcome, &one(ViolationCode::WrongType, &format!("/household/{mother}/is_subject")));

    assert_accepted(upload_raw(&mut case.phone, |doc| {
        doc.put(ROOT, "status", "outreach").unwrap();
        let person = obj(doc, &["household", &mother]);
        doc.put(&person, "is_subject", true).unwrap();
    }));
}

#[test]
fn fields_unknown_to_the_schema_are_refused() {
    let mut case = Case::new();
    let outcome = upload_raw(&mut case.phone.clone(), |doc| {
        doc.put(ROOT, "nickname", "やまちゃん").unwrap();
    });
    assert_refused(outcome, &one(ViolationCode::UnknownField, "/nickname"));

    // `agency` belongs to accompaniments and coordinations, not to a visit.
    let visit = case.visit.to_string();
    let outcome = upload_raw(&mut case.phone.clone(), |doc| {
        let activity = obj(doc, &["activities", &visit]);
        doc.put(&activity, "agency", "school").unwrap();
    });
    assert_refused(outcome, &one(ViolationCode::UnknownField, &format!("{}/agency", case.visit_path())));

    // A known optional field of the visit's kind is fine.
    assert_accepted(upload_raw(&mut case.phone, |doc| {
        let activity = obj(doc, &["activities", &visit]);
        doc.put(&activity, "ended_at", "2026-11-04T11:00:00+09:00").unwrap();
    }));
}

#[test]
fn required_fields_are_present() {
    let mut case = Case::new();
    let sato = case.sato;

    // An activity without a kind.
    let id = ActivityId::new_random().to_string();
    let outcome = upload_raw(&mut case.phone.clone(), |doc| {
        forge_activity(doc, &id, None, sato.staff, sato.device);
    });
    assert_refused(outcome, &one(ViolationCode::MissingField, &format!("/activities/{id}/kind")));

    // A visit without an outcome.
    let outcome = upload_raw(&mut case.phone.clone(), |doc| {
        forge_visit(doc, &id, &sato, None, &[]);
    });
    assert_refused(outcome, &one(ViolationCode::MissingField, &format!("/activities/{id}/outcome")));

    assert_accepted(upload_raw(&mut case.phone, |doc| {
        forge_visit(doc, &id, &sato, Some("not_home"), &[]);
    }));
}

#[test]
fn a_visit_meets_only_members_of_the_household() {
    let mut case = Case::new();
    let sato = case.sato;
    let id = ActivityId::new_random().to_string();
    let stranger = PersonId::new_random().to_string();
    let outcome = upload_raw(&mut case.phone.clone(), |doc| {
        forge_visit(doc, &id, &sato, Some("met"), std::slice::from_ref(&stranger));
    });
    assert_refused(outcome, &one(ViolationCode::UnknownPerson, &format!("/activities/{id}/met_person_ids/{stranger}")));

    let son = case.son.to_string();
    let view = assert_accepted(upload_raw(&mut case.phone, |doc| {
        forge_visit(doc, &id, &sato, Some("met"), &[son]);
    }));
    assert_eq!(view.activities.len(), 2);
}

#[test]
fn a_visit_that_met_the_household_names_whom_it_met() {
    let mut case = Case::new();
    let sato = case.sato;
    let id = ActivityId::new_random().to_string();
    let outcome = upload_raw(&mut case.phone.clone(), |doc| {
        forge_visit(doc, &id, &sato, Some("met"), &[]);
    });
    assert_refused(outcome, &one(ViolationCode::Inconsistent, &format!("/activities/{id}/met_person_ids")));

    // Nobody home: nobody met.
    assert_accepted(upload_raw(&mut case.phone, |doc| {
        forge_visit(doc, &id, &sato, Some("not_home"), &[]);
    }));
}

/// The phone's operation refuses a "not home" visit that names people met, but the validator
/// accepts such a state on purpose: two devices of one counsellor may change a visit's outcome
/// and its met persons concurrently, and refusing the merged result would quarantine a
/// legitimate offline edit. Only "met with nobody named" is refused.
#[test]
fn a_visit_names_people_met_only_when_it_met_someone() {
    let mut case = Case::new();
    let sato = case.sato;
    let id = ActivityId::new_random().to_string();
    let son = case.son.to_string();
    let outcome = upload_raw(&mut case.phone.clone(), |doc| {
        forge_visit(doc, &id, &sato, Some("not_home"), std::slice::from_ref(&son));
    });
    assert_accepted(outcome);
    let outcome = upload_raw(&mut case.phone.clone(), |doc| {
        forge_visit(doc, &id, &sato, Some("met"), &[]);
    });
    assert_refused(outcome, &one(ViolationCode::Inconsistent, &format!("/activities/{id}/met_person_ids")));

    assert_accepted(upload_raw(&mut case.phone, |doc| {
        forge_visit(doc, &id, &sato, Some("met"), &[son]);
    }));
}

// ---------------------------------------------------------------------------------------------
// Sizes.
// ---------------------------------------------------------------------------------------------

#[test]
fn a_narrative_is_bounded() {
    let mut case = Case::new();
    let max = Limits::DEFAULT.long_text_chars;
    let visit = case.visit.to_string();
    let len = case.phone.view().unwrap().activities[&case.visit].narrative.chars().count();

    let outcome = upload_raw(&mut case.phone.clone(), |doc| {
        let text = obj(doc, &["activities", &visit, "narrative"]);
        doc.splice_text(&text, len, 0, &"あ".repeat(max + 1 - len)).unwrap();
    });
    assert_refused(outcome, &one(ViolationCode::TooLong, &format!("{}/narrative", case.visit_path())));

    let view = assert_accepted(upload_raw(&mut case.phone, |doc| {
        let text = obj(doc, &["activities", &visit, "narrative"]);
        doc.splice_text(&text, len, 0, &"あ".repeat(max - len)).unwrap();
    }));
    assert_eq!(view.activities[&case.visit].narrative.chars().count(), max);
}

#[test]
fn a_household_is_bounded() {
    let mut case = Case::new();
    let max = Limits::DEFAULT.household_members;
    for i in 2..max - 1 {
        case.phone.add_person(NewPerson::new(format!("同居人 {i}"))).unwrap();
    }
    // The last member allowed.
    let view = assert_accepted(upload(&mut case.phone, |r| {
        r.add_person(NewPerson::new("同居人 最後")).unwrap();
    }));
    assert_eq!(view.household.len(), max);

    // One more, written by hand since the operation refuses it.
    let outcome = upload_raw(&mut case.phone, |doc| {
        forge_person(doc, &PersonId::new_random().to_string(), "一人多い");
    });
    assert_refused(outcome, &one(ViolationCode::TooMany, "/household"));
}

// ---------------------------------------------------------------------------------------------
// What is fixed once written.
// ---------------------------------------------------------------------------------------------

#[test]
fn an_activitys_kind_and_author_are_fixed() {
    let mut case = Case::new();
    // A coordination can be turned into an accompaniment without breaking the schema: only
    // the change of kind itself is wrong.
    let coordination = case
        .phone
        .log_activity(NewActivity::new(
            jst(6, 14),
            Place::Agency,
            ActivityDetails::Coordination { agency: "school".into() },
        ))
        .unwrap();
    let id = coordination.to_string();
    let outcome = upload_raw(&mut case.phone.clone(), |doc| {
        let activity = obj(doc, &["activities", &id]);
        doc.put(&activity, "kind", "accompaniment").unwrap();
    });
    assert_refused(outcome, &one(ViolationCode::ImmutableField, &format!("/activities/{id}/kind")));

    // Sato hands her visit to Ito by rewriting its author.
    let visit = case.visit.to_string();
    let ito = case.ito;
    let outcome = upload_raw(&mut case.phone.clone(), |doc| {
        let activity = obj(doc, &["activities", &visit]);
        doc.put(&activity, "recorded_by", ito.staff.to_string()).unwrap();
    });
    assert_refused(outcome, &one(ViolationCode::ImmutableField, &format!("{}/recorded_by", case.visit_path())));

    // Other fields of her own activity she may change.
    assert_accepted(upload_raw(&mut case.phone, |doc| {
        let activity = obj(doc, &["activities", &id]);
        doc.put(&activity, "place", "office").unwrap();
        doc.put(&activity, "agency", "hello_work").unwrap();
    }));
}

#[test]
fn a_cases_municipality_is_fixed() {
    let mut case = Case::new();
    let outcome = upload_raw(&mut case.phone.clone(), |doc| {
        doc.put(ROOT, "municipality", "131016").unwrap();
    });
    assert_refused(outcome, &one(ViolationCode::ImmutableField, "/municipality"));

    let view = assert_accepted(upload(&mut case.phone, |r| r.set_area("north-3").unwrap()));
    assert_eq!(view.area.as_deref(), Some("north-3"));
}

#[test]
fn a_void_is_final() {
    let mut case = Case::new();
    let visit = case.visit;
    assert_accepted(upload(&mut case.phone, |r| r.void_activity(visit, "重複登録", jst(5, 9)).unwrap()));
    let id = visit.to_string();
    let voided_path = format!("{}/voided", case.visit_path());

    // Un-voiding: Sato clears the void.
    let outcome = upload_raw(&mut case.phone.clone(), |doc| {
        let voided = obj(doc, &["activities", &id, "voided"]);
        for key in ["by", "at", "reason"] {
            doc.delete(&voided, key).unwrap();
        }
    });
    assert_refused(outcome, &one(ViolationCode::ImmutableField, &voided_path));

    // Re-voiding: Sato changes the reason.
    let outcome = upload_raw(&mut case.phone.clone(), |doc| {
        let voided = obj(doc, &["activities", &id, "voided"]);
        doc.put(&voided, "reason", "入力ミス").unwrap();
    });
    assert_refused(outcome, &one(ViolationCode::ImmutableField, &voided_path));

    // Not even a supervisor re-voids.
    let chief = case.chief;
    let outcome = upload_raw(&mut case.replica_for(chief), |doc| {
        let voided = obj(doc, &["activities", &id, "voided"]);
        doc.put(&voided, "by", chief.staff.to_string()).unwrap();
        doc.put(&voided, "reason", "管理者判断").unwrap();
    });
    assert_refused(outcome, &one(ViolationCode::ImmutableField, &voided_path));

    // The voided activity stays, and a supervisor may still review it.
    let mut tablet = case.replica_for(chief);
    let view = assert_accepted(upload(&mut tablet, |r| {
        r.add_review(visit, "取消を確認", jst(6, 9)).unwrap();
    }));
    assert!(view.activities[&visit].voided.is_some());
}

#[test]
fn only_the_author_or_a_supervisor_voids_an_activity() {
    let mut case = Case::new();
    let id = case.visit.to_string();
    let voided_path = format!("{}/voided", case.visit_path());
    let void_as = |by: StaffId| {
        let id = id.clone();
        move |doc: &mut AutoCommit| {
            let voided = obj(doc, &["activities", &id, "voided"]);
            doc.put(&voided, "by", by.to_string()).unwrap();
            doc.put(&voided, "at", "2026-11-05T09:00:00+09:00").unwrap();
            doc.put(&voided, "reason", "重複登録").unwrap();
        }
    };

    // Ito voids Sato's visit.
    let ito = case.ito;
    let outcome = upload_raw(&mut case.replica_for(ito), void_as(ito.staff));
    assert_refused(outcome, &one(ViolationCode::NotOwnActivity, &voided_path));

    // Sato voids her own visit, but signs the void with the chief's name.
    let chief = case.chief;
    let outcome = upload_raw(&mut case.phone.clone(), void_as(chief.staff));
    assert_refused(outcome, &one(ViolationCode::AuthorMismatch, &voided_path));

    // Sato in her own name, or the chief in his.
    assert_accepted(upload_raw(&mut case.phone.clone(), void_as(case.sato.staff)));
    let visit = case.visit;
    let mut tablet = case.replica_for(chief);
    let view = assert_accepted(upload(&mut tablet, |r| r.void_activity(visit, "重複登録", jst(5, 9)).unwrap()));
    assert_eq!(view.activities[&visit].voided.as_ref().unwrap().by, chief.staff);
}

/// What an update wrote, as the server uses it to rewrite only the query rows that changed.
#[test]
fn an_update_says_which_activities_it_wrote_and_whether_anything_else() {
    let mut case = Case::new();
    let visit = case.visit;
    let touched = |replica: &mut CaseReplica, edit: &dyn Fn(&mut CaseReplica)| {
        let before = replica.doc_mut().document().get_heads();
        edit(replica);
        replica.doc_mut().commit();
        let after = replica.doc_mut().document().clone();
        validate_update_touched(&after, &before, &Acting::Staff(*replica.actor())).unwrap().1
    };
    // An amendment: that activity, nothing else.
    let t = touched(&mut case.phone, &|r| {
        r.amend_narrative(visit, "母と面談。生活費と家賃の相談あり。").unwrap();
    });
    assert_eq!(t, Touched { activities: [visit.to_string()].into(), other: false });
    // A new activity and a follow-up on another: those two, nothing else.
    let t = touched(&mut case.phone, &|r| {
        r.log_activity(NewActivity::new(
            jst(6, 10),
            Place::Phone,
            ActivityDetails::ContactAttempt { channel: ContactChannel::Phone, outcome: ContactOutcome::NoAnswer },
        ))
        .unwrap();
        r.set_follow_up(visit, Some(date(2026, 11, 20))).unwrap();
    });
    assert!(!t.other && t.activities.len() == 2 && t.activities.contains(&visit.to_string()), "{t:?}");
    // The status, or a household member: something else.
    let t = touched(&mut case.phone, &|r| r.set_status(CaseStatus::Outreach).unwrap());
    assert!(t.other && t.activities.is_empty(), "{t:?}");
    let mother = case.mother;
    let t = touched(&mut case.phone, &|r| r.amend_person_note(mother, "通院中断").unwrap());
    assert!(t.other, "{t:?}");
    // A new case: everything.
    let mut replica = CaseReplica::open(new_case(), case.sato).unwrap();
    let doc = replica.doc_mut().document().clone();
    assert!(validate_update_touched(&doc, &[], &Acting::Staff(case.sato)).unwrap().1.other);
}

/// Sato's phone and her tablet, both offline, give her visit different follow-up dates; the
/// merged case holds both. Only a supervisor settles it, and only with one of those values.
#[test]
fn a_supervisor_settles_a_conflict_on_an_activity_with_one_of_its_values() {
    let mut case = Case::new();
    let (id, key) = (case.visit, case.visit.to_string());
    let tablet_actor = Actor::counsellor(case.sato.staff, DeviceId::new_random());
    let mut tablet = case.replica_for(tablet_actor);
    assert_accepted(upload(&mut case.phone, |r| r.set_follow_up(id, Some(date(2026, 11, 20))).unwrap()));
    let view = assert_accepted(upload(&mut tablet, |r| r.set_follow_up(id, Some(date(2026, 11, 27))).unwrap()));
    let mut merged = case.phone.clone();
    merged.merge(&mut tablet).unwrap();
    let conflicts = crate::document::read_case(merged.doc_mut().document()).view.unwrap().conflicts;
    let path = format!("{}/follow_up_on", case.visit_path());
    assert!(conflicts.iter().any(|c| c.path == path && c.values.len() == 2), "{conflicts:?} {view:?}");
    let settle = |value: &'static str| {
        let key = key.clone();
        move |doc: &mut AutoCommit| {
            let activity = obj(doc, &["activities", &key]);
            doc.put(&activity, "follow_up_on", value).unwrap();
        }
    };

    // A counsellor, even another of Sato's colleagues, may not settle Sato's register.
    let ito = case.ito;
    let mut ito_phone = CaseReplica::load(&merged.clone().save(), ito).unwrap();
    let outcome = upload_raw(&mut ito_phone, settle("2026-11-20"));
    assert_refused(outcome, &one(ViolationCode::NotOwnActivity, &case.visit_path()));
    // The supervisor may not write a third value: that is amending, not settling.
    let chief = case.chief;
    let mut chief_tablet = CaseReplica::load(&merged.clone().save(), chief).unwrap();
    let outcome = upload_raw(&mut chief_tablet.clone(), settle("2026-12-01"));
    assert_refused(outcome, &one(ViolationCode::NotOwnActivity, &case.visit_path()));
    // Either value (the one Automerge shows, or the other): accepted, and the conflict is gone.
    let view = assert_accepted(upload_raw(&mut chief_tablet.clone(), settle("2026-11-20")));
    assert_eq!(view.activities[&id].follow_up_on, Some(date(2026, 11, 20)));
    assert!(view.conflicts.is_empty(), "{:?}", view.conflicts);
    let view = assert_accepted(upload_raw(&mut chief_tablet, settle("2026-11-27")));
    assert_eq!(view.activities[&id].follow_up_on, Some(date(2026, 11, 27)));
    assert!(view.conflicts.is_empty(), "{:?}", view.conflicts);
    // Once settled there is nothing left to settle: a second write is an amendment again.
    let outcome = upload_raw(&mut chief_tablet, settle("2026-11-20"));
    assert_refused(outcome, &one(ViolationCode::NotOwnActivity, &case.visit_path()));
}

/// Sato and the chief void the same visit concurrently; the chief settles whose void it is,
/// even choosing Sato's, although a void is otherwise final.
#[test]
fn a_supervisor_settles_two_concurrent_voids() {
    let mut case = Case::new();
    let (id, key) = (case.visit, case.visit.to_string());
    let chief = case.chief;
    let mut chief_tablet = case.replica_for(chief);
    assert_accepted(upload(&mut case.phone, |r| r.void_activity(id, "重複登録", jst(5, 9)).unwrap()));
    assert_accepted(upload(&mut chief_tablet, |r| r.void_activity(id, "別ケースの記録", jst(5, 10)).unwrap()));
    chief_tablet.merge(&mut case.phone).unwrap();
    let sato = case.sato.staff.to_string();
    let view = assert_accepted(upload_raw(&mut chief_tablet, |doc| {
        let voided = obj(doc, &["activities", &key, "voided"]);
        doc.put(&voided, "by", sato.as_str()).unwrap();
    }));
    assert_eq!(view.activities[&id].voided.as_ref().unwrap().by, case.sato.staff);
    assert!(!view.conflicts.iter().any(|c| c.path.ends_with("/voided/by")), "{:?}", view.conflicts);
    // Sato may not settle the chief's void her way.
    let mut phone = case.phone.clone();
    phone.merge(&mut chief_tablet).unwrap();
    let outcome = upload_raw(&mut phone, |doc| {
        let voided = obj(doc, &["activities", &key, "voided"]);
        doc.put(&voided, "reason", "重複登録").unwrap();
    });
    assert!(outcome.is_err(), "a counsellor does not settle a void: {outcome:?}");
}

// ---------------------------------------------------------------------------------------------
// Authorship and the batch itself.
// ---------------------------------------------------------------------------------------------

#[test]
fn changes_authored_by_another_actor_are_refused() {
    let mut case = Case::new();

    // Sato's phone writes with another device's actor id: history in someone else's name.
    let other_device = DeviceId::new_random();
    let mut phone = case.phone.clone();
    phone.doc_mut().set_actor(random_device_actor(&other_device));
    let outcome = upload(&mut phone, |r| r.set_status(CaseStatus::Outreach).unwrap());
    assert_refused(outcome, &one(ViolationCode::ForeignActor, "/"));

    // Or with a random actor id that is no device's at all.
    let mut phone = case.phone.clone();
    phone.doc_mut().set_actor(ActorId::random());
    let outcome = upload(&mut phone, |r| r.set_status(CaseStatus::Outreach).unwrap());
    assert_refused(outcome, &one(ViolationCode::ForeignActor, "/"));

    // A fresh actor id of her own device (say, after reinstalling the app) is hers.
    let mut phone = case.phone.clone();
    phone.doc_mut().set_actor(random_device_actor(&case.sato.device));
    assert_accepted(upload(&mut phone, |r| r.set_status(CaseStatus::Outreach).unwrap()));
    assert_accepted(upload(&mut case.phone, |r| r.set_status(CaseStatus::Outreach).unwrap()));
}

#[test]
fn corrupt_change_bytes_are_refused() {
    let mut case = Case::new();
    let before = case.phone.doc_mut().document().clone();
    let heads = before.get_heads();
    case.phone.set_status(CaseStatus::Outreach).unwrap();
    let good = raw_changes(case.phone.doc_mut(), &heads);
    let acting = Acting::Staff(case.sato);

    let garbage = b"not an automerge change".to_vec();
    assert!(matches!(apply_and_validate(&before, &[garbage], &acting), Err(BatchError::Corrupt { index: 0, .. })));

    let truncated = good[0][..good[0].len() - 5].to_vec();
    let batch = vec![good[0].clone(), truncated];
    assert!(matches!(apply_and_validate(&before, &batch, &acting), Err(BatchError::Corrupt { index: 1, .. })));

    // A flipped byte in the body no longer matches the change's checksum.
    let mut flipped = good[0].clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0xff;
    assert!(matches!(apply_and_validate(&before, &[flipped], &acting), Err(BatchError::Corrupt { index: 0, .. })));

    assert!(apply_and_validate(&before, &good, &acting).is_ok());
}

#[test]
fn a_batch_missing_its_dependencies_is_refused() {
    let mut case = Case::new();
    let before = case.phone.doc_mut().document().clone();
    let heads = before.get_heads();
    case.phone.set_status(CaseStatus::Outreach).unwrap();
    case.phone.set_area("north-3").unwrap();
    let changes = case.phone.changes_since(&heads);
    assert_eq!(changes.len(), 2);
    let acting = Acting::Staff(case.sato);

    // Only the second change arrives.
    let second = vec![changes[1].raw_bytes().to_vec()];
    match apply_and_validate(&before, &second, &acting) {
        Err(BatchError::MissingDependencies(missing)) => assert_eq!(missing, vec![changes[0].hash()]),
        other => panic!("expected missing dependencies, got {other:#?}"),
    }

    // Both, in order.
    let both: Vec<Vec<u8>> = changes.iter().map(|c| c.raw_bytes().to_vec()).collect();
    let (_, view) = apply_and_validate(&before, &both, &acting).unwrap();
    assert_eq!(view.area.as_deref(), Some("north-3"));
}

// ---------------------------------------------------------------------------------------------
// A case's first upload.
// ---------------------------------------------------------------------------------------------

#[test]
fn a_phones_first_upload_opens_the_case() {
    let sato = counsellor();
    let mut phone = CaseReplica::open(new_case(), sato).unwrap();
    let visit = phone
        .log_activity(NewActivity::new(
            jst(4, 10),
            Place::Home,
            ActivityDetails::Visit {
                outcome: VisitOutcome::NotHome,
                met_person_ids: Default::default(),
                letter_left: true,
            },
        ))
        .unwrap();
    // Offline until now: everything since the case was opened goes up at once.
    let raw = raw_changes(phone.doc_mut(), &[]);
    assert_eq!(raw.len(), 2);
    let (server, view) = apply_and_validate(&Automerge::new(), &raw, &Acting::Staff(sato)).unwrap();
    assert_eq!(server.get_heads(), phone.heads());
    assert_eq!(view.case_id, phone.case_id().unwrap());
    assert_eq!(view.activities[&visit].recorded_by, sato.staff);
    assert_eq!(view.household.len(), 2);
}

#[test]
fn a_document_that_is_not_a_case_is_refused() {
    let sato = counsellor();
    let acting = Acting::Staff(sato);

    // An empty document.
    let refused = validate_update(&Automerge::new(), &[], &acting).unwrap_err();
    let codes: Vec<(ViolationCode, &str)> = refused.iter().map(|v| (v.code, v.path.as_str())).collect();
    assert!(codes.contains(&(ViolationCode::NotACase, "/case_id")), "{refused:#?}");
    assert!(codes.contains(&(ViolationCode::NotACase, "/schema")), "{refused:#?}");

    // A first upload that writes a status into nothing.
    let mut doc = AutoCommit::new().with_actor(random_device_actor(&sato.device));
    let outcome = upload_doc(&mut doc, acting, |doc| {
        doc.put(ROOT, "status", "intake").unwrap();
    });
    match outcome {
        Err(BatchError::Refused(violations)) => {
            assert!(
                violations.iter().any(|v| v.code == ViolationCode::NotACase && v.path == "/case_id"),
                "{violations:#?}"
            )
        }
        other => panic!("expected a refusal, got {other:#?}"),
    }

    // A case opened without its id (by a supervisor's tablet: see the next test).
    assert_refused(first_upload_without_case_id(supervisor()), &one(ViolationCode::NotACase, "/case_id"));
}

/// The first upload of a case `actor` opens and then removes the id of.
fn first_upload_without_case_id(actor: Actor) -> Outcome {
    let mut phone = CaseReplica::open(new_case(), actor).unwrap();
    phone.doc_mut().delete(ROOT, "case_id").unwrap();
    phone.doc_mut().commit();
    let raw = raw_changes(phone.doc_mut(), &[]);
    apply_and_validate(&Automerge::new(), &raw, &Acting::Staff(actor)).map(|(_, v)| v)
}

#[test]
fn a_counsellors_case_opened_without_its_id_is_refused_only_as_not_a_case() {
    assert_refused(first_upload_without_case_id(counsellor()), &one(ViolationCode::NotACase, "/case_id"));
}

// ---------------------------------------------------------------------------------------------
// Everything the field operations do is accepted.
// ---------------------------------------------------------------------------------------------

/// The server's copy of a case, receiving uploads from replicas that are in sync with it.
struct Server(Automerge);

impl Server {
    /// Performs `op` on `replica`, uploads what it wrote and insists it is accepted.
    #[track_caller]
    fn accepts<T>(&mut self, replica: &mut CaseReplica, op: impl FnOnce(&mut CaseReplica) -> T) -> T {
        let since = self.0.get_heads();
        let out = op(replica);
        let raw = raw_changes(replica.doc_mut(), &since);
        assert_eq!(raw.len(), 1, "each operation makes one change");
        match apply_and_validate(&self.0, &raw, &Acting::Staff(*replica.actor())) {
            Ok((after, _)) => self.0 = after,
            Err(e) => panic!("the server refused an operation's change: {e:#?}"),
        }
        out
    }
}

#[test]
fn every_field_operation_is_accepted_for_an_authorised_actor() {
    let sato = counsellor();
    let chief = supervisor();
    let mut phone = CaseReplica::open(new_case(), sato).unwrap();
    let mut server = Server(Automerge::new());
    let raw = raw_changes(phone.doc_mut(), &[]);
    server.0 = apply_and_validate(&server.0, &raw, &Acting::Staff(sato)).unwrap().0;

    // The counsellor's day.
    let mother = *phone.view().unwrap().household.keys().next().unwrap();
    let grandfather = server.accepts(&mut phone, |r| {
        let mut p = NewPerson::new("山田 一郎");
        p.relation = Some(Relation::Grandfather);
        p.birth_date = Some(date(1948, 5, 3));
        r.add_person(p).unwrap()
    });
    server.accepts(&mut phone, |r| {
        let update = PersonUpdate {
            kana: Some(Some("やまだ いちろう".into())),
            sex: Some(Some(crate::document::Sex::Listed(SexKind::Male))),
            ..Default::default()
        };
        r.amend_person(grandfather, update).unwrap()
    });
    server.accepts(&mut phone, |r| r.set_concern(grandfather, ConcernTag::Dementia, true).unwrap());
    server.accepts(&mut phone, |r| r.set_concern(grandfather, ConcernTag::Dementia, false).unwrap());
    server.accepts(&mut phone, |r| r.set_other_concern(mother, Some("ペットの世話")).unwrap());
    server.accepts(&mut phone, |r| r.set_other_concern(mother, None).unwrap());
    server.accepts(&mut phone, |r| r.amend_person_note(mother, "昼間は在宅が多い").unwrap());
    server.accepts(&mut phone, |r| r.amend_person_note(mother, "平日の昼間は在宅が多い").unwrap());
    server.accepts(&mut phone, |r| {
        r.amend_person(grandfather, PersonUpdate { kana: Some(None), ..Default::default() }).unwrap()
    });

    let kinds = vec![
        ActivityDetails::Visit {
            outcome: VisitOutcome::NotHome,
            met_person_ids: Default::default(),
            letter_left: true,
        },
        ActivityDetails::LetterLeft {
            items: [LetterItem::Letter, LetterItem::Card].into(),
            left_at: LetterPlace::Mailbox,
            reply_received_on: None,
        },
        ActivityDetails::ContactAttempt { channel: ContactChannel::Phone, outcome: ContactOutcome::MessageLeft },
        ActivityDetails::Accompaniment {
            agency: "hello_work".into(),
            purpose: "求職登録".into(),
            outcome: "登録済".into(),
        },
        ActivityDetails::Information { information: "子ども食堂の案内".into(), interest: String::new() },
        ActivityDetails::Consultation {
            mode: ConsultationMode::Phone,
            topics: [ConsultationTopic::Finances, ConsultationTopic::Debt].into(),
        },
        ActivityDetails::Coordination { agency: "school".into() },
    ];
    let mut logged = Vec::new();
    for (i, details) in kinds.into_iter().enumerate() {
        let start = jst(4, 9 + i as u32);
        let activity = NewActivity::new(start, Place::Home, details)
            .ending_at(start + chrono::Duration::minutes(30))
            .with_narrative("経過記録")
            .with_follow_up(date(2026, 11, 20));
        logged.push(server.accepts(&mut phone, |r| r.log_activity(activity).unwrap()));
    }
    let (visit, letter, call) = (logged[0], logged[1], logged[2]);
    server.accepts(&mut phone, |r| r.amend_narrative(visit, "不在。玄関に手紙を残した。").unwrap());
    server.accepts(&mut phone, |r| r.insert_into_narrative(visit, 0, "【訂正】").unwrap());
    server.accepts(&mut phone, |r| r.set_follow_up(visit, Some(date(2026, 11, 11))).unwrap());
    server.accepts(&mut phone, |r| r.set_follow_up(call, None).unwrap());
    server.accepts(&mut phone, |r| r.set_visit_outcome(visit, VisitOutcome::Met, &[mother, grandfather]).unwrap());
    server.accepts(&mut phone, |r| r.set_visit_outcome(visit, VisitOutcome::MetOther, &[]).unwrap());
    server.accepts(&mut phone, |r| r.record_letter_reply(letter, date(2026, 11, 9)).unwrap());
    server.accepts(&mut phone, |r| r.void_activity(call, "別ケースの記録だった", jst(5, 9)).unwrap());
    server.accepts(&mut phone, |r| r.set_status(CaseStatus::Outreach).unwrap());
    server.accepts(&mut phone, |r| r.set_area("north-3").unwrap());
    server.accepts(&mut phone, |r| {
        r.record_consent(ConsentState::Obtained, date(2026, 11, 9), Some(ConsentMethod::Written)).unwrap()
    });
    server.accepts(&mut phone, |r| r.record_consent(ConsentState::Withdrawn, date(2026, 11, 10), None).unwrap());

    // The supervisor's review of it, on the office tablet.
    let mut tablet = CaseReplica::load(&server.0.save(), chief).unwrap();
    let review = server.accepts(&mut tablet, |r| r.add_review(visit, "次回は同行を検討", jst(6, 9)).unwrap());
    let ito = StaffId::new_random();
    server.accepts(&mut tablet, |r| r.set_other_assignee(ito, true).unwrap());
    server.accepts(&mut tablet, |r| r.set_primary_assignee(ito).unwrap());
    server.accepts(&mut tablet, |r| r.set_other_assignee(ito, false).unwrap());
    server.accepts(&mut tablet, |r| r.set_other_assignee(sato.staff, true).unwrap());
    server.accepts(&mut tablet, |r| r.void_activity(letter, "重複登録", jst(6, 10)).unwrap());
    server.accepts(&mut tablet, |r| r.set_status(CaseStatus::Supporting).unwrap());

    // The counsellor's phone catches up and keeps working.
    let news = tablet.changes_since(&phone.heads());
    phone.apply_changes(news).unwrap();
    assert_eq!(phone.heads(), server.0.get_heads());
    server.accepts(&mut phone, |r| r.amend_narrative(visit, "【訂正】不在。玄関に手紙を残した。同行を検討。").unwrap());

    let view = crate::document::read_case(&server.0).view.unwrap();
    assert_eq!(view.activities.len(), 7);
    assert_eq!(view.reviews_of(&visit)[0].id, review);
    assert_eq!(view.assignees.primary, Some(ito));
    assert_eq!(view.assignees.others, [sato.staff].into());
    assert_eq!(view.activities[&letter].voided.as_ref().unwrap().by, chief.staff);
    assert_eq!(view.activities[&call].voided.as_ref().unwrap().by, sato.staff);
    assert_eq!(view.consent.state, ConsentState::Withdrawn);
    assert!(view.conflicts.is_empty());
}

// ---------------------------------------------------------------------------------------------
// The three forms: plans (様式第1号), evaluations (様式第2号), meeting decisions (様式第2-2号).
// ---------------------------------------------------------------------------------------------

/// A complete plan of round 1 with one action row, written field by field in `author`'s name.
fn forge_plan(doc: &mut AutoCommit, key: &str, author: StaffId) -> ObjId {
    let plans = obj(doc, &["plans"]);
    let p = doc.put_object(&plans, key, ObjType::Map).unwrap();
    doc.put(&p, "round", 1).unwrap();
    doc.put(&p, "author", author.to_string()).unwrap();
    doc.put(&p, "drafted_on", "2026-11-10").unwrap();
    let issues = doc.put_object(&p, "issues", ObjType::Text).unwrap();
    doc.splice_text(&issues, 0, 0, "生活費が足りない").unwrap();
    doc.put_object(&p, "goals", ObjType::Text).unwrap();
    let actions = doc.put_object(&p, "actions", ObjType::Map).unwrap();
    let row = doc.put_object(&actions, PlanActionId::new_random().to_string(), ObjType::Map).unwrap();
    doc.put(&row, "who", "本人").unwrap();
    doc.put(&row, "what", "求職登録").unwrap();
    p
}

/// A complete evaluation of round 1, written field by field in `evaluator`'s name.
fn forge_evaluation(doc: &mut AutoCommit, key: &str, evaluator: StaffId) -> ObjId {
    let evaluations = obj(doc, &["evaluations"]);
    let e = doc.put_object(&evaluations, key, ObjType::Map).unwrap();
    doc.put(&e, "round", 1).unwrap();
    doc.put(&e, "evaluator", evaluator.to_string()).unwrap();
    doc.put(&e, "evaluated_on", "2026-11-20").unwrap();
    for text in ["goal_attainment", "situation", "staff_opinion"] {
        doc.put_object(&e, text, ObjType::Text).unwrap();
    }
    let changes = doc.put_object(&e, "observed_changes", ObjType::Map).unwrap();
    doc.put(&changes, "job_search", true).unwrap();
    doc.put(&e, "wish", "continue").unwrap();
    e
}

/// A complete decision recorded by `by`, referring the person on (or not) to `destinations`.
fn forge_decision(
    doc: &mut AutoCommit,
    key: &str,
    by: StaffId,
    verdict: &str,
    referred_on: bool,
    destinations: &[&str],
) -> ObjId {
    let decisions = obj(doc, &["decisions"]);
    let d = doc.put_object(&decisions, key, ObjType::Map).unwrap();
    doc.put(&d, "meeting_on", "2026-11-25").unwrap();
    doc.put(&d, "verdict", verdict).unwrap();
    doc.put(&d, "referred_on", referred_on).unwrap();
    doc.put(&d, "decided_on", "2026-11-25").unwrap();
    doc.put_object(&d, "notes", ObjType::Text).unwrap();
    let set = doc.put_object(&d, "referral_destinations", ObjType::Map).unwrap();
    for destination in destinations {
        doc.put(&set, *destination, true).unwrap();
    }
    doc.put_object(&d, "past_consultations", ObjType::Map).unwrap();
    doc.put_object(&d, "remarks", ObjType::Text).unwrap();
    doc.put(&d, "recorded_by", by.to_string()).unwrap();
    d
}

#[test]
fn closing_a_case_requires_a_meeting_decision_to_close() {
    let mut case = Case::new();
    let chief = case.chief;

    // Sato closes the case on her own.
    let outcome = upload_raw(&mut case.phone.clone(), |doc| {
        doc.put(ROOT, "status", "closed").unwrap();
    });
    assert_refused(outcome, &one(ViolationCode::ClosingWithoutDecision, "/status"));

    // A decision to re-plan does not close a case either.
    let mut tablet = case.replica_for(chief);
    let replan = DecisionId::new_random().to_string();
    let outcome = upload_raw(&mut tablet.clone(), |doc| {
        forge_decision(doc, &replan, chief.staff, "replan", false, &[]);
        doc.put(ROOT, "status", "closed").unwrap();
    });
    assert_refused(outcome, &one(ViolationCode::ClosingWithoutDecision, "/status"));

    // At the meeting the chief records the decision to close and closes the case in one go.
    let close = DecisionId::new_random().to_string();
    let view = assert_accepted(upload_raw(&mut tablet, |doc| {
        forge_decision(doc, &close, chief.staff, "close", false, &[]);
        doc.put(ROOT, "status", "closed").unwrap();
    }));
    assert_eq!(view.status, CaseStatus::Closed);

    // Once the decision is in the case, the counsellor may close it too (here: after the
    // case was reopened in between).
    let mut phone = case.replica_for(case.sato);
    phone.apply_changes(tablet.changes_since(&[])).unwrap();
    assert_accepted(upload(&mut phone, |r| r.set_status(CaseStatus::Supporting).unwrap()));
    let view = assert_accepted(upload(&mut phone, |r| r.set_status(CaseStatus::Closed).unwrap()));
    assert_eq!(view.status, CaseStatus::Closed);
    // Other statuses never needed a decision.
    assert_accepted(upload(&mut case.phone, |r| r.set_status(CaseStatus::Suspended).unwrap()));
}

#[test]
fn a_decision_that_refers_the_person_on_names_a_destination() {
    let mut case = Case::new();
    let chief = case.chief;
    let mut tablet = case.replica_for(chief);
    let id = DecisionId::new_random().to_string();
    let path = format!("/decisions/{id}/referral_destinations");

    // 他機関へつないだ: yes, but to whom?
    let outcome = upload_raw(&mut tablet.clone(), |doc| {
        forge_decision(doc, &id, chief.staff, "close", true, &[]);
    });
    assert_refused(outcome, &one(ViolationCode::ReferralWithoutDestination, &path));

    // A catalogue destination, or その他 with its text, is enough.
    assert_accepted(upload_raw(&mut tablet.clone(), |doc| {
        forge_decision(doc, &id, chief.staff, "close", true, &["hello_work"]);
    }));
    let view = assert_accepted(upload_raw(&mut tablet.clone(), |doc| {
        let d = forge_decision(doc, &id, chief.staff, "close", true, &[]);
        doc.put(&d, "referral_other", "NPO法人つなぎ").unwrap();
    }));
    assert!(view.decisions.values().all(|d| d.has_destination()));
    // Not referred on: no destination needed.
    assert_accepted(upload_raw(&mut tablet, |doc| {
        forge_decision(doc, &id, chief.staff, "close", false, &[]);
    }));
}

#[test]
fn referral_destinations_come_from_the_catalogue() {
    let mut case = Case::new();
    let chief = case.chief;
    let mut tablet = case.replica_for(chief);
    let id = DecisionId::new_random().to_string();

    // A key the catalogue does not have, in つなぎ先 and in 相談歴.
    let outcome = upload_raw(&mut tablet.clone(), |doc| {
        let d = forge_decision(doc, &id, chief.staff, "close", true, &["hello_work", "city_hall"]);
        let past = obj(doc, &["decisions", &id, "past_consultations"]);
        doc.put(&past, "fortune_teller", true).unwrap();
        doc.put(&d, "past_other", "占い師").unwrap();
    });
    assert_refused(
        outcome,
        &[
            (ViolationCode::InvalidEnum, &format!("/decisions/{id}/referral_destinations/city_hall")),
            (ViolationCode::InvalidEnum, &format!("/decisions/{id}/past_consultations/fortune_teller")),
        ],
    );

    // その他 is written as `referral_other` text, never as a member.
    let outcome = upload_raw(&mut tablet.clone(), |doc| {
        forge_decision(doc, &id, chief.staff, "close", true, &["other"]);
    });
    assert_refused(outcome, &one(ViolationCode::InvalidEnum, &format!("/decisions/{id}/referral_destinations/other")));

    let view = assert_accepted(upload_raw(&mut tablet, |doc| {
        forge_decision(doc, &id, chief.staff, "close", true, &["hello_work", "community_general_support_center"]);
    }));
    assert_eq!(view.decisions[&id.parse().unwrap()].referral_destinations.len(), 2);
}

#[test]
fn only_supervisors_record_and_amend_meeting_decisions() {
    let mut case = Case::new();
    let (sato, chief) = (case.sato, case.chief);
    let id = DecisionId::new_random().to_string();

    // Sato records the meeting's decision from her phone.
    let outcome = upload_raw(&mut case.phone.clone(), |doc| {
        forge_decision(doc, &id, sato.staff, "replan", false, &[]);
    });
    assert_refused(outcome, &one(ViolationCode::SupervisorOnly, &format!("/decisions/{id}")));

    // The chief records it, but in another supervisor's name.
    let mut tablet = case.replica_for(chief);
    let outcome = upload_raw(&mut tablet.clone(), |doc| {
        forge_decision(doc, &id, StaffId::new_random(), "replan", false, &[]);
    });
    assert_refused(outcome, &one(ViolationCode::AuthorMismatch, &format!("/decisions/{id}")));

    // In her own name.
    let decision = assert_accepted(upload(&mut tablet, |r| {
        r.record_decision(NewDecision::new(date(2026, 11, 25), PlanVerdict::Replan).with_notes("次のプランで就労支援"))
            .unwrap();
    }))
    .decisions
    .into_keys()
    .next()
    .unwrap();
    let mut phone = case.replica_for(sato);
    phone.apply_changes(tablet.changes_since(&[])).unwrap();

    // Sato adds to its notes.
    let outcome = upload_raw(&mut phone, |doc| {
        let notes = obj(doc, &["decisions", &decision.to_string(), "notes"]);
        doc.splice_text(&notes, 0, 0, "【佐藤】").unwrap();
    });
    assert_refused(outcome, &one(ViolationCode::SupervisorOnly, &format!("/decisions/{decision}")));

    // The chief may, through the operation.
    let view = assert_accepted(upload(&mut tablet, |r| {
        r.amend_form_text(FormText::DecisionNotes(decision), "次のプランで就労支援。家計改善も").unwrap();
    }));
    assert_eq!(view.decisions[&decision].notes, "次のプランで就労支援。家計改善も");
}

#[test]
fn counsellors_and_supervisors_add_plans_and_evaluations_in_their_own_name() {
    let mut case = Case::new();
    let (sato, ito, chief) = (case.sato, case.ito, case.chief);
    let plan = PlanId::new_random().to_string();
    let evaluation = EvaluationId::new_random().to_string();

    // Sato writes a plan and an evaluation in Ito's name.
    let outcome = upload_raw(&mut case.phone.clone(), |doc| {
        forge_plan(doc, &plan, ito.staff);
        forge_evaluation(doc, &evaluation, ito.staff);
    });
    assert_refused(
        outcome,
        &[
            (ViolationCode::AuthorMismatch, &format!("/plans/{plan}")),
            (ViolationCode::AuthorMismatch, &format!("/evaluations/{evaluation}")),
        ],
    );

    // In her own name, they are hers.
    let view = assert_accepted(upload_raw(&mut case.phone, |doc| {
        forge_plan(doc, &plan, sato.staff);
        forge_evaluation(doc, &evaluation, sato.staff);
    }));
    assert_eq!(view.plans[&plan.parse().unwrap()].author, sato.staff);
    assert_eq!(view.evaluations[&evaluation.parse().unwrap()].evaluator, sato.staff);

    // The author and the round are fixed; the rest another counsellor or the chief may amend.
    let mut ito_phone = case.replica_for(ito);
    let outcome = upload_raw(&mut ito_phone.clone(), |doc| {
        let p = obj(doc, &["plans", &plan]);
        doc.put(&p, "author", ito.staff.to_string()).unwrap();
        let e = obj(doc, &["evaluations", &evaluation]);
        doc.put(&e, "round", 2).unwrap();
    });
    assert_refused(
        outcome,
        &[
            (ViolationCode::ImmutableField, &format!("/plans/{plan}/author")),
            (ViolationCode::ImmutableField, &format!("/evaluations/{evaluation}/round")),
        ],
    );
    let plan_id: PlanId = plan.parse().unwrap();
    assert_accepted(upload(&mut ito_phone, |r| {
        r.add_plan_action(plan_id, NewPlanAction::new("家族", "家事の分担")).unwrap();
    }));
    let view = assert_accepted(upload(&mut case.replica_for(chief), |r| {
        r.amend_form_text(FormText::PlanGoals(plan_id), "家計を立て直す").unwrap();
    }));
    assert_eq!(view.plans[&plan_id].goals, "家計を立て直す");

    // A meeting tablet writes no form; neither does the server on its own.
    let outcome = upload_raw(&mut case.replica_for(with_role(Role::MeetingTablet)), |doc| {
        forge_plan(doc, &PlanId::new_random().to_string(), chief.staff);
    });
    assert_refused(outcome, &one(ViolationCode::ReadOnlyRole, "/"));
    let mut server = AutoCommit::load(&case.phone.save()).unwrap().with_actor(ActorId::random());
    let other_plan = PlanId::new_random().to_string();
    match upload_doc(&mut server, Acting::Server, |doc| {
        forge_plan(doc, &other_plan, chief.staff);
    }) {
        Err(BatchError::Refused(violations)) => assert!(
            violations.iter().all(|v| v.code == ViolationCode::ReadOnlyRole)
                && violations.iter().any(|v| v.path == format!("/plans/{other_plan}")),
            "{violations:#?}"
        ),
        other => panic!("the server's own change must not add a plan, got {other:#?}"),
    }
}

#[test]
fn forms_and_their_rows_are_never_deleted() {
    let mut case = Case::new();
    let plan = case
        .phone
        .add_plan(NewPlan::new(1, date(2026, 11, 10)).with_action(NewPlanAction::new("本人", "通院")))
        .unwrap();
    let row = *case.phone.view().unwrap().plans[&plan].actions.keys().next().unwrap();
    let outcome = upload_raw(&mut case.phone.clone(), |doc| {
        let plans = obj(doc, &["plans"]);
        doc.delete(&plans, plan.to_string()).unwrap();
    });
    assert_refused(outcome, &one(ViolationCode::DeletedEntity, &format!("/plans/{plan}")));
    let outcome = upload_raw(&mut case.phone.clone(), |doc| {
        let actions = obj(doc, &["plans", &plan.to_string(), "actions"]);
        doc.delete(&actions, row.to_string()).unwrap();
    });
    assert_refused(outcome, &one(ViolationCode::DeletedEntity, &format!("/plans/{plan}/actions/{row}")));

    // A row is amended instead.
    let view = assert_accepted(upload_raw(&mut case.phone, |doc| {
        let r = obj(doc, &["plans", &plan.to_string(), "actions", &row.to_string()]);
        doc.put(&r, "frequency", "月2回").unwrap();
    }));
    assert_eq!(view.plans[&plan].actions[&row].frequency, "月2回");
}

#[test]
fn forms_follow_the_schema() {
    let mut case = Case::new();
    let (sato, chief) = (case.sato, case.chief);
    let plan = PlanId::new_random().to_string();
    let evaluation = EvaluationId::new_random().to_string();
    let outcome = upload_raw(&mut case.phone.clone(), |doc| {
        let p = forge_plan(doc, &plan, sato.staff);
        doc.put(&p, "round", 0).unwrap();
        doc.put(&p, "drafted_on", "2026-11-31").unwrap();
        doc.put(&p, "period_until", "2026-10-01").unwrap();
        doc.put(&p, "owner", "佐藤").unwrap();
        let e = forge_evaluation(doc, &evaluation, sato.staff);
        doc.put(&e, "wish", "maybe").unwrap();
        let changes = obj(doc, &["evaluations", &evaluation, "observed_changes"]);
        doc.put(&changes, "other", true).unwrap();
        doc.put(&e, "observed_other", " ").unwrap();
    });
    let (p, e) = (format!("/plans/{plan}"), format!("/evaluations/{evaluation}"));
    assert_refused(
        outcome,
        &[
            (ViolationCode::Inconsistent, &format!("{p}/round")),
            (ViolationCode::InvalidDate, &format!("{p}/drafted_on")),
            (ViolationCode::UnknownField, &format!("{p}/owner")),
            (ViolationCode::InvalidEnum, &format!("{e}/wish")),
            (ViolationCode::InvalidEnum, &format!("{e}/observed_changes/other")),
            (ViolationCode::MissingField, &format!("{e}/observed_other")),
        ],
    );

    // A decision without its verdict, with a text where the date belongs.
    let id = DecisionId::new_random().to_string();
    let outcome = upload_raw(&mut case.replica_for(chief), |doc| {
        let d = forge_decision(doc, &id, chief.staff, "close", false, &[]);
        doc.delete(&d, "verdict").unwrap();
        let text = doc.put_object(&d, "meeting_on", ObjType::Text).unwrap();
        doc.splice_text(&text, 0, 0, "2026-11-25").unwrap();
    });
    let d = format!("/decisions/{id}");
    assert_refused(
        outcome,
        &[
            (ViolationCode::MissingField, &format!("{d}/verdict")),
            (ViolationCode::WrongType, &format!("{d}/meeting_on")),
        ],
    );

    // The plan period ends before the plan: inconsistent.
    let outcome = upload_raw(&mut case.phone.clone(), |doc| {
        let p = forge_plan(doc, &plan, sato.staff);
        doc.put(&p, "period_until", "2026-10-01").unwrap();
    });
    assert_refused(outcome, &one(ViolationCode::Inconsistent, &format!("{p}/period_until")));

    assert_accepted(upload_raw(&mut case.phone, |doc| {
        let p = forge_plan(doc, &plan, sato.staff);
        doc.put(&p, "period_until", "2027-03-31").unwrap();
        doc.put(&p, "next_monitoring_on", "2026-12-10").unwrap();
        forge_evaluation(doc, &evaluation, sato.staff);
    }));
}

#[test]
fn two_devices_adding_forms_concurrently_merge_and_validate() {
    let mut case = Case::new();
    let heads = case.phone.heads();
    let mut server = case.phone.doc_mut().document().clone();
    let mut ito_phone = case.replica_for(case.ito);
    let mut tablet = case.replica_for(case.chief);
    let plan = case.phone.add_plan(NewPlan::new(1, date(2026, 11, 10)).with_goals("家計を立て直す")).unwrap();
    let evaluation = ito_phone
        .add_evaluation(NewEvaluation::new(1, date(2026, 11, 20)).with_change(ObservedChange::JobSearch))
        .unwrap();
    let decision = tablet
        .record_decision(NewDecision::new(date(2026, 11, 25), PlanVerdict::Close).referred_to(["hello_work"]))
        .unwrap();
    tablet.set_status(CaseStatus::Closed).unwrap();
    for (replica, acting) in [(&mut case.phone, case.sato), (&mut ito_phone, case.ito), (&mut tablet, case.chief)] {
        let raw = raw_changes(replica.doc_mut(), &heads);
        server = apply_and_validate(&server, &raw, &Acting::Staff(acting)).unwrap().0;
    }
    let view = crate::document::read_case(&server).view.unwrap();
    assert!(view.plans.contains_key(&plan) && view.evaluations.contains_key(&evaluation));
    assert!(view.decisions.contains_key(&decision));
    assert_eq!(view.status, CaseStatus::Closed);
}
