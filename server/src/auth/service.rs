//! The sign-in flows, over the database: login, refresh, logout, and the check every
//! authenticated request makes. Blocking (Argon2 and diesel): call from `web::block`.
//!
//! - **Login** needs the right password, an active account, and a device registered to that
//!   account and not revoked. It starts a new refresh-token *family*.
//! - **Refresh** exchanges a refresh token for a new access token and a new refresh token of
//!   the same family, in one write transaction; the presented token is marked used. Presenting
//!   a used token again means two parties hold it (a copy was stolen): the whole family is
//!   revoked, the newest token included, and so are the access tokens of that family.
//! - **Logout** revokes the family of the presented token.
//! - **Throttling**: once `login_failures` failed logins for one login name fall within
//!   [`THROTTLE_WINDOW`], every login for that name is answered 429 without looking at the
//!   password, until enough of them age out; `Retry-After` says when. A successful login
//!   clears the count. Throttled attempts are not counted, so an attacker cannot keep an
//!   account locked for longer than the window by hammering it.

use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};
use tsunagi_sync::domain::Role;
use tsunagi_sync::ids::{DeviceId, MunicipalityCode, StaffId};
use tsunagi_sync::wire::{ApiErrorCode, LoginRequest, TokenResponse, BEARER_TOKEN_TYPE};
use uuid::Uuid;

use super::password::{spend_dummy_verification, verify_password};

/// How long after its use a refresh token may be presented again, while its successor is
/// unused, and get a new successor (a lost answer, or an app killed before saving it).
pub const REFRESH_REUSE_GRACE: Duration = Duration::from_secs(120);
use super::refresh;
use super::token::{AccessTokens, TokenError};
use super::{login_key, AuthenticatedDevice};
use crate::config::Settings;
use crate::error::ApiFailure;
use crate::store::accounts::{self, RefreshToken};
use crate::store::{audit, Database, DbConnection, StoreError};

/// Failed logins are counted over this window.
pub const THROTTLE_WINDOW: Duration = Duration::from_secs(15 * 60);

/// How long a failed login is held back before it is answered (the handler sleeps, off any
/// thread), on top of the Argon2 verification.
pub const FAILURE_DELAY: Duration = Duration::from_millis(200);

/// Why a sign-in flow or an authenticated request was refused.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Unknown login name or wrong password (indistinguishable on purpose).
    #[error("wrong login name or password")]
    BadCredentials,
    /// Too many failed logins for this login name.
    #[error("too many failed logins; retry in {retry_after} s")]
    Throttled {
        /// Seconds until a login may be tried again.
        retry_after: u64,
    },
    /// No valid token (details for people).
    #[error("{0}")]
    Unauthenticated(&'static str),
    /// The access token expired.
    #[error("the access token has expired; refresh it")]
    TokenExpired,
    /// The device was revoked.
    #[error("this device was revoked")]
    DeviceRevoked,
    /// Signed in correctly, but not allowed.
    #[error("{0}")]
    Forbidden(&'static str),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Anything else unexpected.
    #[error("{0}")]
    Internal(String),
}

impl From<TokenError> for AuthError {
    fn from(e: TokenError) -> Self {
        match e {
            TokenError::Expired => AuthError::TokenExpired,
            TokenError::Invalid(why) => AuthError::Unauthenticated(why),
            TokenError::Signing(why) => AuthError::Internal(why),
        }
    }
}

impl From<AuthError> for ApiFailure {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::BadCredentials => ApiFailure::new(ApiErrorCode::Unauthenticated, e.to_string()),
            AuthError::Throttled { retry_after } => ApiFailure::new(
                ApiErrorCode::TooManyRequests,
                "too many failed logins for this login name; retry after Retry-After seconds",
            )
            .retry_after(retry_after),
            AuthError::Unauthenticated(why) => {
                ApiFailure::new(ApiErrorCode::Unauthenticated, format!("not signed in: {why}; sign in again"))
            }
            AuthError::TokenExpired => ApiFailure::new(ApiErrorCode::TokenExpired, e.to_string()),
            AuthError::DeviceRevoked => ApiFailure::new(
                ApiErrorCode::DeviceRevoked,
                "this device was revoked: wipe every case stored on it and stop syncing",
            ),
            AuthError::Forbidden(why) => ApiFailure::new(ApiErrorCode::Forbidden, why),
            AuthError::Store(e) => ApiFailure::from(e),
            AuthError::Internal(why) => ApiFailure::internal(why),
        }
    }
}

/// Whom a pair of tokens is for.
struct Grant {
    staff: StaffId,
    device: DeviceId,
    role: Role,
    municipality: MunicipalityCode,
    /// The refresh-token family: one per login.
    family: Uuid,
}

