//! What changed in a case after a version of it: after the heads a review recorded.
//!
//! A supervisor's review records the document heads its author saw
//! ([`crate::ops::CaseReplica::add_review`]). Everything the document holds now and those
//! heads do not — including work made offline *before* the review but synced after it, which
//! the reviewer never saw — is "changed since". [`changed_since`] sorts it into activities
//! added and activities amended, from the patches of `Automerge::diff(heads, current)`;
//! [`since_last_review`] does it for the case's most recent review.

use std::collections::BTreeSet;

use automerge::{Automerge, ChangeHash, ObjId, ObjType, PatchAction, Prop, ReadDoc, Value, ROOT};
use chrono::{DateTime, FixedOffset};
use serde::Serialize;

use super::keys as k;
use super::view::CaseView;
use crate::ids::{ActivityId, ReviewId, StaffId};

/// Activities that changed after some heads.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ChangedSince {
    /// Activities the document did not hold at those heads, by id.
    pub added: Vec<ActivityId>,
    /// Activities it held then and that were amended since (narrative, outcome, follow-up,
    /// a void, any field; a concurrent value counts), by id.
    pub amended: Vec<ActivityId>,
}

impl ChangedSince {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.amended.is_empty()
    }
}

/// The heads name a change the document does not have, so there is no version to compare
/// with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the case document has no change {0}")]
pub struct UnknownHeads(pub ChangeHash);

/// What changed since the case's last review.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SinceReview {
    /// The review compared with.
    pub review_id: ReviewId,
    /// When it was written.
    pub at: DateTime<FixedOffset>,
    /// Who wrote it.
    pub by: StaffId,
    /// Activities added after it, in the order they happened (then by id).
    pub added: Vec<ActivityId>,
    /// Activities amended after it, in the order they happened (then by id).
    pub amended: Vec<ActivityId>,
}

/// The `activities` map as it was at `heads`.
fn activities_at(doc: &Automerge, heads: &[ChangeHash]) -> Option<ObjId> {
    match doc.get_at(ROOT, k::ACTIVITIES, heads) {
        Ok(Some((Value::Object(ObjType::Map), id))) => Some(id),
        _ => None,
    }
}

/// Which activities `doc` added or amended after `heads`.
///
/// An activity is *added* when the document did not hold it at `heads`, and *amended* when it
/// did and any change not included in `heads` wrote into it. Changes concurrent with `heads`
/// count: an edit made offline before the heads were taken, but merged after, was not part of
/// that version. Empty `heads` stand for the empty document (every activity is added). Fails
/// when `heads` name a change the document does not have.
pub fn changed_since(doc: &Automerge, heads: &[ChangeHash]) -> Result<ChangedSince, UnknownHeads> {
    if let Some(unknown) = heads.iter().find(|h| doc.get_change_by_hash(h).is_none()) {
        return Err(UnknownHeads(*unknown));
    }
    let mut current = doc.get_heads();
    current.sort();
    let mut then = heads.to_vec();
    then.sort();
    then.dedup();
    if current == then {
        return Ok(ChangedSince::default());
    }
    let before = activities_at(doc, &then);
    let existed = |id: &str| before.as_ref().is_some_and(|obj| matches!(doc.get_at(obj, id, &then), Ok(Some(_))));
    let mut added = BTreeSet::new();
    let mut amended = BTreeSet::new();
    for patch in doc.diff(&then, &current) {
        let mut props = patch.path.iter().map(|(_, prop)| prop);
        if !matches!(props.next(), Some(Prop::Map(key)) if key == k::ACTIVITIES) {
            continue;
        }
        // Inside an activity, or a write of the `activities` map itself (keyed by activity id).
        let key = match props.next() {
            Some(Prop::Map(id)) => id.as_str(),
            Some(Prop::Seq(_)) => continue,
            None => match &patch.action {
                PatchAction::PutMap { key, .. } | PatchAction::DeleteMap { key } => key.as_str(),
                PatchAction::Conflict { prop: Prop::Map(key) } => key.as_str(),
                _ => continue,
            },
        };
        let Ok(id) = ActivityId::parse(key) else { continue };
        if existed(key) {
            amended.insert(id);
        } else {
            added.insert(id);
        }
    }
    Ok(ChangedSince { added: added.into_iter().collect(), amended: amended.into_iter().collect() })
}

/// What changed since the case's most recent review (by `at`, then id) that recorded heads
/// this document holds; `None` when there is no such review.
///
/// Reviews without heads (written before tsunagi recorded them) are passed over, and so are
/// reviews whose heads name changes this document lacks (e.g. a review copied from a merged
/// duplicate case, whose heads belong to that case's history). `view` is `doc` read with
/// [`super::read_case`]; it orders the activities by when they happened.
pub fn since_last_review(doc: &Automerge, view: &CaseView) -> Option<SinceReview> {
    let mut reviews: Vec<_> = view.reviews.values().filter(|r| !r.heads.is_empty()).collect();
    reviews.sort_by_key(|r| std::cmp::Reverse((r.at, r.id)));
    let by_time = |ids: Vec<ActivityId>| {
        let mut ids: Vec<_> = ids.into_iter().map(|id| (view.activities.get(&id).map(|a| a.started_at), id)).collect();
        ids.sort();
        ids.into_iter().map(|(_, id)| id).collect()
    };
    reviews.into_iter().find_map(|review| {
        let changed = changed_since(doc, &review.heads).ok()?;
        Some(SinceReview {
            review_id: review.id,
            at: review.at,
            by: review.by,
            added: by_time(changed.added),
            amended: by_time(changed.amended),
        })
    })
}

