//! Case documents: the `documents` row (heads and a compacted snapshot) and the append-only
//! `changes` it is built from.
//!
//! A document is loaded from its snapshot plus the changes stored after it. Every accepted
//! change is appended with who sent it (staff, device) and when; now and then the snapshot
//! is rewritten from the whole document so loading stays fast.
//!
//! Every transaction that writes documents ends with [`stamp`] (or writes one with
//! [`update`]), which takes the next value of the database's **commit clock** (`sync_clock`)
//! and stamps the documents and the changes just stored with it. The clock's single row is updated in place, so a second
//! writer waits for the first to commit before it takes its value: values are taken in commit
//! order, and once a reader sees the clock at `c`, every write stamped `c` or less is committed
//! and visible. The sync cursor builds on that ([`clock`], [`changed_since`]).

use automerge::{Automerge, Change, ChangeHash};
use chrono::NaiveDateTime;
use diesel::prelude::*;

use diesel::sql_types::BigInt;

use super::schema::{changes, documents, sync_clock};
use super::{DbConnection, StoreError};
use tsunagi_sync::ids::{CaseId, DeviceId, MunicipalityCode, StaffId};

/// Rewrite the snapshot once this many changes have accumulated after it.
pub const SNAPSHOT_EVERY: i64 = 64;

/// A `documents` row.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = documents)]
pub struct DocumentRow {
    /// The case.
    pub case_id: String,
    /// Its municipality.
    pub municipality: String,
    /// Concatenated 32-byte change hashes.
    pub heads: Vec<u8>,
    /// The last change `seq` the snapshot includes (the snapshot itself, `save()` of the
    /// document as of then, is read only by [`load`]).
    pub snapshot_seq: i64,
    /// First stored.
    pub created_at: NaiveDateTime,
    /// Last written.
    pub updated_at: NaiveDateTime,
    /// The commit clock of the last write.
    pub clock: i64,
}

#[derive(Insertable)]
#[diesel(table_name = documents)]
struct NewDocument<'a> {
    case_id: &'a str,
    municipality: &'a str,
    heads: &'a [u8],
    snapshot: &'a [u8],
    snapshot_seq: i64,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
}

#[derive(Insertable)]
#[diesel(table_name = changes, treat_none_as_default_value = false)]
struct NewChange<'a> {
    case_id: &'a str,
    hash: &'a [u8],
    bytes: &'a [u8],
    actor: &'a [u8],
    staff_id: Option<String>,
    device_id: Option<String>,
    received_at: NaiveDateTime,
}

/// Who sent a change: a staff member's device, or the server itself.
#[derive(Debug, Clone, Copy)]
pub struct Sender {
    /// The staff member (none for the server's own changes).
    pub staff: Option<StaffId>,
    /// The device (none for the server's own changes).
    pub device: Option<DeviceId>,
}

/// Encodes heads for the `heads` column.
pub fn encode_heads(heads: &[ChangeHash]) -> Vec<u8> {
    heads.iter().flat_map(|h| h.0).collect()
}

/// Decodes the `heads` column.
pub fn decode_heads(bytes: &[u8]) -> Result<Vec<ChangeHash>, StoreError> {
    if !bytes.len().is_multiple_of(32) {
        return Err(StoreError::Corrupt(format!("heads column of {} bytes", bytes.len())));
    }
    Ok(bytes.chunks_exact(32).filter_map(|c| <[u8; 32]>::try_from(c).ok()).map(ChangeHash).collect())
}

/// The document row, locked for the rest of the transaction on PostgreSQL (`FOR UPDATE`);
/// SQLite's write transaction already holds the only write lock.
pub fn lock(conn: &mut DbConnection, case: &CaseId) -> Result<Option<DocumentRow>, StoreError> {
    let id = case.to_string();
    let row = match conn {
        DbConnection::Pg(c) => {
            documents::table.find(&id).select(DocumentRow::as_select()).for_update().first(c).optional()?
        }
        DbConnection::Sqlite(c) => documents::table.find(&id).select(DocumentRow::as_select()).first(c).optional()?,
    };
    Ok(row)
}

/// The document rows of `cases` that exist, locked for the rest of the transaction on
/// PostgreSQL like [`lock`]. Rows are locked in case id order (PostgreSQL sorts before it
/// locks), whatever the order of `cases`: two transactions that lock overlapping sets this way
/// never wait on each other in a cycle.
pub fn lock_all(
    conn: &mut DbConnection,
    cases: &[CaseId],
) -> Result<std::collections::HashMap<CaseId, DocumentRow>, StoreError> {
    let mut ids: Vec<String> = cases.iter().map(CaseId::to_string).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut found = std::collections::HashMap::with_capacity(ids.len());
    // Sorted chunks, locked one after the other, keep the whole set in id order.
    for chunk in ids.chunks(super::IN_LIST_MAX) {
        let query = documents::table.filter(documents::case_id.eq_any(chunk)).order(documents::case_id.asc());
        let rows: Vec<DocumentRow> = match conn {
            DbConnection::Pg(c) => query.select(DocumentRow::as_select()).for_update().load(c)?,
            DbConnection::Sqlite(c) => query.select(DocumentRow::as_select()).load(c)?,
        };
        for row in rows {
            let case = CaseId::parse(&row.case_id).map_err(|e| StoreError::Corrupt(format!("documents: {e}")))?;
            found.insert(case, row);
        }
    }
    Ok(found)
}

