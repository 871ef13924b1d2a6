//! Identifiers that parse at the edge: once you hold a [`CaseId`], a [`CaseNumber`] or a
//! [`MunicipalityCode`], it is valid, and nothing downstream checks it again.
//!
//! Entity ids (cases, persons, activities, reviews, plans and their action rows, evaluations,
//! decisions, staff, devices) are UUIDs. In the case document they are stored as lowercase
//! hyphenated strings (`"0191e3c4-7d2a-4b8e-9f00-2c1d5e6f7a8b"`), which is also their
//! `Display` form.

use std::fmt;
use std::str::FromStr;

use chrono::{Datelike, FixedOffset, NaiveDate};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Why a string could not be parsed into one of the identifiers of this module.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// Not a UUID in the hyphenated form.
    #[error("{what} must be a UUID (e.g. 0191e3c4-7d2a-4b8e-9f00-2c1d5e6f7a8b), got {got:?}")]
    NotUuid {
        /// Which identifier was being parsed.
        what: &'static str,
        /// The offending input (ids are not personal data).
        got: String,
    },
    /// The nil UUID is never a valid entity id.
    #[error("{what} must not be the nil UUID")]
    Nil {
        /// Which identifier was being parsed.
        what: &'static str,
    },
    /// A case number is `YYYY-NNNN`.
    #[error("a case number looks like 2026-0153 (fiscal year, dash, serial of at least 4 digits), got {0:?}")]
    CaseNumber(String),
    /// A fiscal year out of the supported range.
    #[error("fiscal year {0} is outside 2000..=2999")]
    FiscalYear(i32),
    /// A municipality code is the 6-digit 全国地方公共団体コード with a valid check digit.
    #[error("a municipality code is 6 digits with a valid check digit (e.g. 122173 for Kashiwa), got {0:?}")]
    MunicipalityCode(String),
}

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(Uuid);

        impl $name {
            /// A fresh random (v4) id, as a device makes when it creates the entity.
            pub fn new_random() -> Self {
                Self(Uuid::new_v4())
            }

            /// Wraps an existing UUID; the nil UUID is refused.
            pub fn from_uuid(uuid: Uuid) -> Result<Self, IdError> {
                if uuid.is_nil() {
                    return Err(IdError::Nil { what: $what });
                }
                Ok(Self(uuid))
            }

            /// Parses the hyphenated UUID form used in documents and on the wire.
            pub fn parse(s: &str) -> Result<Self, IdError> {
                // Only the canonical hyphenated form is accepted, so that one entity has
                // exactly one spelling as a map key in the document.
                let uuid = Uuid::try_parse(s)
                    .ok()
                    .filter(|u| u.hyphenated().to_string() == s)
                    .ok_or_else(|| IdError::NotUuid { what: $what, got: s.chars().take(64).collect() })?;
                Self::from_uuid(uuid)
            }

            /// The underlying UUID.
            pub fn as_uuid(&self) -> &Uuid {
                &self.0
            }

            /// The 16 bytes of the UUID.
            pub fn as_bytes(&self) -> &[u8; 16] {
                self.0.as_bytes()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0.hyphenated(), f)
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                Self::parse(&s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.to_string()
            }
        }
    };
}

uuid_id!(
    /// A case (事例): one Automerge document. Made by whoever opens the case, often a phone offline.
    CaseId,
    "case id"
);
uuid_id!(
    /// A household member (世帯員) inside one case.
    PersonId,
    "person id"
);
uuid_id!(
    /// An activity logged in the field (visit, letter left, contact attempt, ...).
    ActivityId,
    "activity id"
);
uuid_id!(
    /// A supervisor's review (確認 / コメント) of an activity.
    ReviewId,
    "review id"
);
uuid_id!(
    /// A support plan (様式第1号).
    PlanId,
    "plan id"
);
uuid_id!(
    /// A row of a support plan's actions (who does what, how often, for how long).
    PlanActionId,
    "plan action id"
);
uuid_id!(
    /// An evaluation (様式第2号).
    EvaluationId,
    "evaluation id"
);
uuid_id!(
    /// A meeting decision (様式第2-2号).
    DecisionId,
    "decision id"
);
uuid_id!(
    /// A staff member (counsellor, supervisor, meeting tablet account, administrator).
    StaffId,
    "staff id"
);
uuid_id!(
    /// A registered device. Its 16 bytes open every Automerge actor id the device writes with.
    DeviceId,
    "device id"
);

