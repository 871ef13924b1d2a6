//! The case document: one Automerge document per case, the source of truth for everything a
//! field device can touch.
//!
//! ## Shape (schema 1)
//!
//! ```text
//! { schema: 1, case_id, municipality, case_number (server only), opened_on,
//!   referral_source: {kind, name, referred_on}, area, status, consent: {state, on, by},
//!   assignees: {primary, others: {staff_id: true}},
//!   household: { person_id: {name, kana, sex, birth_date, relation, is_subject,
//!                            concerns: {tag: true, other: "free text"}, note: Text} },
//!   activities: { activity_id: {kind, started_at, ended_at, recorded_by, device_id, place,
//!                               follow_up_on, narrative: Text, voided: {by, at, reason},
//!                               ...fields of its kind} },
//!   reviews: { review_id: {activity_id, by, at, comment: Text, heads} },
//!   plans: { plan_id: {round, author, drafted_on, issues: Text, goals: Text,
//!                      actions: { action_id: {who, what, frequency, duration} },
//!                      period_until, next_monitoring_on} },
//!   evaluations: { evaluation_id: {round, evaluator, evaluated_on, goal_attainment: Text,
//!                                  observed_changes: {change: true}, observed_other,
//!                                  situation: Text, wish, staff_opinion: Text} },
//!   decisions: { decision_id: {meeting_on, verdict, referred_on, decided_on, notes: Text,
//!                              referral_destinations: {catalogue_key: true}, referral_other,
//!                              past_consultations: {catalogue_key: true}, past_other,
//!                              remarks: Text, recorded_by} } }
//! ```
//!
//! Rules that keep concurrent edits mergeable:
//! - Every container is created **once**, by whoever creates its owner: the case's top-level
//!   maps in the case's first change, an activity's `narrative`, `voided`, `met_person_ids`,
//!   `letter`, `topics` in the change that logs the activity, a person's `concerns` and
//!   `note` with the person, every map and Text of a form (plan, evaluation, decision) in the
//!   change that adds the form, a plan's action row in the change that adds the row. Nobody
//!   puts an object at an existing key again.
//! - Everything several devices add to is a map keyed by a fresh UUID, never a list.
//! - Free text two people may amend is Automerge `Text`.
//! - Scalars are registers; when Automerge keeps concurrent values, [`CaseView::conflicts`]
//!   lists every value with the device that wrote it.
//!
//! Values are strings unless said otherwise: dates `YYYY-MM-DD` (Western calendar, local
//! date in Japan), instants RFC 3339 with an offset (`2026-11-04T10:30:00+09:00`), ids
//! canonical lowercase UUIDs, enum values their keys from [`crate::domain`]. `schema` and a
//! form's `round` are integers; `is_subject`, `letter_left` and a decision's `referred_on`
//! booleans; set members map to `true`.
//!
//! [`read_case`] walks a document once and returns the typed [`CaseView`] together with every
//! schema issue it met. Phones show the view and ignore fields from a newer schema; the
//! server's [`crate::validation`] refuses a change whose result has issues.
//!
//! Saved bytes that come from outside the process (a replica file, an assigned document)
//! are loaded with [`load_saved`], which refuses damaged bytes, chunk types tsunagi never
//! writes and documents whose columns claim more than a case can hold, before Automerge
//! parses them.
//!
//! A review records the document `heads` its author saw (see [`format_heads`]);
//! [`changed_since`] and [`since_last_review`] tell which activities were added or amended
//! after them.

mod read;
mod saved;
mod since;
mod view;

pub use read::{read_case, reread_activities, CaseReading};
pub use saved::{load_saved, Claim, SavedError};
pub use since::{changed_since, since_last_review, ChangedSince, SinceReview, UnknownHeads};
pub use view::*;

use automerge::ChangeHash;

/// The schema version this code writes and fully understands.
pub const SCHEMA_VERSION: i64 = 1;

/// Keys of the case document, so that no string is spelled twice.
pub mod keys {
    #![allow(missing_docs)]
    pub const SCHEMA: &str = "schema";
    pub const CASE_ID: &str = "case_id";
    pub const MUNICIPALITY: &str = "municipality";
    pub const CASE_NUMBER: &str = "case_number";
    pub const OPENED_ON: &str = "opened_on";
    pub const REFERRAL_SOURCE: &str = "referral_source";
    pub const AREA: &str = "area";
    pub const STATUS: &str = "status";
    pub const CONSENT: &str = "consent";
    pub const ASSIGNEES: &str = "assignees";
    pub const HOUSEHOLD: &str = "household";
    pub const ACTIVITIES: &str = "activities";
    pub const REVIEWS: &str = "reviews";
    pub const PLANS: &str = "plans";
    pub const EVALUATIONS: &str = "evaluations";
    pub const DECISIONS: &str = "decisions";

