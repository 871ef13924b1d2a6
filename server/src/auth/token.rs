//! Access tokens: JWTs signed with HMAC-SHA-256 under the configured signing key.
//!
//! Verification accepts HS256 only (a token announcing `none` or any other algorithm is
//! refused before its signature is looked at), requires `exp`, checks `iss` and `aud`
//! against the configured issuer, and allows [`LEEWAY_SECONDS`] of clock skew. Expiry is
//! reported apart from every other failure, so a client knows to refresh rather than sign in
//! again.
//!
//! Claims: `sub` (staff id), `dev` (device id), `role`, `mun` (municipality code), `sid` (the
//! refresh-token family, i.e. the login this token descends from: logging out ends it), `iat`,
//! `exp`, `iss`, `aud`, `jti`. The claims only say who the token was issued to; every request
//! still checks the device, the staff member and the login in the database
//! ([`super::AuthenticatedDevice`]).

use std::time::Duration;

use chrono::{DateTime, Utc};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use tsunagi_sync::domain::Role;
use tsunagi_sync::ids::{DeviceId, MunicipalityCode, StaffId};
use uuid::Uuid;

use crate::config::{Settings, SigningKey};

/// Clock skew tolerated when checking `exp`.
pub const LEEWAY_SECONDS: u64 = 30;

/// The only algorithm issued and accepted.
pub const ALGORITHM: Algorithm = Algorithm::HS256;

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// The staff member.
    pub sub: StaffId,
    /// The device the token is bound to.
    pub dev: DeviceId,
    /// The staff member's role when the token was issued.
    pub role: Role,
    /// The staff member's municipality.
    pub mun: MunicipalityCode,
    /// The refresh-token family (one per login).
    pub sid: Uuid,
    /// Issued at (seconds since the epoch).
    pub iat: u64,
    /// Expires at (seconds since the epoch).
    pub exp: u64,
    /// Issuer.
    pub iss: String,
    /// Audience (the same as the issuer: tokens are for this service only).
    pub aud: String,
    /// A unique id.
    pub jti: Uuid,
}

/// Why a token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Valid, but expired.
    #[error("the access token has expired")]
    Expired,
    /// Malformed, forged, unsigned, another algorithm, wrong issuer or audience.
    #[error("the access token is not valid ({0})")]
    Invalid(&'static str),
    /// Signing failed (should not happen).
    #[error("the access token could not be signed: {0}")]
    Signing(String),
}

/// Issues and checks access tokens with one key and issuer.
#[derive(Clone)]
pub struct AccessTokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: String,
    ttl: Duration,
}

impl std::fmt::Debug for AccessTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessTokens").field("issuer", &self.issuer).field("ttl", &self.ttl).finish_non_exhaustive()
    }
}