/// The document row, unlocked.
pub fn find(conn: &mut DbConnection, case: &CaseId) -> Result<Option<DocumentRow>, StoreError> {
    Ok(documents::table.find(case.to_string()).select(DocumentRow::as_select()).first(conn).optional()?)
}

/// Loads the whole document: the snapshot plus every change stored after it.
pub fn load(conn: &mut DbConnection, row: &DocumentRow) -> Result<Automerge, StoreError> {
    // The snapshot with the seq it is as of, together: a writer may have rewritten both since
    // `row` was read (when it was read without a lock).
    let (snapshot, snapshot_seq): (Vec<u8>, i64) =
        documents::table.find(&row.case_id).select((documents::snapshot, documents::snapshot_seq)).first(conn)?;
    let mut doc = Automerge::load(&snapshot).map_err(|e| StoreError::Corrupt(format!("snapshot: {e}")))?;
    let tail: Vec<Vec<u8>> = changes::table
        .filter(changes::case_id.eq(&row.case_id))
        .filter(changes::seq.gt(snapshot_seq))
        .order(changes::seq.asc())
        .select(changes::bytes)
        .load(conn)?;
    let mut decoded = Vec::with_capacity(tail.len());
    for bytes in tail {
        decoded.push(Change::from_bytes(bytes).map_err(|e| StoreError::Corrupt(format!("stored change: {e}")))?);
    }
    doc.apply_changes(decoded).map_err(|e| StoreError::Corrupt(format!("stored changes: {e}")))?;
    Ok(doc)
}

/// Stores a new document row (its first changes are appended separately).
pub fn insert(
    conn: &mut DbConnection,
    case: &CaseId,
    municipality: &MunicipalityCode,
    now: NaiveDateTime,
) -> Result<(), StoreError> {
    let empty = Automerge::new().save();
    diesel::insert_into(documents::table)
        .values(NewDocument {
            case_id: &case.to_string(),
            municipality: municipality.as_str(),
            heads: &[],
            snapshot: &empty,
            snapshot_seq: 0,
            created_at: now,
            updated_at: now,
        })
        .execute(conn)?;
    Ok(())
}

/// Changes per multi-row insert (7 bound values each, far below either backend's limit).
const CHANGES_PER_INSERT: usize = 500;

/// Appends accepted changes, in causal order, with their sender.
pub fn append_changes(
    conn: &mut DbConnection,
    case: &CaseId,
    new_changes: &[Change],
    sender: Sender,
    now: NaiveDateTime,
) -> Result<(), StoreError> {
    let id = case.to_string();
    let (staff_id, device_id) = (sender.staff.map(|s| s.to_string()), sender.device.map(|d| d.to_string()));
    let hashes: Vec<[u8; 32]> = new_changes.iter().map(|change| change.hash().0).collect();
    let rows: Vec<NewChange<'_>> = new_changes
        .iter()
        .zip(&hashes)
        .map(|(change, hash)| NewChange {
            case_id: &id,
            hash,
            bytes: change.raw_bytes(),
            actor: change.actor_id().to_bytes(),
            staff_id: staff_id.clone(),
            device_id: device_id.clone(),
            received_at: now,
        })
        .collect();
    // One statement for the batch; rows keep their order, so `seq` follows it.
    crate::insert_rows!(conn, changes::table, rows, CHANGES_PER_INSERT);
    Ok(())
}

/// Records the new heads, rewriting the snapshot when enough changes accumulated after it,
/// and stamps the document and its newly stored changes with the next clock value: [`write`]
/// and then [`stamp`]. Returns the clock value.
pub fn update(
    conn: &mut DbConnection,
    row: &DocumentRow,
    doc: &Automerge,
    now: NaiveDateTime,
) -> Result<i64, StoreError> {
    write(conn, row, doc, now)?;
    let case = CaseId::parse(&row.case_id).map_err(|e| StoreError::Corrupt(format!("documents: {e}")))?;
    stamp(conn, &[case])
}

