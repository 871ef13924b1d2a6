//! What a document chunk claims to hold, read from its column layout before Automerge loads it.
//!
//! A document chunk stores its change metadata and its operations as columns, most of them
//! run-length encoded: a few bytes can claim a run of 2^60 rows. Automerge 0.12 decodes the
//! change columns into vectors as it loads (one entry per row), so such a claim allocates
//! gigabytes before anything refuses it (found by fuzzing, with valid checksums). This module
//! reads the layout as the storage format defines it: actors, heads, the change and operation
//! column descriptions, then each column's data, inflating deflated columns as a stream, and
//! counts the rows each column claims without storing any. [`load_saved`](super::load_saved)
//! refuses a document that claims more than a case document can hold:
//!
//! - more than [`MAX_CHANGES`] rows in a change column (a case edited a thousand times a year
//!   for a thousand years stays under it);
//! - more than [`MAX_OPERATIONS`] rows in an operation column (every character typed into a
//!   case's narratives is one operation: 8 million is hundreds of times a long case);
//! - more than [`MAX_INFLATED`] bytes of columns once inflated (a deflate bomb).
//!
//! A layout it cannot read (a length past the end, a column description cut short) is
//! refused as malformed; Automerge reads the same layout and would refuse it too. Inside a
//! column it counts only up to the first value it cannot read: Automerge stops there as well,
//! so a malformed tail never hides a claim.

use std::io::{BufReader, Read};

/// The most rows a document's change column may claim: more changes than a case ever has.
pub(super) const MAX_CHANGES: u64 = 1 << 20;
/// The most rows a document's operation column may claim.
pub(super) const MAX_OPERATIONS: u64 = 1 << 23;
/// The most bytes a document's deflated columns may inflate to, all columns together.
pub(super) const MAX_INFLATED: u64 = 1 << 28;

/// The flag in a column specification that marks its data as deflated.
const DEFLATED: u32 = 0b1000;
/// Column types (the low three bits of a specification) that are not run-length encoded.
const BOOLEAN: u32 = 4;
const STRING: u32 = 5;
const VALUE: u32 = 7;

/// What a document chunk claims beyond the bounds of the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Claim {
    /// A change column claims more rows than a case has changes (2^20).
    #[error("more than {MAX_CHANGES} changes")]
    Changes,
    /// An operation column claims more rows than a case has operations (2^23).
    #[error("more than {MAX_OPERATIONS} operations")]
    Operations,
    /// The deflated columns inflate to more than 256 MiB.
    #[error("more than {MAX_INFLATED} bytes of columns once inflated")]
    Inflated,
}

/// Why a document chunk's layout is refused.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Refusal {
    /// The layout cannot be read.
    Malformed,
    /// The layout claims more than a case document holds.
    Claims(Claim),
}

/// What a document chunk's columns claim: the most rows of any change column and of any
/// operation column, and how many bytes its deflated columns inflated to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Rows {
    pub(super) changes: u64,
    pub(super) operations: u64,
    pub(super) inflated: u64,
}

/// Reads the layout of a document chunk's `data` (the bytes after its header) and counts the
/// rows its columns claim; refuses a layout it cannot read or that claims too much.
pub(super) fn check_document(data: &[u8]) -> Result<Rows, Refusal> {
    let mut input = Input(data);
    let actors = input.uleb()?;
    for _ in 0..actors {
        let length = input.uleb()?;
        input.take(length)?;
    }
    let heads = input.uleb()?;
    input.take(heads.checked_mul(32).ok_or(Refusal::Malformed)?)?;
    let change_columns = input.columns()?;
    let operation_columns = input.columns()?;
    let mut rows = Rows { changes: 0, operations: 0, inflated: 0 };
    for (columns, limit, claim, most) in [
        (change_columns, MAX_CHANGES, Claim::Changes, &mut rows.changes),
        (operation_columns, MAX_OPERATIONS, Claim::Operations, &mut rows.operations),
    ] {
        for (spec, length) in columns {
            let bytes = input.take(length)?;
            let count = if spec & DEFLATED == 0 {
                count_rows(spec, &mut bytes.iter().copied(), limit)
            } else {
                let mut stream = Inflating::new(bytes, MAX_INFLATED - rows.inflated);
                let count = count_rows(spec, &mut stream, limit);
                stream.by_ref().for_each(drop);
                if stream.over_budget {
                    return Err(Refusal::Claims(Claim::Inflated));
                }
                rows.inflated += stream.taken;
                count
            };
            if count > limit {
                return Err(Refusal::Claims(claim));
            }
            *most = (*most).max(count);
        }
    }
    Ok(rows)
}

