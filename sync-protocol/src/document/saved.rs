//! Loading saved case documents that come from outside the process: a replica file on a
//! phone, an assigned document in a sync answer, a file given to `tsunagi inspect`.
//!
//! Automerge 0.12 parses a chunk before it checks the chunk's checksum, and some of its
//! parsers trust the lengths they read: 80 crafted bytes of a *change bundle* chunk make it
//! allocate gigabytes (found by fuzzing). tsunagi writes only document and change chunks,
//! so [`load_saved`] walks the chunk headers first and refuses, before Automerge sees the
//! bytes:
//!
//! - anything that is not a sequence of Automerge chunks (magic bytes, a type, a length that
//!   fits in the input);
//! - chunk types tsunagi never writes (bundles, and any type Automerge does not know);
//! - a document or change chunk whose checksum (the first 4 bytes of the SHA-256 of its type,
//!   length and data, as Automerge computes it) does not match: damage on disk or on the way
//!   never reaches a parser. A compressed change chunk carries the checksum of its
//!   uncompressed form, which Automerge checks after inflating it;
//! - a document chunk whose columns claim more changes, operations or inflated bytes than a
//!   case document can hold (see [`Claim`]): behind a valid checksum, a run length in a
//!   change column can still make Automerge allocate gigabytes.
//!
//! Then Automerge loads the bytes, with a panic turned into an error (see
//! [`crate::validation::untrusted`]).

use automerge::{AutoCommit, AutomergeError};
use sha2::{Digest, Sha256};

mod bounds;

pub use bounds::Claim;
use bounds::Refusal;

/// The magic bytes every Automerge chunk starts with.
const MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];

/// Automerge's chunk types (the byte after the checksum).
const DOCUMENT: u8 = 0;
const CHANGE: u8 = 1;
const COMPRESSED_CHANGE: u8 = 2;

/// Why saved bytes are not a loadable case document.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SavedError {
    /// No bytes at all (Automerge would load them as an empty document).
    #[error("no bytes")]
    Empty,
    /// The chunk at `offset` does not start with Automerge's magic bytes.
    #[error("byte {offset}: not an Automerge chunk")]
    NotAChunk {
        /// Where the chunk starts.
        offset: usize,
    },
    /// The chunk at `offset` is cut short: its header or its data runs past the end.
    #[error("byte {offset}: the chunk is truncated")]
    Truncated {
        /// Where the chunk starts.
        offset: usize,
    },
    /// The chunk at `offset` is of a type tsunagi never writes (3 is a change bundle).
    #[error("byte {offset}: chunk type {kind} is not a document or a change")]
    UnsupportedChunk {
        /// Where the chunk starts.
        offset: usize,
        /// The chunk type byte.
        kind: u8,
    },
    /// The checksum of the chunk at `offset` does not match its contents.
    #[error("byte {offset}: the chunk's checksum does not match (damaged bytes)")]
    BadChecksum {
        /// Where the chunk starts.
        offset: usize,
    },
    /// The column layout of the document chunk at `offset` cannot be read.
    #[error("byte {offset}: the document's column layout is malformed")]
    Malformed {
        /// Where the chunk starts.
        offset: usize,
    },
    /// The document chunk at `offset` claims more than a case document can hold.
    #[error("byte {offset}: the document claims {claim}, more than a case document holds")]
    Oversized {
        /// Where the chunk starts.
        offset: usize,
        /// What it claims.
        claim: Claim,
    },
    /// Automerge refused the bytes. Boxed: Automerge's error is large.
    #[error(transparent)]
    Automerge(Box<AutomergeError>),
    /// Automerge failed on the bytes in a way it does not report (it panicked).
    #[error("the bytes are not a loadable Automerge document")]
    Unloadable,
}

/// Loads saved bytes that came from outside the process as a document, after the checks of
/// the module documentation.
pub fn load_saved(bytes: &[u8]) -> Result<AutoCommit, SavedError> {
    check_chunks(bytes)?;
    match crate::validation::untrusted(|| AutoCommit::load(bytes)) {
        Ok(Ok(doc)) => Ok(doc),
        Ok(Err(e)) => Err(SavedError::Automerge(Box::new(e))),
        Err(_) => Err(SavedError::Unloadable),
    }
}

