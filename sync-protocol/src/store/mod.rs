//! The phone's local replica store: one file per case, an index, and nothing ever half-written.
//!
//! A phone keeps an Automerge replica of each case it is assigned, works on them offline, and
//! syncs them with the server. [`ReplicaStore`] keeps those replicas on disk.
//!
//! # Layout
//!
//! ```text
//! <dir>/                      mode 0700
//!   lock                      empty; held with an exclusive advisory lock while the store is open
//!   index.json                the index (below), pretty JSON
//!   cases/                    mode 0700
//!     <case-uuid>.automerge   AutoCommit::save() bytes of one case, mode 0600
//!   refused/                  mode 0700; only once the server has refused something
//!     <case-uuid>/            mode 0700
//!       <timestamp>.automerge the replica as it was before refused changes left it, mode 0600
//! ```
//!
//! `refused/` keeps what a sync client takes out of a replica when the server refuses it
//! ([`ReplicaStore::keep_refused`]): the server holds the refused upload in quarantine, and
//! the device keeps its own copy until the user or an administrator has dealt with it
//! ([`ReplicaStore::refused_copies`], [`ReplicaStore::discard_refused`]). Nothing a
//! counsellor recorded is silently dropped.
//!
//! `index.json` looks like this (`"format": 1`; an index with another format is refused with
//! [`StoreError::UnsupportedFormat`] and left untouched):
//!
//! ```json
//! {
//!   "format": 1,
//!   "cursor": "b3BhcXVl",
//!   "last_sync_at": "2026-11-04T18:02:11+09:00",
//!   "cases": {
//!     "0191e3c4-7d2a-4b8e-9f00-2c1d5e6f7a8b": {
//!       "since": ["5f0c…(64 hex digits)"],
//!       "case_number": "2026-0153",
//!       "last_synced_at": "2026-11-04T18:02:11+09:00",
//!       "refusal": null
//!     }
//!   }
//! }
//! ```
//!
//! # Crash safety
//!
//! Every write — a case file or the index — goes to `<name>.tmp` in the same directory
//! (created fresh, mode 0600), is flushed with `sync_all()`, renamed over `<name>`, and then
//! the directory itself is fsynced so the rename is durable. A crash at any moment leaves the
//! previous complete file or the new complete file, never a mix; at worst a stray `*.tmp`
//! (truncated or garbage), which [`ReplicaStore::open`] deletes. The last good state is never
//! lost.
//!
//! **Ordering rule.** A case file is always written *before* the index entry that refers to
//! it, and deleted *before* its index entry is removed:
//!
//! - Saving a case, then recording the heads the server sent (`since`), are two durable
//!   writes in that order. A crash between them leaves the *older* `since` next to the newer
//!   document, so the next sync sends again some changes the server already has — content
//!   addressed, a duplicate is a no-op — and loses nothing. The reverse order could leave a
//!   `since` naming changes the document does not hold, and the changes made after it would
//!   never be sent. [`ReplicaStore::update_entry`] therefore refuses a case that was never
//!   saved ([`StoreError::UnknownCase`]), and [`ReplicaStore::save_with_entry`] does both
//!   writes in the right order.
//! - A case file without an index entry (a crash while saving a case for the first time) is
//!   adopted by [`ReplicaStore::open`] with an empty `since`: the next sync sends all of it.
//! - An index entry without a case file (a crash in the middle of [`ReplicaStore::remove`])
//!   is dropped by [`ReplicaStore::open`], completing the purge.
//!
//! # One writer
//!
//! [`ReplicaStore::open`] takes an exclusive advisory lock on `<dir>/lock`
//! ([`std::fs::File::try_lock`]); a second open, from another process or this one, fails with
//! [`StoreError::Locked`] until the first store is dropped. Within a process, writes take
//! `&mut self`.
//!
//! # Kept loaded
//!
//! Parsing a case file rebuilds the whole Automerge document. The store keeps the documents
//! it last loaded or saved in memory (16 MiB of saved size by default,
//! [`ReplicaStore::with_memory_budget`]) and [`ReplicaStore::load_doc`] copies a kept one
//! instead of reading its file. Being the files' only writer, it keeps them true to the
//! files: a document saved replaces the kept one once its file is written, raw bytes saved
//! or a purge drop it. Damage done to a file from outside the store is found when the file
//! is next read, at the latest when the store is opened again.
//!
//! # Personal data
//!
//! Case files hold personal data under statutory secrecy: no file is created with a mode
//! broader than 0600 and the directories are 0700 (an existing store directory open to group
//! or others is narrowed to 0700 when opened). Errors name files and case ids, never case
//! content.
//!
//! # Example
//!
//! ```
//! use automerge::{transaction::Transactable, AutoCommit, ROOT};
//! use tsunagi_sync::ids::CaseId;
//! use tsunagi_sync::store::ReplicaStore;
//!
//! let dir = tempfile::tempdir().unwrap();
//! let case = CaseId::new_random();
//! let mut doc = AutoCommit::new();
//! doc.put(ROOT, "status", "open").unwrap();
//!
//! let mut store = ReplicaStore::open(dir.path().join("replica")).unwrap();
//! store.save_doc(&case, &mut doc).unwrap();
//! // After a sync round trip: the server's heads become `since`.
//! let heads = doc.get_heads();
//! store.update_entry(&case, |e| e.set_since(&heads)).unwrap();
//! drop(store);
//!
//! let store = ReplicaStore::open(dir.path().join("replica")).unwrap();
//! assert_eq!(store.case_ids(), vec![case]);
//! assert_eq!(store.since(&case).unwrap(), heads);
//! assert!(store.load_doc(&case).unwrap().is_some());
//! ```

