//! The request's own session: starting one at login, and which row it is.

use actix_identity::Identity;
use actix_session::SessionExt as _;
use actix_web::{HttpMessage as _, HttpRequest};

use super::remember;
use super::store::{CLIENT_IP_KEY, PUBLIC_ID_KEY, USER_AGENT_KEY};
use crate::error::AppError;
use crate::users::UserId;
use crate::web::Client;

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
    Ok(())
}

/// The public id of this request's own session.
pub fn public_id(req: &HttpRequest) -> Option<String> {
    req.get_session()
        .get::<String>(PUBLIC_ID_KEY)
        .ok()
        .flatten()
}
