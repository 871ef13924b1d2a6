//! Accounts: municipalities, areas, organisations, staff, devices, refresh tokens and
//! failed logins, one row type per table, with the small queries the auth layer and the
//! administration commands need.
//!
//! Rows hold what the database holds (ids as text, times as UTC `NaiveDateTime`); the
//! typed accessors (`Staff::staff_id`, `Staff::role`, ...) parse at this edge and report a
//! value that does not parse as [`StoreError::Corrupt`]. Every function takes a
//! [`DbConnection`], so callers choose the transaction (usually [`super::Database::write`]).

use chrono::NaiveDateTime;
use diesel::prelude::*;
use tsunagi_sync::domain::Role;
use tsunagi_sync::ids::{DeviceId, MunicipalityCode, StaffId};

use super::schema::{areas, devices, login_attempts, municipalities, organisations, refresh_tokens, staff};
use super::{DbConnection, StoreError};

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

// ---------------------------------------------------------------------------------------------
// Municipalities, areas, organisations
// ---------------------------------------------------------------------------------------------

/// A municipality (市区町村), by its local government code.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = municipalities)]
pub struct Municipality {
    /// The 6-digit code (`122203`).
    pub code: String,
    /// Its name (`流山市`).
    pub name: String,
    /// When it was created.
    pub created_at: NaiveDateTime,
}

/// Stores a municipality.
pub fn insert_municipality(conn: &mut DbConnection, row: &Municipality) -> Result<(), StoreError> {
    diesel::insert_into(municipalities::table).values(row).execute(conn)?;
    Ok(())
}

/// The municipality with this code.
pub fn find_municipality(conn: &mut DbConnection, code: &MunicipalityCode) -> Result<Option<Municipality>, StoreError> {
    Ok(municipalities::table.find(code.as_str()).select(Municipality::as_select()).first(conn).optional()?)
}

/// An area (地区) of a municipality: the unit cases and counsellors are organised by.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = areas)]
pub struct Area {
    /// A UUID.
    pub id: String,
    /// The municipality's code.
    pub municipality: String,
    /// The area's code, unique within its municipality; what staff rows and case documents
    /// name.
    pub code: String,
    /// Its name.
    pub name: String,
}

/// Stores an area.
pub fn insert_area(conn: &mut DbConnection, row: &Area) -> Result<(), StoreError> {
    diesel::insert_into(areas::table).values(row).execute(conn)?;
    Ok(())
}

/// The area `code` of `municipality`.
pub fn find_area(
    conn: &mut DbConnection,
    municipality: &MunicipalityCode,
    code: &str,
) -> Result<Option<Area>, StoreError> {
    Ok(areas::table
        .filter(areas::municipality.eq(municipality.as_str()))
        .filter(areas::code.eq(code))
        .select(Area::as_select())
        .first(conn)
        .optional()?)
}

/// An organisation staff belong to: the municipality's own office (`direct`) or a
/// contracted provider (`contracted`).
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = organisations)]
pub struct Organisation {
    /// A UUID.
    pub id: String,
    /// Its name.
    pub name: String,
    /// `direct` or `contracted`.
    pub kind: String,
    /// When it was created.
    pub created_at: NaiveDateTime,
}

/// Stores an organisation.
pub fn insert_organisation(conn: &mut DbConnection, row: &Organisation) -> Result<(), StoreError> {
    diesel::insert_into(organisations::table).values(row).execute(conn)?;
    Ok(())
}

/// The organisation with this id.
pub fn find_organisation(conn: &mut DbConnection, id: &str) -> Result<Option<Organisation>, StoreError> {
    Ok(organisations::table.find(id).select(Organisation::as_select()).first(conn).optional()?)
}

// ---------------------------------------------------------------------------------------------
// Staff and devices
// ---------------------------------------------------------------------------------------------

/// A staff account. `Debug` leaves the password hash out.
#[derive(Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = staff)]
pub struct Staff {
    /// A UUID ([`StaffId`]).
    pub id: String,
    /// The login name (lowercase).
    pub login: String,
    /// The name shown to people.
    pub display_name: String,
    /// A [`Role`] key.
    pub role: String,
    /// The organisation's id.
    pub organisation_id: String,
    /// The municipality's code.
    pub municipality: String,
    /// The area's code within the municipality, if the account belongs to one.
    pub area: Option<String>,
    /// Argon2id, in PHC string form.
    pub password_hash: String,
    /// Whether the account may sign in.
    pub active: bool,
    /// Unused: failed logins are counted in `login_attempts` (kept at 0).
    pub failed_logins: i32,
    /// Unused: throttling is by `login_attempts` (kept empty).
    pub locked_until: Option<NaiveDateTime>,
    /// When it was created.
    pub created_at: NaiveDateTime,
}

