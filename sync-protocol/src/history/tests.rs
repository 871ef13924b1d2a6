//! Unit tests of the history: one per event kind, on documents written by the field
//! operations (or, for what no operation writes yet, by raw Automerge edits).

use super::*;
use crate::document::ActivityDetails;
use crate::domain::{Place, Relation};
use crate::ids::{ActivityId, MunicipalityCode, PersonId, StaffId};
use crate::ops::{CaseReplica, NewActivity, NewCase, NewPerson, PersonUpdate};
use crate::validation::Actor;
use automerge::transaction::Transactable;
use chrono::TimeZone;

fn jst(day: u32, hour: u32) -> DateTime<FixedOffset> {
    FixedOffset::east_opt(9 * 3600).unwrap().with_ymd_and_hms(2026, 11, day, hour, 0, 0).unwrap()
}

fn counsellor() -> Actor {
    Actor::counsellor(StaffId::new_random(), DeviceId::new_random())
}

fn supervisor() -> Actor {
    Actor::supervisor(StaffId::new_random(), DeviceId::new_random())
}

const MOTHER: &str = "山田 花子";
const SON: &str = "山田 太郎";

fn new_case() -> NewCase {
    let mut case =
        NewCase::new(MunicipalityCode::parse("122203").unwrap(), NaiveDate::from_ymd_opt(2026, 11, 2).unwrap());
    let mut mother = NewPerson::new(MOTHER);
    mother.is_subject = true;
    mother.relation = Some(Relation::Subject);
    mother.concerns = vec![ConcernTag::Poverty];
    case.household.push(mother);
    let mut son = NewPerson::new(SON);
    son.relation = Some(Relation::Son);
    son.concerns = vec![ConcernTag::YoungCarer];
    case.household.push(son);
    case
}

fn visit(day: u32, letter_left: bool) -> NewActivity {
    NewActivity::new(
        jst(day, 10),
        Place::Home,
        ActivityDetails::Visit { outcome: VisitOutcome::NotHome, met_person_ids: Default::default(), letter_left },
    )
    .with_narrative("不在。玄関先で近所の方と話した。")
}

/// Every change of the replica, described.
fn history(r: &mut CaseReplica) -> Vec<ChangeDescription> {
    describe_history(r.changes_since(&[])).unwrap()
}

/// The description of the replica's latest change.
fn last(r: &mut CaseReplica) -> ChangeDescription {
    history(r).pop().unwrap()
}

fn summaries(r: &mut CaseReplica) -> Vec<String> {
    history(r).into_iter().map(|d| d.summary).collect()
}

/// The same document, edited from now on by `actor`.
fn as_actor(r: CaseReplica, actor: Actor) -> CaseReplica {
    CaseReplica::from_doc(r.into_doc(), actor)
}

/// A raw edit, committed as one change (for what no field operation writes).
fn raw(r: &mut CaseReplica, edit: impl FnOnce(&mut AutoCommit)) {
    edit(r.doc_mut());
    r.doc_mut().commit();
}

fn container(r: &CaseReplica, key: &str) -> ObjId {
    match r.doc().get(ROOT, key).unwrap() {
        Some((Value::Object(_), id)) => id,
        _ => panic!("no {key}"),
    }
}

fn no_content(description: &ChangeDescription, secrets: &[&str]) {
    let json = serde_json::to_string(&description.events).unwrap();
    for secret in secrets {
        assert!(!description.summary.contains(secret), "{secret:?} in {:?}", description.summary);
        assert!(!json.contains(secret), "{secret:?} in {json}");
    }
}

fn kinds(description: &ChangeDescription) -> Vec<String> {
    description.events.iter().map(|e| serde_json::to_value(e).unwrap()["kind"].as_str().unwrap().to_owned()).collect()
}

