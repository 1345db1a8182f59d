//! The user's personal access tokens: listed (JSON, and on the account page),
//! created (identity confirmed; the secret shown once), revoked (in force on
//! every instance before the answer). Never with a token itself.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::ops;
use super::page::{account_page, acted, done, token_views, FormError, Shown, TokenView};
use crate::audit::{Entry, Event};
use crate::auth::{CurrentUser, SessionUser};
use crate::error::AppError;
use crate::sessions::current;
use crate::state::AppState;
use crate::tokens;
use crate::web::flash::Flash;
use crate::web::{self as edge, Body, BodyKind, Client, Wants};

/// Lifetime of a token when none is asked for.
const DEFAULT_DAYS: u32 = 90;

/// `GET /account/tokens` (a token may read this too).
pub async fn list(
    state: web::Data<AppState>,
    wants: Wants,
    current: CurrentUser,
) -> Result<HttpResponse, AppError> {
    if wants == Wants::Html {
        return Ok(edge::see_other("/account#tokens"));
    }
    let tokens = token_views(&state, &current).await?;
    Ok(HttpResponse::Ok().json(json!({ "tokens": tokens })))
}

#[derive(Deserialize)]
pub struct NewToken {
    #[serde(default)]
    name: String,
    /// A number in JSON; text from a form.
    #[serde(default)]
    expires_in_days: Option<serde_json::Value>,
}

fn days(value: Option<&serde_json::Value>) -> Result<u32, String> {
    let days = match value {
        None | Some(serde_json::Value::Null) => return Ok(DEFAULT_DAYS),
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        Some(serde_json::Value::String(s)) if s.trim().is_empty() => return Ok(DEFAULT_DAYS),
        Some(serde_json::Value::String(s)) => s.trim().parse::<u64>().ok(),
        Some(_) => None,
    };
    days.and_then(|d| u32::try_from(d).ok())
        .filter(|d| (1..=tokens::MAX_DAYS).contains(d))
        .ok_or_else(|| {
            format!(
                "expires_in_days is a whole number from 1 to {}.",
                tokens::MAX_DAYS
            )
        })
}

/// `POST /account/tokens`: `201 {"id", "name", "token", "expires_at"}`; the
/// page shows the token once.
pub async fn create(
    req: HttpRequest,
    state: web::Data<AppState>,
    current: SessionUser,
    body: Body<NewToken>,
) -> Result<HttpResponse, AppError> {
    current::require_recent(&req, state.settings.reauth_window)?;
    // Copies and references, for the future `refuse` makes to own.
    let (kind, req, state, current) = (body.kind, &req, &state, &current);
    // `about_name`: the error is about the name field, not the whole request.
    let refuse = move |message: String, about_name: bool| async move {
        if kind == BodyKind::Form {
            let error = if about_name {
                FormError::TokenName(&message)
            } else {
                FormError::Token(&message)
            };
            let shown = Shown {
                error: Some(error),
                ..Shown::default()
            };
            account_page(req, state, current, StatusCode::BAD_REQUEST, shown).await
        } else {
            Err(AppError::BadRequest(message))
        }
    };
    let name = match tokens::valid_name(&body.value.name) {
        Ok(name) => name.to_owned(),
        Err(message) => return refuse(message.to_owned(), true).await,
    };
    let days = match days(body.value.expires_in_days.as_ref()) {
        Ok(days) => days,
        Err(message) => return refuse(message, false).await,
    };
    let user_id = current.user.id;
    let entry = Entry::new(Event::TokenCreated).client(&Client::of(req));
    let created = state
        .db(move |conn| Ok(ops::create_token(conn, user_id, &name, days, entry)?))
        .await?;
    let Some((row, secret)) = created else {
        return refuse(
            format!(
                "You hold {} tokens already: revoke one first.",
                tokens::MAX_PER_USER
            ),
            false,
        )
        .await;
    };
    state.metrics.event(Event::TokenCreated);
    if body.kind == BodyKind::Form {
        let shown = Shown {
            new_token: Some(secret.expose()),
            ..Shown::default()
        };
        return account_page(req, state, current, StatusCode::CREATED, shown).await;
    }
    let view = TokenView::from(&row);
    Ok(HttpResponse::Created().json(json!({
        "id": view.id,
        "name": view.name,
        "token": secret.expose(),
        "expires_at": view.expires_at,
    })))
}

/// `POST /account/tokens/{id}/revoke`.
pub async fn revoke(
    req: HttpRequest,
    state: web::Data<AppState>,
    current: SessionUser,
    path: web::Path<String>,
    body: Body<serde::de::IgnoredAny>,
) -> Result<HttpResponse, AppError> {
    let id: i32 = path.parse().map_err(|_| AppError::NotFound)?;
    let user_id = current.user.id;
    let entry = Entry::new(Event::TokenRevoked).client(&Client::of(&req));
    let revoked = state
        .db(move |conn| Ok(ops::revoke_token(conn, user_id, id, entry)?))
        .await?;
    if !revoked {
        return Err(AppError::NotFound);
    }
    acted(&state, user_id, Event::TokenRevoked);
    done(
        body.kind,
        &state,
        "Token revoked.",
        "/account#tokens",
        Flash::TokenRevoked,
    )
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/account/tokens")
            .route(web::get().to(list))
            .route(web::post().to(create))
            .default_service(web::to(edge::method_not_allowed)),
    )
    .service(edge::only(
        "/account/tokens/{id}/revoke",
        web::post().to(revoke),
    ));
}
