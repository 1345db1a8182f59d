//! The device cookie (OWASP's defence against account lockout): a signed
//! cookie, issued at a successful login, naming the user who logged in on this
//! browser. Its holder is exempt from the per-account failure ceiling and has a
//! failure limit of its own, so an attacker guessing from elsewhere cannot lock
//! the real user out. Kept at logout; it grants nothing by itself.
//!
//! After a key rotation, a cookie tagged with `LATCHKEY_SECRET_KEY_PREVIOUS`
//! is re-tagged with the current key ([`DeviceCookies::resign`], called by
//! `shell::rotation` before anything reads the cookie); only the current key
//! ever tags.

use actix_web::cookie::{time::Duration, Cookie, SameSite};
use actix_web::HttpRequest;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac as _};
use sha2::Sha256;

use crate::config::{SecretKey, Settings};
use crate::users::UserId;

const COOKIE: &str = "latchkey_device";
const VERSION: &str = "v1";
/// How long a browser is remembered as the user's device.
const LIFETIME_DAYS: i64 = 365;

/// A device cookie that this server issued: which user, which device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub user_id: UserId,
    /// Random, names the device in the throttle's records.
    pub id: String,
}

#[derive(Clone)]
pub struct DeviceCookies {
    key: Vec<u8>,
    /// Verifies only, never tags.
    previous_key: Option<Vec<u8>>,
    name: String,
    secure: bool,
}

impl std::fmt::Debug for DeviceCookies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceCookies").finish_non_exhaustive()
    }
}

impl DeviceCookies {
    pub fn new(secret: &SecretKey, settings: &Settings) -> Self {
        Self {
            key: secret.as_bytes().to_vec(),
            previous_key: settings
                .secret_key_previous
                .as_ref()
                .map(|key| key.as_bytes().to_vec()),
            name: settings.cookie_name(COOKIE),
            secure: settings.cookie_secure,
        }
    }

    pub fn cookie_name(&self) -> &str {
        &self.name
    }

    /// The cookie for `user_id` on this browser (a new device id each login).
    pub fn issue(&self, user_id: UserId) -> Cookie<'static> {
        let id = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>());
        self.signed(&format!("{VERSION}.{user_id}.{id}"))
    }

    /// After a key rotation: the cookie `value` re-tagged with the current
    /// key, when the previous key tagged it (and the current one did not).
    pub fn resign(&self, value: &str) -> Option<Cookie<'static>> {
        let previous = self.previous_key.as_ref()?;
        if verified_payload(&self.key, value).is_some() {
            return None;
        }
        verified_payload(previous, value).map(|payload| self.signed(payload))
    }

    /// The cookie carrying `payload`, tagged with the current key.
    fn signed(&self, payload: &str) -> Cookie<'static> {
        let tag = URL_SAFE_NO_PAD.encode(tag(&self.key, payload).finalize().into_bytes());
        Cookie::build(self.name.clone(), format!("{payload}.{tag}"))
            .path("/")
            .http_only(true)
            .secure(self.secure)
            .same_site(SameSite::Lax)
            .max_age(Duration::days(LIFETIME_DAYS))
            .finish()
    }

    /// The request's device cookie, if it carries one this server signed
    /// with the current key (one of the previous key has been re-signed by
    /// then, see [`DeviceCookies::resign`]).
    pub fn read(&self, req: &HttpRequest) -> Option<Device> {
        self.parse(req.cookie(&self.name)?.value())
    }

    fn parse(&self, value: &str) -> Option<Device> {
        let payload = verified_payload(&self.key, value)?;
        let mut parts = payload.split('.');
        let (Some(VERSION), Some(user), Some(id), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        Some(Device {
            user_id: user.parse().ok()?,
            id: id.to_owned(),
        })
    }
}

fn tag(key: &[u8], payload: &str) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(b"latchkey device ");
    mac.update(payload.as_bytes());
    mac
}

/// The payload of `value` (`PAYLOAD.TAG`), when `key` tagged it.
fn verified_payload<'v>(key: &[u8], value: &'v str) -> Option<&'v str> {
    let (payload, given) = value.rsplit_once('.')?;
    let given = URL_SAFE_NO_PAD.decode(given).ok()?;
    tag(key, payload).verify_slice(&given).ok()?;
    Some(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_cookie_signed_here_names_a_device() {
        let settings = Settings::from_lookup(|_| None).unwrap();
        let devices = DeviceCookies::new(&SecretKey::generate(), &settings);
        let other = DeviceCookies::new(&SecretKey::generate(), &settings);
        let cookie = devices.issue(UserId(7));

        let device = devices.parse(cookie.value()).expect("valid");
        assert_eq!(device.user_id, UserId(7));
        assert_eq!(other.parse(cookie.value()), None, "another key");
        let forged = cookie.value().replacen(".7.", ".8.", 1);
        assert_eq!(devices.parse(&forged), None, "another user");
        for junk in ["", ".", "v1.7.x", "v1.7.x.y.z", "v2.7.x.AAAA"] {
            assert_eq!(devices.parse(junk), None, "{junk:?}");
        }
        assert_eq!(cookie.max_age(), Some(Duration::days(365)));
        assert_eq!(cookie.http_only(), Some(true));
    }

    #[test]
    fn after_a_rotation_only_a_cookie_of_the_previous_key_is_re_signed() {
        let old_key = SecretKey::generate();
        let mut settings = Settings::from_lookup(|_| None).unwrap();
        let before = DeviceCookies::new(&old_key, &settings);
        let old = before.issue(UserId(7));
        settings.secret_key_previous = Some(old_key);
        let after = DeviceCookies::new(&SecretKey::generate(), &settings);

        assert_eq!(
            after.parse(old.value()),
            None,
            "read with the current key only"
        );
        let resigned = after.resign(old.value()).expect("re-signed");
        assert_eq!(after.parse(resigned.value()), before.parse(old.value()));
        assert_eq!(
            before.parse(resigned.value()),
            None,
            "the previous key never signs"
        );
        assert_eq!(after.resign(resigned.value()), None, "already current");
        let stranger = DeviceCookies::new(&SecretKey::generate(), &settings).issue(UserId(7));
        assert_eq!(after.resign(stranger.value()), None, "neither key");
        assert_eq!(
            (resigned.name(), resigned.max_age(), resigned.http_only()),
            (old.name(), old.max_age(), old.http_only())
        );
    }
}
