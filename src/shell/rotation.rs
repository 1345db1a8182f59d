//! After a key rotation: the signed cookies of the previous key, re-signed.
//!
//! With `LATCHKEY_SECRET_KEY_PREVIOUS` set, a signed cookie of ours that the
//! current key does not verify but the previous one does — the session cookie
//! (actix-session's, signed with the cookie crate's `SignedJar`: it holds the
//! session key) or the device cookie (our own tag, `web::device`) — is
//! re-signed under the current key, in one place, a middleware just outside
//! the session middleware:
//! - in the request, by rewriting its `Cookie` header before anything reads
//!   it: the session middleware and every handler verify with the current key
//!   only, and see the cookie as if it had just been issued;
//! - in the response, by setting the re-signed cookie with the attributes its
//!   issuer gives it (a remembered session's keeps its `Max-Age`, through
//!   `remember`), unless the response sets or clears that cookie itself (a
//!   login, a logout). The cookie of a session that is over is not re-issued.
//!
//! The previous key never signs. A cookie that neither key verifies is left
//! as it is, and so ignored as before. CSRF tokens are not cookies: they
//! verify under either key in `web::csrf`, and the next form gets one of the
//! current key. The CSRF and flash cookies carry no signature (a random
//! value, a notice's code): a rotation does not touch them.

use actix_session::storage::{SessionKey, SessionStore as _};
use actix_web::body::MessageBody;
use actix_web::cookie::{Cookie, CookieJar, Key, SameSite};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderValue, COOKIE, SET_COOKIE};
use actix_web::middleware::Next;
use actix_web::web;

use crate::config::Settings;
use crate::sessions::remember::{self, is_remembered};
use crate::sessions::DbSessionStore;
use crate::web::device::DeviceCookies;

/// What the middleware needs, registered as app data.
pub struct Rotation {
    cookies: SignedCookies,
    /// Where a re-signed session cookie's session is looked up (is it live,
    /// is it remembered).
    store: DbSessionStore,
}

impl std::fmt::Debug for Rotation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rotation").finish_non_exhaustive()
    }
}

impl Rotation {
    /// `key`: the session middleware's key (`Key::from` the secret).
    pub fn new(
        key: Key,
        settings: &Settings,
        store: DbSessionStore,
        devices: DeviceCookies,
    ) -> Self {
        Self {
            cookies: SignedCookies::new(key, settings, devices),
            store,
        }
    }

    /// Sets the re-signed cookies on the response, but none that the
    /// response sets (or clears) itself, nor the cookie of a session that is over.
    async fn reissue<B>(&self, res: &mut ServiceResponse<B>, resigned: Vec<Resigned>) {
        for Resigned { cookie, session } in resigned {
            if res.response().cookies().any(|c| c.name() == cookie.name()) {
                continue;
            }
            if let Some(session_key) = session {
                match self.store.load(&session_key).await {
                    Ok(Some(state)) if is_remembered(&state) => remember::mark(res.request()),
                    Ok(Some(_)) => {}
                    Ok(None) => continue,
                    // The next request tries again.
                    Err(err) => {
                        tracing::warn!(error = %err, "cannot re-issue the session cookie");
                        continue;
                    }
                }
            }
            if let Ok(value) = HeaderValue::from_str(&cookie.encoded().to_string()) {
                res.response_mut().headers_mut().append(SET_COOKIE, value);
            }
        }
    }
}

/// Our signed cookies and the keys that sign and verify them.
struct SignedCookies {
    current: Key,
    /// Verifies only, never signs. `None`: no rotation under way.
    previous: Option<Key>,
    /// The session cookie as `startup` configures the session middleware,
    /// without its value.
    session: Cookie<'static>,
    devices: DeviceCookies,
}

/// A cookie of the request that only the previous key verified, re-signed.
struct Resigned {
    /// With the attributes its issuer gives it.
    cookie: Cookie<'static>,
    /// For the session cookie: the session key it holds.
    session: Option<SessionKey>,
}

impl SignedCookies {
    fn new(current: Key, settings: &Settings, devices: DeviceCookies) -> Self {
        let mut session = Cookie::build(settings.session_cookie_name(), "")
            .path("/")
            .http_only(true)
            .secure(settings.cookie_secure)
            .same_site(SameSite::Lax)
            .finish();
        if let Some(domain) = &settings.cookie_domain {
            session.set_domain(domain.clone());
        }
        Self {
            current,
            previous: settings
                .secret_key_previous
                .as_ref()
                .map(|previous| Key::from(previous.as_bytes())),
            session,
            devices,
        }
    }

    /// Re-signs the request's cookies of the previous key in its `Cookie`
    /// header; returns them, to be set on the response.
    fn resign_request(&self, req: &mut ServiceRequest) -> Vec<Resigned> {
        let Some(previous) = &self.previous else {
            return Vec::new();
        };
        // The header is read here, never through `req.cookies()`: the parsed
        // cookies are cached on first use, and would outlive the rewrite.
        let mut resigned = Vec::new();
        let lines: Vec<HeaderValue> = req
            .headers()
            .get_all(COOKIE)
            .map(|line| self.rewrite_line(line, previous, &mut resigned))
            .collect();
        if !resigned.is_empty() {
            let headers = req.headers_mut();
            headers.remove(COOKIE);
            for line in lines {
                headers.append(COOKIE, line);
            }
        }
        resigned
    }

