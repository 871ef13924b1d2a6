//! The referral catalogue: where a case can be referred to (つなぎ先, also used for 相談歴,
//! the agencies a person has already consulted) and where a case was referred in from
//! (紹介元, intake sources).
//!
//! Unlike the closed lists in [`super`], the catalogue is **data**, not an enum. Each
//! municipality names its agencies differently — Chiba's あんしんケアセンター is Kashiwa's
//! 地域包括支援センター — and adds or drops local ones, so a deployment ships its own
//! catalogue as JSON ([`Catalogue::from_json`]). [`Catalogue::default`] is the list in
//! `DOMAIN.md` ("Referral catalogue").
//!
//! Case documents store only an entry's **key** (stable ASCII snake_case, e.g. `hello_work`);
//! the Japanese **label** is looked up here when a form or a table is shown. A deployment may
//! therefore rename a label freely, but must keep every key that existing case documents use:
//! a key removed from the catalogue can no longer be shown with its label. Only the
//! [groups](ReferralGroup) are a closed list, because the supervisors' tables are laid out by
//! group.
//!
//! ```
//! use tsunagi_sync::domain::catalogue::{Catalogue, ReferralGroup};
//! let catalogue = Catalogue::default();
//! assert_eq!(catalogue.destination("hello_work").unwrap().label, "ハローワーク");
//! assert_eq!(catalogue.destinations_in(ReferralGroup::Medical).count(), 3);
//! assert!(catalogue.is_intake_source("self_referral"));
//! ```

use serde::{Deserialize, Serialize};

// `labelled_enum!` names `UnknownKey` (the error of `ReferralGroup::from_key`) unqualified.
use super::{labelled_enum, UnknownKey};

labelled_enum! {
    /// The group a referral destination belongs to (つなぎ先の分類), in the order forms list
    /// them.
    ReferralGroup, "referral group" {
        Employment = "employment", "就労";
        Protection = "protection", "保護";
        Medical = "medical", "医療";
        LivingAndMoney = "living_and_money", "生活・金銭";
        Disability = "disability", "障害";
        Housing = "housing", "住居";
        Elderly = "elderly", "高齢";
        Other = "other", "その他";
    }
}

/// The longest key accepted, in bytes.
pub const MAX_KEY_BYTES: usize = 64;

/// The longest label accepted, in characters.
pub const MAX_LABEL_CHARS: usize = 200;

/// One referral destination (つなぎ先): an agency or kind of agency a case can be referred to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogueEntry {
    /// Stable ASCII snake_case identifier, stored in case documents (e.g. `hello_work`).
    pub key: String,
    /// The Japanese name users see (e.g. ハローワーク).
    pub label: String,
    /// The group it is listed under.
    pub group: ReferralGroup,
}

impl CatalogueEntry {
    /// An entry with the given key, label and group (not validated; see [`Catalogue::validate`]).
    pub fn new(key: impl Into<String>, label: impl Into<String>, group: ReferralGroup) -> Self {
        CatalogueEntry { key: key.into(), label: label.into(), group }
    }
}

/// One intake source (紹介元): an agency or person that refers a case in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntakeSource {
    /// Stable ASCII snake_case identifier, stored in case documents (e.g. `self_referral`).
    pub key: String,
    /// The Japanese name users see (e.g. 本人).
    pub label: String,
}

impl IntakeSource {
    /// A source with the given key and label (not validated; see [`Catalogue::validate`]).
    pub fn new(key: impl Into<String>, label: impl Into<String>) -> Self {
        IntakeSource { key: key.into(), label: label.into() }
    }
}