impl std::fmt::Debug for Staff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Staff")
            .field("id", &self.id)
            .field("login", &self.login)
            .field("role", &self.role)
            .field("municipality", &self.municipality)
            .field("area", &self.area)
            .field("active", &self.active)
            .finish_non_exhaustive()
    }
}

impl Staff {
    /// The id, parsed.
    pub fn staff_id(&self) -> Result<StaffId, StoreError> {
        StaffId::parse(&self.id).map_err(|e| corrupt("staff.id", e))
    }

    /// The role, parsed.
    pub fn role(&self) -> Result<Role, StoreError> {
        Role::from_key(&self.role).map_err(|e| corrupt("staff.role", e))
    }

    /// The municipality, parsed.
    pub fn municipality(&self) -> Result<MunicipalityCode, StoreError> {
        MunicipalityCode::parse(&self.municipality).map_err(|e| corrupt("staff.municipality", e))
    }
}

/// Stores a staff account.
pub fn insert_staff(conn: &mut DbConnection, row: &Staff) -> Result<(), StoreError> {
    diesel::insert_into(staff::table).values(row).execute(conn)?;
    Ok(())
}

/// The staff account with this login name (exact match; logins are stored lowercase).
pub fn find_staff_by_login(conn: &mut DbConnection, login: &str) -> Result<Option<Staff>, StoreError> {
    Ok(staff::table.filter(staff::login.eq(login)).select(Staff::as_select()).first(conn).optional()?)
}

/// The staff account with this id.
pub fn find_staff(conn: &mut DbConnection, id: &StaffId) -> Result<Option<Staff>, StoreError> {
    Ok(staff::table.find(id.to_string()).select(Staff::as_select()).first(conn).optional()?)
}

/// Replaces a staff member's password hash; whether the account exists.
pub fn set_password_hash(conn: &mut DbConnection, id: &StaffId, hash: &str) -> Result<bool, StoreError> {
    let n = diesel::update(staff::table.find(id.to_string())).set(staff::password_hash.eq(hash)).execute(conn)?;
    Ok(n == 1)
}

/// A registered device (a phone or tablet), bound to one staff member.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = devices)]
pub struct Device {
    /// A UUID ([`DeviceId`]); its 16 bytes open every actor id the device writes with.
    pub id: String,
    /// The staff member it belongs to.
    pub staff_id: String,
    /// A label for people ("佐藤 iPhone").
    pub label: String,
    /// When it was registered.
    pub registered_at: NaiveDateTime,
    /// When it was revoked; a revoked device never signs in or syncs again.
    pub revoked_at: Option<NaiveDateTime>,
}

impl Device {
    /// The id, parsed.
    pub fn device_id(&self) -> Result<DeviceId, StoreError> {
        DeviceId::parse(&self.id).map_err(|e| corrupt("devices.id", e))
    }
}

/// Stores a device.
pub fn insert_device(conn: &mut DbConnection, row: &Device) -> Result<(), StoreError> {
    diesel::insert_into(devices::table).values(row).execute(conn)?;
    Ok(())
}

/// The device with this id.
pub fn find_device(conn: &mut DbConnection, id: &DeviceId) -> Result<Option<Device>, StoreError> {
    Ok(devices::table.find(id.to_string()).select(Device::as_select()).first(conn).optional()?)
}

/// Numbers the next sync response to `device` (1, 2, …), for its sync cursor. Call it in a
/// write transaction: the device's row stays locked until it ends.
pub fn next_sync_response(conn: &mut DbConnection, id: &DeviceId) -> Result<i64, StoreError> {
    let id = id.to_string();
    diesel::update(devices::table.find(&id))
        .set(devices::sync_responses.eq(devices::sync_responses + 1))
        .execute(conn)?;
    Ok(devices::table.find(&id).select(devices::sync_responses).first(conn)?)
}

/// A device's staff member's devices, oldest first.
pub fn devices_of(conn: &mut DbConnection, staff_id: &StaffId) -> Result<Vec<Device>, StoreError> {
    Ok(devices::table
        .filter(devices::staff_id.eq(staff_id.to_string()))
        .order((devices::registered_at.asc(), devices::id.asc()))
        .select(Device::as_select())
        .load(conn)?)
}