impl AccessTokens {
    /// Tokens signed with `key`, with `issuer` as `iss` and `aud`, valid for `ttl`.
    pub fn new(key: &SigningKey, issuer: &str, ttl: Duration) -> Self {
        let mut validation = Validation::new(ALGORITHM);
        validation.algorithms = vec![ALGORITHM];
        validation.leeway = LEEWAY_SECONDS;
        validation.validate_exp = true;
        validation.validate_aud = true;
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[issuer]);
        Self {
            encoding: EncodingKey::from_secret(key.expose()),
            decoding: DecodingKey::from_secret(key.expose()),
            validation,
            issuer: issuer.to_owned(),
            ttl,
        }
    }

    /// From the server's settings.
    pub fn from_settings(settings: &Settings) -> Self {
        Self::new(&settings.signing_key, &settings.issuer, settings.access_token_ttl)
    }

    /// How long a token issued now stays valid.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The claims of a token issued at `now`.
    pub fn claims(
        &self,
        staff: StaffId,
        device: DeviceId,
        role: Role,
        municipality: MunicipalityCode,
        session: Uuid,
        now: DateTime<Utc>,
    ) -> AccessClaims {
        let iat = u64::try_from(now.timestamp()).unwrap_or(0);
        AccessClaims {
            sub: staff,
            dev: device,
            role,
            mun: municipality,
            sid: session,
            iat,
            exp: iat + self.ttl.as_secs(),
            iss: self.issuer.clone(),
            aud: self.issuer.clone(),
            jti: Uuid::new_v4(),
        }
    }

    /// Signs claims (HS256).
    pub fn sign(&self, claims: &AccessClaims) -> Result<String, TokenError> {
        jsonwebtoken::encode(&Header::new(ALGORITHM), claims, &self.encoding)
            .map_err(|e| TokenError::Signing(e.to_string()))
    }

    /// Checks a token and returns its claims.
    pub fn verify(&self, token: &str) -> Result<AccessClaims, TokenError> {
        match jsonwebtoken::decode::<AccessClaims>(token, &self.decoding, &self.validation) {
            Ok(data) => Ok(data.claims),
            Err(e) => Err(match e.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                ErrorKind::InvalidSignature => TokenError::Invalid("bad signature"),
                ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName | ErrorKind::MissingAlgorithm => {
                    TokenError::Invalid("algorithm not accepted")
                }
                ErrorKind::InvalidIssuer => TokenError::Invalid("wrong issuer"),
                ErrorKind::InvalidAudience => TokenError::Invalid("wrong audience"),
                ErrorKind::MissingRequiredClaim(_) | ErrorKind::InvalidClaimFormat(_) => {
                    TokenError::Invalid("missing or malformed claims")
                }
                _ => TokenError::Invalid("malformed token"),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;

    use super::*;

    fn tokens(key_byte: u8, issuer: &str) -> AccessTokens {
        AccessTokens::new(&SigningKey::new(vec![key_byte; 32]).unwrap(), issuer, Duration::from_secs(900))
    }

    fn claims(t: &AccessTokens, now: DateTime<Utc>) -> AccessClaims {
        t.claims(
            StaffId::new_random(),
            DeviceId::new_random(),
            Role::Counsellor,
            MunicipalityCode::parse("122203").unwrap(),
            Uuid::new_v4(),
            now,
        )
    }

    #[test]
    fn a_token_round_trips_and_everything_else_is_refused() {
        let t = tokens(1, "tsunagi");
        let c = claims(&t, Utc::now());
        let token = t.sign(&c).unwrap();
        assert_eq!(t.verify(&token).unwrap(), c);

        // Another key, another issuer (which is also the audience).
        assert_eq!(tokens(2, "tsunagi").verify(&token), Err(TokenError::Invalid("bad signature")));
        assert!(matches!(tokens(1, "other").verify(&token), Err(TokenError::Invalid(_))));
        // The audience alone wrong.
        let mut wrong_aud = c.clone();
        wrong_aud.aud = "elsewhere".into();
        assert_eq!(t.verify(&t.sign(&wrong_aud).unwrap()), Err(TokenError::Invalid("wrong audience")));

        // Expired beyond the leeway, and within it.
        let old = claims(&t, Utc::now() - chrono::Duration::seconds(900 + LEEWAY_SECONDS as i64 + 5));
        assert_eq!(t.verify(&t.sign(&old).unwrap()), Err(TokenError::Expired));
        let recent = claims(&t, Utc::now() - chrono::Duration::seconds(910));
        assert!(t.verify(&t.sign(&recent).unwrap()).is_ok());

        // alg: none, with the signature left off or kept.
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&c).unwrap());
        let none = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        assert!(matches!(t.verify(&format!("{none}.{payload}.")), Err(TokenError::Invalid(_))));
        let signature = token.rsplit('.').next().unwrap();
        assert!(matches!(t.verify(&format!("{none}.{payload}.{signature}")), Err(TokenError::Invalid(_))));

        // HS512 with the right key is still another algorithm.
        let hs512 =
            jsonwebtoken::encode(&Header::new(Algorithm::HS512), &c, &EncodingKey::from_secret(&[1; 32])).unwrap();
        assert_eq!(t.verify(&hs512), Err(TokenError::Invalid("algorithm not accepted")));

        for garbage in ["", "a.b.c", "Bearer x", &token[..token.len() - 2]] {
            assert!(matches!(t.verify(garbage), Err(TokenError::Invalid(_))), "{garbage}");
        }
        assert!(!format!("{t:?}").contains("encoding: "));
    }
}
