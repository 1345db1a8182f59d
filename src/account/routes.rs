//! The signed-in user's account: active sessions, revoking one, signing out
//! everywhere, changing the password. JSON for programs, a page and forms for
//! browsers (forms CSRF-checked by `Body`, cross-site posts refused by the edge).

use actix_identity::IdentityExt as _;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::confirm;
use super::device_name::{device_name, UNKNOWN};
use super::factors::{self, FactorView};
use super::ops::{self, Sessions};
use super::tokens::{self, TokenView};
use crate::audit::{Entry, Event};
use crate::auth::service::{self, Asker, Purpose};
use crate::auth::{CurrentUser, SessionUser};
use crate::db;
use crate::error::AppError;
use crate::sessions::{current, queries as session_queries, remember, store};
use crate::state::AppState;
use crate::users::{NewPassword, UserId};
use crate::web::flash::{self, Flash};
use crate::web::pages::{PageContext, STYLE_HREF};
use crate::web::{self as edge, Body, BodyKind, Client, Wants};

/// One session as its owner sees it.
#[derive(Debug, Serialize)]
pub struct SessionView {
    pub id: String,
    pub created_at: String,
    pub last_seen_at: String,
    pub expires_at: String,
    pub client_ip: String,
    pub user_agent: String,
    /// What the user agent says in words: "Firefox on Linux".
    pub device: String,
    pub current: bool,
    pub remembered: bool,
}

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage<'a> {
    style: &'a str,
    username: &'a str,
    sessions: &'a [SessionView],
    tokens: &'a [TokenView],
    factors: &'a [FactorView],
    totp_secret: Option<&'a str>,
    recovery_codes: Option<&'a [String]>,
    csrf_token: &'a str,
    notice: Option<&'a str>,
    error: Option<&'a str>,
    new_token: Option<&'a str>,
}

/// What the account page shows beyond the account: an error from the last
/// form, or a token just created (shown this once).
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Shown<'a> {
    pub error: Option<&'a str>,
    pub new_token: Option<&'a str>,
    /// A TOTP enrolment under way: its secret, beside the QR code.
    pub totp_secret: Option<&'a str>,
    /// Recovery codes just made (shown this once).
    pub recovery_codes: Option<&'a [String]>,
}

#[derive(Deserialize)]
pub struct ChangePassword {
    #[serde(default)]
    current_password: String,
    #[serde(default)]
    new_password: String,
}

async fn session_views(
    req: &HttpRequest,
    state: &AppState,
    current: &CurrentUser,
) -> Result<Vec<SessionView>, AppError> {
    let user_id = current.user.id;
    let rows = state
        .db(move |conn| Ok(session_queries::list_for_user(conn, user_id, db::now())?))
        .await?;
    let current_id = current::public_id(req);
    let time = |t: chrono::NaiveDateTime| t.format("%Y-%m-%d %H:%M").to_string();
    Ok(rows
        .iter()
        .map(|row| SessionView {
            current: current_id.as_deref() == Some(row.public_id.as_str()),
            remembered: store::row_is_remembered(row),
            id: row.public_id.clone(),
            created_at: time(row.created_at),
            last_seen_at: time(row.last_seen_at),
            expires_at: time(row.expires_at),
            client_ip: row
                .client_ip
                .clone()
                .unwrap_or_else(|| "an unknown address".into()),
            user_agent: row.user_agent.clone().unwrap_or_else(|| UNKNOWN.into()),
            device: row
                .user_agent
                .as_deref()
                .map_or_else(|| UNKNOWN.into(), device_name),
        })
        .collect())
}

pub(super) async fn account_page(
    req: &HttpRequest,
    state: &AppState,
    current: &CurrentUser,
    status: StatusCode,
    shown: Shown<'_>,
) -> Result<HttpResponse, AppError> {
    let sessions = session_views(req, state, current).await?;
    let tokens = tokens::views(state, current).await?;
    let factors = factors::views(state, current).await?;
    let context = PageContext::new(req)?;
    context.render(
        status,
        &AccountPage {
            style: &STYLE_HREF,
            username: &current.user.username,
            sessions: &sessions,
            tokens: &tokens,
            factors: &factors,
            totp_secret: shown.totp_secret,
            recovery_codes: shown.recovery_codes,
            csrf_token: &context.csrf_token,
            notice: context.notice,
            error: shown.error,
            new_token: shown.new_token,
        },
    )
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
    let tokens = tokens::views(&state, &current).await?;
    let factors = factors::views(&state, &current).await?;
    Ok(HttpResponse::Ok().json(json!({
        "user_id": current.user.id,
        "username": current.user.username,
        "sessions": sessions,
        "tokens": tokens,
        "factors": factors,
    })))
}

/// After an account action: count it, and forget the user's cached sessions
/// here at once (other instances hear of it through the session events).
pub(super) fn acted(state: &AppState, user_id: UserId, event: Event) {
    state.metrics.event(event);
    state.cache.forget_user(user_id);
}

/// The answer to a successful account action: a message for programs, or
/// `303` to `location` with a one-time notice for browsers.
pub(super) fn done(
    kind: BodyKind,
    state: &AppState,
    message: &str,
    location: &str,
    flash: Flash,
) -> Result<HttpResponse, AppError> {
    if kind == BodyKind::Form {
        let mut response = edge::see_other(location);
        response
            .add_cookie(&flash::set(flash, &state.settings))
            .map_err(AppError::internal)?;
        return Ok(response);
    }
    Ok(HttpResponse::Ok().json(json!({ "message": message })))
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
                error: Some(&message),
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
        .configure(super::welcome::routes)
        .configure(confirm::routes);
}