/// What every authenticated request checks: the device and its staff member, as they are now.
#[derive(Debug, Clone, PartialEq, Eq, Queryable)]
pub struct DeviceAccess {
    /// The staff member the device is registered to.
    pub staff_id: String,
    /// When the device was revoked.
    pub revoked_at: Option<NaiveDateTime>,
    /// Whether the staff account is active.
    pub active: bool,
    /// The staff member's role key.
    pub role: String,
    /// The staff member's municipality code.
    pub municipality: String,
    /// The staff member's area code.
    pub area: Option<String>,
}

/// The device and its staff member, in one query.
pub fn device_access(conn: &mut DbConnection, id: &DeviceId) -> Result<Option<DeviceAccess>, StoreError> {
    Ok(devices::table
        .inner_join(staff::table.on(staff::id.eq(devices::staff_id)))
        .filter(devices::id.eq(id.to_string()))
        .select((devices::staff_id, devices::revoked_at, staff::active, staff::role, staff::municipality, staff::area))
        .first::<DeviceAccess>(conn)
        .optional()?)
}

/// Marks a device revoked (if it was not already); whether it changed.
pub fn revoke_device(conn: &mut DbConnection, id: &DeviceId, at: NaiveDateTime) -> Result<bool, StoreError> {
    let n = diesel::update(devices::table.find(id.to_string()).filter(devices::revoked_at.is_null()))
        .set(devices::revoked_at.eq(at))
        .execute(conn)?;
    Ok(n == 1)
}

// ---------------------------------------------------------------------------------------------
// Refresh tokens
// ---------------------------------------------------------------------------------------------

/// A refresh token, stored as the SHA-256 of the token. Every token belongs to a family: the
/// chain of rotations that started at one login.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = refresh_tokens)]
pub struct RefreshToken {
    /// A UUID.
    pub id: String,
    /// The device it is bound to.
    pub device_id: String,
    /// The family (one per login).
    pub family_id: String,
    /// SHA-256 of the token.
    pub token_hash: Vec<u8>,
    /// When it was issued.
    pub issued_at: NaiveDateTime,
    /// When it stops being accepted.
    pub expires_at: NaiveDateTime,
    /// When it was exchanged for a new one (a token is used once).
    pub used_at: Option<NaiveDateTime>,
    /// When it was revoked (logout, reuse of an old token, device revoked).
    pub revoked_at: Option<NaiveDateTime>,
}

/// Stores a refresh token.
pub fn insert_refresh_token(conn: &mut DbConnection, row: &RefreshToken) -> Result<(), StoreError> {
    diesel::insert_into(refresh_tokens::table).values(row).execute(conn)?;
    Ok(())
}

/// The refresh token with this hash.
pub fn find_refresh_token(conn: &mut DbConnection, hash: &[u8]) -> Result<Option<RefreshToken>, StoreError> {
    Ok(refresh_tokens::table
        .filter(refresh_tokens::token_hash.eq(hash))
        .select(RefreshToken::as_select())
        .first(conn)
        .optional()?)
}

/// Marks a token used, only if it is neither used nor revoked; whether this call did it. On
/// PostgreSQL a concurrent second call waits for the first and then finds nothing to mark, so
/// one token is exchanged at most once.
pub fn mark_refresh_token_used(conn: &mut DbConnection, id: &str, at: NaiveDateTime) -> Result<bool, StoreError> {
    let n = diesel::update(
        refresh_tokens::table
            .find(id)
            .filter(refresh_tokens::used_at.is_null())
            .filter(refresh_tokens::revoked_at.is_null()),
    )
    .set(refresh_tokens::used_at.eq(at))
    .execute(conn)?;
    Ok(n == 1)
}

/// For a refresh token presented again soon after its use: if no token of its family issued
/// after it has been used yet (its successor was never received, e.g. the answer was lost or
/// the app was killed before saving it), revokes those unused successors and returns `true`;
/// returns `false` if a later token was used (two parties hold the login).
pub fn supersede_unused_successors(
    conn: &mut DbConnection,
    family_id: &str,
    issued_after: NaiveDateTime,
    at: NaiveDateTime,
) -> Result<bool, StoreError> {
    let later = || {
        refresh_tokens::table
            .filter(refresh_tokens::family_id.eq(family_id))
            .filter(refresh_tokens::issued_at.gt(issued_after))
    };
    let used: i64 = later().filter(refresh_tokens::used_at.is_not_null()).count().get_result(conn)?;
    if used > 0 {
        return Ok(false);
    }
    diesel::update(later().filter(refresh_tokens::revoked_at.is_null()))
        .set(refresh_tokens::revoked_at.eq(at))
        .execute(conn)?;
    Ok(true)
}

