//! Keeps the documentation true to the code.
//!
//! `docs/case-document.md` must list every closed list of `tsunagi_sync::domain` with each
//! key and its exact Japanese label, every violation code and every document key; and
//! `docs/protocol.md`, when it exists, every violation code.

use tsunagi_sync::document::{keys as k, Limits};
use tsunagi_sync::domain::catalogue::ReferralGroup;
use tsunagi_sync::domain::{
    ActivityKind, CaseStatus, ConcernTag, ConsentMethod, ConsentState, ConsultationMode, ConsultationTopic,
    ContactChannel, ContactOutcome, LetterItem, LetterPlace, MeetingKind, ObservedChange, PersonWish, Place,
    PlanVerdict, Relation, Role, SexKind, VisitOutcome,
};
use tsunagi_sync::validation::ViolationCode;

const CASE_DOCUMENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/case-document.md");
const PROTOCOL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/protocol.md");

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

fn backticked(s: &str) -> String {
    format!("`{s}`")
}

/// The lines of the section whose heading names the Rust type `` `name` ``, up to the next
/// heading.
fn section<'a>(doc: &'a str, name: &str) -> Result<Vec<&'a str>, String> {
    let tag = backticked(name);
    let mut lines = doc.lines();
    lines
        .by_ref()
        .find(|l| l.starts_with('#') && l.contains(&tag))
        .ok_or_else(|| format!("case-document.md has no heading naming {tag}"))?;
    Ok(lines.take_while(|l| !l.starts_with('#')).collect())
}

/// Every (key, label) pair must be on one line of the section of `name`.
fn check_list(doc: &str, name: &str, pairs: Vec<(&'static str, &'static str)>, missing: &mut Vec<String>) {
    let lines = match section(doc, name) {
        Ok(lines) => lines,
        Err(e) => {
            missing.push(e);
            return;
        }
    };
    for (key, label) in pairs {
        let key_tag = backticked(key);
        let found = lines.iter().any(|l| {
            l.trim_start().starts_with('|')
                && l.split('|').map(str::trim).any(|cell| cell == key_tag)
                && l.split('|').map(str::trim).any(|cell| cell == label)
        });
        if !found {
            missing.push(format!("{name}: no table row with key {key_tag} and label {label:?}"));
        }
    }
}

macro_rules! pairs {
    ($ty:ty) => {
        <$ty>::ALL.iter().map(|v| (v.as_key(), v.label())).collect::<Vec<_>>()
    };
}

#[test]
fn every_closed_list_is_documented_with_its_exact_labels() {
    let doc = read(CASE_DOCUMENT);
    let mut missing = Vec::new();
    check_list(&doc, "ActivityKind", pairs!(ActivityKind), &mut missing);
    check_list(&doc, "VisitOutcome", pairs!(VisitOutcome), &mut missing);
    check_list(&doc, "ContactChannel", pairs!(ContactChannel), &mut missing);
    check_list(&doc, "ContactOutcome", pairs!(ContactOutcome), &mut missing);
    check_list(&doc, "LetterItem", pairs!(LetterItem), &mut missing);
    check_list(&doc, "LetterPlace", pairs!(LetterPlace), &mut missing);
    check_list(&doc, "Place", pairs!(Place), &mut missing);
    check_list(&doc, "ConsultationMode", pairs!(ConsultationMode), &mut missing);
    check_list(&doc, "ConsultationTopic", pairs!(ConsultationTopic), &mut missing);
    check_list(&doc, "CaseStatus", pairs!(CaseStatus), &mut missing);
    check_list(&doc, "ConsentState", pairs!(ConsentState), &mut missing);
    check_list(&doc, "ConsentMethod", pairs!(ConsentMethod), &mut missing);
    check_list(&doc, "ConcernTag", pairs!(ConcernTag), &mut missing);
    check_list(&doc, "SexKind", pairs!(SexKind), &mut missing);
    check_list(&doc, "Relation", pairs!(Relation), &mut missing);
    check_list(&doc, "ObservedChange", pairs!(ObservedChange), &mut missing);
    check_list(&doc, "PersonWish", pairs!(PersonWish), &mut missing);
    check_list(&doc, "PlanVerdict", pairs!(PlanVerdict), &mut missing);
    check_list(&doc, "Role", pairs!(Role), &mut missing);
    check_list(&doc, "MeetingKind", pairs!(MeetingKind), &mut missing);
    check_list(&doc, "ReferralGroup", pairs!(ReferralGroup), &mut missing);
    assert!(missing.is_empty(), "docs/case-document.md is out of date:\n  {}", missing.join("\n  "));
}

fn missing_codes(doc: &str) -> Vec<&'static str> {
    ViolationCode::ALL.iter().map(|c| c.as_str()).filter(|code| !doc.contains(&backticked(code))).collect()
}

