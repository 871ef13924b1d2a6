//! Which cases each device holds (`device_cases`), and what the device has been sent of them.
//!
//! A row means the device holds, or may hold, a replica of the case: the server sent it the
//! whole case, or the device uploaded to it. The sync cursor numbers the responses sent to a
//! device (`devices.sync_responses`) and the cursor a device sends back says which of them it
//! has stored, so each row records:
//!
//! - `sent_whole`: the response that last sent the whole case. Until the device has stored
//!   that response (or a later one), it may not hold the case, and a request with an older
//!   cursor gets it whole again.
//! - `purge_sent`: the response that last told the device to purge the case. Until the device
//!   has stored that response (or a later one), every request repeats the notice; once it
//!   has, the row goes. A device may still upload to a case whose purge it has not confirmed
//!   (nothing it logged is lost).
//! - `synced_response` and `synced_clock`: the last response that brought the device up to
//!   date with the case (answered it in full, or sent it whole), and the case's commit clock
//!   then. Once the device has stored that response, it lacks only what was stamped later —
//!   which spares it the changes of its own request (the server's case number, a colleague's
//!   visit it was sent then) coming again in its next answer.

use diesel::prelude::*;
use tsunagi_sync::ids::{CaseId, DeviceId};

use super::schema::device_cases;
use super::{DbConnection, StoreError};

/// `sent_whole` of a case the device is owed whole ([`owed`]): no cursor reaches it, so the
/// next request sends the case.
const OWED: i64 = i64::MAX;

/// One case a device holds.
#[derive(Debug, Clone, PartialEq, Eq, Queryable)]
pub struct Held {
    /// The case.
    pub case_id: String,
    /// The response that last sent the whole case (0: the device had it before it had a cursor).
    pub sent_whole: i64,
    /// The response that last told the device to purge it, if any.
    pub purge_sent: Option<i64>,
    /// The last response that brought the device up to date with the case.
    pub synced_response: i64,
    /// The case's commit clock at that response.
    pub synced_clock: i64,
}

impl Held {
    /// What the device holds of the case for certain, as a commit clock, if it stored the
    /// response numbered `stored` whose request started at clock `clock`.
    pub fn holds_up_to(&self, stored: i64, clock: i64) -> i64 {
        if self.synced_response <= stored {
            clock.max(self.synced_clock)
        } else {
            clock
        }
    }
}

/// A response that brings a device up to date with a case: its number, and the case's commit
/// clock then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Synced {
    /// The response.
    pub response: i64,
    /// The case's clock.
    pub clock: i64,
}

/// Every case `device` holds.
pub fn held(conn: &mut DbConnection, device: &DeviceId) -> Result<Vec<Held>, StoreError> {
    Ok(device_cases::table
        .filter(device_cases::device_id.eq(device.to_string()))
        .select((
            device_cases::case_id,
            device_cases::sent_whole,
            device_cases::purge_sent,
            device_cases::synced_response,
            device_cases::synced_clock,
        ))
        .load(conn)?)
}

/// Which of `cases` `device` holds, or may hold (one statement per thousand cases).
pub fn holds_among(
    conn: &mut DbConnection,
    device: &DeviceId,
    cases: &[CaseId],
) -> Result<std::collections::HashSet<CaseId>, StoreError> {
    super::cases_among(cases, "device_cases", |chunk| {
        Ok(device_cases::table
            .filter(device_cases::device_id.eq(device.to_string()))
            .filter(device_cases::case_id.eq_any(chunk))
            .select(device_cases::case_id)
            .load(conn)?)
    })
}

