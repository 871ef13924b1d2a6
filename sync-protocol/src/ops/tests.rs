//! Unit tests of the field operations: input checks, and that the validator accepts what
//! the operations write.

use super::*;
use crate::domain::{ConsultationMode, ConsultationTopic, ContactChannel, ContactOutcome, LetterItem, LetterPlace};
use crate::ids::DeviceId;
use crate::validation::{validate_update, Acting};
use chrono::TimeZone;

fn jst(day: u32, hour: u32) -> DateTime<FixedOffset> {
    FixedOffset::east_opt(9 * 3600).unwrap().with_ymd_and_hms(2026, 11, day, hour, 0, 0).unwrap()
}

fn counsellor() -> Actor {
    Actor::counsellor(StaffId::new_random(), DeviceId::new_random())
}

fn new_case() -> NewCase {
    let mut case =
        NewCase::new(MunicipalityCode::parse("122203").unwrap(), NaiveDate::from_ymd_opt(2026, 11, 2).unwrap());
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

/// Applies `op` to the replica and checks the validator accepts exactly that change.
fn accepted<T>(replica: &mut CaseReplica, op: impl FnOnce(&mut CaseReplica) -> Result<T, OpError>) -> T {
    let before = replica.heads();
    let out = op(replica).expect("operation");
    let actor = *replica.actor();
    let doc = replica.doc_mut().document().clone();
    if let Err(v) = validate_update(&doc, &before, &Acting::Staff(actor)) {
        panic!("validator refused an operation's change: {v:#?}");
    }
    out
}

#[test]
fn opening_a_case_creates_every_container_once_and_validates() {
    let actor = counsellor();
    let mut replica = CaseReplica::open(new_case(), actor).unwrap();
    let doc = replica.doc_mut().document().clone();
    let view = validate_update(&doc, &[], &Acting::Staff(actor)).unwrap();
    assert_eq!(view.household.len(), 2);
    assert_eq!(view.assignees.primary, Some(actor.staff));
    assert_eq!(view.status, CaseStatus::Intake);
    assert_eq!(replica.doc_mut().get_changes(&[]).len(), 1, "one change opens the case");
}

#[test]
fn every_kind_of_activity_is_logged_and_accepted() {
    let actor = counsellor();
    let mut r = CaseReplica::open(new_case(), actor).unwrap();
    let son = *r.view().unwrap().household.keys().next().unwrap();
    let kinds = vec![
        ActivityDetails::Visit { outcome: VisitOutcome::Met, met_person_ids: [son].into(), letter_left: false },
        ActivityDetails::LetterLeft {
            items: [LetterItem::Letter, LetterItem::Leaflet].into(),
            left_at: LetterPlace::Mailbox,
            reply_received_on: None,
        },
        ActivityDetails::ContactAttempt { channel: ContactChannel::Phone, outcome: ContactOutcome::NoAnswer },
        ActivityDetails::Accompaniment {
            agency: "hello_work".into(),
            purpose: "求職登録".into(),
            outcome: String::new(),
        },
        ActivityDetails::Information { information: "子ども食堂の案内".into(), interest: "料理".into() },
        ActivityDetails::Consultation {
            mode: ConsultationMode::InPerson,
            topics: [ConsultationTopic::Finances, ConsultationTopic::ChildRearing].into(),
        },
        ActivityDetails::Coordination { agency: "school".into() },
    ];
    for (i, details) in kinds.into_iter().enumerate() {
        let activity = NewActivity::new(jst(4, 9 + i as u32), Place::Home, details.clone())
            .with_narrative("経過記録")
            .with_follow_up(NaiveDate::from_ymd_opt(2026, 11, 20).unwrap());
        let id = accepted(&mut r, |r| r.log_activity(activity));
        let view = r.view().unwrap();
        let logged = &view.activities[&id];
        assert_eq!(logged.details, details);
        assert_eq!(logged.recorded_by, actor.staff);
        assert_eq!(logged.device_id, actor.device);
    }
    assert_eq!(r.view().unwrap().activities.len(), 7);
}

#[test]
fn operations_refuse_bad_input_and_leave_the_document_alone() {
    let actor = counsellor();
    let mut r = CaseReplica::open(new_case(), actor).unwrap();
    let heads = r.heads();
    let stranger = PersonId::new_random();
    let visit = |outcome, met: Vec<PersonId>| {
        NewActivity::new(
            jst(4, 10),
            Place::Home,
            ActivityDetails::Visit { outcome, met_person_ids: met.into_iter().collect(), letter_left: false },
        )
    };
    assert!(matches!(r.log_activity(visit(VisitOutcome::Met, vec![])), Err(OpError::Inconsistent(_))));
    assert!(
        matches!(r.log_activity(visit(VisitOutcome::Met, vec![stranger])), Err(OpError::UnknownPerson(p)) if p == stranger)
    );
    assert!(matches!(
        r.log_activity(visit(VisitOutcome::NotHome, vec![]).ending_at(jst(3, 10))),
        Err(OpError::Inconsistent(_))
    ));
    let letter = NewActivity::new(
        jst(4, 10),
        Place::Home,
        ActivityDetails::LetterLeft { items: Default::default(), left_at: LetterPlace::Door, reply_received_on: None },
    );
    assert!(matches!(r.log_activity(letter), Err(OpError::Empty(_))));
    let long = "あ".repeat(Limits::DEFAULT.long_text_chars + 1);
    assert!(matches!(
        r.log_activity(visit(VisitOutcome::NotHome, vec![]).with_narrative(long)),
        Err(OpError::TooLong { .. })
    ));
    assert!(matches!(r.add_person(NewPerson::new("  ")), Err(OpError::Empty("name"))));
    assert!(matches!(r.add_review(ActivityId::new_random(), "ok", jst(5, 9)), Err(OpError::SupervisorOnly(_))));
    assert!(matches!(r.set_primary_assignee(StaffId::new_random()), Err(OpError::SupervisorOnly(_))));
    assert_eq!(r.heads(), heads, "nothing was written");
}

#[test]
fn amendments_voids_status_and_consent_are_accepted() {
    let actor = counsellor();
    let mut r = CaseReplica::open(new_case(), actor).unwrap();
    let person = *r.view().unwrap().household.keys().next().unwrap();
    let id = accepted(&mut r, |r| {
        r.log_activity(
            NewActivity::new(
                jst(4, 10),
                Place::Home,
                ActivityDetails::Visit {
                    outcome: VisitOutcome::NotHome,
                    met_person_ids: Default::default(),
                    letter_left: true,
                },
            )
            .with_narrative("不在だった。"),
        )
    });
    accepted(&mut r, |r| r.amend_narrative(id, "不在だった。玄関に手紙を残した。"));
    accepted(&mut r, |r| r.insert_into_narrative(id, 0, "【訂正】"));
    accepted(&mut r, |r| r.set_follow_up(id, NaiveDate::from_ymd_opt(2026, 11, 11)));
    accepted(&mut r, |r| r.set_visit_outcome(id, VisitOutcome::Met, &[person]));
    accepted(&mut r, |r| r.set_status(CaseStatus::Outreach));
    accepted(&mut r, |r| {
        r.record_consent(
            ConsentState::Obtained,
            NaiveDate::from_ymd_opt(2026, 11, 4).unwrap(),
            Some(ConsentMethod::Written),
        )
    });
    accepted(&mut r, |r| r.set_concern(person, ConcernTag::Isolation, true));
    accepted(&mut r, |r| r.set_other_concern(person, Some("ペットの世話")));
    accepted(&mut r, |r| r.amend_person_note(person, "昼間は在宅が多い"));
    accepted(&mut r, |r| {
        r.amend_person(
            person,
            PersonUpdate {
                kana: Some(Some("やまだ はなこ".into())),
                sex: Some(Some(Sex::Listed(crate::domain::SexKind::Female))),
                ..Default::default()
            },
        )
    });
    accepted(&mut r, |r| r.void_activity(id, "別のケースに記録すべきだった", jst(5, 9)));
    let view = r.view().unwrap();
    let a = &view.activities[&id];
    assert_eq!(a.narrative, "【訂正】不在だった。玄関に手紙を残した。");
    assert_eq!(a.voided.as_ref().unwrap().by, actor.staff);
    assert_eq!(view.consent.state, ConsentState::Obtained);
    assert!(view.household[&person].concerns.tags.contains(&ConcernTag::Isolation));
    assert_eq!(view.household[&person].concerns.other.as_deref(), Some("ペットの世話"));
    assert!(matches!(r.void_activity(id, "again", jst(5, 10)), Err(OpError::AlreadyVoided(_))));
}

#[test]
fn supervisors_review_assign_and_void_others_activities() {
    let counsellor = counsellor();
    let mut phone = CaseReplica::open(new_case(), counsellor).unwrap();
    let id = phone
        .log_activity(NewActivity::new(
            jst(4, 10),
            Place::Phone,
            ActivityDetails::ContactAttempt { channel: ContactChannel::Phone, outcome: ContactOutcome::Reached },
        ))
        .unwrap();
    let supervisor = Actor::supervisor(StaffId::new_random(), DeviceId::new_random());
    let mut tablet = CaseReplica::load(&phone.save(), supervisor).unwrap();
    let review = accepted(&mut tablet, |r| r.add_review(id, "次回は同行を検討", jst(5, 9)));
    accepted(&mut tablet, |r| r.set_other_assignee(StaffId::new_random(), true));
    accepted(&mut tablet, |r| r.void_activity(id, "重複登録", jst(5, 10)));
    // A counsellor on another phone may not amend someone else's activity.
    let mut other = CaseReplica::load(&phone.save(), crate::ops::tests::counsellor()).unwrap();
    assert!(matches!(other.amend_narrative(id, "x"), Err(OpError::NotOwnActivity(_))));
    phone.merge(&mut tablet).unwrap();
    let view = phone.view().unwrap();
    assert_eq!(view.reviews_of(&id)[0].id, review);
    assert!(view.activities[&id].voided.is_some());
}

#[test]
fn meeting_tablets_and_administrators_write_nothing() {
    let case = CaseReplica::open(new_case(), counsellor()).unwrap().save();
    for role in [Role::MeetingTablet, Role::Administrator] {
        let actor = Actor { staff: StaffId::new_random(), device: DeviceId::new_random(), role };
        let mut r = CaseReplica::load(&case, actor).unwrap();
        assert!(matches!(r.set_status(CaseStatus::Closed), Err(OpError::ReadOnly(_))));
        assert!(matches!(CaseReplica::open(new_case(), actor), Err(OpError::ReadOnly(_))));
    }
}

#[test]
fn two_people_voiding_the_same_entry_offline_are_both_kept_as_a_conflict() {
    use crate::validation::apply_and_validate;
    let counsellor = counsellor();
    let mut phone = CaseReplica::open(new_case(), counsellor).unwrap();
    let id = phone
        .log_activity(NewActivity::new(
            jst(4, 10),
            Place::Home,
            ActivityDetails::ContactAttempt { channel: ContactChannel::Phone, outcome: ContactOutcome::NoAnswer },
        ))
        .unwrap();
    let supervisor = Actor::supervisor(StaffId::new_random(), DeviceId::new_random());
    let mut tablet = CaseReplica::load(&phone.save(), supervisor).unwrap();
    let shared = phone.heads();
    // Both void the same wrong entry while offline.
    phone.void_activity(id, "別世帯の記録", jst(5, 9)).unwrap();
    tablet.void_activity(id, "重複", jst(5, 10)).unwrap();
    let raw = |r: &mut CaseReplica| -> Vec<Vec<u8>> {
        r.changes_since(&shared).iter().map(|c| c.raw_bytes().to_vec()).collect()
    };
    // The server holds the shared state; the phone syncs first, then the tablet.
    let server = phone.doc_mut().document().clone();
    let mut server = server.fork_at(&shared).unwrap();
    let (after_phone, _) = apply_and_validate(&server, &raw(&mut phone), &Acting::Staff(counsellor)).unwrap();
    server = after_phone;
    let (merged, view) = apply_and_validate(&server, &raw(&mut tablet), &Acting::Staff(supervisor))
        .expect("a concurrent void is not a re-void: it is kept and surfaced");
    assert!(view.activities[&id].voided.is_some());
    assert!(view.conflicts.iter().any(|c| c.path == format!("/activities/{id}/voided/by") && c.values.len() == 2));
    // A *sequential* second void, on the other hand, is refused: a void is final.
    let mut later = CaseReplica::from_doc(AutoCommit::load(&merged.save()).unwrap(), supervisor);
    let before = later.heads();
    let voided =
        later.child_object(&later.entity(k::ACTIVITIES, &id.to_string()).unwrap().unwrap(), k::VOIDED).unwrap();
    later.doc_mut().put(&voided, k::REASON, "理由を書き換え").unwrap();
    later.doc_mut().commit();
    let bytes: Vec<Vec<u8>> = later.changes_since(&before).iter().map(|c| c.raw_bytes().to_vec()).collect();
    match apply_and_validate(&merged, &bytes, &Acting::Staff(supervisor)) {
        Err(crate::validation::BatchError::Refused(v)) => {
            assert!(v.iter().any(|v| v.code == crate::validation::ViolationCode::ImmutableField), "{v:?}")
        }
        other => panic!("a sequential re-void must be refused, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// The three forms.
// ---------------------------------------------------------------------------------------------

fn day(d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, d).unwrap()
}

fn supervisor() -> Actor {
    Actor::supervisor(StaffId::new_random(), DeviceId::new_random())
}

#[test]
fn a_plan_with_its_actions_is_added_amended_and_accepted() {
    let actor = counsellor();
    let mut r = CaseReplica::open(new_case(), actor).unwrap();
    let hello_work =
        NewPlanAction::new("本人", "ハローワークで求職登録").with_frequency("月1回").with_duration("3か月");
    let new = NewPlan::new(1, day(10))
        .with_issues("生活費が足りない")
        .with_goals("家計を立て直す")
        .with_action(hello_work.clone())
        .until(day(30))
        .with_next_monitoring(day(20));
    let plan = accepted(&mut r, |r| r.add_plan(new.clone()));
    // A retry writes nothing.
    let heads = r.heads();
    assert_eq!(r.add_plan(new).unwrap(), plan);
    assert_eq!(r.heads(), heads);
    let family = accepted(&mut r, |r| r.add_plan_action(plan, NewPlanAction::new("家族", "家事の分担を話し合う")));
    accepted(&mut r, |r| r.amend_form_text(FormText::PlanGoals(plan), "家計を立て直し、就労につなぐ"));

    let view = r.view().unwrap();
    let p = &view.plans[&plan];
    assert_eq!((p.round, p.author, p.drafted_on), (1, actor.staff, day(10)));
    assert_eq!(p.issues, "生活費が足りない");
    assert_eq!(p.goals, "家計を立て直し、就労につなぐ");
    assert_eq!(p.period_until, Some(day(30)));
    assert_eq!(p.next_monitoring_on, Some(day(20)));
    assert_eq!(p.actions.len(), 2);
    let row = &p.actions[&hello_work.id];
    assert_eq!((row.who.as_str(), row.frequency.as_str(), row.duration.as_str()), ("本人", "月1回", "3か月"));
    assert_eq!(p.actions[&family].frequency, "");
    assert_eq!(view.plans_by_round()[0].id, plan);
}

#[test]
fn an_evaluation_is_added_and_accepted() {
    let actor = counsellor();
    let mut r = CaseReplica::open(new_case(), actor).unwrap();
    let new = NewEvaluation::new(1, day(20))
        .with_goal_attainment("求職登録まで進んだ")
        .with_change(ObservedChange::JobSearch)
        .with_change(ObservedChange::MotivationImproved)
        .with_change(ObservedChange::Other)
        .with_other_change("地域の清掃活動に参加")
        .with_situation("家計は不安定なまま")
        .with_wish(PersonWish::Continue)
        .with_staff_opinion("継続支援が必要");
    let id = accepted(&mut r, |r| r.add_evaluation(new));
    accepted(&mut r, |r| r.amend_form_text(FormText::EvaluationSituation(id), "家計はやや安定"));
    let view = r.view().unwrap();
    let e = &view.evaluations[&id];
    assert_eq!(e.evaluator, actor.staff);
    // `Other` is the text of `observed_other`, never a member of the set.
    assert_eq!(e.observed_changes, [ObservedChange::JobSearch, ObservedChange::MotivationImproved].into());
    assert_eq!(e.observed_other.as_deref(), Some("地域の清掃活動に参加"));
    assert!(e.checked_changes().contains(&ObservedChange::Other));
    assert_eq!(e.wish, Some(PersonWish::Continue));
    assert_eq!(e.situation, "家計はやや安定");
}

#[test]
fn a_supervisor_records_the_decision_that_lets_the_case_close() {
    let sato = counsellor();
    let mut phone = CaseReplica::open(new_case(), sato).unwrap();
    let heads = phone.heads();
    assert!(matches!(phone.set_status(CaseStatus::Closed), Err(OpError::ClosingWithoutDecision)));
    let close = NewDecision::new(day(25), PlanVerdict::Close);
    assert!(matches!(phone.record_decision(close.clone()), Err(OpError::SupervisorOnly(_))));
    assert_eq!(phone.heads(), heads, "nothing was written");

    let mut tablet = CaseReplica::load(&phone.save(), supervisor()).unwrap();
    let close = close
        .decided(day(26))
        .referred_to(["hello_work", "community_general_support_center"])
        .referred_to_other("NPO法人つなぎ")
        .consulted_before(["welfare_commissioner"])
        .with_notes("終結後も見守り")
        .with_remarks("本人了承済み");
    let decision = accepted(&mut tablet, |r| r.record_decision(close));
    accepted(&mut tablet, |r| r.amend_form_text(FormText::DecisionRemarks(decision), "本人・家族了承済み"));
    assert!(matches!(
        phone.amend_form_text(FormText::DecisionNotes(decision), "x"),
        Err(OpError::SupervisorOnly(_) | OpError::UnknownDecision(_))
    ));
    phone.merge(&mut tablet).unwrap();
    accepted(&mut phone, |r| r.set_status(CaseStatus::Closed));

    let view = phone.view().unwrap();
    let d = &view.decisions[&decision];
    assert_eq!((d.verdict, d.referred_on, d.decided_on), (PlanVerdict::Close, true, day(26)));
    assert_eq!(d.referral_destinations.len(), 2);
    assert_eq!(d.referral_other.as_deref(), Some("NPO法人つなぎ"));
    assert_eq!(d.past_consultations, ["welfare_commissioner".to_owned()].into());
    assert_eq!(d.remarks, "本人・家族了承済み");
    assert_eq!(view.status, CaseStatus::Closed);
}

#[test]
fn form_operations_refuse_bad_input_and_leave_the_document_alone() {
    let mut r = CaseReplica::open(new_case(), counsellor()).unwrap();
    let heads = r.heads();
    assert!(matches!(r.add_plan(NewPlan::new(0, day(10))), Err(OpError::Inconsistent(_))));
    assert!(matches!(r.add_plan(NewPlan::new(1, day(10)).until(day(9))), Err(OpError::Inconsistent(_))));
    assert!(matches!(
        r.add_plan(NewPlan::new(1, day(10)).with_action(NewPlanAction::new("", "求職登録"))),
        Err(OpError::Empty("who"))
    ));
    let unknown = PlanId::new_random();
    assert!(
        matches!(r.add_plan_action(unknown, NewPlanAction::new("本人", "通院")), Err(OpError::UnknownPlan(p)) if p == unknown)
    );
    assert!(matches!(
        r.add_evaluation(
            NewEvaluation::new(1, day(20)).with_change(ObservedChange::NoChange).with_change(ObservedChange::JobSearch)
        ),
        Err(OpError::Inconsistent(_))
    ));
    assert!(matches!(
        r.amend_form_text(FormText::PlanIssues(unknown), "x"),
        Err(OpError::UnknownPlan(p)) if p == unknown
    ));
    assert_eq!(r.heads(), heads, "nothing was written");

    let mut tablet = CaseReplica::load(&r.save(), supervisor()).unwrap();
    let heads = tablet.heads();
    let close = || NewDecision::new(day(25), PlanVerdict::Close);
    assert!(matches!(
        tablet.record_decision(close().referred_to(["nowhere"])),
        Err(OpError::UnknownDestination(k)) if k == "nowhere"
    ));
    assert!(matches!(
        tablet.record_decision(close().referred_to(["other"])),
        Err(OpError::UnknownDestination(k)) if k == "other"
    ));
    let mut referred_nowhere = close();
    referred_nowhere.referred_on = true;
    assert!(matches!(tablet.record_decision(referred_nowhere), Err(OpError::Inconsistent(_))));
    assert!(matches!(
        tablet.record_decision(NewDecision::new(day(25), PlanVerdict::Replan).referred_to(["hello_work"])),
        Err(OpError::Inconsistent(_))
    ));
    assert_eq!(tablet.heads(), heads, "nothing was written");
}