/// Records the new heads of a locked document row, and rewrites its snapshot when enough
/// changes accumulated after it. Takes no lock beyond the row's; the transaction must
/// [`stamp`] the document before it commits.
pub fn write(
    conn: &mut DbConnection,
    row: &DocumentRow,
    doc: &Automerge,
    now: NaiveDateTime,
) -> Result<(), StoreError> {
    let last_seq: Option<i64> =
        changes::table.filter(changes::case_id.eq(&row.case_id)).select(diesel::dsl::max(changes::seq)).first(conn)?;
    let last_seq = last_seq.unwrap_or(0);
    let document = documents::table.find(&row.case_id);
    let heads = (documents::heads.eq(encode_heads(&doc.get_heads())), documents::updated_at.eq(now));
    match last_seq - row.snapshot_seq >= SNAPSHOT_EVERY {
        true => diesel::update(document)
            .set((heads, documents::snapshot.eq(doc.save()), documents::snapshot_seq.eq(last_seq)))
            .execute(conn)?,
        false => diesel::update(document).set(heads).execute(conn)?,
    };
    Ok(())
}

/// Stamps the documents of `cases`, and their changes not stamped yet, with the next value of
/// the commit clock, whose row then stays locked until the transaction ends (every other
/// writer waits for it): call it last, just before the commit. Three statements, however
/// many cases. Returns the clock value.
pub fn stamp(conn: &mut DbConnection, cases: &[CaseId]) -> Result<i64, StoreError> {
    let clock = next_clock(conn)?;
    for chunk in super::id_chunks(cases) {
        diesel::update(changes::table.filter(changes::case_id.eq_any(&chunk)).filter(changes::clock.is_null()))
            .set(changes::clock.eq(clock))
            .execute(conn)?;
        diesel::update(documents::table.filter(documents::case_id.eq_any(&chunk)))
            .set(documents::clock.eq(clock))
            .execute(conn)?;
    }
    Ok(clock)
}

#[derive(QueryableByName)]
struct ClockValue {
    #[diesel(sql_type = BigInt)]
    value: i64,
}

/// Takes the next value of the commit clock (locking its row until the transaction ends).
fn next_clock(conn: &mut DbConnection) -> Result<i64, StoreError> {
    let sql = "UPDATE sync_clock SET value = value + 1 WHERE id = 1 RETURNING value";
    let taken: ClockValue = diesel::sql_query(sql).get_result(conn)?;
    Ok(taken.value)
}

/// The commit clock as committed now: every document write stamped with this value or less
/// is visible, every later one will be stamped higher.
pub fn clock(conn: &mut DbConnection) -> Result<i64, StoreError> {
    Ok(sync_clock::table.find(1).select(sync_clock::value).first(conn)?)
}

/// The commit clock of the last write of `case`, if it exists.
pub fn clock_of(conn: &mut DbConnection, case: &CaseId) -> Result<Option<i64>, StoreError> {
    Ok(documents::table.find(case.to_string()).select(documents::clock).first(conn).optional()?)
}

/// Of `cases`, those written after clock value `after`, with the clock of their last write.
pub fn changed_since(conn: &mut DbConnection, cases: &[String], after: i64) -> Result<Vec<(String, i64)>, StoreError> {
    let mut found = Vec::new();
    for chunk in cases.chunks(super::IN_LIST_MAX) {
        let rows: Vec<(String, i64)> = documents::table
            .filter(documents::case_id.eq_any(chunk))
            .filter(documents::clock.gt(after))
            .select((documents::case_id, documents::clock))
            .load(conn)?;
        found.extend(rows);
    }
    Ok(found)
}

/// The raw changes of `case` stamped after clock value `after`, in the order they were
/// stored (causal order), leaving out those written on `except` (their actor opens with its
/// id: it has them). Changes the server wrote on behalf of someone using that device (a
/// review through the API) are not the device's and are included.
pub fn changes_after(
    conn: &mut DbConnection,
    case: &str,
    after: i64,
    except: &DeviceId,
) -> Result<Vec<Vec<u8>>, StoreError> {
    let rows: Vec<(Vec<u8>, Vec<u8>)> = changes::table
        .filter(changes::case_id.eq(case))
        .filter(changes::clock.gt(after))
        .order(changes::seq.asc())
        .select((changes::bytes, changes::actor))
        .load(conn)?;
    let device = except.as_uuid().as_bytes();
    let written_on_device = |actor: &[u8]| actor.len() > device.len() && actor.starts_with(device);
    Ok(rows.into_iter().filter(|(_, actor)| !written_on_device(actor)).map(|(bytes, _)| bytes).collect())
}

/// One stored change with its provenance, for a case's history.
#[derive(Debug, Clone, Queryable)]
pub struct StoredChange {
    /// Order of arrival.
    pub seq: i64,
    /// The change hash.
    pub hash: Vec<u8>,
    /// Who sent it.
    pub staff_id: Option<String>,
    /// From which device.
    pub device_id: Option<String>,
    /// When it arrived.
    pub received_at: NaiveDateTime,
}

/// Every change of a case in order of arrival, with provenance.
pub fn history(conn: &mut DbConnection, case: &CaseId) -> Result<Vec<StoredChange>, StoreError> {
    Ok(changes::table
        .filter(changes::case_id.eq(case.to_string()))
        .order(changes::seq.asc())
        .select((changes::seq, changes::hash, changes::staff_id, changes::device_id, changes::received_at))
        .load(conn)?)
}