/// The sign-in flows over one database and configuration. Cheap to make per request.
#[derive(Debug, Clone)]
pub struct Authenticator {
    db: Database,
    tokens: AccessTokens,
    refresh_ttl: Duration,
    max_failures: u32,
}

/// As stored: UTC, to the microsecond (what PostgreSQL keeps).
fn naive(t: DateTime<Utc>) -> NaiveDateTime {
    chrono::SubsecRound::trunc_subsecs(t, 6).naive_utc()
}

fn ago(now: DateTime<Utc>, d: Duration) -> NaiveDateTime {
    naive(now - chrono::Duration::from_std(d).unwrap_or(chrono::Duration::zero()))
}

fn later(now: DateTime<Utc>, d: Duration) -> NaiveDateTime {
    naive(now + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::zero()))
}

impl Authenticator {
    /// Over `db`, with the keys, lifetimes and limits of `settings`.
    pub fn new(db: Database, settings: &Settings) -> Self {
        Self {
            db,
            tokens: AccessTokens::from_settings(settings),
            refresh_ttl: settings.refresh_token_ttl,
            max_failures: settings.login_failures.max(1),
        }
    }

    /// The access-token issuer and checker.
    pub fn tokens(&self) -> &AccessTokens {
        &self.tokens
    }

    /// Seconds until a login for a name with these failures (oldest first, all within the
    /// window) may be tried again; `None` if it may be tried now.
    fn throttled(&self, failures: &[NaiveDateTime], now: DateTime<Utc>) -> Option<u64> {
        let limit = self.max_failures as usize;
        if failures.len() < limit {
            return None;
        }
        // Once this one ages out, fewer than `limit` remain.
        let decisive = failures[failures.len() - limit];
        let free_at = decisive + chrono::Duration::from_std(THROTTLE_WINDOW).unwrap_or(chrono::Duration::zero());
        let seconds = (free_at - naive(now)).num_milliseconds().max(0) as u64;
        Some(seconds.div_ceil(1000).max(1))
    }

    /// `POST /v1/auth/login`.
    pub fn login(&self, request: &LoginRequest, now: DateTime<Utc>) -> Result<TokenResponse, AuthError> {
        let key = login_key(&request.login);
        let window_start = ago(now, THROTTLE_WINDOW);
        // Count this attempt as a failure before looking at the password, in the same
        // transaction as the check, so that concurrent guesses cannot slip past the limit;
        // a right password takes it back.
        let admitted = self.db.write(|c| -> Result<Result<(), u64>, StoreError> {
            accounts::lock_login_name(c, &key)?;
            let failures = accounts::failed_logins_since(c, &key, window_start)?;
            if let Some(retry_after) = self.throttled(&failures, now) {
                return Ok(Err(retry_after));
            }
            accounts::record_failed_login(c, &key, naive(now))?;
            accounts::prune_failed_logins(c, window_start)?;
            Ok(Ok(()))
        })?;
        if let Err(retry_after) = admitted {
            tracing::warn!(retry_after, "login throttled");
            return Err(AuthError::Throttled { retry_after });
        }

        let staff = self.db.read(|c| accounts::find_staff_by_login(c, &key))?;
        let verified = match &staff {
            Some(s) => verify_password(&request.password, &s.password_hash),
            None => {
                spend_dummy_verification(&request.password);
                false
            }
        };
        let staff = match staff {
            Some(staff) if verified => staff,
            other => {
                let known = other.as_ref().map(|s| s.staff_id()).transpose()?;
                // The login name only when it names an account: a password typed into the
                // name field must not end up in the log.
                let detail = match &other {
                    Some(s) => format!("login={} reason=wrong_password", s.login),
                    None => "reason=unknown_login".to_owned(),
                };
                self.db.write(|c| {
                    audit::record(
                        c,
                        naive(now),
                        known.as_ref(),
                        Some(&request.device_id),
                        None,
                        "auth.login_failed",
                        &detail,
                    )
                })?;
                return Err(AuthError::BadCredentials);
            }
        };

        let staff_id = staff.staff_id()?;
        // The password was right: this was no guess. Refusals below (disabled account,
        // unregistered or revoked device) are not failures to count.
        let refuse = |reason: &'static str, error: AuthError| -> Result<TokenResponse, AuthError> {
            self.db.write(|c| {
                accounts::clear_failed_logins(c, &key)?;
                audit::record(
                    c,
                    naive(now),
                    Some(&staff_id),
                    Some(&request.device_id),
                    None,
                    "auth.login_refused",
                    &format!("reason={reason}"),
                )
            })?;
            Err(error)
        };
        if !staff.active {
            return refuse("account_disabled", AuthError::Forbidden("this account is disabled"));
        }
        let device = self.db.read(|c| accounts::find_device(c, &request.device_id))?;
        match device {
            Some(d) if d.staff_id == staff.id && d.revoked_at.is_some() => {
                return refuse("device_revoked", AuthError::DeviceRevoked);
            }
            Some(d) if d.staff_id == staff.id => {}
            _ => {
                return refuse(
                    "device_not_registered",
                    AuthError::Forbidden("this device is not registered to this account"),
                )
            }
        }