#[test]
fn opening_a_case_is_one_event_plus_its_household_and_their_concerns() {
    let actor = counsellor();
    let mut r = CaseReplica::open(new_case(), actor).unwrap();
    let opened = last(&mut r);
    assert_eq!(opened.device_id, Some(actor.device));
    assert!(opened.written_at.is_some());
    assert_eq!(
        opened.events[0].event,
        HistoryEvent::CaseOpened {
            opened_on: NaiveDate::from_ymd_opt(2026, 11, 2),
            primary: Some(actor.staff.to_string()),
            area: None,
        }
    );
    assert_eq!(opened.events[0].sentence, "opened the case");
    let mut sentences: Vec<&str> = opened.events[1..].iter().map(|e| e.sentence.as_str()).collect();
    sentences.sort();
    assert_eq!(
        sentences,
        [
            "added household member",
            "added household member",
            "set concern ヤングケアラー on a household member",
            "set concern 経済的困窮 on a household member",
        ]
    );
    assert!(opened.summary.starts_with("opened the case; added household member; "), "{}", opened.summary);
    no_content(&opened, &[MOTHER, SON]);
}

#[test]
fn logging_each_kind_of_activity() {
    let mut r = CaseReplica::open(new_case(), counsellor()).unwrap();
    r.log_activity(visit(4, false)).unwrap();
    assert_eq!(last(&mut r).summary, "logged a visit (家庭訪問): not home (不在)");
    r.log_activity(visit(5, true)).unwrap();
    let logged = last(&mut r);
    assert_eq!(logged.summary, "logged a visit (家庭訪問): not home (不在), letter left");
    assert_eq!(kinds(&logged), ["activity_logged"]);
    no_content(&logged, &["不在。玄関先"]);

    let cases = [
        (
            ActivityDetails::LetterLeft {
                items: [LetterItem::Letter, LetterItem::Leaflet].into(),
                left_at: LetterPlace::Mailbox,
                reply_received_on: None,
            },
            "logged a letter left (置き手紙)",
        ),
        (
            ActivityDetails::ContactAttempt { channel: ContactChannel::Phone, outcome: ContactOutcome::NoAnswer },
            "logged a contact attempt (連絡・接触): phone (電話), no answer (応答なし)",
        ),
        (
            ActivityDetails::Accompaniment {
                agency: "ハローワーク松戸".into(),
                purpose: "求職登録".into(),
                outcome: "登録できた".into(),
            },
            "logged an accompaniment (同行支援)",
        ),
        (
            ActivityDetails::Information { information: "子ども食堂の案内".into(), interest: "料理".into() },
            "logged information (情報提供)",
        ),
        (
            ActivityDetails::Consultation {
                mode: ConsultationMode::InPerson,
                topics: [ConsultationTopic::Finances].into(),
            },
            "logged a consultation (相談対応): in person (対面)",
        ),
        (ActivityDetails::Coordination { agency: "市立第三中学校".into() }, "logged a coordination (関係機関調整)"),
    ];
    for (details, expected) in cases {
        r.log_activity(NewActivity::new(jst(6, 9), Place::Agency, details).with_narrative("経過")).unwrap();
        let logged = last(&mut r);
        assert_eq!(logged.summary, expected);
        no_content(
            &logged,
            &["ハローワーク松戸", "求職登録", "登録できた", "子ども食堂", "料理", "第三中学校", "経過"],
        );
    }

    // The structured event carries the labels.
    let json = serde_json::to_value(&history(&mut r)[3].events[0]).unwrap();
    assert_eq!(json["kind"], "activity_logged");
    assert_eq!(json["activity"]["activity_kind"]["label"], "置き手紙");
    assert_eq!(json["activity"]["on"], "2026-11-06");
    assert_eq!(json["items"][1], serde_json::json!({"key": "letter", "label": "手紙"}));
    assert_eq!(json["left_at"]["label"], "郵便受け");
    assert_eq!(json["sentence"], "logged a letter left (置き手紙)");
}