/// Why a catalogue was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogueError {
    /// The text is not JSON of the catalogue's shape.
    #[error("catalogue is not valid JSON: {0}")]
    Json(String),
    /// A list has no entries.
    #[error("the catalogue's {list} list is empty")]
    EmptyList {
        /// Which list (`referral_destinations` or `intake_sources`).
        list: &'static str,
    },
    /// An entry has an empty key.
    #[error("entry #{index} of {list} has an empty key")]
    EmptyKey {
        /// Which list.
        list: &'static str,
        /// Position of the entry in the list, from 0.
        index: usize,
    },
    /// A key is longer than [`MAX_KEY_BYTES`].
    #[error("key {key:?} in {list} is {bytes} bytes long (at most {max} allowed)", max = MAX_KEY_BYTES)]
    KeyTooLong {
        /// Which list.
        list: &'static str,
        /// The offending key (truncated).
        key: String,
        /// Its length in bytes.
        bytes: usize,
    },
    /// A key has a character other than `a`–`z`, `0`–`9` and `_`.
    #[error("key {key:?} in {list} may contain only a-z, 0-9 and _")]
    KeyCharacters {
        /// Which list.
        list: &'static str,
        /// The offending key.
        key: String,
    },
    /// Two entries of one list share a key.
    #[error("key {key:?} appears more than once in {list}")]
    DuplicateKey {
        /// Which list.
        list: &'static str,
        /// The repeated key.
        key: String,
    },
    /// A label is empty or only whitespace.
    #[error("key {key:?} in {list} has an empty label")]
    EmptyLabel {
        /// Which list.
        list: &'static str,
        /// The key of the entry.
        key: String,
    },
    /// A label is longer than [`MAX_LABEL_CHARS`].
    #[error("key {key:?} in {list} has a label of {chars} characters (at most {max} allowed)", max = MAX_LABEL_CHARS)]
    LabelTooLong {
        /// Which list.
        list: &'static str,
        /// The key of the entry.
        key: String,
        /// The label's length in characters.
        chars: usize,
    },
}

/// The referral catalogue of a deployment: referral destinations and intake sources.
///
/// Build it with [`Catalogue::default`] (the list in `DOMAIN.md`) or [`Catalogue::from_json`]
/// (a deployment's own list, validated).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Catalogue {
    /// Where a case can be referred to (つなぎ先), grouped, in display order.
    pub referral_destinations: Vec<CatalogueEntry>,
    /// Who refers cases in (紹介元), in display order.
    pub intake_sources: Vec<IntakeSource>,
}

const DESTINATIONS: &str = "referral_destinations";
const INTAKE_SOURCES: &str = "intake_sources";

/// The default referral destinations of `DOMAIN.md`, in its order: (group, key, label).
const DEFAULT_DESTINATIONS: &[(ReferralGroup, &str, &str)] = {
    use ReferralGroup::*;
    &[
        // 就労
        (Employment, "hello_work", "ハローワーク"),
        (Employment, "vocational_training", "職業訓練機関"),
        (Employment, "employment_readiness_support", "就労準備支援機関"),
        (Employment, "youth_support_station", "地域若者サポートステーション"),
        (Employment, "employment_support_provider", "就労支援法人・団体"),
        (Employment, "private_company", "一般企業"),
        (Employment, "cooperative", "各種協同組合(生協等)"),
        (Employment, "agriculture", "農業者・農業団体"),
        // 保護
        (Protection, "welfare_office_public_assistance", "保健福祉センター(生活保護担当)"),
        (Protection, "homeless_support", "ホームレス支援機関"),
        (Protection, "temporary_shelter", "一時保護施設"),
        (Protection, "police", "警察"),
        (Protection, "offender_rehabilitation_facility", "更生保護施設・自立準備ホーム"),
        (Protection, "community_settlement_support_center", "地域生活定着支援センター"),
        // 医療
        (Medical, "medical_institution", "医療機関"),
        (Medical, "free_or_low_cost_clinic", "無料低額診療実施機関"),
        (Medical, "municipal_health_department", "行政の保健担当部署"),
        // 生活・金銭
        (LivingAndMoney, "self_reliance_support", "自立相談支援機関"),
        (LivingAndMoney, "municipal_tax_department", "行政の税担当部署"),
        (LivingAndMoney, "municipal_insurance_pension_department", "行政の保険・年金担当部署"),
        (LivingAndMoney, "labour_and_social_security_attorney", "社会保険労務士"),
        (LivingAndMoney, "household_budget_support", "家計改善支援機関"),
        (LivingAndMoney, "food_support", "食糧支援関係団体(フードバンク等)"),
        (LivingAndMoney, "small_loan", "小口貸付"),
        (LivingAndMoney, "social_welfare_council_livelihood_fund", "社会福祉協議会(生活福祉資金)"),
        (LivingAndMoney, "social_welfare_council_daily_living_support", "社会福祉協議会(日常生活自立支援事業)"),
        (LivingAndMoney, "adult_guardianship_support", "成年後見制度の支援機関"),
        (LivingAndMoney, "legal_support", "法テラス・弁護士・司法書士"),
        (LivingAndMoney, "consumer_affairs_center", "消費生活センター・多重債務者相談窓口"),
        // 障害
        (Disability, "municipal_disability_department", "行政の障害担当部署"),
        (Disability, "core_disability_consultation_center", "基幹相談支援センター"),
        (Disability, "mental_health_welfare_center", "精神保健福祉センター"),
        (Disability, "disability_employment_life_support_center", "障害者就業・生活支援センター"),
        (Disability, "disability_employment_service", "障害者就労支援事業所"),
        (Disability, "other_disability_support", "その他障害者支援機関・施設"),
        // 住居
        (Housing, "municipal_housing_department", "行政の住宅施策担当部署(居住支援協議会)"),
        (Housing, "housing_support_corporation", "居住支援法人"),
        (Housing, "real_estate_and_guarantor", "不動産・保証関係会社"),
        // 高齢
        (Elderly, "municipal_elderly_department", "行政の高齢担当部署"),
        (Elderly, "community_general_support_center", "地域包括支援センター(あんしんケアセンター)"),
        (Elderly, "care_service_provider", "居宅介護支援事業所・その他介護事業所"),
        // その他
        (Other, "self_reliance_support_other_area", "他地域の自立相談支援機関"),
        (Other, "welfare_commissioner", "民生委員・児童委員"),
        (Other, "foreign_resident_support", "外国人支援団体"),
        (Other, "hikikomori_support", "ひきこもり支援機関"),
        (Other, "npo_volunteer", "NPO・ボランティア団体"),
        (Other, "local_business", "商店街・商工会等"),
        (Other, "neighbourhood_association", "町内会・自治会・近隣住民"),
        (Other, "lifeline_utility", "ライフライン事業者"),
        (Other, "public_health_center", "保健所(多頭飼育等)"),
        (Other, "social_welfare_council_other", "社会福祉協議会(その他)"),
        (Other, "other_municipal_department", "その他行政の担当部署"),
        (Other, "family_key_person", "家族・親族・キーパーソン"),
        // The free text of その他 lives in the case document, not here.
        (Other, "other", "その他"),
    ]
};

