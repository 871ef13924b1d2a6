//! Passwords: Argon2id with the crate's default parameters (19 MiB, 2 passes, 1 lane: the
//! OWASP minimum), a random 16-byte salt, stored as a PHC string
//! (`$argon2id$v=19$m=19456,t=2,p=1$…`). Verification reads the parameters from the stored
//! string, so raising them later only affects new hashes.
//!
//! A login name that does not exist still costs one verification, against a fixed dummy hash
//! made with the same parameters ([`spend_dummy_verification`]): the time an answer takes
//! does not tell whether the account exists.

use std::sync::OnceLock;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

/// The fewest characters a password may have.
pub const MIN_PASSWORD_CHARS: usize = 12;

/// The most bytes a password may have (longer input is refused before hashing).
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Why a password cannot be set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    /// Too short.
    #[error("the password must have at least {MIN_PASSWORD_CHARS} characters (it has {0})")]
    TooShort(usize),
    /// Too long.
    #[error("the password must have at most {MAX_PASSWORD_BYTES} bytes")]
    TooLong,
    /// Only spaces, or control characters.
    #[error("the password must not consist of spaces only or contain control characters")]
    Unusable,
    /// Hashing failed (should not happen).
    #[error("the password could not be hashed: {0}")]
    Hashing(String),
}

/// Checks a new password against the policy: at least [`MIN_PASSWORD_CHARS`] characters, at
/// most [`MAX_PASSWORD_BYTES`] bytes, not blank, no control characters (a newline from a
/// careless pipe, for instance).
pub fn check_policy(password: &str) -> Result<(), PasswordError> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        return Err(PasswordError::TooShort(chars));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(PasswordError::TooLong);
    }
    if password.trim().is_empty() || password.chars().any(char::is_control) {
        return Err(PasswordError::Unusable);
    }
    Ok(())
}

/// Hashes a password (after [`check_policy`]) into a PHC string.
pub fn hash_password(password: &str) -> Result<String, PasswordError> {
    check_policy(password)?;
    hash_unchecked(password)
}

fn hash_unchecked(password: &str) -> Result<String, PasswordError> {
    let mut salt = [0u8; 16];
    rand::Rng::fill(&mut rand::rng(), &mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| PasswordError::Hashing(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| PasswordError::Hashing(e.to_string()))
}

/// Whether `password` matches the stored PHC string. A stored value that does not parse is
/// logged and never matches. Takes as long as hashing (tens of milliseconds): call it off the
/// async executor.
pub fn verify_password(password: &str, stored: &str) -> bool {
    if password.len() > MAX_PASSWORD_BYTES {
        spend_dummy_verification(password);
        return false;
    }
    match PasswordHash::new(stored) {
        Ok(parsed) => Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok(),
        Err(e) => {
            tracing::error!(error = %e, "a stored password hash does not parse; the login is refused");
            false
        }
    }
}

/// Spends one verification against a dummy hash, for a login name that does not exist.
pub fn spend_dummy_verification(password: &str) {
    static DUMMY: OnceLock<String> = OnceLock::new();
    let dummy = DUMMY.get_or_init(|| hash_unchecked("tsunagi: no such account").unwrap_or_default());
    let candidate = &password.as_bytes()[..password.len().min(MAX_PASSWORD_BYTES)];
    if let Ok(parsed) = PasswordHash::new(dummy) {
        let _ = Argon2::default().verify_password(candidate, &parsed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_salted_and_verify() {
        let a = hash_password("correct horse battery").unwrap();
        let b = hash_password("correct horse battery").unwrap();
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        assert_ne!(a, b, "a fresh salt every time");
        assert!(verify_password("correct horse battery", &a));
        assert!(!verify_password("correct horse batterY", &a));
        assert!(!verify_password("correct horse battery", "not a hash"));
        spend_dummy_verification("anything at all");
    }

    #[test]
    fn the_policy_wants_twelve_characters_and_no_control_characters() {
        assert_eq!(check_policy("short"), Err(PasswordError::TooShort(5)));
        // Characters, not bytes: twelve kana are enough.
        assert!(check_policy("あいうえおかきくけこさし").is_ok());
        assert_eq!(check_policy("            "), Err(PasswordError::Unusable));
        assert_eq!(check_policy("twelve chars\n"), Err(PasswordError::Unusable));
        assert_eq!(check_policy(&"x".repeat(MAX_PASSWORD_BYTES + 1)), Err(PasswordError::TooLong));
        assert!(hash_password("short").is_err());
    }
}