#[cfg(test)]
mod tests {
    use automerge::transaction::Transactable;
    use automerge::AutoCommit;
    use chrono::{NaiveDate, TimeZone};

    use super::*;
    use crate::document::{format_heads, read_case, ActivityDetails};
    use crate::domain::{Place, VisitOutcome};
    use crate::ids::{DeviceId, MunicipalityCode};
    use crate::ops::{CaseReplica, NewActivity, NewCase};
    use crate::validation::Actor;

    fn jst(day: u32, hour: u32) -> DateTime<FixedOffset> {
        FixedOffset::east_opt(9 * 3600).unwrap().with_ymd_and_hms(2026, 11, day, hour, 0, 0).unwrap()
    }

    fn visit(day: u32, hour: u32, narrative: &str) -> NewActivity {
        let details = ActivityDetails::Visit {
            outcome: VisitOutcome::NotHome,
            met_person_ids: BTreeSet::new(),
            letter_left: true,
        };
        NewActivity::new(jst(day, hour), Place::Home, details).with_narrative(narrative)
    }

    /// A counsellor's phone with a case, and a supervisor's tablet holding the same case.
    struct Office {
        phone: CaseReplica,
        tablet: CaseReplica,
    }

    impl Office {
        fn new() -> Self {
            let sato = Actor::counsellor(StaffId::new_random(), DeviceId::new_random());
            let chief = Actor::supervisor(StaffId::new_random(), DeviceId::new_random());
            let new =
                NewCase::new(MunicipalityCode::parse("122203").unwrap(), NaiveDate::from_ymd_opt(2026, 11, 2).unwrap());
            let mut phone = CaseReplica::open(new, sato).unwrap();
            let tablet = CaseReplica::load(&phone.save(), chief).unwrap();
            Self { phone, tablet }
        }

        /// The phone and the tablet exchange everything they have.
        fn sync(&mut self) {
            self.tablet.merge(&mut self.phone).unwrap();
            self.phone.merge(&mut self.tablet).unwrap();
        }

        fn review(&mut self, activity: ActivityId, day: u32) -> ReviewId {
            self.tablet.add_review(activity, "確認", jst(day, 18)).unwrap()
        }

        fn since(&mut self) -> Option<SinceReview> {
            let view = self.tablet.view().unwrap();
            since_last_review(self.tablet.doc_mut().document(), &view)
        }
    }

    #[test]
    fn a_review_records_the_heads_before_its_own_change() {
        let mut office = Office::new();
        let first = office.phone.log_activity(visit(4, 10, "不在。")).unwrap();
        office.sync();
        let before = office.tablet.heads();
        let review = office.review(first, 4);
        let view = office.tablet.view().unwrap();
        let mut expected = before.clone();
        expected.sort();
        assert_eq!(view.reviews[&review].heads, expected);
        assert_ne!(office.tablet.heads(), before, "the review is a change of its own");
        // Right after the review nothing has changed since it.
        let since = office.since().unwrap();
        assert_eq!((since.review_id, since.added.len(), since.amended.len()), (review, 0, 0));
        assert_eq!(since.by, view.reviews[&review].by);
        // The heads travel with the review, and serialise as hex.
        office.sync();
        assert_eq!(office.phone.view().unwrap().reviews[&review].heads, expected);
        let json = serde_json::to_value(&view.reviews[&review]).unwrap();
        assert_eq!(json["heads"][0], expected[0].to_string());
    }

    #[test]
    fn activities_added_and_amended_after_the_review_and_only_those() {
        let mut office = Office::new();
        let first = office.phone.log_activity(visit(4, 10, "不在。手紙を投函。")).unwrap();
        let second = office.phone.log_activity(visit(5, 10, "不在。")).unwrap();
        let third_day = office.phone.log_activity(visit(6, 10, "不在。")).unwrap();
        office.sync();
        office.review(first, 6);

        let fourth = office.phone.log_activity(visit(7, 10, "母と面談。")).unwrap();
        office.phone.amend_narrative(first, "不在。手紙を投函。翌日電話あり。").unwrap();
        office.phone.set_follow_up(second, Some(NaiveDate::from_ymd_opt(2026, 11, 20).unwrap())).unwrap();
        office.phone.void_activity(third_day, "別ケースの記録", jst(7, 12)).unwrap();
        office.sync();

        let since = office.since().unwrap();
        assert_eq!(since.added, vec![fourth]);
        assert_eq!(since.amended, vec![first, second, third_day], "in the order they happened");
        // The same from the heads directly.
        let heads = office.tablet.view().unwrap().reviews.values().next().unwrap().heads.clone();
        let changed = changed_since(office.tablet.doc_mut().document(), &heads).unwrap();
        assert_eq!(changed.added, vec![fourth]);
        assert_eq!(changed.amended.len(), 3);
    }

