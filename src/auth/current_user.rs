//! `CurrentUser`: the extractor that is `login_required`.

use actix_identity::IdentityExt as _;
use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpMessage as _, HttpRequest};
use futures_util::future::LocalBoxFuture;

use crate::error::AppError;
use crate::state::AppState;
use crate::users::{queries, User, UserId};

/// The signed-in, active user of this request; `401` otherwise. A session whose
/// user is gone or disabled is purged on the way.
#[derive(Debug)]
pub struct CurrentUser {
    pub user: User,
}

impl FromRequest for CurrentUser {
    type Error = AppError;
    type Future = LocalBoxFuture<'static, Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let identity = req.get_identity().map_err(|_| AppError::LoginRequired)?;
            let Some(id) = identity.id().ok().and_then(|id| id.parse::<UserId>().ok()) else {
                identity.logout();
                return Err(AppError::LoginRequired);
            };
            let state = AppState::of(&req)?;
            let user = match state.cache.user(id) {
                Some(user) => Some(user),
                None => {
                    let generation = state.cache.generation();
                    let user = state
                        .db(move |conn| Ok(queries::find_by_id(conn, id)?))
                        .await?;
                    if let Some(user) = &user {
                        state.cache.put_user(generation, user.clone());
                    }
                    user
                }
            };
            match user {
                Some(user) if user.is_active => {
                    // For the request log line.
                    req.extensions_mut().insert(user.id);
                    Ok(Self { user })
                }
                _ => {
                    identity.logout();
                    Err(AppError::LoginRequired)
                }
            }
        })
    }
}