        let (role, municipality) = (staff.role()?, staff.municipality()?);
        self.db.write(|c| -> Result<TokenResponse, AuthError> {
            accounts::clear_failed_logins(c, &key)?;
            accounts::delete_expired_refresh_tokens(c, &request.device_id, naive(now))?;
            let family = Uuid::new_v4();
            let grant = Grant { staff: staff_id, device: request.device_id, role, municipality, family };
            let tokens = self.issue(c, grant, now)?;
            audit::record(
                c,
                naive(now),
                Some(&staff_id),
                Some(&request.device_id),
                None,
                "auth.login",
                &format!("login={} session={family}", staff.login),
            )?;
            Ok(tokens)
        })
    }

    /// Stores a new refresh token of `family` and signs an access token to go with it.
    fn issue(&self, c: &mut DbConnection, grant: Grant, now: DateTime<Utc>) -> Result<TokenResponse, AuthError> {
        let Grant { staff, device, role, municipality, family } = grant;
        let fresh = refresh::generate();
        accounts::insert_refresh_token(
            c,
            &RefreshToken {
                id: Uuid::new_v4().to_string(),
                device_id: device.to_string(),
                family_id: family.to_string(),
                token_hash: fresh.hash.to_vec(),
                issued_at: naive(now),
                expires_at: later(now, self.refresh_ttl),
                used_at: None,
                revoked_at: None,
            },
        )?;
        let claims = self.tokens.claims(staff, device, role, municipality, family, now);
        let access_token = self.tokens.sign(&claims)?;
        Ok(TokenResponse {
            access_token,
            token_type: BEARER_TOKEN_TYPE.to_owned(),
            expires_in: self.tokens.ttl().as_secs(),
            refresh_token: fresh.token,
            staff_id: staff,
            role,
        })
    }

    /// `POST /v1/auth/refresh`. A refresh token is good for one exchange; presenting it again
    /// ends the login (two parties hold it) — except within [`REFRESH_REUSE_GRACE`] of its
    /// use while its successor has not been used: then the first answer was lost, and the
    /// unused successor is replaced by a new one.
    pub fn refresh(&self, presented: &str, now: DateTime<Utc>) -> Result<TokenResponse, AuthError> {
        const UNKNOWN: AuthError = AuthError::Unauthenticated("unknown refresh token");
        let hash = refresh::hash_presented(presented).ok_or(UNKNOWN)?;
        enum Outcome {
            Issued(Box<TokenResponse>),
            Refused(AuthError),
        }
        let outcome = self.db.write(|c| -> Result<Outcome, AuthError> {
            let Some(row) = accounts::find_refresh_token(c, &hash)? else {
                return Ok(Outcome::Refused(UNKNOWN));
            };
            let device = DeviceId::parse(&row.device_id)
                .map_err(|e| StoreError::Corrupt(format!("refresh_tokens.device_id: {e}")))?;
            let Some(access) = accounts::device_access(c, &device)? else {
                return Ok(Outcome::Refused(UNKNOWN));
            };
            if access.revoked_at.is_some() {
                accounts::revoke_family(c, &row.family_id, naive(now))?;
                return Ok(Outcome::Refused(AuthError::DeviceRevoked));
            }
            if row.revoked_at.is_some() {
                accounts::revoke_family(c, &row.family_id, naive(now))?;
                return Ok(Outcome::Refused(AuthError::Unauthenticated("this refresh token was revoked")));
            }
            let staff =
                StaffId::parse(&access.staff_id).map_err(|e| StoreError::Corrupt(format!("devices.staff_id: {e}")))?;
            // Used before (or, below, by a concurrent request a moment ago): two parties
            // hold this token. End the whole login.
            let reused = |c: &mut DbConnection| -> Result<Outcome, AuthError> {
                let revoked = accounts::revoke_family(c, &row.family_id, naive(now))?;
                audit::record(
                    c,
                    naive(now),
                    Some(&staff),
                    Some(&device),
                    None,
                    "auth.refresh_reused",
                    &format!("session={} revoked_tokens={revoked}", row.family_id),
                )?;
                tracing::warn!(%device, "a used refresh token was presented again; its login was ended");
                Ok(Outcome::Refused(AuthError::Unauthenticated(
                    "this refresh token was already used; the login was ended for safety",
                )))
            };
            if let Some(used_at) = row.used_at {
                // Presented again within moments of its use, while its successor was never
                // used: the answer to the first exchange was lost (or the app was killed
                // before saving it). Issue a new successor instead of ending the login.
                let recent =
                    naive(now) - used_at <= chrono::Duration::from_std(REFRESH_REUSE_GRACE).unwrap_or_default();
                if !(recent
                    && row.revoked_at.is_none()
                    && accounts::supersede_unused_successors(c, &row.family_id, row.issued_at, naive(now))?)
                {
                    return reused(c);
                }
                audit::record(
                    c,
                    naive(now),
                    Some(&staff),
                    Some(&device),
                    None,
                    "auth.refresh_retried",
                    &format!("session={}", row.family_id),
                )?;
            }
            if row.expires_at <= naive(now) {
                return Ok(Outcome::Refused(AuthError::Unauthenticated("the refresh token has expired")));
            }
            if !access.active {
                return Ok(Outcome::Refused(AuthError::Forbidden("this account is disabled")));
            }
            if row.used_at.is_none() && !accounts::mark_refresh_token_used(c, &row.id, naive(now))? {
                return reused(c);
            }
            let role = Role::from_key(&access.role).map_err(|e| StoreError::Corrupt(format!("staff.role: {e}")))?;
            let municipality = MunicipalityCode::parse(&access.municipality)
                .map_err(|e| StoreError::Corrupt(format!("staff.municipality: {e}")))?;
            let family = Uuid::parse_str(&row.family_id)
                .map_err(|e| StoreError::Corrupt(format!("refresh_tokens.family_id: {e}")))?;
            accounts::delete_expired_refresh_tokens(c, &device, naive(now))?;
            let tokens = self.issue(c, Grant { staff, device, role, municipality, family }, now)?;
            Ok(Outcome::Issued(Box::new(tokens)))
        })?;
        match outcome {
            Outcome::Issued(tokens) => Ok(*tokens),
            Outcome::Refused(e) => Err(e),
        }
    }

    /// `POST /v1/auth/logout`: ends the login the token belongs to. Answers the same whether
    /// or not the token was known (logging out twice is fine).
    pub fn logout(&self, presented: &str, now: DateTime<Utc>) -> Result<(), AuthError> {
        let Some(hash) = refresh::hash_presented(presented) else {
            return Ok(());
        };
        self.db.write(|c| -> Result<(), AuthError> {
            if let Some(row) = accounts::find_refresh_token(c, &hash)? {
                let revoked = accounts::revoke_family(c, &row.family_id, naive(now))?;
                if revoked > 0 {
                    let device = DeviceId::parse(&row.device_id).ok();
                    audit::record(
                        c,
                        naive(now),
                        None,
                        device.as_ref(),
                        None,
                        "auth.logout",
                        &format!("session={}", row.family_id),
                    )?;
                }
            }
            Ok(())
        })
    }

    /// Checks an access token, then the device, its staff member and the login in the
    /// database, as they are now.
    pub fn authenticate(&self, token: &str) -> Result<AuthenticatedDevice, AuthError> {
        let claims = self.tokens.verify(token)?;
        self.db.read(|c| -> Result<AuthenticatedDevice, AuthError> {
            let access =
                accounts::device_access(c, &claims.dev)?.ok_or(AuthError::Unauthenticated("unknown device"))?;
            if access.staff_id != claims.sub.to_string() {
                return Err(AuthError::Unauthenticated("the device belongs to someone else"));
            }
            if access.revoked_at.is_some() {
                return Err(AuthError::DeviceRevoked);
            }
            if !access.active {
                return Err(AuthError::Forbidden("this account is disabled"));
            }
            if !accounts::family_is_live(c, &claims.sid.to_string())? {
                return Err(AuthError::Unauthenticated("this login was ended (logout)"));
            }
            Ok(AuthenticatedDevice {
                staff: claims.sub,
                device: claims.dev,
                role: Role::from_key(&access.role).map_err(|e| StoreError::Corrupt(format!("staff.role: {e}")))?,
                municipality: MunicipalityCode::parse(&access.municipality)
                    .map_err(|e| StoreError::Corrupt(format!("staff.municipality: {e}")))?,
                area: access.area,
            })
        })
    }
}