#[test]
fn every_violation_code_is_in_the_case_document_reference() {
    let missing = missing_codes(&read(CASE_DOCUMENT));
    assert!(missing.is_empty(), "docs/case-document.md does not mention violation codes: {missing:?}");
}

#[test]
fn every_violation_code_is_in_the_protocol_when_it_exists() {
    if !std::path::Path::new(PROTOCOL).exists() {
        eprintln!("docs/protocol.md does not exist yet; skipping");
        return;
    }
    let missing = missing_codes(&read(PROTOCOL));
    assert!(missing.is_empty(), "docs/protocol.md does not mention violation codes: {missing:?}");
}

/// Every key of `tsunagi_sync::document::keys`.
const DOCUMENT_KEYS: &[&str] = &[
    k::SCHEMA,
    k::CASE_ID,
    k::MUNICIPALITY,
    k::CASE_NUMBER,
    k::OPENED_ON,
    k::REFERRAL_SOURCE,
    k::AREA,
    k::STATUS,
    k::CONSENT,
    k::ASSIGNEES,
    k::HOUSEHOLD,
    k::ACTIVITIES,
    k::REVIEWS,
    k::PLANS,
    k::EVALUATIONS,
    k::DECISIONS,
    k::KIND,
    k::NAME,
    k::REFERRED_ON,
    k::STATE,
    k::ON,
    k::BY,
    k::PRIMARY,
    k::OTHERS,
    k::KANA,
    k::SEX,
    k::BIRTH_DATE,
    k::RELATION,
    k::IS_SUBJECT,
    k::CONCERNS,
    k::NOTE,
    k::OTHER,
    k::STARTED_AT,
    k::ENDED_AT,
    k::RECORDED_BY,
    k::DEVICE_ID,
    k::PLACE,
    k::FOLLOW_UP_ON,
    k::NARRATIVE,
    k::VOIDED,
    k::AT,
    k::REASON,
    k::OUTCOME,
    k::MET_PERSON_IDS,
    k::LETTER_LEFT,
    k::LETTER,
    k::ITEMS,
    k::LEFT_AT,
    k::REPLY_RECEIVED_ON,
    k::CHANNEL,
    k::AGENCY,
    k::PURPOSE,
    k::INFORMATION,
    k::INTEREST,
    k::MODE,
    k::TOPICS,
    k::ACTIVITY_ID,
    k::COMMENT,
    k::HEADS,
    k::ROUND,
    k::AUTHOR,
    k::DRAFTED_ON,
    k::ISSUES,
    k::GOALS,
    k::ACTIONS,
    k::WHO,
    k::WHAT,
    k::FREQUENCY,
    k::DURATION,
    k::PERIOD_UNTIL,
    k::NEXT_MONITORING_ON,
    k::EVALUATOR,
    k::EVALUATED_ON,
    k::GOAL_ATTAINMENT,
    k::OBSERVED_CHANGES,
    k::OBSERVED_OTHER,
    k::SITUATION,
    k::WISH,
    k::STAFF_OPINION,
    k::MEETING_ON,
    k::VERDICT,
    k::DECIDED_ON,
    k::NOTES,
    k::REFERRAL_DESTINATIONS,
    k::REFERRAL_OTHER,
    k::PAST_CONSULTATIONS,
    k::PAST_OTHER,
    k::REMARKS,
];

#[test]
fn every_document_key_is_documented() {
    let doc = read(CASE_DOCUMENT);
    // `letter.items`, `letter.left_at`... count as mentions of `items`, `left_at`.
    let missing: Vec<&str> = DOCUMENT_KEYS
        .iter()
        .copied()
        .filter(|key| !doc.contains(&backticked(key)) && !doc.contains(&format!(".{key}`")))
        .collect();
    assert!(missing.is_empty(), "docs/case-document.md does not mention document keys: {missing:?}");
}

#[test]
fn the_size_limits_are_the_code_s() {
    let doc = read(CASE_DOCUMENT);
    let Limits {
        long_text_chars,
        short_text_chars,
        household_members,
        activities,
        reviews,
        set_entries,
        forms,
        plan_actions,
    } = Limits::DEFAULT;
    let limits = [
        ("long_text_chars", long_text_chars),
        ("short_text_chars", short_text_chars),
        ("household_members", household_members),
        ("activities", activities),
        ("reviews", reviews),
        ("set_entries", set_entries),
        ("forms", forms),
        ("plan_actions", plan_actions),
    ];
    for (name, value) in limits {
        let tag = backticked(name);
        let value = value.to_string();
        assert!(
            doc.lines().any(|l| {
                let cells: Vec<&str> = l.split('|').map(str::trim).collect();
                cells.contains(&tag.as_str()) && cells.contains(&value.as_str())
            }),
            "docs/case-document.md: no table row with {tag} and its value {value}"
        );
    }
}
