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
//!   reviews: { review_id: {activity_id, by, at, comment: Text} },
//!   plans: {}, evaluations: {}, decisions: {} }
//! ```
//!
//! Rules that keep concurrent edits mergeable:
//! - Every container is created **once**, by whoever creates its owner: the case's top-level
//!   maps in the case's first change, an activity's `narrative`, `voided`, `met_person_ids`,
//!   `letter`, `topics` in the change that logs the activity, a person's `concerns` and
//!   `note` with the person. Nobody puts an object at an existing key again.
//! - Everything several devices add to is a map keyed by a fresh UUID, never a list.
//! - Free text two people may amend is Automerge `Text`.
//! - Scalars are registers; when Automerge keeps concurrent values, [`CaseView::conflicts`]
//!   lists every value with the device that wrote it.
//!
//! Values are strings unless said otherwise: dates `YYYY-MM-DD` (Western calendar, local
//! date in Japan), instants RFC 3339 with an offset (`2026-11-04T10:30:00+09:00`), ids
//! canonical lowercase UUIDs, enum values their keys from [`crate::domain`]. `schema` is an
//! integer; `is_subject` and `letter_left` booleans; set members map to `true`.
//!
//! [`read_case`] walks a document once and returns the typed [`CaseView`] together with every
//! schema issue it met. Phones show the view and ignore fields from a newer schema; the
//! server's [`crate::validation`] refuses a change whose result has issues.

mod read;
mod view;

pub use read::{read_case, CaseReading};
pub use view::*;

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
}

/// Size bounds on what a case document may hold. Generous for real work, tight enough that
/// one device cannot bloat a case for everyone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Characters in a narrative, a review comment or a person's note.
    pub long_text_chars: usize,
    /// Characters in a name, a place, an agency, a reason and other short text.
    pub short_text_chars: usize,
    /// Members of one household.
    pub household_members: usize,
    /// Activities in one case.
    pub activities: usize,
    /// Reviews in one case.
    pub reviews: usize,
    /// Entries of one set (met persons, concern tags, topics, other assignees...).
    pub set_entries: usize,
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
}