/// Records that `device` holds `case` because it listed it in a request (uploaded to it), and
/// the response that brought it up to date, if this one did: a purge that was pending is
/// withdrawn, the case being visible to it again.
pub fn listed(
    conn: &mut DbConnection,
    device: &DeviceId,
    case: &CaseId,
    synced: Option<Synced>,
) -> Result<(), StoreError> {
    let (d, c) = (device.to_string(), case.to_string());
    let updated = match synced {
        Some(s) => diesel::update(device_cases::table.find((&d, &c)))
            .set((
                device_cases::purge_sent.eq(None::<i64>),
                device_cases::synced_response.eq(s.response),
                device_cases::synced_clock.eq(s.clock),
            ))
            .execute(conn)?,
        None => diesel::update(device_cases::table.find((&d, &c)))
            .set(device_cases::purge_sent.eq(None::<i64>))
            .execute(conn)?,
    };
    if updated == 0 {
        let s = synced.unwrap_or(Synced { response: 0, clock: 0 });
        diesel::insert_into(device_cases::table)
            .values((
                device_cases::device_id.eq(&d),
                device_cases::case_id.eq(&c),
                device_cases::sent_whole.eq(0),
                device_cases::synced_response.eq(s.response),
                device_cases::synced_clock.eq(s.clock),
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// Sets the clock up to which `device` holds each of `cases` (recorded by [`listed`] in the
/// same transaction) to `clock`: the clock value that transaction stamped them with.
pub fn synced_at(conn: &mut DbConnection, device: &DeviceId, cases: &[CaseId], clock: i64) -> Result<(), StoreError> {
    for chunk in super::id_chunks(cases) {
        diesel::update(
            device_cases::table
                .filter(device_cases::device_id.eq(device.to_string()))
                .filter(device_cases::case_id.eq_any(chunk)),
        )
        .set(device_cases::synced_clock.eq(clock))
        .execute(conn)?;
    }
    Ok(())
}

/// Records that response `synced.response` sends `device` the whole of `case`, as of the
/// case's clock `synced.clock`.
pub fn sent_whole(conn: &mut DbConnection, device: &DeviceId, case: &CaseId, synced: Synced) -> Result<(), StoreError> {
    let (d, c) = (device.to_string(), case.to_string());
    let updated = diesel::update(device_cases::table.find((&d, &c)))
        .set((
            device_cases::sent_whole.eq(synced.response),
            device_cases::purge_sent.eq(None::<i64>),
            device_cases::synced_response.eq(synced.response),
            device_cases::synced_clock.eq(synced.clock),
        ))
        .execute(conn)?;
    if updated == 0 {
        diesel::insert_into(device_cases::table)
            .values((
                device_cases::device_id.eq(&d),
                device_cases::case_id.eq(&c),
                device_cases::sent_whole.eq(synced.response),
                device_cases::synced_response.eq(synced.response),
                device_cases::synced_clock.eq(synced.clock),
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// Records that `device` is owed the whole of `case`: the response that was to carry it had
/// no room left, so no cursor may count as having received it.
pub fn owed(conn: &mut DbConnection, device: &DeviceId, case: &CaseId) -> Result<(), StoreError> {
    diesel::update(device_cases::table.find((device.to_string(), case.to_string())))
        .set((device_cases::sent_whole.eq(OWED), device_cases::purge_sent.eq(None::<i64>)))
        .execute(conn)?;
    Ok(())
}

/// Records that response `response` tells `device` to purge `case`.
pub fn purge_sent(conn: &mut DbConnection, device: &DeviceId, case: &CaseId, response: i64) -> Result<(), StoreError> {
    diesel::update(device_cases::table.find((device.to_string(), case.to_string())))
        .set(device_cases::purge_sent.eq(Some(response)))
        .execute(conn)?;
    Ok(())
}

/// Forgets that `device` holds `case` (it cannot hold it: a request without a cursor, which
/// lists every case the device holds, did not list it).
pub fn forget(conn: &mut DbConnection, device: &DeviceId, case: &CaseId) -> Result<(), StoreError> {
    diesel::delete(device_cases::table.find((device.to_string(), case.to_string()))).execute(conn)?;
    Ok(())
}

/// Forgets the cases whose purge `device` has confirmed: it stored response `stored` (its
/// cursor's), which is the one that carried the notice or a later one.
pub fn purges_confirmed(conn: &mut DbConnection, device: &DeviceId, stored: i64) -> Result<usize, StoreError> {
    Ok(diesel::delete(
        device_cases::table
            .filter(device_cases::device_id.eq(device.to_string()))
            .filter(device_cases::purge_sent.le(stored)),
    )
    .execute(conn)?)
}