#[test]
fn amending_a_narrative_says_which_activity_not_what() {
    let mut r = CaseReplica::open(new_case(), counsellor()).unwrap();
    let id = r.log_activity(visit(4, true)).unwrap();
    r.amend_narrative(id, "不在。郵便受けに手紙を入れた。母親の声が聞こえた。").unwrap();
    let amended = last(&mut r);
    assert_eq!(amended.summary, "amended the narrative of the visit of 2026-11-04");
    assert_eq!(kinds(&amended), ["narrative_amended"]);
    no_content(&amended, &["郵便受け", "母親"]);
    r.insert_into_narrative(id, 0, "追記: ").unwrap();
    assert_eq!(last(&mut r).summary, "amended the narrative of the visit of 2026-11-04");
}

#[test]
fn voiding_names_the_activity_but_not_the_reason() {
    let mut r = CaseReplica::open(new_case(), counsellor()).unwrap();
    let id = r.log_activity(visit(4, true)).unwrap();
    r.void_activity(id, "別の世帯の記録だった", jst(5, 9)).unwrap();
    let voided = last(&mut r);
    assert_eq!(voided.summary, "voided the visit of 2026-11-04");
    assert_eq!(kinds(&voided), ["activity_voided"]);
    no_content(&voided, &["別の世帯"]);
}

#[test]
fn status_changes_show_before_and_after() {
    let mut r = CaseReplica::open(new_case(), counsellor()).unwrap();
    r.set_status(CaseStatus::Outreach).unwrap();
    r.set_status(CaseStatus::Planning).unwrap();
    let all = summaries(&mut r);
    assert_eq!(all[1], "status: intake (受付) → outreach (関係性構築)");
    assert_eq!(all[2], "status: outreach (関係性構築) → planning (プラン作成)");
    let json = serde_json::to_value(&last(&mut r).events[0]).unwrap();
    assert_eq!(json["kind"], "status_changed");
    assert_eq!(json["from"]["key"], "outreach");
    assert_eq!(json["to"], serde_json::json!({"key": "planning", "label": "プラン作成"}));
    assert_eq!(json["conflict"], false);
}