mod error;
mod fsio;
mod index;
mod loaded;

use std::fmt;
use std::fs::{self, File, TryLockError};
use std::path::{Path, PathBuf};

use automerge::{AutoCommit, ChangeHash};
use chrono::{DateTime, Utc};

pub use error::{CaseFileError, StoreError};
pub use index::{CaseEntry, Refusal, INDEX_FORMAT};

use error::io_error;
use index::Index;

use crate::document::SavedError;
use crate::ids::CaseId;

/// The name of the index file in the store directory.
pub const INDEX_FILE: &str = "index.json";
/// The name of the lock file in the store directory.
pub const LOCK_FILE: &str = "lock";
/// The name of the directory of case files in the store directory.
pub const CASES_DIR: &str = "cases";
/// The extension of a case file: `cases/<case-uuid>.automerge`.
pub const CASE_EXTENSION: &str = "automerge";
/// The name of the directory of refused copies in the store directory:
/// `refused/<case-uuid>/<timestamp>.automerge`.
pub const REFUSED_DIR: &str = "refused";

/// A phone's local replica store, open and locked. See the [module documentation](self).
pub struct ReplicaStore {
    dir: PathBuf,
    cases_dir: PathBuf,
    index_path: PathBuf,
    index: Index,
    /// Held for the lifetime of the store: the exclusive lock is released when it is closed.
    lock: File,
    /// The documents last loaded or saved, kept in memory ([`loaded`]).
    loaded: loaded::Loaded,
}

impl fmt::Debug for ReplicaStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Deliberately shallow: no index content (refusal messages, case numbers) in logs.
        f.debug_struct("ReplicaStore").field("dir", &self.dir).field("cases", &self.index.cases.len()).finish()
    }
}

