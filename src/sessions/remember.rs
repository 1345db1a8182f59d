//! "Remember me", owned here: the session-state key that marks a remembered
//! session, the request marker, and the cookie's lifetime.
//!
//! - [`remember`] (at login) marks the session state and the request;
//!   [`forget`] (a login without "remember me") unmarks both; [`renew`] gives
//!   a session a fresh key and keeps its mark.
//! - The store reads the mark ([`is_remembered`]) to give the row the
//!   remember-me lifetime instead of the idle and absolute limits.
//! - [`mark`] marks only the request, for a remembered session whose cookie
//!   is set by someone else (re-signed after a key rotation, `shell::rotation`).
//! - [`mark_from_state`], a middleware just inside the session middleware,
//!   marks the request whenever the session's final state is remembered: any
//!   change to the state makes actix-session set the cookie again (without a
//!   `Max-Age`), and the state is gone by the time the response leaves it.
//! - [`persist_cookie`], a middleware just outside the session middleware,
//!   gives the session cookie of a marked request a `Max-Age`: actix-session's
//!   cookie lifecycle is global, so a per-session lifetime is set here, on the
//!   one cookie it concerns, through actix's cookie API.

use std::collections::HashMap;
use std::time::Duration;

use actix_session::{Session, SessionExt as _};
use actix_web::body::MessageBody;
use actix_web::cookie::time::Duration as CookieDuration;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage as _, HttpRequest};

use crate::error::AppError;

/// `true` in the session state when the user asked to be remembered.
const STATE_KEY: &str = "latchkey.remember";

/// Marks a request whose new session cookie must persist.
#[derive(Debug, Clone, Copy)]
struct Remembered;

/// The cookie the marked responses persist, and for how long.
#[derive(Debug, Clone)]
pub struct RememberCookie {
    pub name: String,
    pub lifetime: Duration,
}

/// Marks this request's (new) session as remembered.
pub fn remember(req: &HttpRequest) -> Result<(), AppError> {
    req.get_session()
        .insert(STATE_KEY, true)
        .map_err(AppError::internal)?;
    mark(req);
    Ok(())
}

/// Unmarks this request's session and the request: a login without
/// "remember me" gives a session that is not remembered, whatever this
/// browser's session was before.
pub fn forget(req: &HttpRequest) {
    req.get_session().remove(STATE_KEY);
    req.extensions_mut().remove::<Remembered>();
}

/// Marks this request: the session cookie its response sets is given the
/// remember-me `Max-Age` (call it for a remembered session only).
pub fn mark(req: &HttpRequest) {
    req.extensions_mut().insert(Remembered);
}

/// Gives the session a fresh key (whoever held the old cookie is out); a
/// remembered session stays remembered.
pub fn renew(req: &HttpRequest) {
    let session: Session = req.get_session();
    let remembered = session.get::<bool>(STATE_KEY).ok().flatten() == Some(true);
    session.renew();
    if remembered {
        mark(req);
    }
}

/// Whether a session state says "remember me".
pub fn is_remembered(state: &HashMap<String, String>) -> bool {
    state
        .get(STATE_KEY)
        .and_then(|v| serde_json::from_str::<bool>(v).ok())
        .unwrap_or(false)
}

/// Marks the request when its session, as the handlers left it, is
/// remembered: whatever cookie the session middleware then sets for it gets
/// the remember-me `Max-Age` from [`persist_cookie`]. Wrapped just inside
/// the session middleware, which takes the state away as it saves it.
pub async fn mark_from_state(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let res = next.call(req).await?;
    let remembered = res
        .request()
        .get_session()
        .get::<bool>(STATE_KEY)
        .ok()
        .flatten()
        == Some(true);
    if remembered {
        mark(res.request());
    }
    Ok(res)
}

/// Gives a marked request's new session cookie the remember-me `Max-Age`.
pub async fn persist_cookie(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let config = req.app_data::<web::Data<RememberCookie>>().cloned();
    let mut res = next.call(req).await?;
    let marked = res.request().extensions().get::<Remembered>().is_some();
    let Some(config) = config.filter(|_| marked) else {
        return Ok(res);
    };
    let cookie = res
        .response()
        .cookies()
        .find(|c| c.name() == config.name && !c.value().is_empty());
    if let Some(mut cookie) = cookie.map(|c| c.into_owned()) {
        let secs = i64::try_from(config.lifetime.as_secs()).unwrap_or(i64::MAX);
        cookie.set_max_age(CookieDuration::seconds(secs));
        let response = res.response_mut();
        response.del_cookie(&config.name);
        response.add_cookie(&cookie)?;
    }
    Ok(res)
}
