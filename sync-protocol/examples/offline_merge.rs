//! Two counsellors work offline on the same case, each on their own phone; then the phones
//! exchange changes. Nothing is lost: both visits are there, both amendments of the shared
//! narrative survive character by character, and a concurrent status change is surfaced as
//! a conflict instead of being silently overwritten.
//!
//! Run it with `cargo run -p tsunagi-sync --example offline_merge`.

use chrono::{FixedOffset, NaiveDate, TimeZone};
use tsunagi_sync::document::{ActivityDetails, CaseView};
use tsunagi_sync::domain::{CaseStatus, ConcernTag, LetterItem, LetterPlace, Place, Relation, VisitOutcome};
use tsunagi_sync::ids::{DeviceId, MunicipalityCode, StaffId};
use tsunagi_sync::ops::{CaseReplica, NewActivity, NewCase, NewPerson};
use tsunagi_sync::store::ReplicaStore;
use tsunagi_sync::validation::{apply_and_validate, Acting, Actor};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let jst = FixedOffset::east_opt(9 * 3600).ok_or("offset")?;
    let at = |day, hour, minute| jst.with_ymd_and_hms(2026, 11, day, hour, minute, 0).single().ok_or("time");
    let sato = Actor::counsellor(StaffId::new_random(), DeviceId::new_random());
    let ito = Actor::counsellor(StaffId::new_random(), DeviceId::new_random());

    println!("1. 佐藤 opens a case in the field (offline) for an 8050 household.");
    let mut case =
        NewCase::new(MunicipalityCode::parse("122203")?, NaiveDate::from_ymd_opt(2026, 11, 2).ok_or("date")?);
    let mut mother = NewPerson::new("高橋 トメ");
    mother.kana = Some("たかはし とめ".into());
    mother.relation = Some(Relation::Mother);
    mother.concerns = vec![ConcernTag::Dementia];
    let mut son = NewPerson::new("高橋 健一");
    son.kana = Some("たかはし けんいち".into());
    son.relation = Some(Relation::Subject);
    son.is_subject = true;
    son.concerns = vec![ConcernTag::Withdrawal, ConcernTag::Poverty];
    case.household = vec![mother, son];
    let mut phone_a = CaseReplica::open(case, sato)?;

    // The first change is what the server would check on first sync.
    let opening: Vec<Vec<u8>> = phone_a.changes_since(&[]).iter().map(|c| c.raw_bytes().to_vec()).collect();
    apply_and_validate(&automerge::Automerge::new(), &opening, &Acting::Staff(sato))
        .map_err(|e| format!("the opening change should validate: {e}"))?;
    println!("   the opening change validates as the server would check it.");

    println!("2. 伊藤 receives the case; both phones go offline.");
    let mut phone_b = CaseReplica::load(&phone_a.save(), ito)?;
    let shared = phone_a.log_activity(
        NewActivity::new(
            at(4, 10, 0)?,
            Place::Home,
            ActivityDetails::Visit {
                outcome: VisitOutcome::NotHome,
                met_person_ids: Default::default(),
                letter_left: true,
            },
        )
        .with_narrative("インターホンに応答なし。"),
    )?;
    phone_b.merge(&mut phone_a)?;
    let mut phone_a2 = CaseReplica::load(&phone_a.save(), Actor { device: DeviceId::new_random(), ..sato })?;

    println!("3. Offline: 佐藤 amends the narrative on two devices; 伊藤 leaves a letter; both change the status.");
    phone_a.amend_narrative(shared, "インターホンに応答なし。玄関に手紙を残した。")?;
    phone_a2.insert_into_narrative(shared, 0, "【10時】")?;
    phone_b.log_activity(
        NewActivity::new(
            at(4, 15, 30)?,
            Place::Home,
            ActivityDetails::LetterLeft {
                items: [LetterItem::Letter, LetterItem::Leaflet].into(),
                left_at: LetterPlace::Mailbox,
                reply_received_on: None,
            },
        )
        .with_narrative("趣味の釣りに関するチラシを同封。"),
    )?;
    phone_a.set_status(CaseStatus::Outreach)?;
    phone_b.set_status(CaseStatus::Planning)?;

    println!("4. Each phone keeps its replica in a crash-safe local store.");
    let dir = std::env::temp_dir().join(format!("tsunagi-example-{}", std::process::id()));
    let case_id = phone_a.case_id()?;
    {
        let mut store = ReplicaStore::open(&dir)?;
        store.save_doc(&case_id, phone_a.doc_mut())?;
    }
    let store = ReplicaStore::open(&dir)?;
    let reloaded = store.load_doc(&case_id)?.ok_or("the case was saved")?;
    let mut phone_a = CaseReplica::from_doc(reloaded, sato);
    store.wipe()?;

    println!("5. Signal returns: the replicas exchange changes.");
    phone_a.merge(&mut phone_b)?;
    phone_a.merge(&mut phone_a2)?;
    phone_b.merge(&mut phone_a)?;
    phone_a2.merge(&mut phone_a)?;
    assert_eq!(phone_a.heads(), phone_b.heads());
    assert_eq!(phone_a.heads(), phone_a2.heads());
    let view = phone_a.view()?;
    assert_eq!(view, phone_b.view()?);
    print_case(&view);
    Ok(())
}

fn print_case(view: &CaseView) {
    println!("\n== 世帯 ==");
    for person in view.household.values() {
        let tags: Vec<&str> = person.concerns.tags.iter().map(|t| t.label()).collect();
        let relation = person.relation.map(|r| r.label()).unwrap_or("-");
        println!(
            "  {} ({}) 続柄: {} 困難要素: {}",
            person.name,
            person.kana.as_deref().unwrap_or(""),
            relation,
            tags.join("・")
        );
    }
    println!("== 活動 ==");
    for activity in view.activities_by_time() {
        println!(
            "  {} {} [{}] {}",
            activity.started_at.format("%Y-%m-%d %H:%M"),
            activity.kind().label(),
            activity.place.label(),
            activity.narrative
        );
    }
    println!("== 状態 == {} ({})", view.status.label(), view.status.as_key());
    for conflict in &view.conflicts {
        let values: Vec<String> = conflict
            .values
            .iter()
            .map(|v| format!("{} (device {})", v.value, v.device_id.map(|d| d.to_string()).unwrap_or_default()))
            .collect();
        println!("== 競合 (for a supervisor to settle) == {}: {}", conflict.path, values.join(" / "));
    }
}