/// A fiscal year (年度): April of `year` to March of `year + 1`.
///
/// ```
/// use tsunagi_sync::ids::FiscalYear;
/// use chrono::NaiveDate;
/// let fy = FiscalYear::containing(NaiveDate::from_ymd_opt(2025, 3, 31).unwrap());
/// assert_eq!(fy.year(), 2024);
/// assert_eq!(fy.japanese_label(), "令和6年度");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "i32", into = "i32")]
pub struct FiscalYear(i32);

/// Japan Standard Time (UTC+9, no daylight saving). Local dates, months and fiscal years are
/// counted in it wherever an instant becomes a date.
pub const JAPAN: FixedOffset = match FixedOffset::east_opt(9 * 3600) {
    Some(offset) => offset,
    None => panic!("UTC+9 is a valid offset"),
};

impl FiscalYear {
    /// The fiscal year starting in April of `year`.
    pub fn new(year: i32) -> Result<Self, IdError> {
        if (2000..=2999).contains(&year) {
            Ok(Self(year))
        } else {
            Err(IdError::FiscalYear(year))
        }
    }

    /// The fiscal year a date falls in (dates are local dates in Japan).
    pub fn containing(date: NaiveDate) -> Self {
        let year = if date.month() >= 4 { date.year() } else { date.year() - 1 };
        Self(year)
    }

    /// The fiscal year an instant falls in, by its date in Japan.
    pub fn of_instant<Tz: chrono::TimeZone>(at: &chrono::DateTime<Tz>) -> Self {
        Self::containing(at.with_timezone(&JAPAN).date_naive())
    }

    /// The Western calendar year in which this fiscal year starts.
    pub fn year(&self) -> i32 {
        self.0
    }

    /// 1 April of the fiscal year.
    pub fn first_day(&self) -> NaiveDate {
        NaiveDate::from_ymd_opt(self.0, 4, 1).unwrap_or(NaiveDate::MIN)
    }

    /// 31 March of the following calendar year.
    pub fn last_day(&self) -> NaiveDate {
        NaiveDate::from_ymd_opt(self.0 + 1, 3, 31).unwrap_or(NaiveDate::MAX)
    }

    /// The heading used on Japanese forms: 令和6年度 for 2024, 令和元年度 for 2019,
    /// 平成30年度 for 2018.
    pub fn japanese_label(&self) -> String {
        let (era, n) = if self.0 >= 2019 { ("令和", self.0 - 2018) } else { ("平成", self.0 - 1988) };
        if n == 1 {
            format!("{era}元年度")
        } else {
            format!("{era}{n}年度")
        }
    }
}

impl TryFrom<i32> for FiscalYear {
    type Error = IdError;
    fn try_from(y: i32) -> Result<Self, IdError> {
        Self::new(y)
    }
}

impl From<FiscalYear> for i32 {
    fn from(fy: FiscalYear) -> i32 {
        fy.0
    }
}

impl fmt::Display for FiscalYear {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The case number (受付番号), e.g. `2026-0153`: the fiscal year the case was first stored
/// in, and a serial without gaps per municipality and fiscal year. Only the server assigns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CaseNumber {
    fiscal_year: FiscalYear,
    serial: u32,
}

impl CaseNumber {
    /// A case number from its parts; the serial starts at 1.
    pub fn new(fiscal_year: FiscalYear, serial: u32) -> Result<Self, IdError> {
        if serial == 0 {
            return Err(IdError::CaseNumber(format!("{fiscal_year}-{serial:04}")));
        }
        Ok(Self { fiscal_year, serial })
    }

    /// Parses `YYYY-NNNN` (at least four digits of serial, zero-padded).
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let bad = || IdError::CaseNumber(s.chars().take(32).collect());
        let (year, serial) = s.split_once('-').ok_or_else(bad)?;
        let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
        if year.len() != 4 || serial.len() < 4 || serial.len() > 9 || !digits(year) || !digits(serial) {
            return Err(bad());
        }
        let year: i32 = year.parse().map_err(|_| bad())?;
        let serial: u32 = serial.parse().map_err(|_| bad())?;
        // The canonical form pads to exactly four digits; longer forms must not start with 0.
        let parsed = Self::new(FiscalYear::new(year).map_err(|_| bad())?, serial).map_err(|_| bad())?;
        if parsed.to_string() != s {
            return Err(bad());
        }
        Ok(parsed)
    }

    /// The fiscal year part.
    pub fn fiscal_year(&self) -> FiscalYear {
        self.fiscal_year
    }

    /// The serial part (1-based).
    pub fn serial(&self) -> u32 {
        self.serial
    }
}

