//! Personal access tokens: for scripts and API clients that cannot keep a
//! cookie jar. A token is `lk_` and 256 random bits; only its SHA-256 is
//! stored. It works like a session for reading (`/protected`, `/account`,
//! forward auth), never for changing credentials.

pub mod queries;

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::NaiveDateTime;
use diesel::{Queryable, Selectable};
use sha2::{Digest as _, Sha256};

use crate::db::schema::access_tokens;
use crate::users::UserId;

/// What every token starts with (so secret scanners and people can tell).
pub const PREFIX: &str = "lk_";
/// Tokens one user may hold at once.
pub const MAX_PER_USER: i64 = 50;
/// Longest token name, in characters.
pub const NAME_MAX_CHARS: usize = 100;
/// Longest lifetime, in days.
pub const MAX_DAYS: u32 = 3650;

/// A token's secret, shown once when created. Its `Debug` hides it.
pub struct Secret(String);

impl Secret {
    /// A new token: `lk_` and 32 random bytes, base64url.
    pub fn generate() -> Self {
        Self(format!(
            "{PREFIX}{}",
            URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
        ))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// How it is stored and looked up.
    pub fn hash(&self) -> String {
        hash(&self.0)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// The stored form of a presented token.
pub fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Whether a presented token has the shape of ours (anything else is refused
/// without a database look-up).
pub fn well_formed(token: &str) -> bool {
    token.strip_prefix(PREFIX).is_some_and(|rest| {
        rest.len() == 43
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

/// A token's name: 1–100 characters, no control characters.
pub fn valid_name(name: &str) -> Result<&str, &'static str> {
    let name = name.trim();
    if name.is_empty() {
        return Err("Give the token a name.");
    }
    if name.chars().count() > NAME_MAX_CHARS || name.chars().any(char::is_control) {
        return Err("A token name is 1-100 characters without control characters.");
    }
    Ok(name)
}

/// A stored token, as its owner sees it (never the secret, never its hash).
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = access_tokens)]
pub struct TokenRow {
    pub id: i32,
    pub user_id: UserId,
    pub name: String,
    pub created_at: NaiveDateTime,
    pub last_used_at: Option<NaiveDateTime>,
    pub expires_at: NaiveDateTime,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_prefixed_long_and_hidden() {
        let secret = Secret::generate();
        assert!(well_formed(secret.expose()), "{}", secret.expose().len());
        assert_eq!(format!("{secret:?}"), "Secret(..)");
        assert_ne!(Secret::generate().expose(), secret.expose());
        for bad in [
            "",
            "lk_",
            "lk_short",
            "xx_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        ] {
            assert!(!well_formed(bad), "{bad}");
        }
    }
}