    #[test]
    fn an_edit_made_offline_before_the_review_but_synced_after_counts_as_changed() {
        let mut office = Office::new();
        let first = office.phone.log_activity(visit(4, 10, "不在。")).unwrap();
        let second = office.phone.log_activity(visit(5, 10, "不在。")).unwrap();
        office.sync();
        // Offline on the 5th, the counsellor amends the first visit and logs another one...
        office.phone.amend_narrative(first, "不在。近所の方から話を聞いた。").unwrap();
        let offline = office.phone.log_activity(visit(5, 15, "電話したが不通。")).unwrap();
        // ...while the supervisor, who has neither, reviews on the 6th...
        office.review(second, 6);
        // ...and the phone syncs only on the 7th.
        office.sync();
        let since = office.since().unwrap();
        assert_eq!(since.added, vec![offline]);
        assert_eq!(since.amended, vec![first]);
        // A concurrent void of the reviewed activity also counts.
        let mut other = office.phone.clone();
        other.void_activity(second, "重複登録", jst(7, 9)).unwrap();
        office.review(first, 7);
        office.tablet.merge(&mut other).unwrap();
        let since = office.since().unwrap();
        assert_eq!((since.added.clone(), since.amended.clone()), (vec![], vec![second]));
    }

    #[test]
    fn the_most_recent_review_with_known_heads_is_the_reference() {
        let mut office = Office::new();
        assert_eq!(office.since(), None, "no review yet");
        let first = office.phone.log_activity(visit(4, 10, "不在。")).unwrap();
        office.sync();
        // A review without heads (written by an older client) is passed over.
        let old = ReviewId::new_random();
        let doc = office.tablet.doc_mut();
        forge_review(doc, old, first, None);
        assert_eq!(office.since(), None);

        let late = office.review(first, 9);
        let second = office.phone.log_activity(visit(5, 10, "不在。")).unwrap();
        office.sync();
        // Written later, but dated earlier: the one dated the 9th stays the reference.
        let early = office.review(first, 5);
        let since = office.since().unwrap();
        assert_eq!((since.review_id, since.added.clone()), (late, vec![second]));
        assert_ne!(since.review_id, early);

        // A review whose heads the document does not have (copied from another case) is
        // passed over too.
        let foreign = ReviewId::new_random();
        forge_review(office.tablet.doc_mut(), foreign, first, Some(&format_heads(&[ChangeHash([7; 32])])));
        assert_eq!(office.since().unwrap().review_id, late);
        let heads = office.tablet.view().unwrap().reviews[&foreign].heads.clone();
        assert_eq!(changed_since(office.tablet.doc_mut().document(), &heads), Err(UnknownHeads(ChangeHash([7; 32]))));
    }

    #[test]
    fn from_the_empty_document_everything_is_added() {
        let mut office = Office::new();
        let first = office.phone.log_activity(visit(4, 10, "不在。")).unwrap();
        let changed = changed_since(office.phone.doc_mut().document(), &[]).unwrap();
        assert_eq!((changed.added, changed.amended), (vec![first], vec![]));
        let heads = office.phone.heads();
        assert!(changed_since(office.phone.doc_mut().document(), &heads).unwrap().is_empty());
    }

    #[test]
    fn malformed_heads_are_a_schema_issue() {
        let mut office = Office::new();
        let first = office.phone.log_activity(visit(4, 10, "不在。")).unwrap();
        let review = ReviewId::new_random();
        forge_review(office.phone.doc_mut(), review, first, Some("not-a-hash"));
        let reading = read_case(office.phone.doc());
        let path = format!("/reviews/{review}/heads");
        assert!(
            reading.issues.iter().any(|v| v.code == crate::validation::ViolationCode::InvalidId && v.path == path),
            "{:?}",
            reading.issues
        );
        assert!(reading.view.unwrap().reviews[&review].heads.is_empty());
    }

    /// A review written field by field, with `heads` as given (or none).
    fn forge_review(doc: &mut AutoCommit, id: ReviewId, activity: ActivityId, heads: Option<&str>) {
        let reviews = match doc.get(ROOT, k::REVIEWS).unwrap() {
            Some((Value::Object(_), obj)) => obj,
            other => panic!("no reviews map: {other:?}"),
        };
        let r = doc.put_object(&reviews, id.to_string(), ObjType::Map).unwrap();
        doc.put(&r, k::ACTIVITY_ID, activity.to_string()).unwrap();
        doc.put(&r, k::BY, StaffId::new_random().to_string()).unwrap();
        doc.put(&r, k::AT, "2026-11-08T09:00:00+09:00").unwrap();
        doc.put_object(&r, k::COMMENT, ObjType::Text).unwrap();
        if let Some(heads) = heads {
            doc.put(&r, k::HEADS, heads).unwrap();
        }
        doc.commit();
    }
}