/// Walks the chunk headers of `bytes`: magic, checksum, type, LEB128 length, data.
fn check_chunks(bytes: &[u8]) -> Result<(), SavedError> {
    if bytes.is_empty() {
        return Err(SavedError::Empty);
    }
    let mut offset = 0;
    while offset < bytes.len() {
        let chunk = &bytes[offset..];
        if chunk.len() < 9 {
            return Err(if chunk.starts_with(&MAGIC) || MAGIC.starts_with(chunk) {
                SavedError::Truncated { offset }
            } else {
                SavedError::NotAChunk { offset }
            });
        }
        if chunk[..4] != MAGIC {
            return Err(SavedError::NotAChunk { offset });
        }
        let checksum = &chunk[4..8];
        let kind = chunk[8];
        let (length, length_bytes) = leb128_u64(&chunk[9..]).ok_or(SavedError::Truncated { offset })?;
        let header = 9 + length_bytes;
        let data_end = usize::try_from(length)
            .ok()
            .and_then(|length| header.checked_add(length))
            .filter(|end| *end <= chunk.len())
            .ok_or(SavedError::Truncated { offset })?;
        match kind {
            DOCUMENT | CHANGE => {
                // The hash covers the type byte, the length as written, and the data.
                let mut hasher = Sha256::new();
                hasher.update(&chunk[8..header]);
                hasher.update(&chunk[header..data_end]);
                if hasher.finalize()[..4] != *checksum {
                    return Err(SavedError::BadChecksum { offset });
                }
                if kind == DOCUMENT {
                    bounds::check_document(&chunk[header..data_end]).map_err(|refusal| match refusal {
                        Refusal::Malformed => SavedError::Malformed { offset },
                        Refusal::Claims(claim) => SavedError::Oversized { offset, claim },
                    })?;
                }
            }
            COMPRESSED_CHANGE => {}
            kind => return Err(SavedError::UnsupportedChunk { offset, kind }),
        }
        offset += data_end;
    }
    Ok(())
}