    // referral_source
    pub const KIND: &str = "kind";
    pub const NAME: &str = "name";
    pub const REFERRED_ON: &str = "referred_on";
    // consent
    pub const STATE: &str = "state";
    pub const ON: &str = "on";
    pub const BY: &str = "by";
    // assignees
    pub const PRIMARY: &str = "primary";
    pub const OTHERS: &str = "others";
    // person
    pub const KANA: &str = "kana";
    pub const SEX: &str = "sex";
    pub const BIRTH_DATE: &str = "birth_date";
    pub const RELATION: &str = "relation";
    pub const IS_SUBJECT: &str = "is_subject";
    pub const CONCERNS: &str = "concerns";
    pub const NOTE: &str = "note";
    pub const OTHER: &str = "other";
    // activity
    pub const STARTED_AT: &str = "started_at";
    pub const ENDED_AT: &str = "ended_at";
    pub const RECORDED_BY: &str = "recorded_by";
    pub const DEVICE_ID: &str = "device_id";
    pub const PLACE: &str = "place";
    pub const FOLLOW_UP_ON: &str = "follow_up_on";
    pub const NARRATIVE: &str = "narrative";
    pub const VOIDED: &str = "voided";
    pub const AT: &str = "at";
    pub const REASON: &str = "reason";
    pub const OUTCOME: &str = "outcome";
    pub const MET_PERSON_IDS: &str = "met_person_ids";
    pub const LETTER_LEFT: &str = "letter_left";
    pub const LETTER: &str = "letter";
    pub const ITEMS: &str = "items";
    pub const LEFT_AT: &str = "left_at";
    pub const REPLY_RECEIVED_ON: &str = "reply_received_on";
    pub const CHANNEL: &str = "channel";
    pub const AGENCY: &str = "agency";
    pub const PURPOSE: &str = "purpose";
    pub const INFORMATION: &str = "information";
    pub const INTEREST: &str = "interest";
    pub const MODE: &str = "mode";
    pub const TOPICS: &str = "topics";
    // review
    pub const ACTIVITY_ID: &str = "activity_id";
    pub const COMMENT: &str = "comment";
    pub const HEADS: &str = "heads";
    // forms: plan (様式第1号)
    pub const ROUND: &str = "round";
    pub const AUTHOR: &str = "author";
    pub const DRAFTED_ON: &str = "drafted_on";
    pub const ISSUES: &str = "issues";
    pub const GOALS: &str = "goals";
    pub const ACTIONS: &str = "actions";
    pub const WHO: &str = "who";
    pub const WHAT: &str = "what";
    pub const FREQUENCY: &str = "frequency";
    pub const DURATION: &str = "duration";
    pub const PERIOD_UNTIL: &str = "period_until";
    pub const NEXT_MONITORING_ON: &str = "next_monitoring_on";
    // forms: evaluation (様式第2号)
    pub const EVALUATOR: &str = "evaluator";
    pub const EVALUATED_ON: &str = "evaluated_on";
    pub const GOAL_ATTAINMENT: &str = "goal_attainment";
    pub const OBSERVED_CHANGES: &str = "observed_changes";
    pub const OBSERVED_OTHER: &str = "observed_other";
    pub const SITUATION: &str = "situation";
    pub const WISH: &str = "wish";
    pub const STAFF_OPINION: &str = "staff_opinion";
    // forms: meeting decision (様式第2-2号); also `referred_on` and `recorded_by`
    pub const MEETING_ON: &str = "meeting_on";
    pub const VERDICT: &str = "verdict";
    pub const DECIDED_ON: &str = "decided_on";
    pub const NOTES: &str = "notes";
    pub const REFERRAL_DESTINATIONS: &str = "referral_destinations";
    pub const REFERRAL_OTHER: &str = "referral_other";
    pub const PAST_CONSULTATIONS: &str = "past_consultations";
    pub const PAST_OTHER: &str = "past_other";
    pub const REMARKS: &str = "remarks";
}

/// Size bounds on what a case document may hold. Generous for real work, tight enough that
/// one device cannot bloat a case for everyone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Characters in a narrative, a review comment, a person's note or a form's free text.
    pub long_text_chars: usize,
    /// Characters in a name, a place, an agency, a reason, a plan action's fields and other
    /// short text.
    pub short_text_chars: usize,
    /// Members of one household.
    pub household_members: usize,
    /// Activities in one case.
    pub activities: usize,
    /// Reviews in one case.
    pub reviews: usize,
    /// Entries of one set (met persons, concern tags, topics, other assignees, observed
    /// changes, referral destinations...).
    pub set_entries: usize,
    /// Forms of each kind in one case: plans, evaluations and decisions each. Also the
    /// highest `round` a plan or an evaluation may have.
    pub forms: usize,
    /// Action rows of one plan.
    pub plan_actions: usize,
}

