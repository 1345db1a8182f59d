//! CSRF protection without server state: a signed double-submit token.
//!
//! A random value lives in an `HttpOnly` cookie (`__Host-` prefixed when
//! `Secure`); forms carry `HMAC-SHA256(secret, value)`. Another site can neither
//! read the cookie nor compute the token, and an anonymous visitor costs no
//! database row. Every form post is checked by the `Body` extractor.
//!
//! After a key rotation, a token made with `LATCHKEY_SECRET_KEY_PREVIOUS` (a
//! form rendered before it) still verifies; new tokens are always made with
//! the current key.

use actix_web::cookie::{Cookie, SameSite};
use actix_web::HttpRequest;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac as _};
use sha2::Sha256;

use crate::config::{SecretKey, Settings};

type HmacSha256 = Hmac<Sha256>;

/// Random bytes in the cookie.
const VALUE_BYTES: usize = 32;

#[derive(Clone)]
pub struct Csrf {
    key: Vec<u8>,
    /// Verifies only, never signs.
    previous_key: Option<Vec<u8>>,
    cookie_name: String,
    secure: bool,
}

impl std::fmt::Debug for Csrf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Csrf").finish_non_exhaustive()
    }
}

impl Csrf {
    pub fn new(secret: &SecretKey, settings: &Settings) -> Self {
        Self {
            key: secret.as_bytes().to_vec(),
            previous_key: settings
                .secret_key_previous
                .as_ref()
                .map(|key| key.as_bytes().to_vec()),
            cookie_name: settings.cookie_name("latchkey_csrf"),
            secure: settings.cookie_secure,
        }
    }

    pub fn cookie_name(&self) -> &str {
        &self.cookie_name
    }

    fn mac(&self, value: &str) -> HmacSha256 {
        mac_with(&self.key, value)
    }

    /// The request's cookie value, if it is one we could have issued.
    fn cookie_value(&self, req: &HttpRequest) -> Option<String> {
        let cookie = req.cookie(self.cookie_name())?;
        let value = cookie.value();
        let well_formed = URL_SAFE_NO_PAD
            .decode(value)
            .is_ok_and(|bytes| bytes.len() == VALUE_BYTES);
        well_formed.then(|| value.to_owned())
    }

    /// The token for this request's forms, and the cookie to set when it had none.
    pub fn token(&self, req: &HttpRequest) -> (String, Option<Cookie<'static>>) {
        if let Some(value) = self.cookie_value(req) {
            return (self.token_for(&value), None);
        }
        let (value, token) = self.issue();
        let cookie = Cookie::build(self.cookie_name.clone(), value)
            .path("/")
            .http_only(true)
            .secure(self.secure)
            .same_site(SameSite::Lax)
            .finish();
        (token, Some(cookie))
    }

    fn token_for(&self, value: &str) -> String {
        URL_SAFE_NO_PAD.encode(self.mac(value).finalize().into_bytes())
    }

    /// Whether `token` was made for this request's cookie (constant-time).
    pub fn verify(&self, req: &HttpRequest, token: Option<&str>) -> bool {
        match (self.cookie_value(req), token) {
            (Some(value), Some(token)) => self.token_matches(&value, token),
            _ => false,
        }
    }

    /// Whether `token` is the one for the cookie value `value`, under the
    /// current key or the previous one (constant-time).
    pub fn token_matches(&self, value: &str, token: &str) -> bool {
        let Ok(tag) = URL_SAFE_NO_PAD.decode(token.trim()) else {
            return false;
        };
        std::iter::once(&self.key)
            .chain(&self.previous_key)
            .any(|key| mac_with(key, value).verify_slice(&tag).is_ok())
    }

    /// A fresh cookie value and its token.
    pub fn issue(&self) -> (String, String) {
        let value = URL_SAFE_NO_PAD.encode(rand::random::<[u8; VALUE_BYTES]>());
        let token = self.token_for(&value);
        (value, token)
    }
}

fn mac_with(key: &[u8], value: &str) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(b"latchkey csrf v1:");
    mac.update(value.as_bytes());
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_matches_only_its_own_cookie_and_key() {
        let settings = Settings::from_lookup(|_| None).unwrap();
        let csrf = Csrf::new(&SecretKey::generate(), &settings);
        let other = Csrf::new(&SecretKey::generate(), &settings);
        let (value, token) = csrf.issue();
        let (other_value, _) = csrf.issue();

        assert!(csrf.token_matches(&value, &token));
        assert!(!csrf.token_matches(&other_value, &token));
        assert!(!other.token_matches(&value, &token));
        assert!(!csrf.token_matches(&value, ""));
        assert!(!csrf.token_matches(&value, &token[1..]));
    }

    #[test]
    fn after_a_rotation_a_token_of_the_previous_key_still_verifies() {
        let old_key = SecretKey::generate();
        let mut settings = Settings::from_lookup(|_| None).unwrap();
        let before = Csrf::new(&old_key, &settings);
        let (value, old_token) = before.issue();
        settings.secret_key_previous = Some(old_key);

        let after = Csrf::new(&SecretKey::generate(), &settings);

        assert!(after.token_matches(&value, &old_token));
        let new_token = after.token_for(&value);
        assert_ne!(new_token, old_token, "new tokens use the new key");
        assert!(!before.token_matches(&value, &new_token));
        let unrelated = Csrf::new(
            &SecretKey::generate(),
            &Settings::from_lookup(|_| None).unwrap(),
        );
        assert!(!unrelated.token_matches(&value, &old_token));
    }
}
