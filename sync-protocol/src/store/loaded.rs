//! The replicas a [`ReplicaStore`](super::ReplicaStore) keeps loaded in memory.
//!
//! Loading a case file parses and rebuilds the whole Automerge document, which is most of a
//! phone's work in a sync (every held case is read to find what to send) and in logging an
//! activity. The store therefore keeps the documents it last loaded or saved, up to a byte
//! budget, and hands out copies of them. The store is the only writer of its files (it holds
//! their lock), and every write goes through it, so a kept document is always the file's
//! content: a save of a document replaces the kept one, a save of raw bytes or a purge drops
//! it.

use std::collections::HashMap;
use std::sync::Mutex;

use automerge::AutoCommit;

use crate::ids::CaseId;

/// By default, about this many bytes of saved documents are kept loaded.
pub const DEFAULT_BUDGET: usize = 16 * 1024 * 1024;

#[derive(Debug, Default)]
struct Kept {
    docs: HashMap<CaseId, Entry>,
    bytes: usize,
    tick: u64,
}

#[derive(Debug)]
struct Entry {
    doc: AutoCommit,
    /// The saved size, which the budget counts.
    bytes: usize,
    /// When it was last used: the least recently used goes first.
    used: u64,
}

/// Documents kept loaded, by case, within a byte budget of their saved size (in memory a
/// document takes a few times its saved size).
#[derive(Debug)]
pub(super) struct Loaded {
    kept: Mutex<Kept>,
    budget: usize,
}

impl Loaded {
    pub(super) fn new(budget: usize) -> Self {
        Self { kept: Mutex::new(Kept::default()), budget }
    }

    /// A copy of the document kept for `case`.
    pub(super) fn get(&self, case: &CaseId) -> Option<AutoCommit> {
        let mut kept = self.kept.lock().ok()?;
        kept.tick += 1;
        let tick = kept.tick;
        let entry = kept.docs.get_mut(case)?;
        entry.used = tick;
        Some(entry.doc.clone())
    }

    /// Keeps a copy of `doc`, whose saved size is `bytes`, as the content of `case`'s file.
    /// A document holding changes whose dependencies it lacks is not kept: `save()` leaves
    /// those out of the file, and a copy would still apply them once the dependencies come.
    pub(super) fn put(&self, case: CaseId, doc: &AutoCommit, bytes: usize) {
        let Ok(mut kept) = self.kept.lock() else { return };
        if let Some(old) = kept.docs.remove(&case) {
            kept.bytes -= old.bytes;
        }
        if bytes > self.budget || !automerge::ReadDoc::get_missing_deps(doc, &[]).is_empty() {
            return;
        }
        while kept.bytes + bytes > self.budget {
            let Some(oldest) = kept.docs.iter().min_by_key(|(_, e)| e.used).map(|(c, _)| *c) else { break };
            if let Some(old) = kept.docs.remove(&oldest) {
                kept.bytes -= old.bytes;
            }
        }
        kept.tick += 1;
        let used = kept.tick;
        kept.bytes += bytes;
        kept.docs.insert(case, Entry { doc: doc.clone(), bytes, used });
    }

    /// Forgets `case`: its file was replaced by bytes not loaded here, or removed.
    pub(super) fn forget(&self, case: &CaseId) {
        // A poisoned lock (a panic while it was held) forgets everything instead.
        match self.kept.lock() {
            Ok(mut kept) => {
                if let Some(old) = kept.docs.remove(case) {
                    kept.bytes -= old.bytes;
                }
            }
            Err(poisoned) => {
                let mut kept = poisoned.into_inner();
                *kept = Kept::default();
            }
        }
    }

    /// How many documents are kept, and their saved bytes.
    pub(super) fn usage(&self) -> (usize, usize) {
        self.kept.lock().map(|k| (k.docs.len(), k.bytes)).unwrap_or((0, 0))
    }
}