/// The bytes of a chunk not read yet.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn uleb(&mut self) -> Result<u64, Refusal> {
        let (value, length) = super::leb128_u64(self.0).ok_or(Refusal::Malformed)?;
        self.0 = &self.0[length..];
        Ok(value)
    }

    fn take(&mut self, length: u64) -> Result<&'a [u8], Refusal> {
        let length = usize::try_from(length).ok().filter(|l| *l <= self.0.len()).ok_or(Refusal::Malformed)?;
        let (taken, rest) = self.0.split_at(length);
        self.0 = rest;
        Ok(taken)
    }

    /// A column description: a count, then each column's specification and data length.
    fn columns(&mut self) -> Result<Vec<(u32, u64)>, Refusal> {
        let count = self.uleb()?;
        let mut columns = Vec::new();
        for _ in 0..count {
            let spec = u32::try_from(self.uleb()?).map_err(|_| Refusal::Malformed)?;
            columns.push((spec, self.uleb()?));
        }
        Ok(columns)
    }
}

/// The rows one column claims, counting no further than `limit + 1`. Run-length encoded
/// columns are runs, each a signed count: positive, one value repeated that many times;
/// negative, that many values one after another; zero, a run of nulls whose length follows.
/// A boolean column is a sequence of run lengths, false and true in turn; a value column
/// holds the bytes its metadata column describes and no rows of its own.
fn count_rows(spec: u32, bytes: &mut impl Iterator<Item = u8>, limit: u64) -> u64 {
    let kind = spec & 0b111;
    let mut rows = 0u64;
    match kind {
        VALUE => {}
        BOOLEAN => {
            while let Some(run) = uleb(bytes) {
                rows = rows.saturating_add(run);
                if rows > limit {
                    break;
                }
            }
        }
        _ => {
            let strings = kind == STRING;
            while let Some(count) = sleb(bytes) {
                let run = match count {
                    0 => match uleb(bytes) {
                        Some(nulls) => nulls,
                        None => break,
                    },
                    repeated if repeated > 0 => {
                        if !skip_value(bytes, strings) {
                            break;
                        }
                        repeated.unsigned_abs()
                    }
                    literal => {
                        let mut read = 0;
                        while read < literal.unsigned_abs() && rows.saturating_add(read) <= limit {
                            if !skip_value(bytes, strings) {
                                break;
                            }
                            read += 1;
                        }
                        read
                    }
                };
                rows = rows.saturating_add(run);
                if rows > limit {
                    break;
                }
            }
        }
    }
    rows
}

/// Skips one value of a run-length encoded column: a LEB128 integer, or a string (a LEB128
/// length and that many bytes). `false` if the bytes end first.
fn skip_value(bytes: &mut impl Iterator<Item = u8>, string: bool) -> bool {
    match (uleb(bytes), string) {
        (None, _) => false,
        (Some(0), _) | (Some(_), false) => true,
        (Some(length), true) => usize::try_from(length - 1).is_ok_and(|last| bytes.nth(last).is_some()),
    }
}

/// An unsigned LEB128 integer of at most 64 bits.
pub(super) fn uleb(bytes: &mut impl Iterator<Item = u8>) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = bytes.next()?;
        let low = u64::from(byte & 0x7f);
        if shift == 63 && low > 1 {
            return None;
        }
        value |= low << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// A signed LEB128 integer of at most 64 bits.
fn sleb(bytes: &mut impl Iterator<Item = u8>) -> Option<i64> {
    let mut value = 0i64;
    for shift in (0..64).step_by(7) {
        let byte = bytes.next()?;
        value |= i64::from(byte & 0x7f).checked_shl(shift)?;
        if byte & 0x80 == 0 {
            if shift + 7 < 64 && byte & 0x40 != 0 {
                value |= -1i64 << (shift + 7);
            }
            return Some(value);
        }
    }
    None
}

/// The bytes of a deflated column as it inflates, stopping after `budget` bytes.
struct Inflating<'a> {
    bytes: std::io::Bytes<BufReader<flate2::bufread::DeflateDecoder<&'a [u8]>>>,
    budget: u64,
    taken: u64,
    over_budget: bool,
}

impl<'a> Inflating<'a> {
    fn new(deflated: &'a [u8], budget: u64) -> Self {
        let bytes = BufReader::new(flate2::bufread::DeflateDecoder::new(deflated)).bytes();
        Inflating { bytes, budget, taken: 0, over_budget: false }
    }
}

