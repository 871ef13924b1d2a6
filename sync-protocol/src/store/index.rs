//! `index.json`: the store-level sync cursor and, per case, the `since` heads and the state of
//! the last sync.

use std::collections::BTreeMap;
use std::path::Path;

use automerge::{ChangeHash, ParseChangeHashError};
use serde::{Deserialize, Serialize};

use super::error::StoreError;
use crate::ids::CaseId;
use crate::validation::Violation;

/// The format of `index.json` this version reads and writes.
pub const INDEX_FORMAT: u32 = 1;

/// What the store remembers about one case besides its document.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CaseEntry {
    /// The heads the server last sent for this case, as hex change hashes: the next sync sends
    /// the changes made after them (`get_changes(since)`). Empty for a case never synced.
    /// Read and write them typed with [`since_hashes`](Self::since_hashes) and
    /// [`set_since`](Self::set_since).
    pub since: Vec<String>,
    /// The case number (受付番号) the server assigned, once known (e.g. `"2026-0153"`).
    pub case_number: Option<String>,
    /// When this case last synced without refusal (RFC 3339).
    pub last_synced_at: Option<String>,
    /// The server's refusal of this case's last batch, kept until a later sync succeeds, so
    /// the app can show the counsellor why.
    pub refusal: Option<Refusal>,
    /// The case is in fallback mode: the server could not use `since` and the case syncs with
    /// Automerge's sync protocol until the server answers `ok` (protocol.md, section 8). A
    /// case in fallback mode is listed in every request.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub fallback: bool,
    /// The server asked the device to delete this case (the purge reason, e.g.
    /// `"unassigned"`) while it still held changes the server had not acknowledged: they go up
    /// with the next request, and the case is deleted once that request is answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purge_pending: Option<String>,
    /// When the server last answered `not_found` for this case (RFC 3339): no such case on
    /// the server, or one this device may no longer see. The replica is kept (only a purge
    /// deletes it); the app shows the case as unavailable. Cleared by the next `ok`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_found_at: Option<String>,
}

impl CaseEntry {
    /// [`since`](Self::since) as change hashes.
    pub fn since_hashes(&self) -> Result<Vec<ChangeHash>, ParseChangeHashError> {
        self.since.iter().map(|h| h.parse()).collect()
    }

    /// Sets [`since`](Self::since) from change hashes (stored as lowercase hex).
    pub fn set_since(&mut self, heads: &[ChangeHash]) {
        self.since = heads.iter().map(ChangeHash::to_string).collect();
    }
}

/// The server refused a batch of changes to a case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    /// When the refusal was received (RFC 3339).
    pub at: String,
    /// The machine code of the refusal, as the server sent it.
    pub code: String,
    /// The server's message, for people.
    pub message: String,
    /// Each reason the changes were refused.
    #[serde(default)]
    pub violations: Vec<Violation>,
}

/// The whole index, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Index {
    /// Always [`INDEX_FORMAT`] when written by this version.
    pub format: u32,
    /// The opaque sync cursor the server last sent (base64 text).
    #[serde(default)]
    pub cursor: Option<String>,
    /// When the last complete sync round ended (RFC 3339).
    #[serde(default)]
    pub last_sync_at: Option<String>,
    /// Every case the store holds, by id.
    #[serde(default)]
    pub cases: BTreeMap<CaseId, CaseEntry>,
}

impl Default for Index {
    fn default() -> Self {
        Self { format: INDEX_FORMAT, cursor: None, last_sync_at: None, cases: BTreeMap::new() }
    }
}

impl Index {
    /// Parses the bytes of `index.json` read from `path`.
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Self, StoreError> {
        let corrupt = |detail: String| StoreError::CorruptIndex { path: path.to_path_buf(), detail };
        // The format is read first, so that an index from a newer version is reported as
        // such rather than as corrupt.
        #[derive(Deserialize)]
        struct Probe {
            format: u64,
        }
        let probe: Probe = serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
        if probe.format != u64::from(INDEX_FORMAT) {
            return Err(StoreError::UnsupportedFormat {
                path: path.to_path_buf(),
                found: probe.format,
                expected: INDEX_FORMAT,
            });
        }
        serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))
    }

    /// The bytes of `index.json`: pretty JSON with a final newline.
    pub fn to_bytes(&self, path: &Path) -> Result<Vec<u8>, StoreError> {
        let mut bytes = serde_json::to_vec_pretty(self).map_err(|e| StoreError::CorruptIndex {
            path: path.to_path_buf(),
            detail: format!("cannot be serialised: {e}"),
        })?;
        bytes.push(b'\n');
        Ok(bytes)
    }
}