/// The default intake sources of `DOMAIN.md`, in its order, then the people who refer
/// themselves or a neighbour, then その他: (key, label).
///
/// Agencies that are also referral destinations share their key (地域包括支援センター,
/// 基幹相談支援センター, 民生委員・児童委員), so referrals between agencies can be counted per
/// agency.
const DEFAULT_INTAKE_SOURCES: &[(&str, &str)] = &[
    ("community_general_support_center", "地域包括支援センター"),
    ("core_disability_consultation_center", "障害者基幹相談支援センター"),
    ("children_and_family_center", "こども家庭センター / 母子健康包括支援センター"),
    ("livelihood_and_work_consultation_center", "生活自立・仕事相談センター"),
    ("community_life_support_hub", "地域生活支援拠点"),
    ("family_and_child_consultation", "家庭児童相談"),
    ("childcare_support_hub", "地域子育て支援拠点"),
    ("general_consultation_desk", "総合相談窓口"),
    ("city_or_ward_office", "市役所・区役所"),
    ("welfare_commissioner", "民生委員・児童委員"),
    ("community_social_worker", "コミュニティソーシャルワーカー"),
    ("self_referral", "本人"),
    ("family", "家族・親族"),
    ("neighbour", "近隣住民"),
    ("other", "その他"),
];

impl Default for Catalogue {
    /// The catalogue of `DOMAIN.md`: every referral destination of every group in the
    /// document's order, and the intake sources.
    fn default() -> Self {
        Catalogue {
            referral_destinations: DEFAULT_DESTINATIONS
                .iter()
                .map(|&(group, key, label)| CatalogueEntry::new(key, label, group))
                .collect(),
            intake_sources: DEFAULT_INTAKE_SOURCES.iter().map(|&(key, label)| IntakeSource::new(key, label)).collect(),
        }
    }
}