/// Revokes every token of a family not yet revoked; how many.
pub fn revoke_family(conn: &mut DbConnection, family_id: &str, at: NaiveDateTime) -> Result<usize, StoreError> {
    Ok(diesel::update(
        refresh_tokens::table
            .filter(refresh_tokens::family_id.eq(family_id))
            .filter(refresh_tokens::revoked_at.is_null()),
    )
    .set(refresh_tokens::revoked_at.eq(at))
    .execute(conn)?)
}

/// Revokes every token of a device not yet revoked; how many.
pub fn revoke_device_tokens(
    conn: &mut DbConnection,
    device: &DeviceId,
    at: NaiveDateTime,
) -> Result<usize, StoreError> {
    Ok(diesel::update(
        refresh_tokens::table
            .filter(refresh_tokens::device_id.eq(device.to_string()))
            .filter(refresh_tokens::revoked_at.is_null()),
    )
    .set(refresh_tokens::revoked_at.eq(at))
    .execute(conn)?)
}

/// Whether a family still has a token that is not revoked, i.e. the login it started has
/// not been ended (logout, reuse, device revoked).
pub fn family_is_live(conn: &mut DbConnection, family_id: &str) -> Result<bool, StoreError> {
    let live: i64 = refresh_tokens::table
        .filter(refresh_tokens::family_id.eq(family_id))
        .filter(refresh_tokens::revoked_at.is_null())
        .count()
        .get_result(conn)?;
    Ok(live > 0)
}

/// Deletes a device's tokens that expired before `before` (an expired token is refused
/// whether or not its row exists, so nothing is lost); how many.
pub fn delete_expired_refresh_tokens(
    conn: &mut DbConnection,
    device: &DeviceId,
    before: NaiveDateTime,
) -> Result<usize, StoreError> {
    Ok(diesel::delete(
        refresh_tokens::table
            .filter(refresh_tokens::device_id.eq(device.to_string()))
            .filter(refresh_tokens::expires_at.lt(before)),
    )
    .execute(conn)?)
}

// ---------------------------------------------------------------------------------------------
// Failed logins
// ---------------------------------------------------------------------------------------------

/// A failed login, counted for throttling.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = login_attempts)]
pub struct LoginAttempt {
    /// Row id.
    pub id: i64,
    /// The login name tried (normalised).
    pub login: String,
    /// When.
    pub attempted_at: NaiveDateTime,
}

/// A failed login to store.
#[derive(Debug, Clone, PartialEq, Eq, Insertable)]
#[diesel(table_name = login_attempts)]
pub struct NewLoginAttempt<'a> {
    /// The login name tried (normalised).
    pub login: &'a str,
    /// When.
    pub attempted_at: NaiveDateTime,
}

/// Serialises the throttling of one login name until the end of the transaction: a
/// transaction-scoped advisory lock on PostgreSQL; nothing on SQLite, where the write
/// transaction (`BEGIN IMMEDIATE`) already excludes every other writer.
pub fn lock_login_name(conn: &mut DbConnection, login: &str) -> Result<(), StoreError> {
    if let DbConnection::Pg(pg) = conn {
        diesel::sql_query("SELECT pg_advisory_xact_lock(hashtext($1))")
            .bind::<diesel::sql_types::Text, _>(login)
            .execute(pg)?;
    }
    Ok(())
}

/// Records a failed login.
pub fn record_failed_login(conn: &mut DbConnection, login: &str, at: NaiveDateTime) -> Result<(), StoreError> {
    diesel::insert_into(login_attempts::table).values(&NewLoginAttempt { login, attempted_at: at }).execute(conn)?;
    Ok(())
}

/// The times of the failed logins for `login` since `since`, oldest first.
pub fn failed_logins_since(
    conn: &mut DbConnection,
    login: &str,
    since: NaiveDateTime,
) -> Result<Vec<NaiveDateTime>, StoreError> {
    Ok(login_attempts::table
        .filter(login_attempts::login.eq(login))
        .filter(login_attempts::attempted_at.gt(since))
        .order(login_attempts::attempted_at.asc())
        .select(login_attempts::attempted_at)
        .load(conn)?)
}

/// Forgets the failed logins of `login` (after a successful one).
pub fn clear_failed_logins(conn: &mut DbConnection, login: &str) -> Result<usize, StoreError> {
    Ok(diesel::delete(login_attempts::table.filter(login_attempts::login.eq(login))).execute(conn)?)
}

/// Forgets every failed login older than `before` (no longer counted by anyone).
pub fn prune_failed_logins(conn: &mut DbConnection, before: NaiveDateTime) -> Result<usize, StoreError> {
    Ok(diesel::delete(login_attempts::table.filter(login_attempts::attempted_at.le(before))).execute(conn)?)
}