impl Limits {
    /// The bounds every tsunagi component applies.
    pub const DEFAULT: Limits = Limits {
        long_text_chars: 20_000,
        short_text_chars: 200,
        household_members: 50,
        activities: 20_000,
        reviews: 20_000,
        set_entries: 50,
        forms: 200,
        plan_actions: 50,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Formats a date as stored in the document.
pub fn format_date(date: chrono::NaiveDate) -> String {
    date.format("%Y-%m-%d").to_string()
}

/// Formats an instant as stored in the document (RFC 3339, seconds, with its offset).
pub fn format_instant(at: chrono::DateTime<chrono::FixedOffset>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Parses a stored date: exactly `YYYY-MM-DD`, and a real date.
pub fn parse_date(s: &str) -> Option<chrono::NaiveDate> {
    let date = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
    (format_date(date) == s).then_some(date)
}

/// Parses a stored instant: RFC 3339 with an explicit offset.
pub fn parse_instant(s: &str) -> Option<chrono::DateTime<chrono::FixedOffset>> {
    chrono::DateTime::parse_from_rfc3339(s).ok()
}

/// Why a stored `heads` value does not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeadsError {
    /// The value names no change at all.
    #[error("names no change; leave `heads` out instead")]
    Empty,
    /// One entry is not 64 lowercase hexadecimal digits.
    #[error("{0:?} is not a change hash (64 lowercase hexadecimal digits)")]
    Malformed(String),
    /// The hashes are not in ascending order, or one is repeated.
    #[error("change hashes are listed once each, in ascending order")]
    NotSorted,
}

/// Formats document heads as stored in a review's `heads`: the change hashes in lowercase
/// hex, sorted, each once, separated by commas.
pub fn format_heads(heads: &[ChangeHash]) -> String {
    let mut sorted = heads.to_vec();
    sorted.sort();
    sorted.dedup();
    sorted.iter().map(|h| h.to_string()).collect::<Vec<_>>().join(",")
}

/// Parses a stored `heads` value: exactly what [`format_heads`] writes (at least one hash,
/// lowercase hex, ascending, no repeats).
pub fn parse_heads(s: &str) -> Result<Vec<ChangeHash>, HeadsError> {
    if s.is_empty() {
        return Err(HeadsError::Empty);
    }
    let mut out: Vec<ChangeHash> = Vec::new();
    for part in s.split(',') {
        let canonical = part.len() == 64 && part.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        let hash = canonical
            .then(|| part.parse::<ChangeHash>().ok())
            .flatten()
            .ok_or_else(|| HeadsError::Malformed(part.chars().take(80).collect()))?;
        if out.last().is_some_and(|last| *last >= hash) {
            return Err(HeadsError::NotSorted);
        }
        out.push(hash);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_strict() {
        assert!(parse_date("2026-11-04").is_some());
        for bad in ["2026-2-30", "2026-02-30", "2026-1-04", "04/11/2026", "2026-11-04T00:00:00", ""] {
            assert!(parse_date(bad).is_none(), "{bad}");
        }
        let at = parse_instant("2026-11-04T10:30:00+09:00").unwrap();
        assert_eq!(format_instant(at), "2026-11-04T10:30:00+09:00");
        assert!(parse_instant("2026-11-04T10:30:00").is_none());
    }

    #[test]
    fn heads_are_sorted_lowercase_hex() {
        let a = ChangeHash([0x0a; 32]);
        let b = ChangeHash([0xb0; 32]);
        let stored = format_heads(&[b, a, b]);
        assert_eq!(stored, format!("{a},{b}"));
        assert_eq!(parse_heads(&stored).unwrap(), vec![a, b]);
        assert_eq!(parse_heads(&a.to_string()).unwrap(), vec![a]);
        assert_eq!(parse_heads(""), Err(HeadsError::Empty));
        assert_eq!(parse_heads(&format!("{b},{a}")), Err(HeadsError::NotSorted));
        assert_eq!(parse_heads(&format!("{a},{a}")), Err(HeadsError::NotSorted));
        let upper = a.to_string().to_uppercase();
        for bad in [upper.as_str(), "abc", &format!("{a},"), &format!("{a}, {b}"), &"g".repeat(64)] {
            assert!(matches!(parse_heads(bad), Err(HeadsError::Malformed(_))), "{bad}");
        }
    }
}