impl Iterator for Inflating<'_> {
    type Item = u8;

    /// The next inflated byte; `None` at the end, on bytes that do not inflate (Automerge
    /// refuses those itself), and past the budget.
    fn next(&mut self) -> Option<u8> {
        if self.over_budget {
            return None;
        }
        let byte = self.bytes.next()?.ok()?;
        if self.taken == self.budget {
            self.over_budget = true;
            return None;
        }
        self.taken += 1;
        Some(byte)
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// `value` as unsigned LEB128 (also for the loader's tests, which write chunk lengths).
    pub(in crate::document::saved) fn uleb_bytes(mut value: u64) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let byte = (value & 0x7f) as u8;
            value >>= 7;
            if value == 0 {
                out.push(byte);
                return out;
            }
            out.push(byte | 0x80);
        }
    }

    fn sleb_bytes(mut value: i64) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let byte = (value & 0x7f) as u8;
            value >>= 7;
            if (value == 0 && byte & 0x40 == 0) || (value == -1 && byte & 0x40 != 0) {
                out.push(byte);
                return out;
            }
            out.push(byte | 0x80);
        }
    }

    #[test]
    fn leb128_integers_read_as_written() {
        for value in [0u64, 1, 127, 128, 300, 624_485, u64::from(u32::MAX), u64::MAX] {
            assert_eq!(uleb(&mut uleb_bytes(value).into_iter()), Some(value));
        }
        for value in [0i64, 1, -1, 63, 64, -64, -65, 1 << 40, -(1 << 40), i64::MAX, i64::MIN] {
            assert_eq!(sleb(&mut sleb_bytes(value).into_iter()), Some(value), "{value}");
        }
        assert_eq!(uleb(&mut [0x80u8, 0x80].into_iter()), None);
        assert_eq!(sleb(&mut [0xffu8; 11].into_iter()), None);
    }

    #[test]
    fn runs_count_their_rows() {
        const INTEGER: u32 = 2;
        // A run of 5 sevens, 3 literal values, 4 nulls.
        let mut column = sleb_bytes(5);
        column.extend(uleb_bytes(7));
        column.extend(sleb_bytes(-3));
        column.extend([1, 2, 0x81, 0x01]);
        column.extend(sleb_bytes(0));
        column.extend(uleb_bytes(4));
        assert_eq!(count_rows(INTEGER, &mut column.iter().copied(), 100), 12);
        // Strings: a run of 2 "ab", then "c" and "" one after another, then a string cut short.
        let mut strings = sleb_bytes(2);
        strings.extend([2, b'a', b'b']);
        strings.extend(sleb_bytes(-2));
        strings.extend([1, b'c', 0]);
        assert_eq!(count_rows(STRING, &mut strings.iter().copied(), 100), 4);
        strings.extend(sleb_bytes(-1));
        strings.extend([5, b'd']);
        assert_eq!(count_rows(STRING, &mut strings.iter().copied(), 100), 4);
        // Booleans: 3 false, 2 true, 1 false.
        assert_eq!(count_rows(BOOLEAN, &mut [3u8, 2, 1].into_iter(), 100), 6);
        assert_eq!(count_rows(VALUE, &mut [3u8, 2, 1].into_iter(), 100), 0);
        // A literal run that claims more values than the column holds counts what is there.
        let mut short = sleb_bytes(-1000);
        short.extend([1, 2, 3]);
        assert_eq!(count_rows(INTEGER, &mut short.iter().copied(), 100), 3);
        // An enormous run stops the count past the limit.
        let mut huge = sleb_bytes(1 << 60);
        huge.push(0);
        assert!(count_rows(INTEGER, &mut huge.iter().copied(), 100) > 100);
    }

    #[test]
    fn an_inflating_column_stops_at_its_budget() {
        let mut deflater = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
        std::io::Write::write_all(&mut deflater, &[0u8; 100_000]).unwrap();
        let deflated = deflater.finish().unwrap();
        let mut whole = Inflating::new(&deflated, 100_000);
        assert_eq!(whole.by_ref().count(), 100_000);
        assert!(!whole.over_budget);
        let mut cut = Inflating::new(&deflated, 99_999);
        assert_eq!(cut.by_ref().count(), 99_999);
        assert!(cut.over_budget);
    }

    #[test]
    fn a_layout_cut_short_is_malformed() {
        assert_eq!(check_document(&[]), Err(Refusal::Malformed));
        // One actor of 16 bytes, but only 3 bytes follow.
        assert_eq!(check_document(&[1, 16, 1, 2, 3]), Err(Refusal::Malformed));
        // No actors, no heads, one change column of 10 bytes with none there.
        assert_eq!(check_document(&[0, 0, 1, 1, 10, 0]), Err(Refusal::Malformed));
        assert_eq!(check_document(&[0, 0, 0, 0]), Ok(Rows { changes: 0, operations: 0, inflated: 0 }));
    }
}