impl Catalogue {
    /// Parses and validates a deployment's catalogue (the shape [`Catalogue::to_json_pretty`]
    /// writes).
    ///
    /// ```
    /// use tsunagi_sync::domain::catalogue::Catalogue;
    /// let json = r#"{
    ///   "referral_destinations": [
    ///     {"key": "community_general_support_center", "label": "あんしんケアセンター", "group": "elderly"}
    ///   ],
    ///   "intake_sources": [{"key": "self_referral", "label": "本人"}]
    /// }"#;
    /// let chiba = Catalogue::from_json(json).unwrap();
    /// assert_eq!(chiba.destination("community_general_support_center").unwrap().label, "あんしんケアセンター");
    /// assert!(Catalogue::from_json(r#"{"referral_destinations": [], "intake_sources": []}"#).is_err());
    /// ```
    pub fn from_json(json: &str) -> Result<Catalogue, CatalogueError> {
        let catalogue: Catalogue = serde_json::from_str(json).map_err(|e| CatalogueError::Json(e.to_string()))?;
        catalogue.validate()?;
        Ok(catalogue)
    }

    /// The catalogue as indented JSON, for a deployment to edit and ship.
    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(self).expect("a catalogue always serializes to JSON")
    }

    /// Checks the rules [`Catalogue::from_json`] enforces: both lists non-empty; keys
    /// non-empty, at most [`MAX_KEY_BYTES`] bytes of `[a-z0-9_]`, unique within their list;
    /// labels not blank and at most [`MAX_LABEL_CHARS`] characters.
    pub fn validate(&self) -> Result<(), CatalogueError> {
        check_list(DESTINATIONS, self.referral_destinations.iter().map(|e| (e.key.as_str(), e.label.as_str())))?;
        check_list(INTAKE_SOURCES, self.intake_sources.iter().map(|s| (s.key.as_str(), s.label.as_str())))
    }

    /// The referral destination with this key.
    pub fn destination(&self, key: &str) -> Option<&CatalogueEntry> {
        self.referral_destinations.iter().find(|e| e.key == key)
    }

    /// The intake source with this key.
    pub fn intake_source(&self, key: &str) -> Option<&IntakeSource> {
        self.intake_sources.iter().find(|s| s.key == key)
    }

    /// The referral destinations of one group, in display order.
    pub fn destinations_in(&self, group: ReferralGroup) -> impl Iterator<Item = &CatalogueEntry> + '_ {
        self.referral_destinations.iter().filter(move |e| e.group == group)
    }

    /// Whether this key is a referral destination of the catalogue.
    pub fn is_destination(&self, key: &str) -> bool {
        self.destination(key).is_some()
    }

    /// Whether this key is an intake source of the catalogue.
    pub fn is_intake_source(&self, key: &str) -> bool {
        self.intake_source(key).is_some()
    }
}

