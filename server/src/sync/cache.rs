//! The document cache: stored case documents kept loaded, with their typed views, between
//! the requests that write them.
//!
//! Loading a case means decoding its snapshot and replaying the changes stored after it, and
//! validating an upload needs the typed view of the case as stored; under load both cost more
//! than the rest of a sync together. The engine keeps the documents it has just stored here
//! and takes one back when the same case is written again.
//!
//! The cache is never a source of truth. An entry is keyed by the case and the **heads** it
//! was stored with, and is used only when the heads read from the database, under the
//! document row's lock, are exactly those: a document written meanwhile by another path
//! (an assignment, a merge, another server instance) has other heads, and is loaded from the
//! database instead. An entry is *taken out* for the transaction that uses it and put back
//! only after that transaction committed, so a rolled-back write leaves nothing behind.
//!
//! Memory is bounded by an estimate of what each entry holds (Automerge keeps a few bytes per
//! operation, the view about as much again in its texts); the least recently stored entries
//! are dropped first. `TSUNAGI_DOCUMENT_CACHE_MB` sets the budget (`0` turns the cache off).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use automerge::{Automerge, ReadDoc};
use tsunagi_sync::document::CaseView;
use tsunagi_sync::ids::CaseId;

/// The default budget, in bytes.
pub const DEFAULT_BUDGET: usize = 64 * 1024 * 1024;

/// What an entry is reckoned to hold besides its operations (the document's and the view's
/// fixed parts), and per operation (measured: about 5 bytes in Automerge's columns and
/// 5 in the view's texts and maps; rounded up).
const BASE_COST: usize = 16 * 1024;
const COST_PER_OP: usize = 12;

/// A stored document and its view, as of the heads it was stored with.
pub struct Cached {
    /// The document.
    pub doc: Automerge,
    /// Its typed view (read without issues: it was stored).
    pub view: CaseView,
}

struct Entry {
    heads: Vec<u8>,
    cached: Cached,
    cost: usize,
    stored: u64,
}

#[derive(Default)]
struct Entries {
    by_case: HashMap<CaseId, Entry>,
    /// Store order, oldest first, for eviction.
    order: BTreeMap<u64, CaseId>,
    used: usize,
    tick: u64,
}

impl Entries {
    fn remove(&mut self, case: &CaseId) -> Option<Entry> {
        let entry = self.by_case.remove(case)?;
        self.order.remove(&entry.stored);
        self.used -= entry.cost;
        Some(entry)
    }
}

/// A bounded cache of loaded case documents (see the module documentation).
pub struct DocumentCache {
    budget: usize,
    entries: Mutex<Entries>,
}

impl std::fmt::Debug for DocumentCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (cases, used) = self.entries.lock().map(|e| (e.by_case.len(), e.used)).unwrap_or_default();
        f.debug_struct("DocumentCache")
            .field("budget", &self.budget)
            .field("cases", &cases)
            .field("used", &used)
            .finish()
    }
}

impl DocumentCache {
    /// A cache holding about `budget` bytes (none at all for 0).
    pub fn new(budget: usize) -> Self {
        Self { budget, entries: Mutex::new(Entries::default()) }
    }

    /// Takes out the case's entry if it was stored with exactly `heads` (the `heads` column's
    /// bytes); an entry with other heads is stale and is dropped.
    pub fn take(&self, case: &CaseId, heads: &[u8]) -> Option<Cached> {
        let mut entries = self.entries.lock().ok()?;
        let entry = entries.remove(case)?;
        (entry.heads == heads).then_some(entry.cached)
    }

    /// Keeps `cached` as the case's state with `heads`, once the transaction that stored it
    /// has committed. Older entries go when the budget is exceeded; an entry larger than the
    /// whole budget is not kept.
    pub fn put(&self, case: CaseId, heads: Vec<u8>, cached: Cached) {
        let cost = BASE_COST + COST_PER_OP * usize::try_from(cached.doc.stats().num_ops).unwrap_or(usize::MAX / 2);
        let Ok(mut entries) = self.entries.lock() else { return };
        entries.remove(&case);
        if cost > self.budget {
            return;
        }
        while entries.used + cost > self.budget {
            let Some((_, oldest)) = entries.order.pop_first() else { break };
            if let Some(entry) = entries.by_case.remove(&oldest) {
                entries.used -= entry.cost;
            }
        }
        entries.tick += 1;
        let stored = entries.tick;
        entries.order.insert(stored, case);
        entries.used += cost;
        entries.by_case.insert(case, Entry { heads, cached, cost, stored });
    }

    /// How many cases are held, and their estimated bytes.
    pub fn usage(&self) -> (usize, usize) {
        self.entries.lock().map(|e| (e.by_case.len(), e.used)).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tsunagi_sync::document::read_case;
    use tsunagi_sync::ids::{DeviceId, MunicipalityCode, StaffId};
    use tsunagi_sync::ops::{CaseReplica, NewCase};
    use tsunagi_sync::validation::Actor;

    fn case() -> (CaseId, Cached) {
        let new = NewCase::new(
            MunicipalityCode::parse("122203").unwrap(),
            chrono::NaiveDate::from_ymd_opt(2026, 11, 2).unwrap(),
        );
        let id = new.case_id;
        let mut replica =
            CaseReplica::open(new, Actor::counsellor(StaffId::new_random(), DeviceId::new_random())).unwrap();
        let doc = Automerge::load(&replica.save()).unwrap();
        let view = read_case(&doc).view.unwrap();
        (id, Cached { doc, view })
    }

    #[test]
    fn an_entry_is_used_only_with_the_heads_it_was_stored_with_and_only_once() {
        let cache = DocumentCache::new(DEFAULT_BUDGET);
        let (id, cached) = case();
        let heads = crate::store::documents::encode_heads(&cached.doc.get_heads());
        cache.put(id, heads.clone(), cached);
        assert!(cache.take(&id, b"other heads").is_none(), "stale heads must miss");
        assert!(cache.take(&id, &heads).is_none(), "a stale entry is dropped, not kept");
        let (_, cached) = case();
        cache.put(id, heads.clone(), cached);
        assert!(cache.take(&id, &heads).is_some());
        assert!(cache.take(&id, &heads).is_none(), "taken out while in use");
        assert_eq!(cache.usage(), (0, 0));
    }

    #[test]
    fn the_oldest_entries_go_when_the_budget_is_exceeded() {
        let one = BASE_COST + COST_PER_OP * usize::try_from(case().1.doc.stats().num_ops).unwrap();
        let cache = DocumentCache::new(one * 2);
        let ids: Vec<CaseId> = (0..3)
            .map(|_| {
                let (id, cached) = case();
                cache.put(id, vec![1], cached);
                id
            })
            .collect();
        assert_eq!(cache.usage(), (2, one * 2));
        assert!(cache.take(&ids[0], &[1]).is_none(), "the oldest went first");
        assert!(cache.take(&ids[2], &[1]).is_some());
        let off = DocumentCache::new(0);
        let (id, cached) = case();
        off.put(id, vec![1], cached);
        assert_eq!(off.usage(), (0, 0), "a budget of 0 keeps nothing");
    }
}
