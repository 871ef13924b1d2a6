//! Authentication of staff and devices.
//!
//! A staff member signs in on a **registered device** with a login name and password
//! (`POST /v1/auth/login`) and gets two tokens bound to that device:
//!
//! - a short-lived **access token** ([`token`]: a JWT, HS256 under the configured signing key,
//!   15 minutes by default), sent as `Authorization: Bearer …` on every request;
//! - a **refresh token** ([`refresh`]: 32 random bytes, stored only as a SHA-256 hash),
//!   exchanged for new tokens at `POST /v1/auth/refresh`. Each exchange marks the token used
//!   and issues the next one of the same *family*; presenting a used token again revokes the
//!   family. `POST /v1/auth/logout` revokes it too.
//!
//! Every authenticated request goes through [`AuthenticatedDevice`], which checks the token
//! **and** the database: the device must exist, belong to the token's staff member and not be
//! revoked; the account must be active; the login (family) must not have been ended. So
//! revoking a lost phone takes effect on its very next request, with the distinct error
//! `device_revoked` that tells the app to wipe its replica.
//!
//! Passwords are Argon2id ([`password`]); failed logins are slowed and, past a limit,
//! refused with 429 ([`service`]).

pub mod password;
pub mod refresh;
pub mod service;
pub mod token;

use std::future::Future;
use std::pin::Pin;

use actix_web::http::header;
use actix_web::{dev::Payload, web, FromRequest, HttpRequest};
use tsunagi_sync::domain::Role;
use tsunagi_sync::ids::{DeviceId, MunicipalityCode, StaffId};
use tsunagi_sync::wire::Format;

pub use service::{AuthError, Authenticator};

use crate::error::ApiFailure;
use crate::startup::AppState;

/// The longest login name.
pub const MAX_LOGIN_CHARS: usize = 64;

/// A login name as stored: trimmed and lowercase, 3 to [`MAX_LOGIN_CHARS`] characters of
/// `a-z 0-9 . _ - @`, starting with a letter or digit. `None` if `raw` is not one.
pub fn normalise_login(raw: &str) -> Option<String> {
    let login = raw.trim().to_lowercase();
    let len = login.chars().count();
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-' | '@');
    let starts_well = login.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    ((3..=MAX_LOGIN_CHARS).contains(&len) && login.chars().all(allowed) && starts_well).then_some(login)
}

/// The key failed logins are counted under: the normalised name, or for input that is not a
/// login name at all, its trimmed lowercase first [`MAX_LOGIN_CHARS`] characters.
pub(crate) fn login_key(raw: &str) -> String {
    normalise_login(raw).unwrap_or_else(|| raw.trim().to_lowercase().chars().take(MAX_LOGIN_CHARS).collect())
}

/// An authenticated request: a valid access token of an active staff member on a registered,
/// unrevoked device, checked against the database on this very request.
///
/// Use it as a handler argument. It answers `401 unauthenticated` (no, malformed, forged or
/// ended token), `401 token_expired`, `401 device_revoked` or `403 forbidden` (disabled
/// account) otherwise, in the request's format (CBOR or JSON). `role`, `municipality` and
/// `area` are the staff member's as stored now, not as when the token was issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthenticatedDevice {
    /// The staff member.
    pub staff: StaffId,
    /// The device.
    pub device: DeviceId,
    /// The staff member's role.
    pub role: Role,
    /// The staff member's municipality.
    pub municipality: MunicipalityCode,
    /// The staff member's area code, if any.
    pub area: Option<String>,
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer_token(request: &HttpRequest) -> Result<String, AuthError> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or(AuthError::Unauthenticated("no Authorization header"))?
        .to_str()
        .map_err(|_| AuthError::Unauthenticated("the Authorization header is not text"))?;
    let (scheme, token) =
        value.trim().split_once(' ').ok_or(AuthError::Unauthenticated("expected Authorization: Bearer <token>"))?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() || token.contains(' ') {
        return Err(AuthError::Unauthenticated("expected Authorization: Bearer <token>"));
    }
    Ok(token.to_owned())
}

impl FromRequest for AuthenticatedDevice {
    type Error = ApiFailure;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiFailure>>>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        let format = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(Format::from_content_type)
            .unwrap_or(Format::Json);
        let state = request.app_data::<web::Data<AppState>>().cloned();
        let token = bearer_token(request);
        Box::pin(async move {
            let result = async {
                let state = state.ok_or_else(|| ApiFailure::internal("the application state is missing"))?;
                let token = token?;
                let authenticator = Authenticator::new(state.db.clone(), &state.settings);
                Ok(web::block(move || authenticator.authenticate(&token)).await??)
            };
            result.await.map_err(|e: ApiFailure| e.in_format(format))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_names_are_normalised_or_refused() {
        assert_eq!(normalise_login("  Sato.Hanako "), Some("sato.hanako".into()));
        assert_eq!(normalise_login("k-tanaka@nagareyama"), Some("k-tanaka@nagareyama".into()));
        for bad in ["", "ab", "-sato", "sa to", "佐藤", &"a".repeat(65), "sa\nto"] {
            assert_eq!(normalise_login(bad), None, "{bad:?}");
        }
        assert_eq!(login_key(" 佐藤 "), "佐藤");
        assert_eq!(login_key(&"X".repeat(100)).len(), MAX_LOGIN_CHARS);
    }

    #[test]
    fn only_bearer_headers_carry_tokens() {
        use actix_web::test::TestRequest;
        let token = |value: Option<&str>| {
            let mut r = TestRequest::default();
            if let Some(v) = value {
                r = r.insert_header((header::AUTHORIZATION, v));
            }
            bearer_token(&r.to_http_request()).ok()
        };
        assert_eq!(token(Some("Bearer abc.def.ghi")), Some("abc.def.ghi".into()));
        assert_eq!(token(Some("bearer  abc")), Some("abc".into()));
        for bad in [None, Some("Basic abc"), Some("Bearer"), Some("Bearer "), Some("abc"), Some("Bearer a b")] {
            assert_eq!(token(bad), None, "{bad:?}");
        }
    }
}