#[test]
fn concurrent_status_changes_are_both_told_and_flagged() {
    let mut a = CaseReplica::open(new_case(), counsellor()).unwrap();
    let mut b = CaseReplica::load(&a.save(), counsellor()).unwrap();
    a.set_status(CaseStatus::Outreach).unwrap();
    b.set_status(CaseStatus::Suspended).unwrap();
    a.merge(&mut b).unwrap();
    let all = history(&mut a);
    assert_eq!(all.len(), 3);
    // Each says what its author set, from what its author saw; the later one knows of both.
    assert_eq!(all[1].events.len(), 1);
    assert_eq!(all[2].events.len(), 1);
    assert!(all[1].summary.starts_with("status: intake (受付) → "), "{}", all[1].summary);
    assert!(!all[1].summary.ends_with("(concurrent with another edit)"), "{}", all[1].summary);
    assert!(all[2].summary.starts_with("status: intake (受付) → "), "{}", all[2].summary);
    assert!(all[2].summary.ends_with(" (concurrent with another edit)"), "{}", all[2].summary);
    let mut set: Vec<&str> = all[1..]
        .iter()
        .map(|d| match &d.events[0].event {
            HistoryEvent::StatusChanged { to, .. } => to.key.as_str(),
            other => panic!("{other:?}"),
        })
        .collect();
    set.sort();
    assert_eq!(set, ["outreach", "suspended"]);
    match &all[2].events[0].event {
        HistoryEvent::StatusChanged { from, conflict, .. } => {
            assert!(*conflict);
            assert_eq!(from.as_ref().map(|f| f.key.as_str()), Some("intake"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn consent_is_one_event_with_its_date_and_method() {
    let mut r = CaseReplica::open(new_case(), counsellor()).unwrap();
    let on = NaiveDate::from_ymd_opt(2026, 11, 10).unwrap();
    r.record_consent(ConsentState::Obtained, on, Some(ConsentMethod::Written)).unwrap();
    let consent = last(&mut r);
    assert_eq!(consent.summary, "consent: obtained (同意あり)");
    assert_eq!(
        consent.events[0].event,
        HistoryEvent::ConsentChanged {
            from: Some(Labelled { key: "none".into(), label: Some("同意なし") }),
            to: Labelled { key: "obtained".into(), label: Some("同意あり") },
            on: Some(on),
            by: Some(Labelled { key: "written".into(), label: Some("書面") }),
            conflict: false,
        }
    );
    raw(&mut r, |doc| {
        let consent = match doc.get(ROOT, k::CONSENT).unwrap() {
            Some((Value::Object(_), id)) => id,
            _ => panic!("no consent"),
        };
        doc.put(&consent, k::ON, "2026-11-11").unwrap();
    });
    assert_eq!(last(&mut r).summary, "amended the date or method of consent");
}

#[test]
fn assignments_name_the_staff_member() {
    let opener = counsellor();
    let r = CaseReplica::open(new_case(), opener).unwrap();
    let mut r = as_actor(r, supervisor());
    let colleague = StaffId::new_random();
    r.set_primary_assignee(colleague).unwrap();
    let assigned = last(&mut r);
    assert_eq!(assigned.summary, format!("assigned {colleague} as primary"));
    assert_eq!(
        assigned.events[0].event,
        HistoryEvent::PrimaryAssigned {
            staff_id: colleague.to_string(),
            previous: Some(opener.staff.to_string()),
            conflict: false
        }
    );
    r.set_other_assignee(opener.staff, true).unwrap();
    assert_eq!(last(&mut r).summary, format!("added {} to the other assignees", opener.staff));
    r.set_other_assignee(opener.staff, false).unwrap();
    assert_eq!(last(&mut r).summary, format!("removed {} from the other assignees", opener.staff));
}

#[test]
fn reviews_name_the_activity_not_the_comment() {
    let mut r = CaseReplica::open(new_case(), counsellor()).unwrap();
    let id = r.log_activity(visit(4, true)).unwrap();
    let mut r = as_actor(r, supervisor());
    r.add_review(id, "次回は民生委員と同行してください", jst(5, 9)).unwrap();
    let reviewed = last(&mut r);
    assert_eq!(reviewed.summary, "reviewed the visit of 2026-11-04");
    assert_eq!(kinds(&reviewed), ["activity_reviewed"]);
    no_content(&reviewed, &["民生委員"]);
    // A review's comment edited later.
    let review = r.view().unwrap().reviews.keys().next().copied().unwrap();
    raw(&mut r, |doc| {
        let reviews = match doc.get(ROOT, k::REVIEWS).unwrap() {
            Some((Value::Object(_), id)) => id,
            _ => panic!(),
        };
        let review = match doc.get(&reviews, review.to_string()).unwrap() {
            Some((Value::Object(_), id)) => id,
            _ => panic!(),
        };
        let comment = match doc.get(&review, k::COMMENT).unwrap() {
            Some((Value::Object(_), id)) => id,
            _ => panic!(),
        };
        doc.splice_text(&comment, 0, 0, "至急: ").unwrap();
    });
    let amended = last(&mut r);
    assert_eq!(amended.summary, "amended the review of the visit of 2026-11-04");
    no_content(&amended, &["至急"]);
}

#[test]
fn household_members_are_added_and_amended_without_their_details() {
    let mut r = CaseReplica::open(new_case(), counsellor()).unwrap();
    let mut brother = NewPerson::new("山田 次郎");
    brother.birth_date = NaiveDate::from_ymd_opt(2021, 5, 1);
    brother.concerns = vec![ConcernTag::Disability];
    let person = r.add_person(brother).unwrap();
    let added = last(&mut r);
    assert_eq!(added.summary, "added household member; set concern 障害(疑い含む) on a household member");
    no_content(&added, &["次郎", "2021-05-01"]);

    r.amend_person(
        person,
        PersonUpdate {
            name: Some("山田 二郎".into()),
            birth_date: Some(NaiveDate::from_ymd_opt(2021, 5, 2)),
            ..Default::default()
        },
    )
    .unwrap();
    let amended = last(&mut r);
    let fields = match &amended.events[..] {
        [DescribedEvent { event: HistoryEvent::PersonAmended { fields, .. }, .. }] => fields.clone(),
        other => panic!("{other:?}"),
    };
    let mut sorted = fields.clone();
    sorted.sort();
    assert_eq!(sorted, ["date of birth", "name"]);
    assert_eq!(amended.summary, format!("amended household member's {}", fields.join(", ")));
    no_content(&amended, &["二郎", "2021-05-02"]);

    r.amend_person_note(person, "保育園で言葉の遅れを指摘された").unwrap();
    let note = last(&mut r);
    assert_eq!(note.summary, "amended household member's note");
    no_content(&note, &["保育園"]);

    r.set_concern(person, ConcernTag::YoungCarer, true).unwrap();
    assert_eq!(last(&mut r).summary, "set concern ヤングケアラー on a household member");
    r.set_concern(person, ConcernTag::YoungCarer, false).unwrap();
    assert_eq!(last(&mut r).summary, "removed concern ヤングケアラー from a household member");
    r.set_other_concern(person, Some("不登校")).unwrap();
    let other = last(&mut r);
    assert_eq!(other.summary, "set concern その他 on a household member");
    no_content(&other, &["不登校"]);
    match &other.events[0].event {
        HistoryEvent::ConcernSet { person_id, .. } => assert_eq!(person_id, &person.to_string()),
        e => panic!("{e:?}"),
    }
}

#[test]
fn follow_ups_outcomes_and_replies() {
    let mut r = CaseReplica::open(new_case(), counsellor()).unwrap();
    let son: PersonId = *r.view().unwrap().household.keys().next().unwrap();
    let id = r.log_activity(visit(4, true)).unwrap();
    r.set_follow_up(id, NaiveDate::from_ymd_opt(2026, 11, 11)).unwrap();
    assert_eq!(last(&mut r).summary, "set the follow-up of the visit of 2026-11-04 to 2026-11-11");
    r.set_follow_up(id, None).unwrap();
    assert_eq!(last(&mut r).summary, "cleared the follow-up of the visit of 2026-11-04");
    r.set_visit_outcome(id, VisitOutcome::Met, &[son]).unwrap();
    let changed = last(&mut r);
    assert_eq!(changed.events.len(), 2, "{}", changed.summary);
    assert!(changed.summary.contains("changed the outcome of the visit of 2026-11-04 to met (会えた)"));
    assert!(changed.summary.contains("amended the people met of the visit of 2026-11-04"));
    no_content(&changed, &[SON]);

    let letter = r
        .log_activity(NewActivity::new(
            jst(7, 16),
            Place::Home,
            ActivityDetails::LetterLeft {
                items: [LetterItem::Card].into(),
                left_at: LetterPlace::Door,
                reply_received_on: None,
            },
        ))
        .unwrap();
    r.record_letter_reply(letter, NaiveDate::from_ymd_opt(2026, 11, 12).unwrap()).unwrap();
    assert_eq!(last(&mut r).summary, "recorded a reply on 2026-11-12 to the letter left of 2026-11-07");
}

#[test]
fn other_amendments_of_an_activity_name_the_fields() {
    let mut r = CaseReplica::open(new_case(), counsellor()).unwrap();
    let id: ActivityId = r.log_activity(visit(4, true)).unwrap();
    raw(&mut r, |doc| {
        let activities = match doc.get(ROOT, k::ACTIVITIES).unwrap() {
            Some((Value::Object(_), obj)) => obj,
            _ => panic!(),
        };
        let activity = match doc.get(&activities, id.to_string()).unwrap() {
            Some((Value::Object(_), obj)) => obj,
            _ => panic!(),
        };
        doc.put(&activity, k::PLACE, "outdoors").unwrap();
        doc.put(&activity, k::ENDED_AT, "2026-11-04T11:00:00+09:00").unwrap();
    });
    let amended = last(&mut r);
    let mut fields = match &amended.events[..] {
        [DescribedEvent { event: HistoryEvent::ActivityAmended { fields, .. }, .. }] => fields.clone(),
        other => panic!("{other:?}"),
    };
    fields.sort();
    assert_eq!(fields, ["end", "place"]);
    assert!(amended.summary.starts_with("amended the "));
    assert!(amended.summary.ends_with(" of the visit of 2026-11-04"));
}

#[test]
fn the_case_number_area_and_referral_source() {
    let mut r = CaseReplica::open(new_case(), counsellor()).unwrap();
    let server = automerge::ActorId::from(vec![0xee; 16]);
    let device_actor = r.doc_mut().get_actor().clone();
    r.doc_mut().set_actor(server);
    raw(&mut r, |doc| doc.put(ROOT, k::CASE_NUMBER, "2026-0001").unwrap());
    r.doc_mut().set_actor(device_actor);
    let numbered = last(&mut r);
    assert_eq!(numbered.summary, "set case number 2026-0001");
    assert_eq!(numbered.device_id, None, "the server's change is no device's");

    r.set_area("east").unwrap();
    assert_eq!(last(&mut r).summary, "set area east");
    r.set_area("東部 第3ブロック").unwrap();
    assert_eq!(last(&mut r).summary, "set area (an area code)");
    assert_eq!(last(&mut r).events[0].event, HistoryEvent::AreaChanged { area: Some("東部 第3ブロック".into()) });

    let source = container(&r, k::REFERRAL_SOURCE);
    raw(&mut r, |doc| {
        doc.put(&source, k::KIND, "community_general_support_center").unwrap();
        doc.put(&source, k::NAME, "東部地域包括支援センター 田中").unwrap();
    });
    let changed = last(&mut r);
    assert_eq!(changed.summary, "changed the referral source (紹介元)");
    no_content(&changed, &["田中"]);
}

#[test]
fn forms_are_described_by_path_whatever_their_shape() {
    let mut r = CaseReplica::open(new_case(), supervisor()).unwrap();
    for (key, added, amended) in [
        (k::PLANS, "added a plan (様式第1号)", "amended a plan (様式第1号)"),
        (k::EVALUATIONS, "added an evaluation (様式第2号)", "amended an evaluation (様式第2号)"),
        (k::DECISIONS, "added a meeting decision (様式第2-2号)", "amended a meeting decision (様式第2-2号)"),
    ] {
        let forms = container(&r, key);
        let id = uuid::Uuid::new_v4().to_string();
        raw(&mut r, |doc| {
            let form = doc.put_object(&forms, id.as_str(), automerge::ObjType::Map).unwrap();
            doc.put(&form, "round", 1).unwrap();
            let goals = doc.put_object(&form, "goals", automerge::ObjType::Text).unwrap();
            doc.splice_text(&goals, 0, 0, "生活リズムを整える").unwrap();
        });
        let described = last(&mut r);
        assert_eq!(described.summary, added);
        assert_eq!(
            described.events[0].event,
            HistoryEvent::FormAdded { form: FormKind::of_container(key).unwrap(), form_id: id.clone() }
        );
        no_content(&described, &["生活リズム"]);
        raw(&mut r, |doc| {
            let form = match doc.get(&forms, id.as_str()).unwrap() {
                Some((Value::Object(_), obj)) => obj,
                _ => panic!(),
            };
            doc.put(&form, "round", 2).unwrap();
        });
        assert_eq!(last(&mut r).summary, amended);
    }
}

#[test]
fn unknown_paths_are_named_so_nothing_is_hidden() {
    let mut r = CaseReplica::open(new_case(), counsellor()).unwrap();
    raw(&mut r, |doc| doc.put(ROOT, "priority", "high").unwrap());
    let changed = last(&mut r);
    assert_eq!(changed.summary, "changed /priority");
    assert_eq!(changed.events[0].event, HistoryEvent::Changed { path: "/priority".into(), removed: false });
    raw(&mut r, |doc| doc.delete(ROOT, "priority").unwrap());
    assert_eq!(last(&mut r).summary, "removed /priority");
    let activities = container(&r, k::ACTIVITIES);
    let id = r.log_activity(visit(4, true)).unwrap();
    raw(&mut r, |doc| doc.delete(&activities, id.to_string()).unwrap());
    assert_eq!(last(&mut r).summary, format!("removed /activities/{id}"));
}

#[test]
fn a_page_later_in_the_history_reads_the_same_as_the_whole() {
    let mut r = CaseReplica::open(new_case(), counsellor()).unwrap();
    let id = r.log_activity(visit(4, true)).unwrap();
    r.amend_narrative(id, "追記").unwrap();
    r.set_status(CaseStatus::Outreach).unwrap();
    r.set_status(CaseStatus::Supporting).unwrap();
    let changes = r.changes_since(&[]);
    let whole = describe_history(changes.clone()).unwrap();
    let mut reader = HistoryReader::new();
    reader.skip(changes[..2].to_vec()).unwrap();
    let page: Vec<ChangeDescription> = changes[2..].iter().map(|c| reader.describe(c.clone()).unwrap()).collect();
    assert_eq!(page, whole[2..]);
}

#[test]
fn a_change_before_its_dependencies_waits_and_is_told_with_them() {
    let mut r = CaseReplica::open(new_case(), counsellor()).unwrap();
    r.set_status(CaseStatus::Outreach).unwrap();
    let changes = r.changes_since(&[]);
    let mut reader = HistoryReader::new();
    let early = reader.describe(changes[1].clone()).unwrap();
    assert_eq!(early.events[0].event, HistoryEvent::AwaitingEarlierChanges);
    let late = reader.describe(changes[0].clone()).unwrap();
    assert!(late.summary.starts_with("opened the case"));
    assert_eq!(kinds(&late).iter().filter(|k| *k == "case_opened").count(), 1);
    // A change seen twice did nothing the second time.
    let again = reader.describe(changes[1].clone()).unwrap();
    assert_eq!(again.summary, "made no visible change");
}

#[test]
fn change_times_are_read_in_seconds_or_milliseconds() {
    let at = written_at(1_793_755_800).unwrap();
    assert_eq!(crate::document::format_instant(at), "2026-11-04T10:30:00+09:00");
    assert_eq!(written_at(1_793_755_800_123), Some(at));
    assert_eq!(written_at(0), None);
}

#[test]
fn events_serialise_with_a_kind_tag_and_their_sentence() {
    let mut r = CaseReplica::open(new_case(), counsellor()).unwrap();
    r.log_activity(visit(4, true)).unwrap();
    let json = serde_json::to_value(last(&mut r)).unwrap();
    assert_eq!(json["events"][0]["kind"], "activity_logged");
    assert_eq!(json["events"][0]["outcome"], serde_json::json!({"key": "not_home", "label": "不在"}));
    assert_eq!(json["events"][0]["letter_left"], true);
    assert!(json["events"][0].get("channel").is_none());
    assert_eq!(json["summary"], "logged a visit (家庭訪問): not home (不在), letter left");
    assert_eq!(json["hash"].as_str().unwrap().len(), 64);
}