/// Validates one list of (key, label) pairs.
fn check_list<'a>(
    list: &'static str,
    entries: impl ExactSizeIterator<Item = (&'a str, &'a str)>,
) -> Result<(), CatalogueError> {
    if entries.len() == 0 {
        return Err(CatalogueError::EmptyList { list });
    }
    let mut seen = std::collections::HashSet::new();
    for (index, (key, label)) in entries.enumerate() {
        if key.is_empty() {
            return Err(CatalogueError::EmptyKey { list, index });
        }
        if key.len() > MAX_KEY_BYTES {
            return Err(CatalogueError::KeyTooLong {
                list,
                key: key.chars().take(MAX_KEY_BYTES).collect(),
                bytes: key.len(),
            });
        }
        if !key.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
            return Err(CatalogueError::KeyCharacters { list, key: key.to_owned() });
        }
        if !seen.insert(key) {
            return Err(CatalogueError::DuplicateKey { list, key: key.to_owned() });
        }
        if label.trim().is_empty() {
            return Err(CatalogueError::EmptyLabel { list, key: key.to_owned() });
        }
        let chars = label.chars().count();
        if chars > MAX_LABEL_CHARS {
            return Err(CatalogueError::LabelTooLong { list, key: key.to_owned(), chars });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// Counts per group, from `DOMAIN.md` ("Referral catalogue").
    const COUNTS: &[(ReferralGroup, usize)] = &[
        (ReferralGroup::Employment, 8),
        (ReferralGroup::Protection, 6),
        (ReferralGroup::Medical, 3),
        (ReferralGroup::LivingAndMoney, 12),
        (ReferralGroup::Disability, 6),
        (ReferralGroup::Housing, 3),
        (ReferralGroup::Elderly, 3),
        (ReferralGroup::Other, 13),
    ];

    #[test]
    fn default_has_the_documents_count_per_group() {
        let c = Catalogue::default();
        assert_eq!(COUNTS.len(), ReferralGroup::ALL.len());
        for &(group, n) in COUNTS {
            assert_eq!(c.destinations_in(group).count(), n, "{group}");
        }
        assert_eq!(c.referral_destinations.len(), 54);
        assert_eq!(c.intake_sources.len(), 15);
    }

    #[test]
    fn default_lists_groups_in_form_order_and_ends_with_other() {
        let c = Catalogue::default();
        let groups: Vec<_> = c.referral_destinations.iter().map(|e| e.group).collect();
        let mut sorted = groups.clone();
        sorted.sort();
        assert_eq!(groups, sorted, "entries of a group must be contiguous, in ALL order");
        let last = c.referral_destinations.last().unwrap();
        assert_eq!((last.key.as_str(), last.label.as_str(), last.group), ("other", "その他", ReferralGroup::Other));
        assert_eq!(c.intake_sources.last().unwrap().key, "other");
    }

    #[test]
    fn default_is_valid_and_keys_are_unique() {
        let c = Catalogue::default();
        c.validate().unwrap();
        let keys: HashSet<_> = c.referral_destinations.iter().map(|e| &e.key).collect();
        assert_eq!(keys.len(), c.referral_destinations.len());
        let keys: HashSet<_> = c.intake_sources.iter().map(|s| &s.key).collect();
        assert_eq!(keys.len(), c.intake_sources.len());
    }

    #[test]
    fn default_labels_are_the_documents() {
        let c = Catalogue::default();
        let label = |key| c.destination(key).map(|e| e.label.as_str());
        assert_eq!(label("hello_work"), Some("ハローワーク"));
        assert_eq!(label("legal_support"), Some("法テラス・弁護士・司法書士"));
        assert_eq!(label("public_health_center"), Some("保健所(多頭飼育等)"));
        assert_eq!(label("community_general_support_center"), Some("地域包括支援センター(あんしんケアセンター)"));
        assert_eq!(label("social_welfare_council_livelihood_fund"), Some("社会福祉協議会(生活福祉資金)"));
        assert_eq!(c.destination("hello_work").unwrap().group, ReferralGroup::Employment);
        let source = |key| c.intake_source(key).map(|s| s.label.as_str());
        assert_eq!(source("self_referral"), Some("本人"));
        assert_eq!(source("family"), Some("家族・親族"));
        assert_eq!(source("neighbour"), Some("近隣住民"));
        assert_eq!(source("welfare_commissioner"), Some("民生委員・児童委員"));
        assert_eq!(source("community_social_worker"), Some("コミュニティソーシャルワーカー"));
        assert_eq!(source("other"), Some("その他"));
        // 民生委員・児童委員 is listed once, not once per naming.
        let commissioners = c.intake_sources.iter().filter(|s| s.label == "民生委員・児童委員").count();
        assert_eq!(commissioners, 1);
    }

    #[test]
    fn lookups() {
        let c = Catalogue::default();
        assert!(c.is_destination("police"));
        assert!(!c.is_destination("self_referral"));
        assert!(c.is_intake_source("self_referral"));
        assert!(!c.is_intake_source("police"));
        assert!(c.destination("nowhere").is_none());
        assert!(c.intake_source("").is_none());
        let medical: Vec<_> = c.destinations_in(ReferralGroup::Medical).map(|e| e.key.as_str()).collect();
        assert_eq!(medical, ["medical_institution", "free_or_low_cost_clinic", "municipal_health_department"]);
    }

    #[test]
    fn groups_are_a_closed_list() {
        assert_eq!(ReferralGroup::LivingAndMoney.as_key(), "living_and_money");
        assert_eq!(ReferralGroup::LivingAndMoney.label(), "生活・金銭");
        assert_eq!("elderly".parse(), Ok(ReferralGroup::Elderly));
        assert!("leisure".parse::<ReferralGroup>().is_err());
        let bad = r#"{"referral_destinations":[{"key":"a","label":"A","group":"leisure"}],
                      "intake_sources":[{"key":"b","label":"B"}]}"#;
        assert!(matches!(Catalogue::from_json(bad), Err(CatalogueError::Json(_))));
    }

    #[test]
    fn json_round_trip() {
        let c = Catalogue::default();
        let json = c.to_json_pretty();
        assert!(json.contains("\"living_and_money\""));
        assert!(json.contains("ハローワーク"));
        assert_eq!(Catalogue::from_json(&json), Ok(c));
    }

    #[test]
    fn a_deployment_can_rename_a_label() {
        let mut chiba = Catalogue::default();
        chiba.referral_destinations.iter_mut().find(|e| e.key == "community_general_support_center").unwrap().label =
            "あんしんケアセンター".into();
        let loaded = Catalogue::from_json(&chiba.to_json_pretty()).unwrap();
        assert_eq!(loaded.destination("community_general_support_center").unwrap().label, "あんしんケアセンター");
        assert_ne!(loaded, Catalogue::default());
    }

    /// A valid one-entry catalogue as JSON, with the given destination key and label.
    fn one(key: &str, label: &str) -> String {
        serde_json::json!({
            "referral_destinations": [
                {"key": "police", "label": "警察", "group": "protection"},
                {"key": key, "label": label, "group": "other"},
            ],
            "intake_sources": [{"key": "self_referral", "label": "本人"}],
        })
        .to_string()
    }

    #[test]
    fn from_json_refuses_what_it_must() {
        assert_eq!(Catalogue::from_json(&one("ok_key_2", "ラベル")).map(|c| c.referral_destinations.len()), Ok(2));

        assert!(matches!(Catalogue::from_json("{not json"), Err(CatalogueError::Json(_))));
        assert!(matches!(Catalogue::from_json(r#"{"referral_destinations": []}"#), Err(CatalogueError::Json(_))));

        let empty_destinations = r#"{"referral_destinations": [], "intake_sources": [{"key": "a", "label": "A"}]}"#;
        assert_eq!(
            Catalogue::from_json(empty_destinations),
            Err(CatalogueError::EmptyList { list: "referral_destinations" })
        );
        let empty_sources =
            r#"{"referral_destinations": [{"key": "a", "label": "A", "group": "other"}], "intake_sources": []}"#;
        assert_eq!(Catalogue::from_json(empty_sources), Err(CatalogueError::EmptyList { list: "intake_sources" }));

        assert_eq!(
            Catalogue::from_json(&one("", "ラベル")),
            Err(CatalogueError::EmptyKey { list: "referral_destinations", index: 1 })
        );

        let long = "k".repeat(MAX_KEY_BYTES + 1);
        assert!(Catalogue::from_json(&one(&"k".repeat(MAX_KEY_BYTES), "ラベル")).is_ok());
        let err = Catalogue::from_json(&one(&long, "ラベル")).unwrap_err();
        assert!(matches!(err, CatalogueError::KeyTooLong { bytes: 65, .. }));
        assert!(err.to_string().contains(&"k".repeat(MAX_KEY_BYTES)), "{err}");

        for bad in ["Hello_work", "hello-work", "hello work", "ハローワーク", "é"] {
            let err = Catalogue::from_json(&one(bad, "ラベル")).unwrap_err();
            assert_eq!(err, CatalogueError::KeyCharacters { list: "referral_destinations", key: bad.into() });
            assert!(err.to_string().contains(bad), "{err}");
        }

        let err = Catalogue::from_json(&one("police", "警察署")).unwrap_err();
        assert_eq!(err, CatalogueError::DuplicateKey { list: "referral_destinations", key: "police".into() });
        assert!(err.to_string().contains("\"police\""), "{err}");

        let dup_sources = r#"{"referral_destinations": [{"key": "a", "label": "A", "group": "other"}],
            "intake_sources": [{"key": "family", "label": "家族"}, {"key": "family", "label": "親族"}]}"#;
        assert_eq!(
            Catalogue::from_json(dup_sources),
            Err(CatalogueError::DuplicateKey { list: "intake_sources", key: "family".into() })
        );

        for blank in ["", "   ", "\u{3000}"] {
            let err = Catalogue::from_json(&one("blank", blank)).unwrap_err();
            assert_eq!(err, CatalogueError::EmptyLabel { list: "referral_destinations", key: "blank".into() });
            assert!(err.to_string().contains("\"blank\""), "{err}");
        }

        // Characters, not bytes: 200 kana (600 bytes) are fine, 201 are not.
        assert!(Catalogue::from_json(&one("long", &"あ".repeat(MAX_LABEL_CHARS))).is_ok());
        let err = Catalogue::from_json(&one("long", &"あ".repeat(MAX_LABEL_CHARS + 1))).unwrap_err();
        assert_eq!(err, CatalogueError::LabelTooLong { list: "referral_destinations", key: "long".into(), chars: 201 });
        assert!(err.to_string().contains("\"long\""), "{err}");
    }
}
