//! The request's own session: starting one at login, and which row it is.

use actix_identity::Identity;
use actix_session::SessionExt as _;
use actix_web::{HttpMessage as _, HttpRequest};

use super::remember;
use super::store::{CLIENT_IP_KEY, PUBLIC_ID_KEY, USER_AGENT_KEY};
use crate::error::AppError;
use crate::users::UserId;
use crate::web::{identify, Client};

/// Starts a session for a user who has just proved who they are. The key is
/// renewed (the old row deleted: no session fixation); the client's address
/// and user agent go into the state, which the store mirrors into the row's
/// columns when it saves it.
pub fn begin(
    req: &HttpRequest,
    user_id: UserId,
    client: &Client,
    remembered: bool,
) -> Result<(), AppError> {
    Identity::login(&req.extensions(), user_id.to_string()).map_err(AppError::internal)?;
    identify(req, user_id);
    let session = req.get_session();
    for (key, value) in [
        (CLIENT_IP_KEY, &client.ip),
        (USER_AGENT_KEY, &client.user_agent),
    ] {
        if let Some(value) = value {
            session.insert(key, value).map_err(AppError::internal)?;
        }
    }
    if remembered {
        remember::remember(req)?;
    }
    confirmed(req)
}

/// When this session's user last proved who they are (unix seconds).
const AUTHENTICATED_AT_KEY: &str = "latchkey.authenticated_at";

fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The user has just proved who they are (a login, or a confirmation).
pub fn confirmed(req: &HttpRequest) -> Result<(), AppError> {
    req.get_session()
        .insert(AUTHENTICATED_AT_KEY, unix_now())
        .map_err(AppError::internal)
}

/// `Ok` when the user proved who they are within `window` (sensitive
/// changes: new tokens, factors); `403` asking for a confirmation otherwise.
pub fn require_recent(req: &HttpRequest, window: std::time::Duration) -> Result<(), AppError> {
    let at = req
        .get_session()
        .get::<i64>(AUTHENTICATED_AT_KEY)
        .ok()
        .flatten();
    let window = i64::try_from(window.as_secs()).unwrap_or(i64::MAX);
    match at {
        Some(at) if unix_now().saturating_sub(at) <= window => Ok(()),
        _ => Err(AppError::ReauthRequired),
    }
}

/// The public id of this request's own session.
pub fn public_id(req: &HttpRequest) -> Option<String> {
    req.get_session()
        .get::<String>(PUBLIC_ID_KEY)
        .ok()
        .flatten()
}
