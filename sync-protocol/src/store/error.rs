//! The errors of the replica store.

use std::io;
use std::path::PathBuf;

use crate::ids::CaseId;

/// Why the replica store could not do what was asked.
///
/// Messages name files and case ids, never case content: a case id is not personal data,
/// a name or a narrative is.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A file-system operation failed.
    #[error("replica store: could not {op} {}: {source}", path.display())]
    Io {
        /// What was being done ("write", "fsync", "rename into place", ...).
        op: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The error from the operating system.
        #[source]
        source: io::Error,
    },

    /// Another process (or another [`ReplicaStore`](super::ReplicaStore) in this one) has the
    /// store open.
    #[error(
        "replica store {} is already open in another process (it holds the lock on {}); \
         close the other tsunagi process (e.g. a running `tsunagi field sync`) and try again",
        dir.display(),
        lock.display()
    )]
    Locked {
        /// The store directory.
        dir: PathBuf,
        /// The lock file someone else holds.
        lock: PathBuf,
    },

    /// `index.json` is not an index this version can read.
    #[error("replica store index {} is corrupt: {detail}", path.display())]
    CorruptIndex {
        /// The index file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },

    /// `index.json` was written by a newer version of tsunagi, in a format this one does not
    /// know; it is left untouched.
    #[error(
        "replica store index {} has format {found}, this version of tsunagi reads format {expected}; \
         update the app",
        path.display()
    )]
    UnsupportedFormat {
        /// The index file.
        path: PathBuf,
        /// The format found in the file.
        found: u64,
        /// The format this version reads and writes.
        expected: u32,
    },

    /// A case file does not load as an Automerge document.
    #[error("case file {} of case {case} is corrupt: {source}", path.display())]
    CorruptCase {
        /// The case whose file is corrupt.
        case: CaseId,
        /// The case file.
        path: PathBuf,
        /// Why it does not load.
        #[source]
        source: CaseFileError,
    },

    /// An operation that needs a stored case (such as [`update_entry`]) was given a case the
    /// store does not hold. Save the case first: a case file always exists before the index
    /// entry that refers to it.
    ///
    /// [`update_entry`]: super::ReplicaStore::update_entry
    #[error("case {case} is not in the replica store; save the case before updating its index entry")]
    UnknownCase {
        /// The case asked for.
        case: CaseId,
    },

    /// [`save`](super::ReplicaStore::save) was given no bytes. An empty file would load as an
    /// empty document, so it is refused instead of being written.
    #[error("refusing to store an empty document for case {case}: pass the output of AutoCommit::save()")]
    EmptyDocument {
        /// The case concerned.
        case: CaseId,
    },
}

/// Why a case file does not load.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaseFileError {
    /// The file is empty (the store never writes an empty case file).
    #[error("the file is empty")]
    Empty,
    /// The bytes are not a loadable case document: damaged (a checksum that does not match,
    /// truncated), not Automerge at all, a chunk type the store never writes, or refused by
    /// Automerge (see [`crate::document::load_saved`]).
    #[error(transparent)]
    Saved(crate::document::SavedError),
}

/// Builds a [`StoreError::Io`].
pub(super) fn io_error(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> StoreError {
    StoreError::Io { op, path: path.into(), source }
}