    /// One `Cookie` header line, with the cookies of the previous key
    /// re-signed (pushed onto `resigned`) and the others as they were.
    fn rewrite_line(
        &self,
        line: &HeaderValue,
        previous: &Key,
        resigned: &mut Vec<Resigned>,
    ) -> HeaderValue {
        let Ok(text) = line.to_str() else {
            return line.clone();
        };
        let before = resigned.len();
        let pairs: Vec<String> = text
            .split(';')
            .map(str::trim)
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let again = Cookie::parse_encoded(pair)
                    .ok()
                    .and_then(|cookie| self.resign(cookie.into_owned(), previous));
                match again {
                    Some(again) => {
                        let pair = Cookie::new(again.cookie.name(), again.cookie.value())
                            .encoded()
                            .to_string();
                        resigned.push(again);
                        pair
                    }
                    None => pair.to_owned(),
                }
            })
            .collect();
        if resigned.len() == before {
            return line.clone();
        }
        HeaderValue::from_str(&pairs.join("; ")).unwrap_or_else(|_| line.clone())
    }

    /// `cookie` re-signed under the current key, when it is one of ours that
    /// only the previous key verifies.
    fn resign(&self, cookie: Cookie<'static>, previous: &Key) -> Option<Resigned> {
        if cookie.name() == self.devices.cookie_name() {
            return self.devices.resign(cookie.value()).map(|cookie| Resigned {
                cookie,
                session: None,
            });
        }
        if cookie.name() != self.session.name() {
            return None;
        }
        let jar = CookieJar::new();
        if jar.signed(&self.current).verify(cookie.clone()).is_some() {
            return None;
        }
        let plain = jar.signed(previous).verify(cookie)?;
        let session_key = SessionKey::try_from(plain.value().to_owned()).ok()?;
        let mut session = self.session.clone();
        session.set_value(plain.value().to_owned());
        let mut jar = CookieJar::new();
        jar.signed_mut(&self.current).add(session);
        Some(Resigned {
            cookie: jar.get(self.session.name())?.clone(),
            session: Some(session_key),
        })
    }
}

/// The middleware: see the module docs. Wrapped just outside the session
/// middleware, and inside `remember::persist_cookie` (which gives a
/// remembered session's re-issued cookie its `Max-Age`).
pub async fn resign_cookies(
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let rotation = req.app_data::<web::Data<Rotation>>().cloned();
    let resigned = match &rotation {
        Some(rotation) => rotation.cookies.resign_request(&mut req),
        None => Vec::new(),
    };
    let mut res = next.call(req).await?;
    if let Some(rotation) = rotation.filter(|_| !resigned.is_empty()) {
        rotation.reissue(&mut res, resigned).await;
    }
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    use actix_web::test::TestRequest;

    use crate::config::SecretKey;

    /// The cookies of a server whose key is `current`, `previous` before it.
    fn cookies(current: &SecretKey, previous: Option<&SecretKey>) -> SignedCookies {
        let mut settings = Settings::from_lookup(|_| None).unwrap();
        settings.secret_key_previous = previous.cloned();
        let devices = DeviceCookies::new(current, &settings);
        SignedCookies::new(Key::from(current.as_bytes()), &settings, devices)
    }

    /// The session cookie actix-session sets for `session_key` under `key`.
    fn session_cookie(name: &str, key: &SecretKey, session_key: &str) -> String {
        let mut jar = CookieJar::new();
        jar.signed_mut(&Key::from(key.as_bytes()))
            .add(Cookie::new(name.to_owned(), session_key.to_owned()));
        jar.get(name).unwrap().encoded().to_string()
    }

    #[test]
    fn only_cookies_of_the_previous_key_are_re_signed_in_the_request() {
        let (old, new, stranger) = (
            SecretKey::generate(),
            SecretKey::generate(),
            SecretKey::generate(),
        );
        let rotating = cookies(&new, Some(&old));
        let name = rotating.session.name().to_owned();
        let session_key = "k".repeat(64);
        let device = DeviceCookies::new(&old, &Settings::from_lookup(|_| None).unwrap())
            .issue(crate::users::UserId(7));
        let header = format!(
            "other=1; {}; {}={}",
            session_cookie(&name, &old, &session_key),
            device.name(),
            device.value()
        );
        let mut req = TestRequest::default()
            .insert_header((COOKIE, header.clone()))
            .to_srv_request();

        let resigned = rotating.resign_request(&mut req);

        assert_eq!(resigned.len(), 2);
        let jar_key = Key::from(new.as_bytes());
        let seen = req.cookie(&name).expect("a session cookie");
        let mut jar = CookieJar::new();
        jar.add_original(seen);
        assert_eq!(
            jar.signed(&jar_key).get(&name).unwrap().value(),
            session_key
        );
        assert_eq!(req.cookie("other").unwrap().value(), "1");
        let device_seen = req.cookie(device.name()).unwrap();
        assert_ne!(device_seen.value(), device.value());
        assert_eq!(
            resigned[0].session.as_ref().map(AsRef::as_ref),
            Some(session_key.as_str())
        );
        assert_eq!(resigned[0].cookie.http_only(), Some(true));
        assert_eq!(resigned[1].cookie.max_age(), device.max_age());

        // A cookie of the current key, or of neither, is left as it is.
        for (key, rotation) in [(&new, Some(&old)), (&stranger, Some(&old)), (&old, None)] {
            let header = session_cookie(&name, key, &session_key);
            let mut req = TestRequest::default()
                .insert_header((COOKIE, header.clone()))
                .to_srv_request();
            let resigned = cookies(&new, rotation).resign_request(&mut req);
            assert!(resigned.is_empty());
            assert_eq!(req.headers().get(COOKIE).unwrap(), header.as_str());
        }
    }
}