impl ReplicaStore {
    /// Opens the store in `dir`, creating it (and `dir/cases`) if missing.
    ///
    /// In order: creates the directories (0700); takes the exclusive lock on `dir/lock`, or
    /// fails with [`StoreError::Locked`]; deletes the temporary files a crash left behind;
    /// loads `index.json` (a missing index is an empty one); reconciles the index with the case
    /// files (see "Ordering rule" in the [module documentation](self)) and writes the index if
    /// that changed it or it did not exist.
    ///
    /// A corrupt `index.json` is an error ([`StoreError::CorruptIndex`]), not a reason to start
    /// afresh: it is left as it is for someone to look at.
    pub fn open(dir: impl AsRef<Path>) -> Result<ReplicaStore, StoreError> {
        let dir = dir.as_ref().to_path_buf();
        let cases_dir = dir.join(CASES_DIR);
        let index_path = dir.join(INDEX_FILE);

        fsio::ensure_private_dir(&dir)?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = fsio::open_lock_file(&lock_path)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(StoreError::Locked { dir, lock: lock_path }),
            Err(TryLockError::Error(e)) => return Err(io_error("lock", lock_path, e)),
        }
        // From here on we are the only writer.
        fsio::ensure_private_dir(&cases_dir)?;
        // Only our own temporaries: `index.json.tmp` here, any `*.tmp` in `cases/` (ours alone).
        fsio::remove_durably(&dir.join(format!("{INDEX_FILE}{}", fsio::TMP_SUFFIX)), &dir)?;
        fsio::remove_temporaries(&cases_dir)?;
        remove_refused_temporaries(&dir.join(REFUSED_DIR))?;

        let (mut index, mut dirty) = match fsio::read_if_exists(&index_path)? {
            Some(bytes) => (Index::parse(&index_path, &bytes)?, false),
            None => (Index::default(), true),
        };

        // Reconcile with the case files on disk.
        let on_disk = list_case_files(&cases_dir)?;
        for case in &on_disk {
            if !index.cases.contains_key(case) {
                // Saved, then a crash before its index entry: adopt it, never synced.
                index.cases.insert(*case, CaseEntry::default());
                dirty = true;
            }
        }
        let before = index.cases.len();
        // Entry without a file: a purge interrupted between its two steps; finish it.
        index.cases.retain(|case, _| on_disk.contains(case));
        dirty |= index.cases.len() != before;

