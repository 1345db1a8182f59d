//! `Authorization: Bearer lk_...`: a personal access token as the credential
//! of a request, on the same hot path as a session (cached under the same
//! lease, so a revoked token is refused everywhere before the revocation is
//! answered).

use actix_web::http::header;
use actix_web::HttpRequest;
use chrono::NaiveDateTime;

use super::service;
use crate::db;
use crate::error::AppError;
use crate::sessions::cache::CachedToken;
use crate::state::AppState;
use crate::tokens::{self, queries};
use crate::users::Principal;
use crate::web::Client;

/// A use is written at once the first time, then at most this often.
const TOUCH_EVERY: chrono::TimeDelta = chrono::TimeDelta::minutes(1);

pub const INVALID_TOKEN: &str = "Invalid or expired access token.";

/// The bearer token a request presents, if it presents one.
pub fn presented(req: &HttpRequest) -> Option<String> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

fn due(last_used_at: Option<NaiveDateTime>, now: NaiveDateTime) -> bool {
    last_used_at.is_none_or(|at| now - at >= TOUCH_EVERY)
}

/// The active user a token belongs to; a bad, revoked or expired token is a
/// `401` that counts toward the client's throttle (`429` past it).
pub async fn authenticate(
    state: &AppState,
    req: &HttpRequest,
    token: &str,
) -> Result<Principal, AppError> {
    let found = if tokens::well_formed(token) {
        look_up(state, tokens::hash(token)).await?
    } else {
        None
    };
    match found {
        Some(principal) if principal.is_active => Ok(principal),
        _ => {
            service::bad_token(state, &Client::of(req)).await?;
            Err(AppError::Unauthorized(INVALID_TOKEN))
        }
    }
}

/// From the cache, or the database (one query, plus the use when due).
async fn look_up(state: &AppState, token_hash: String) -> Result<Option<Principal>, AppError> {
    let now = db::now();
    if let Some(hit) = state.cache.token(&token_hash) {
        if hit.expires_at <= now {
            return Ok(None);
        }
        if due(hit.last_used_at, now) {
            let id = hit.token_id;
            state
                .db(move |conn| Ok(queries::touch(conn, id, now)?))
                .await?;
            state.cache.token_used(&token_hash, now);
        }
        return Ok(Some(hit.principal));
    }
    let generation = state.cache.generation();
    let lookup = token_hash.clone();
    let found = state
        .db(move |conn| {
            let found = queries::find_live_with_user(conn, &lookup, now)?;
            if let Some((row, _)) = &found {
                if due(row.last_used_at, now) {
                    queries::touch(conn, row.id, now)?;
                }
            }
            Ok(found)
        })
        .await?;
    Ok(found.map(|(row, user)| {
        let principal = Principal::from(&user);
        let last_used = if due(row.last_used_at, now) {
            Some(now)
        } else {
            row.last_used_at
        };
        let cached = CachedToken::new(principal.clone(), row.id, row.expires_at, last_used);
        state.cache.put_token(generation, token_hash, cached);
        principal
    }))
}
