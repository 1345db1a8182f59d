//! `CurrentUser`: the extractor that is `login_required`.

use actix_identity::IdentityExt as _;
use actix_session::SessionExt as _;
use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpMessage as _, HttpRequest};
use std::future::{ready, Ready};

use crate::error::AppError;
use crate::sessions::store::PRINCIPAL_KEY;
use crate::users::{Principal, UserId};

/// The signed-in, active user of this request; `401` otherwise. A session whose
/// user is gone or disabled is purged on the way.
///
/// The user comes with the session (the store reads both in one query, or one
/// cache entry): no second trip to the database.
#[derive(Debug)]
pub struct CurrentUser {
    pub user: Principal,
}

impl FromRequest for CurrentUser {
    type Error = AppError;
    type Future = Ready<Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(current_user(req))
    }
}

fn current_user(req: &HttpRequest) -> Result<CurrentUser, AppError> {
    let identity = req.get_identity().map_err(|_| AppError::LoginRequired)?;
    let id = identity.id().ok().and_then(|id| id.parse::<UserId>().ok());
    let principal = req
        .get_session()
        .get::<Principal>(PRINCIPAL_KEY)
        .ok()
        .flatten();
    match principal {
        Some(user) if user.is_active && Some(user.id) == id => {
            // For the request log line.
            req.extensions_mut().insert(user.id);
            Ok(CurrentUser { user })
        }
        _ => {
            identity.logout();
            Err(AppError::LoginRequired)
        }
    }
}