impl fmt::Display for CaseNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{:04}", self.fiscal_year, self.serial)
    }
}

impl FromStr for CaseNumber {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        Self::parse(s)
    }
}

impl TryFrom<String> for CaseNumber {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        Self::parse(&s)
    }
}

impl From<CaseNumber> for String {
    fn from(n: CaseNumber) -> String {
        n.to_string()
    }
}

/// A municipality, by its 6-digit local government code (全国地方公共団体コード, JIS X 0401
/// and its check digit): `122173` is Kashiwa, `122203` Nagareyama, `121002` Chiba City.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MunicipalityCode([u8; 6]);

impl MunicipalityCode {
    /// Parses six ASCII digits whose last digit is the check digit of the first five.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let bad = || IdError::MunicipalityCode(s.chars().take(16).collect());
        let bytes: [u8; 6] = s.as_bytes().try_into().map_err(|_| bad())?;
        if !bytes.iter().all(u8::is_ascii_digit) {
            return Err(bad());
        }
        let d = |i: usize| u32::from(bytes[i] - b'0');
        let sum = d(0) * 6 + d(1) * 5 + d(2) * 4 + d(3) * 3 + d(4) * 2;
        let check = (11 - sum % 11) % 10;
        if check != d(5) {
            return Err(bad());
        }
        Ok(Self(bytes))
    }

    /// The code as a string slice.
    pub fn as_str(&self) -> &str {
        // Only ASCII digits are ever stored.
        std::str::from_utf8(&self.0).unwrap_or("000000")
    }
}

impl fmt::Display for MunicipalityCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MunicipalityCode {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        Self::parse(s)
    }
}

impl TryFrom<String> for MunicipalityCode {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        Self::parse(&s)
    }
}

impl From<MunicipalityCode> for String {
    fn from(m: MunicipalityCode) -> String {
        m.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_ids_accept_only_the_canonical_form() {
        let id = CaseId::new_random();
        assert_eq!(CaseId::parse(&id.to_string()), Ok(id));
        assert!(CaseId::parse(&id.to_string().to_uppercase()).is_err());
        assert!(CaseId::parse(&id.as_uuid().simple().to_string()).is_err());
        assert!(CaseId::parse("00000000-0000-0000-0000-000000000000").is_err());
        assert!(CaseId::parse("not-a-uuid").is_err());
    }

    #[test]
    fn fiscal_year_runs_april_to_march() {
        let d = |y, m, day| NaiveDate::from_ymd_opt(y, m, day).unwrap();
        assert_eq!(FiscalYear::containing(d(2024, 4, 1)).year(), 2024);
        assert_eq!(FiscalYear::containing(d(2025, 3, 31)).year(), 2024);
        assert_eq!(FiscalYear::containing(d(2025, 4, 1)).year(), 2025);
        let fy = FiscalYear::new(2024).unwrap();
        assert_eq!((fy.first_day(), fy.last_day()), (d(2024, 4, 1), d(2025, 3, 31)));
    }

    #[test]
    fn fiscal_year_labels_follow_the_eras() {
        let label = |y| FiscalYear::new(y).unwrap().japanese_label();
        assert_eq!(label(2024), "令和6年度");
        assert_eq!(label(2019), "令和元年度");
        assert_eq!(label(2018), "平成30年度");
        assert_eq!(label(2021), "令和3年度");
    }

    #[test]
    fn case_numbers_round_trip_and_reject_odd_spellings() {
        let n = CaseNumber::parse("2024-0153").unwrap();
        assert_eq!((n.fiscal_year().year(), n.serial()), (2024, 153));
        assert_eq!(n.to_string(), "2024-0153");
        assert_eq!(CaseNumber::parse("2024-12345").unwrap().serial(), 12345);
        for bad in ["2024-153", "2024-0000", "24-0153", "2024_0153", "2024-01530", "２０２４-0153", ""] {
            assert!(CaseNumber::parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn municipality_codes_check_their_check_digit() {
        for good in ["122173", "122203", "121002", "020001"] {
            assert!(MunicipalityCode::parse(good).is_ok(), "{good}");
        }
        for bad in ["122174", "12217", "1221730", "12217a", ""] {
            assert!(MunicipalityCode::parse(bad).is_err(), "{bad}");
        }
    }
}
