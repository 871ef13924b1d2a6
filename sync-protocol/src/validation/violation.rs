//! What validation reports: a list of [`Violation`]s, each with a stable machine code, the
//! document path it concerns, and a message for people.

use serde::{Deserialize, Serialize};

/// A stable, machine-readable reason a change was refused. The string forms (`as_str`, and
/// the serde form) are part of the wire protocol: never rename one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ViolationCode {
    /// A change was authored by an actor that is not the uploading device.
    ForeignActor,
    /// The document is not a case document of a schema this code knows.
    UnsupportedSchema,
    /// The first change of a case did not create the case with all its containers.
    NotACase,
    /// A container (map or text) was created at a path where one already existed, or two
    /// were created concurrently: one would silently hide the other.
    ContainerRecreated,
    /// An activity, household member, review or form was deleted (void it instead).
    DeletedEntity,
    /// A field that is fixed at creation (case id, municipality, kind, author...) changed.
    ImmutableField,
    /// Only the server assigns the case number.
    ServerOnlyField,
    /// Only supervisors may do this (reviews, assignment, meeting decisions).
    SupervisorOnly,
    /// This role may not write to case documents at all (meeting tablet, administrator).
    ReadOnlyRole,
    /// A counsellor may amend only activities they recorded themselves.
    NotOwnActivity,
    /// A new activity's `recorded_by` / `device_id` (or a review's `by`, a void's `by`, a
    /// form's author) is not the acting staff member / device.
    AuthorMismatch,
    /// A required field is missing.
    MissingField,
    /// A value has the wrong type (e.g. a number where a string belongs).
    WrongType,
    /// A key that is not in its closed list.
    InvalidEnum,
    /// A date or timestamp that is not a real date in the expected format.
    InvalidDate,
    /// An id that is not a canonical UUID (or a case number / municipality code that does not
    /// parse).
    InvalidId,
    /// Fields that contradict each other (ended before started; a visit that met people but
    /// names none; a review of an activity the case does not have).
    Inconsistent,
    /// A visit names a person who is not a member of the household.
    UnknownPerson,
    /// A field this schema version does not know.
    UnknownField,
    /// A text is longer than allowed.
    TooLong,
    /// A collection has more entries than allowed.
    TooMany,
    /// A change set the case's status to `closed`, but the case holds no meeting decision
    /// with the verdict `close` (closing requires a meeting decision).
    ClosingWithoutDecision,
    /// A meeting decision says the person was referred on to other agencies but names no
    /// referral destination (neither a catalogue key nor `referral_other`).
    ReferralWithoutDestination,
}

impl ViolationCode {
    /// The stable string form, as sent on the wire.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::ForeignActor => "foreign_actor",
            Self::UnsupportedSchema => "unsupported_schema",
            Self::NotACase => "not_a_case",
            Self::ContainerRecreated => "container_recreated",
            Self::DeletedEntity => "deleted_entity",
            Self::ImmutableField => "immutable_field",
            Self::ServerOnlyField => "server_only_field",
            Self::SupervisorOnly => "supervisor_only",
            Self::ReadOnlyRole => "read_only_role",
            Self::NotOwnActivity => "not_own_activity",
            Self::AuthorMismatch => "author_mismatch",
            Self::MissingField => "missing_field",
            Self::WrongType => "wrong_type",
            Self::InvalidEnum => "invalid_enum",
            Self::InvalidDate => "invalid_date",
            Self::InvalidId => "invalid_id",
            Self::Inconsistent => "inconsistent",
            Self::UnknownPerson => "unknown_person",
            Self::UnknownField => "unknown_field",
            Self::TooLong => "too_long",
            Self::TooMany => "too_many",
            Self::ClosingWithoutDecision => "closing_without_decision",
            Self::ReferralWithoutDestination => "referral_without_destination",
        }
    }

    /// Every code, for documentation and exhaustive tests.
    pub const ALL: &'static [ViolationCode] = &[
        Self::ForeignActor,
        Self::UnsupportedSchema,
        Self::NotACase,
        Self::ContainerRecreated,
        Self::DeletedEntity,
        Self::ImmutableField,
        Self::ServerOnlyField,
        Self::SupervisorOnly,
        Self::ReadOnlyRole,
        Self::NotOwnActivity,
        Self::AuthorMismatch,
        Self::MissingField,
        Self::WrongType,
        Self::InvalidEnum,
        Self::InvalidDate,
        Self::InvalidId,
        Self::Inconsistent,
        Self::UnknownPerson,
        Self::UnknownField,
        Self::TooLong,
        Self::TooMany,
        Self::ClosingWithoutDecision,
        Self::ReferralWithoutDestination,
    ];
}

impl std::fmt::Display for ViolationCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One reason a set of changes was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    /// The stable machine code.
    pub code: ViolationCode,
    /// The document path concerned, as `/`-separated keys from the root, e.g.
    /// `/activities/0191e3c4-…/narrative`; `/` for the whole document.
    pub path: String,
    /// A message for people (English; never contains case content such as names or narrative).
    pub message: String,
}

impl Violation {
    /// Builds a violation.
    pub fn new(code: ViolationCode, path: impl Into<String>, message: impl Into<String>) -> Self {
        Self { code, path: path.into(), message: message.into() }
    }
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at {}: {}", self.code, self.path, self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_forms_match_serde() {
        for code in ViolationCode::ALL {
            let json = serde_json::to_string(code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
    }
}
