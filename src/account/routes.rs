//! The signed-in user's account: active sessions, revoking one, signing out
//! everywhere, changing the password. JSON for programs, a page and forms for
//! browsers (forms CSRF-checked by `Body`, cross-site posts refused by the edge).

use actix_identity::IdentityExt as _;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::ops::{self, Sessions};
use super::page::{
    account_page, acted, done, factor_views, session_views, token_views, FormError, Shown,
};
use super::{confirm, factors, passkeys, tokens, welcome};
use crate::audit::{Entry, Event};
use crate::auth::service::{self, Asker, Purpose};
use crate::auth::{CurrentUser, SessionUser};
use crate::error::AppError;
use crate::sessions::{current, remember};
use crate::state::AppState;
use crate::users::NewPassword;
use crate::web::flash::Flash;
use crate::web::{self as edge, Body, BodyKind, Client, Wants};

#[derive(Deserialize)]
pub struct ChangePassword {
    #[serde(default)]
    current_password: String,
    #[serde(default)]
    new_password: String,
}

/// `GET /account`.
pub async fn show(
    req: HttpRequest,
    state: web::Data<AppState>,
    wants: Wants,
    current: CurrentUser,
) -> Result<HttpResponse, AppError> {
    if wants == Wants::Html {
        return account_page(&req, &state, &current, StatusCode::OK, Shown::default()).await;
    }
    let sessions = session_views(&req, &state, &current).await?;
    let tokens = token_views(&state, &current).await?;
    let factors = factor_views(&state, &current).await?;
    Ok(HttpResponse::Ok().json(json!({
        "user_id": current.user.id,
        "username": current.user.username,
        "sessions": sessions,
        "tokens": tokens,
        "factors": factors,
    })))
}

/// `POST /account/sessions/{id}/revoke`: signs one of the user's sessions out.
pub async fn revoke(
    req: HttpRequest,
    state: web::Data<AppState>,
    current: SessionUser,
    path: web::Path<String>,
    body: Body<serde::de::IgnoredAny>,
) -> Result<HttpResponse, AppError> {
    let public_id = path.into_inner();
    let user_id = current.user.id;
    let entry = Entry::new(Event::SessionRevoked).client(&Client::of(&req));
    let target = public_id.clone();
    let revoked = state
        .db(move |conn| {
            let which = Sessions::One(&target);
            Ok(ops::end_sessions(conn, user_id, which, entry)? > 0)
        })
        .await?;
    if !revoked {
        return Err(AppError::NotFound);
    }
    acted(&state, user_id, Event::SessionRevoked);
    if current::public_id(&req).as_deref() == Some(public_id.as_str()) {
        // This very session: its row is gone; clear the cookie too.
        if let Ok(identity) = req.get_identity() {
            identity.logout();
        }
        return done(
            body.kind,
            &state,
            "Session revoked.",
            "/login",
            Flash::LoggedOut,
        );
    }
    done(
        body.kind,
        &state,
        "Session revoked.",
        "/account",
        Flash::SessionRevoked,
    )
}

/// `POST /account/logout-everywhere`: ends every session of the user, this one included.
pub async fn logout_everywhere(
    req: HttpRequest,
    state: web::Data<AppState>,
    current: SessionUser,
    body: Body<serde::de::IgnoredAny>,
) -> Result<HttpResponse, AppError> {
    let user_id = current.user.id;
    let entry = Entry::new(Event::LogoutEverywhere).client(&Client::of(&req));
    state
        .db(move |conn| Ok(ops::end_sessions(conn, user_id, Sessions::All, entry)?))
        .await?;
    acted(&state, user_id, Event::LogoutEverywhere);
    if let Ok(identity) = req.get_identity() {
        identity.logout();
    }
    done(
        body.kind,
        &state,
        "Signed out everywhere.",
        "/login",
        Flash::SignedOutEverywhere,
    )
}

/// `POST /account/password`: checks the current password, sets the new one, ends
/// every other session and gives this one a fresh key.
pub async fn change_password(
    req: HttpRequest,
    state: web::Data<AppState>,
    current: SessionUser,
    body: Body<ChangePassword>,
) -> Result<HttpResponse, AppError> {
    let kind = body.kind;
    let client = Client::of(&req);
    match set_new_password(&req, &state, &current, body.value, &client).await {
        Ok(()) => {}
        Err(Refusal::Refused(message)) if kind == BodyKind::Form => {
            let status = StatusCode::BAD_REQUEST;
            let shown = Shown {
                error: Some(FormError::Password(&message)),
                ..Shown::default()
            };
            return account_page(&req, &state, &current, status, shown).await;
        }
        Err(Refusal::Refused(message)) => return Err(AppError::BadRequest(message)),
        Err(Refusal::Failed(err)) => return Err(err),
    }
    acted(&state, current.user.id, Event::PasswordChanged);
    // A fresh key for this session too: whoever held the old cookie is out.
    remember::renew(&req);
    done(
        kind,
        &state,
        "Password changed.",
        "/account",
        Flash::PasswordChanged,
    )
}

/// A password change the user must hear about (on the page, or as `400`), or
/// any other error, which answers as usual.
enum Refusal {
    Refused(String),
    Failed(AppError),
}

impl From<AppError> for Refusal {
    fn from(err: AppError) -> Self {
        Self::Failed(err)
    }
}

/// The steps of a password change: check the new password (before anything
/// else, so the answer tells nothing about the current one), check the
/// current one (throttled and audited like a login), hash the new one, then
/// store it and end the other sessions in one transaction.
async fn set_new_password(
    req: &HttpRequest,
    state: &AppState,
    current: &CurrentUser,
    passwords: ChangePassword,
    client: &Client,
) -> Result<(), Refusal> {
    let user = &current.user;
    let new_password = NewPassword::parse_for(
        passwords.new_password,
        &user.name(),
        state.breached.as_deref(),
    )
    .map_err(|e| Refusal::Refused(e.to_string()))?;
    let asker = Asker::of(req)?;
    let matched = service::check_password(
        state,
        &user.username,
        passwords.current_password,
        &asker,
        Purpose::PasswordChange,
    )
    .await?;
    if matched.is_none() {
        return Err(Refusal::Refused(
            "Current password is incorrect.".to_owned(),
        ));
    }
    let hash = state
        .hasher
        .hash(new_password)
        .await
        .map_err(AppError::from)?;
    let keep = current::public_id(req).unwrap_or_default();
    let entry = Entry::new(Event::PasswordChanged).client(client);
    let user_id = user.id;
    state
        .db(move |conn| {
            let which = Sessions::AllBut(&keep);
            Ok(ops::set_password(conn, user_id, &hash, which, entry)?)
        })
        .await?;
    Ok(())
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(edge::only("/account", web::get().to(show)))
        .service(edge::only(
            "/account/sessions/{id}/revoke",
            web::post().to(revoke),
        ))
        .service(edge::only(
            "/account/logout-everywhere",
            web::post().to(logout_everywhere),
        ))
        .service(edge::only(
            "/account/password",
            web::post().to(change_password),
        ))
        .configure(tokens::routes)
        .configure(factors::routes)
        .configure(passkeys::routes)
        .configure(welcome::routes)
        .configure(confirm::routes);
}
