//! Refresh tokens: 32 random bytes, sent as unpadded base64url (43 characters), stored only
//! as the SHA-256 of those bytes. A database leak therefore yields no usable token.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};

/// A fresh refresh token: what the client gets, and what the database keeps.
pub struct NewRefreshToken {
    /// The token, for the client only; never stored or logged.
    pub token: String,
    /// Its SHA-256.
    pub hash: [u8; 32],
}

impl std::fmt::Debug for NewRefreshToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NewRefreshToken(redacted)")
    }
}

/// Makes a new random token.
pub fn generate() -> NewRefreshToken {
    let mut bytes = [0u8; 32];
    rand::Rng::fill(&mut rand::rng(), &mut bytes);
    NewRefreshToken { token: URL_SAFE_NO_PAD.encode(bytes), hash: Sha256::digest(bytes).into() }
}

/// The stored hash of a presented token; `None` if it is not a token of this form at all.
pub fn hash_presented(token: &str) -> Option<[u8; 32]> {
    if token.len() != 43 {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(token).ok()?;
    let bytes: [u8; 32] = bytes.try_into().ok()?;
    Some(Sha256::digest(bytes).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_hash_back() {
        let a = generate();
        let b = generate();
        assert_ne!(a.token, b.token);
        assert_eq!(a.token.len(), 43);
        assert_eq!(hash_presented(&a.token), Some(a.hash));
        assert_ne!(a.hash, b.hash);
        for bad in ["", "short", &a.token[..42], &format!("{}=", a.token), &a.token.replace(|_| true, "+")] {
            assert_eq!(hash_presented(bad), None, "{bad}");
        }
        assert!(!format!("{a:?}").contains(&a.token));
    }
}