        let store = ReplicaStore {
            dir,
            cases_dir,
            index_path,
            index,
            lock,
            loaded: loaded::Loaded::new(loaded::DEFAULT_BUDGET),
        };
        if dirty {
            store.write_index(&store.index)?;
        }
        Ok(store)
    }

    /// Keeps about `bytes` of documents (counted by their saved size) loaded in memory, the
    /// least recently used going first; 0 keeps none. By default 16 MiB. Every [`load_doc`](Self::load_doc) of a kept document is a copy in memory instead
    /// of a read and a parse of its file.
    pub fn with_memory_budget(mut self, bytes: usize) -> Self {
        self.loaded = loaded::Loaded::new(bytes);
        self
    }

    /// How many documents are kept loaded, and their saved bytes.
    pub fn memory_usage(&self) -> (usize, usize) {
        self.loaded.usage()
    }

    /// The store directory, as given to [`open`](Self::open).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every case the store holds, in id order.
    pub fn case_ids(&self) -> Vec<CaseId> {
        self.index.cases.keys().copied().collect()
    }

    /// Whether the store holds `case`.
    pub fn contains(&self, case: &CaseId) -> bool {
        self.index.cases.contains_key(case)
    }

    /// The path of the file of `case` (which may not exist).
    pub fn case_path(&self, case: &CaseId) -> PathBuf {
        self.cases_dir.join(format!("{case}.{CASE_EXTENSION}"))
    }

    /// The saved bytes of `case`, or `None` if the store does not hold it.
    pub fn load(&self, case: &CaseId) -> Result<Option<Vec<u8>>, StoreError> {
        fsio::read_if_exists(&self.case_path(case))
    }

    /// `case` loaded as an Automerge document, or `None` if the store does not hold it.
    ///
    /// A file that does not load (empty, truncated, garbage) is
    /// [`StoreError::CorruptCase`]; the file is left as it is. A document the store keeps
    /// loaded (see [`with_memory_budget`](Self::with_memory_budget)) is copied instead.
    pub fn load_doc(&self, case: &CaseId) -> Result<Option<AutoCommit>, StoreError> {
        if let Some(doc) = self.loaded.get(case) {
            return Ok(Some(doc));
        }
        let Some(bytes) = self.load(case)? else {
            return Ok(None);
        };
        let corrupt = |source| StoreError::CorruptCase { case: *case, path: self.case_path(case), source };
        // Automerge would load no bytes as an empty document; the store never writes an
        // empty file, nor anything but document and change chunks.
        match crate::document::load_saved(&bytes) {
            Ok(doc) => {
                self.loaded.put(*case, &doc, bytes.len());
                Ok(Some(doc))
            }
            Err(SavedError::Empty) => Err(corrupt(CaseFileError::Empty)),
            Err(e) => Err(corrupt(CaseFileError::Saved(e))),
        }
    }

    /// Replaces the stored document of `case` with `bytes` (the output of
    /// `AutoCommit::save()`), atomically and durably. A case the store did not hold gets an
    /// index entry (never synced), written after the case file.
    ///
    /// The bytes are not parsed here; pass what `save()` returned. Empty bytes are refused
    /// ([`StoreError::EmptyDocument`]).
    pub fn save(&mut self, case: &CaseId, bytes: &[u8]) -> Result<(), StoreError> {
        self.save_with_entry(case, bytes, |_| {})
    }

    /// [`save`](Self::save)s `doc` (`doc.save()` compacts it first).
    pub fn save_doc(&mut self, case: &CaseId, doc: &mut AutoCommit) -> Result<(), StoreError> {
        self.save_doc_with_entry(case, doc, |_| {})
    }

    /// [`save_with_entry`](Self::save_with_entry) for a document: saves `doc`, then updates
    /// the index entry, and keeps `doc` loaded as the case's content.
    pub fn save_doc_with_entry(
        &mut self,
        case: &CaseId,
        doc: &mut AutoCommit,
        update: impl FnOnce(&mut CaseEntry),
    ) -> Result<(), StoreError> {
        let bytes = doc.save();
        self.save_with_entry(case, &bytes, update)?;
        // Only once the file holds it (a failed write forgot the case).
        self.loaded.put(*case, doc, bytes.len());
        Ok(())
    }

    /// Saves `case` and then updates its index entry with `update`, in that order (see
    /// "Ordering rule" in the [module documentation](self)): what a sync client does after a
    /// round trip, with the server's heads as the new `since`.
    ///
    /// The case file is written first; the index is written only if the entry is new or
    /// `update` changed it. If the second write fails, the case file is saved and the index
    /// keeps the older entry, which is safe.
    pub fn save_with_entry(
        &mut self,
        case: &CaseId,
        bytes: &[u8],
        update: impl FnOnce(&mut CaseEntry),
    ) -> Result<(), StoreError> {
        if bytes.is_empty() {
            return Err(StoreError::EmptyDocument { case: *case });
        }
        // Whatever happens next, the file may no longer be the document kept loaded.
        self.loaded.forget(case);
        fsio::write_atomic(&self.cases_dir, &format!("{case}.{CASE_EXTENSION}"), bytes)?;
        let old = self.index.cases.get(case);
        let mut entry = old.cloned().unwrap_or_default();
        update(&mut entry);
        if old != Some(&entry) {
            self.commit_entry(case, entry)?;
        }
        Ok(())
    }

    /// The index entry of `case`, or `None` if the store does not hold it.
    pub fn entry(&self, case: &CaseId) -> Option<&CaseEntry> {
        self.index.cases.get(case)
    }

    /// The heads the server last sent for `case` (its `since`); empty for a case never synced
    /// or not held.
    ///
    /// A `since` that is not a list of hex change hashes is [`StoreError::CorruptIndex`].
    pub fn since(&self, case: &CaseId) -> Result<Vec<ChangeHash>, StoreError> {
        let Some(entry) = self.index.cases.get(case) else {
            return Ok(Vec::new());
        };
        entry.since_hashes().map_err(|e| StoreError::CorruptIndex {
            path: self.index_path.clone(),
            detail: format!("case {case}: `since` is not a list of change hashes ({e})"),
        })
    }

    /// Changes the index entry of `case` with `update` and writes the index, atomically and
    /// durably (nothing is written if `update` changes nothing).
    ///
    /// The case must have been saved first ([`StoreError::UnknownCase`] otherwise): an index
    /// entry never refers to a case file that was not written before it. If the write fails,
    /// the entry in memory is unchanged too.
    pub fn update_entry(&mut self, case: &CaseId, update: impl FnOnce(&mut CaseEntry)) -> Result<(), StoreError> {
        let Some(old) = self.index.cases.get(case) else {
            return Err(StoreError::UnknownCase { case: *case });
        };
        let mut entry = old.clone();
        update(&mut entry);
        if &entry != old {
            self.commit_entry(case, entry)?;
        }
        Ok(())
    }

    /// The opaque sync cursor the server last sent (base64 text), if any.
    pub fn cursor(&self) -> Option<&str> {
        self.index.cursor.as_deref()
    }

    /// When the last complete sync round ended (RFC 3339), if ever.
    pub fn last_sync_at(&self) -> Option<&str> {
        self.index.last_sync_at.as_deref()
    }

    /// Records the end of a sync round: the server's new cursor and when the round ended
    /// (RFC 3339), in one durable write of the index. Record the cases of the round (their
    /// files, then their entries) before calling this.
    pub fn set_cursor(&mut self, cursor: Option<String>, last_sync_at: Option<String>) -> Result<(), StoreError> {
        let mut next = self.index.clone();
        next.cursor = cursor;
        next.last_sync_at = last_sync_at;
        if next != self.index {
            self.write_index(&next)?;
            self.index = next;
        }
        Ok(())
    }

    /// Purges `case`: deletes its file, durably, then its index entry, durably. Returns whether
    /// the store held it. A crash between the two steps is finished by the next
    /// [`open`](Self::open).
    pub fn remove(&mut self, case: &CaseId) -> Result<bool, StoreError> {
        self.loaded.forget(case);
        let had_file = fsio::remove_durably(&self.case_path(case), &self.cases_dir)?;
        let had_entry = self.index.cases.contains_key(case);
        if had_entry {
            let mut next = self.index.clone();
            next.cases.remove(case);
            self.write_index(&next)?;
            self.index = next;
        }
        Ok(had_file || had_entry)
    }

    /// Keeps `bytes` — the `save()` output of a replica of `case` as it was before a sync
    /// client removed refused changes from it — under
    /// `refused/<case-uuid>/<timestamp>.automerge` (mode 0600), atomically and durably, and
    /// returns the path. The timestamp is `at` in UTC (`20261104T091502.123456789Z`), so
    /// names sort by time; a name already taken gets a `-1`, `-2`, ... suffix. The case need
    /// not be held.
    ///
    /// Write the copy **before** the rebuilt replica replaces the old one: a crash in between
    /// leaves the old replica and a copy, never neither.
    pub fn keep_refused(&mut self, case: &CaseId, bytes: &[u8], at: DateTime<Utc>) -> Result<PathBuf, StoreError> {
        if bytes.is_empty() {
            return Err(StoreError::EmptyDocument { case: *case });
        }
        let refused = self.dir.join(REFUSED_DIR);
        fsio::ensure_private_dir(&refused)?;
        let case_dir = refused.join(case.to_string());
        fsio::ensure_private_dir(&case_dir)?;
        let stamp = at.format("%Y%m%dT%H%M%S%.9fZ").to_string();
        let mut name = format!("{stamp}.{CASE_EXTENSION}");
        let mut n = 0u32;
        while case_dir.join(&name).exists() {
            n += 1;
            name = format!("{stamp}-{n}.{CASE_EXTENSION}");
        }
        fsio::write_atomic(&case_dir, &name, bytes)?;
        Ok(case_dir.join(name))
    }

    /// The refused copies kept for `case` ([`keep_refused`](Self::keep_refused)), oldest
    /// first; empty if there are none. Read one with [`std::fs::read`] and load it with
    /// `AutoCommit::load`.
    pub fn refused_copies(&self, case: &CaseId) -> Result<Vec<PathBuf>, StoreError> {
        let case_dir = self.dir.join(REFUSED_DIR).join(case.to_string());
        let entries = match fs::read_dir(&case_dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_error("list", case_dir, e)),
        };
        let mut copies = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| io_error("list", &case_dir, e))?;
            let path = entry.path();
            let is_copy = path.extension().is_some_and(|ext| ext == CASE_EXTENSION);
            if is_copy && entry.file_type().map_err(|e| io_error("read file type of", &path, e))?.is_file() {
                copies.push(path);
            }
        }
        // `<stamp>.automerge` before `<stamp>-1.automerge`, `-2`, ... `-10`.
        copies.sort_by_cached_key(|path| {
            let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_owned();
            match stem.rsplit_once('-').and_then(|(stamp, n)| Some((stamp.to_owned(), n.parse::<u32>().ok()?))) {
                Some((stamp, n)) => (stamp, n),
                None => (stem, 0),
            }
        });
        Ok(copies)
    }

    /// Every case that has refused copies, in id order (held or not: a purged case's copies go
    /// with it, see [`discard_refused`](Self::discard_refused)).
    pub fn cases_with_refused_copies(&self) -> Result<Vec<CaseId>, StoreError> {
        let refused = self.dir.join(REFUSED_DIR);
        let entries = match fs::read_dir(&refused) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_error("list", refused, e)),
        };
        let mut cases = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| io_error("list", &refused, e))?;
            if let Some(case) = entry.file_name().to_str().and_then(|n| CaseId::parse(n).ok()) {
                if !self.refused_copies(&case)?.is_empty() {
                    cases.push(case);
                }
            }
        }
        cases.sort();
        Ok(cases)
    }

    /// Deletes every refused copy of `case`, durably, and returns how many there were: once
    /// the user has redone the work, or when the case is purged from the device (its data must
    /// leave the device; the server keeps the refused upload in quarantine).
    pub fn discard_refused(&mut self, case: &CaseId) -> Result<usize, StoreError> {
        let refused = self.dir.join(REFUSED_DIR);
        let case_dir = refused.join(case.to_string());
        if !case_dir.is_dir() {
            return Ok(0);
        }
        let copies = self.refused_copies(case)?.len();
        fs::remove_dir_all(&case_dir).map_err(|e| io_error("delete", &case_dir, e))?;
        fsio::sync_dir(&refused)?;
        Ok(copies)
    }

    /// Wipes the store of a revoked device and closes it.
    ///
    /// Deletes every case file first (every file in `cases/`, case files and temporaries
    /// alike), then the `cases/` directory, the refused copies (`refused/`), the index (and its
    /// temporary), and the lock file;
    /// then **removes the store directory itself**. If the directory holds files the store did
    /// not create, those are left where they are, and so is the directory — it then holds
    /// only them, and no case data.
    ///
    /// Deletion unlinks files; it does not overwrite their blocks, which on flash storage and
    /// copy-on-write file systems would not reach the old data anyway. Protection at rest is
    /// the device's full-disk encryption.
    pub fn wipe(self) -> Result<(), StoreError> {
        // Case data first, so that an interrupted wipe has removed the personal data before
        // anything else; a second wipe (or open + wipe) finishes the job.
        if self.cases_dir.is_dir() {
            for entry in fs::read_dir(&self.cases_dir).map_err(|e| io_error("list", &self.cases_dir, e))? {
                let entry = entry.map_err(|e| io_error("list", &self.cases_dir, e))?;
                let path = entry.path();
                let file_type = entry.file_type().map_err(|e| io_error("read file type of", &path, e))?;
                if file_type.is_dir() {
                    fs::remove_dir_all(&path).map_err(|e| io_error("delete", &path, e))?;
                } else {
                    fsio::remove_if_exists(&path)?;
                }
            }
            fsio::sync_dir(&self.cases_dir)?;
            match fs::remove_dir(&self.cases_dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error("delete directory", &self.cases_dir, e)),
            }
        }
        let refused = self.dir.join(REFUSED_DIR);
        match fs::remove_dir_all(&refused) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error("delete directory", &refused, e)),
        }
        fsio::remove_if_exists(&self.index_path)?;
        fsio::remove_if_exists(&self.dir.join(format!("{INDEX_FILE}{}", fsio::TMP_SUFFIX)))?;
        fsio::remove_if_exists(&self.dir.join(LOCK_FILE))?;
        fsio::sync_dir(&self.dir)?;
        let ReplicaStore { dir, lock, .. } = self;
        drop(lock);
        match fs::remove_dir(&dir) {
            Ok(()) => {
                let parent = match dir.parent() {
                    Some(p) if !p.as_os_str().is_empty() => p,
                    _ => Path::new("."),
                };
                fsio::sync_dir(parent)
            }
            // Files that are not ours remain; the store itself is gone.
            Err(_) if dir.is_dir() && fs::read_dir(&dir).is_ok_and(|mut d| d.next().is_some()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error("delete directory", &dir, e)),
        }
    }

    /// Writes `next` with `entry` for `case`, then adopts it in memory.
    fn commit_entry(&mut self, case: &CaseId, entry: CaseEntry) -> Result<(), StoreError> {
        let mut next = self.index.clone();
        next.cases.insert(*case, entry);
        self.write_index(&next)?;
        self.index = next;
        Ok(())
    }

    /// Writes `index` to `index.json`, atomically and durably.
    fn write_index(&self, index: &Index) -> Result<(), StoreError> {
        let bytes = index.to_bytes(&self.index_path)?;
        fsio::write_atomic(&self.dir, INDEX_FILE, &bytes)
    }
}