/// An unsigned LEB128 integer at the start of `bytes`: its value and how many bytes it took;
/// `None` if it runs past the end or past 64 bits.
fn leb128_u64(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut rest = bytes.iter().copied();
    let value = bounds::uleb(&mut rest)?;
    Some((value, bytes.len() - rest.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::transaction::Transactable;
    use automerge::{ReadDoc, ROOT};

    fn saved() -> Vec<u8> {
        let mut doc = AutoCommit::new();
        doc.put(ROOT, "schema", 1).unwrap();
        doc.put(ROOT, "note", "相談記録").unwrap();
        doc.save()
    }

    /// Sets a chunk's checksum to what its contents hash to (as a crafted file would have).
    fn with_valid_checksum(mut chunk: Vec<u8>) -> Vec<u8> {
        let hash = Sha256::digest(&chunk[8..]);
        chunk[4..8].copy_from_slice(&hash[..4]);
        chunk
    }

    #[test]
    fn a_saved_document_and_appended_changes_load() {
        let mut doc = AutoCommit::new();
        doc.put(ROOT, "schema", 1).unwrap();
        let mut bytes = doc.save();
        doc.put(ROOT, "status", "open").unwrap();
        bytes.extend(doc.save_incremental());
        let loaded = load_saved(&bytes).unwrap();
        assert_eq!(loaded.get(ROOT, "status").unwrap().map(|(v, _)| v.to_string()), Some("\"open\"".into()));
    }

    #[test]
    fn damaged_bytes_are_refused_before_automerge_parses_them() {
        let good = saved();
        assert!(load_saved(&good).is_ok());
        let mut flipped = good.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0x01;
        assert!(matches!(load_saved(&flipped), Err(SavedError::BadChecksum { offset: 0 })));
        assert!(matches!(load_saved(&good[..good.len() - 3]), Err(SavedError::Truncated { offset: 0 })));
        assert!(matches!(load_saved(&good[..5]), Err(SavedError::Truncated { offset: 0 })));
        assert!(matches!(load_saved(b"{\"case\": 1}"), Err(SavedError::NotAChunk { offset: 0 })));
        assert!(matches!(load_saved(b""), Err(SavedError::Empty)));
        let mut trailing = good.clone();
        trailing.extend_from_slice(b"junk at the end");
        assert!(matches!(load_saved(&trailing), Err(SavedError::NotAChunk { offset }) if offset == good.len()));
    }

    #[test]
    fn a_crafted_bundle_that_made_automerge_allocate_gigabytes_is_refused_at_once() {
        // The fuzzer's input (`fuzz/known-oom-document-load`): a bundle chunk whose delta
        // column claims an enormous run. With its checksum made valid it is still refused.
        let crafted: Vec<u8> = vec![
            0x85, 0x6f, 0x4a, 0x83, 0xd3, 0xff, 0xe5, 0x8a, 0x03, 0x40, 0x00, 0x01, 0x00, 0x04, 0x03, 0x03, 0x03, 0x07,
            0x03, 0x03, 0x03, 0x03, 0x03, 0x4a, 0x83, 0xd3, 0xff, 0xe5, 0x8a, 0x03, 0x40, 0x00, 0x01, 0x00, 0x04, 0x03,
            0x03, 0x03, 0x03, 0x03, 0x03, 0x23, 0x03, 0x23, 0x06, 0x00, 0x83, 0x2f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0xff, 0x03, 0x00, 0x00, 0x00, 0x03, 0x03, 0x03, 0x24, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x10, 0x00,
            0x00, 0xfc, 0x00, 0x00, 0x00, 0x20, 0x00, 0x00,
        ];
        assert_eq!((crafted[8], crafted[9]), (3, 0x40), "a bundle of 64 bytes");
        assert!(matches!(load_saved(&crafted), Err(SavedError::UnsupportedChunk { offset: 0, kind: 3 })));
        let crafted = with_valid_checksum(crafted[..10 + 0x40].to_vec());
        assert!(matches!(load_saved(&crafted), Err(SavedError::UnsupportedChunk { offset: 0, kind: 3 })));
    }

    /// A document chunk of `data` with a valid checksum.
    fn document_chunk(data: &[u8]) -> Vec<u8> {
        let mut chunk = MAGIC.to_vec();
        chunk.extend([0, 0, 0, 0, DOCUMENT]);
        chunk.extend(bounds::tests::uleb_bytes(data.len() as u64));
        chunk.extend(data);
        with_valid_checksum(chunk)
    }

    #[test]
    fn a_long_edited_document_claims_what_it_holds() {
        let mut doc = AutoCommit::new();
        let note = doc.put_object(ROOT, "note", automerge::ObjType::Text).unwrap();
        for round in 0..400 {
            doc.put(ROOT, "round", round).unwrap();
            doc.splice_text(&note, 0, 0, "訪問したが不在。手紙を置いた。").unwrap();
            doc.commit();
        }
        let bytes = doc.save();
        let stats = doc.stats();
        let header = 9 + leb128_u64(&bytes[9..]).unwrap().1;
        let rows = bounds::check_document(&bytes[header..]).unwrap();
        assert_eq!((rows.changes, rows.operations), (stats.num_changes, stats.num_ops));
        assert!(rows.inflated > 0, "the columns of a document this size are deflated");
        assert_eq!(load_saved(&bytes).unwrap().get_heads(), doc.get_heads());
    }

    #[test]
    fn a_document_claiming_a_trillion_changes_is_refused_before_automerge_loads_it() {
        // One actor, no heads, one change column (the actors column, spec 1) holding `column`,
        // no operation columns.
        let layout = |column: &[u8]| {
            let mut data = vec![1, 16];
            data.extend([7; 16]);
            data.extend([0, 1, 1, column.len() as u8, 0]);
            data.extend(column);
            data
        };
        // A single run of 2^40 rows (sleb128) of actor 0: Automerge would decode every row.
        let trillion = layout(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x20, 0x00]);
        assert!(matches!(
            load_saved(&document_chunk(&trillion)),
            Err(SavedError::Oversized { offset: 0, claim: Claim::Changes })
        ));
        // The same layout claiming two changes passes the bounds, and Automerge refuses it
        // for what it is: columns that do not describe changes.
        let two = layout(&[0x02, 0x00]);
        assert_eq!(bounds::check_document(&two).map(|rows| rows.changes), Ok(2));
        assert!(matches!(load_saved(&document_chunk(&two)), Err(SavedError::Automerge(_) | SavedError::Unloadable)));
        // Cut inside the column description.
        assert!(matches!(load_saved(&document_chunk(&trillion[..20])), Err(SavedError::Malformed { offset: 0 })));
    }

    #[test]
    fn lengths_past_the_end_or_past_64_bits_are_truncation() {
        assert_eq!(leb128_u64(&[0x05]), Some((5, 1)));
        assert_eq!(leb128_u64(&[0xe5, 0x8e, 0x26]), Some((624_485, 3)));
        assert_eq!(leb128_u64(&[0x80, 0x80]), None);
        assert_eq!(leb128_u64(&[0xff; 9].iter().copied().chain([0x01]).collect::<Vec<_>>()), Some((u64::MAX, 10)));
        assert_eq!(leb128_u64(&[0xff; 9].iter().copied().chain([0x02]).collect::<Vec<_>>()), None);
        let mut huge = MAGIC.to_vec();
        huge.extend([0, 0, 0, 0, DOCUMENT]);
        huge.extend([0xff; 9].iter().copied().chain([0x01]));
        assert!(matches!(check_chunks(&huge), Err(SavedError::Truncated { offset: 0 })));
    }
}