/// Deletes the temporaries a crash left in `refused/<case-uuid>/` (a missing `refused/` is
/// fine).
fn remove_refused_temporaries(refused: &Path) -> Result<(), StoreError> {
    let entries = match fs::read_dir(refused) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_error("list", refused, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| io_error("list", refused, e))?;
        if entry.file_type().map_err(|e| io_error("read file type of", entry.path(), e))?.is_dir() {
            fsio::remove_temporaries(&entry.path())?;
        }
    }
    Ok(())
}

/// The cases that have a file `<case-uuid>.automerge` in `cases_dir`. Other names are ignored.
fn list_case_files(cases_dir: &Path) -> Result<std::collections::BTreeSet<CaseId>, StoreError> {
    let mut cases = std::collections::BTreeSet::new();
    for entry in fs::read_dir(cases_dir).map_err(|e| io_error("list", cases_dir, e))? {
        let entry = entry.map_err(|e| io_error("list", cases_dir, e))?;
        let name = entry.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(CASE_EXTENSION)?.strip_suffix('.')) else {
            continue;
        };
        let Ok(case) = CaseId::parse(stem) else {
            continue;
        };
        if entry.file_type().map_err(|e| io_error("read file type of", entry.path(), e))?.is_file() {
            cases.insert(case);
        }
    }
    Ok(cases)
}

#[cfg(test)]
mod tests;
