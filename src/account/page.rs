//! The account page and what the account's routes share: the views of
//! sessions and tokens, the page itself, and how an action answers.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use askama::Template;
use serde::Serialize;
use serde_json::json;

use super::device_name::{device_name, UNKNOWN};
use crate::audit::{Entry, Event};
use crate::auth::CurrentUser;
use crate::db;
use crate::error::AppError;
use crate::factors::queries::{self as factor_queries, FactorRow};
use crate::sessions::{current, queries as session_queries, store};
use crate::state::AppState;
use crate::tokens::{queries as token_queries, TokenRow};
use crate::users::UserId;
use crate::web::flash::{self, Flash};
use crate::web::pages::{PageContext, STYLE_HREF};
use crate::web::{self as edge, BodyKind, Client};

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
    password_error: Option<&'a str>,
    token_error: Option<&'a str>,
    token_name_invalid: bool,
    totp_error: Option<&'a str>,
    factor_error: Option<&'a str>,
    new_token: Option<&'a str>,
    /// Offer "Add a passkey" (passkeys are on).
    passkeys: bool,
    /// A login that must set up a second factor first: the page shows only that.
    enrolling: bool,
}

/// An error from one of the account page's forms: shown beside that form
/// and tied to the field it is about, never to another form's fields.
#[derive(Debug, Clone, Copy)]
pub enum FormError<'a> {
    /// The password change.
    Password(&'a str),
    /// A new token's name.
    TokenName(&'a str),
    /// A new token, not about its name (a lifetime out of range, too many tokens).
    Token(&'a str),
    /// The code that confirms an authenticator app.
    TotpCode(&'a str),
    /// Anything else about the factors (a passkey refused, the last factor kept).
    Factor(&'a str),
}

/// What the account page shows beyond the account: an error from the last
/// form, or a token just created (shown this once).
#[derive(Debug, Default, Clone, Copy)]
pub struct Shown<'a> {
    pub error: Option<FormError<'a>>,
    pub new_token: Option<&'a str>,
    /// A TOTP enrolment under way: its secret, beside the QR code.
    pub totp_secret: Option<&'a str>,
    /// Recovery codes just made (shown this once).
    pub recovery_codes: Option<&'a [String]>,
}

/// One factor as its owner sees it (never the secret).
#[derive(Debug, Serialize)]
pub struct FactorView {
    pub id: i32,
    pub kind: String,
    pub name: String,
    pub created_at: String,
    pub last_used_at: Option<String>,
}

impl From<&FactorRow> for FactorView {
    fn from(row: &FactorRow) -> Self {
        Self {
            id: row.id,
            kind: row.kind.clone(),
            name: row.name.clone(),
            created_at: time(row.created_at),
            last_used_at: row.last_used_at.map(time),
        }
    }
}

pub async fn factor_views(
    state: &AppState,
    current: &CurrentUser,
) -> Result<Vec<FactorView>, AppError> {
    let user_id = current.user.id;
    let rows = state
        .db(move |conn| Ok(factor_queries::list(conn, user_id)?))
        .await?;
    Ok(rows.iter().map(FactorView::from).collect())
}

/// One token as its owner sees it (never the secret).
#[derive(Debug, Serialize)]
pub struct TokenView {
    pub id: i32,
    pub name: String,
    pub created_at: String,
    pub last_used_at: Option<String>,
    pub expires_at: String,
    pub expired: bool,
}

fn time(t: chrono::NaiveDateTime) -> String {
    t.format("%Y-%m-%d %H:%M").to_string()
}

impl From<&TokenRow> for TokenView {
    fn from(row: &TokenRow) -> Self {
        Self {
            id: row.id,
            name: row.name.clone(),
            created_at: time(row.created_at),
            last_used_at: row.last_used_at.map(time),
            expires_at: time(row.expires_at),
            expired: row.expires_at <= crate::db::now(),
        }
    }
}

/// The user's tokens, newest first.
pub async fn token_views(
    state: &AppState,
    current: &CurrentUser,
) -> Result<Vec<TokenView>, AppError> {
    let user_id = current.user.id;
    let rows = state
        .db(move |conn| Ok(token_queries::list(conn, user_id)?))
        .await?;
    Ok(rows.iter().map(TokenView::from).collect())
}

pub async fn session_views(
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

pub async fn account_page(
    req: &HttpRequest,
    state: &AppState,
    current: &CurrentUser,
    status: StatusCode,
    shown: Shown<'_>,
) -> Result<HttpResponse, AppError> {
    let enrolling = current::must_enrol(req);
    let (sessions, tokens) = if enrolling {
        (Vec::new(), Vec::new())
    } else {
        (
            session_views(req, state, current).await?,
            token_views(state, current).await?,
        )
    };
    let factors = factor_views(state, current).await?;
    let context = PageContext::new(req)?;
    let (mut password_error, mut token_error, mut totp_error, mut factor_error) =
        (None, None, None, None);
    match shown.error {
        Some(FormError::Password(message)) => password_error = Some(message),
        Some(FormError::TokenName(message) | FormError::Token(message)) => {
            token_error = Some(message);
        }
        Some(FormError::TotpCode(message)) => totp_error = Some(message),
        Some(FormError::Factor(message)) => factor_error = Some(message),
        None => {}
    }
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
            password_error,
            token_error,
            token_name_invalid: matches!(shown.error, Some(FormError::TokenName(_))),
            totp_error,
            factor_error,
            new_token: shown.new_token,
            passkeys: state.passkeys.is_some(),
            enrolling,
        },
    )
}

/// An enrolment refused (`what`: which kind, and why): audited and counted.
pub async fn enrolment_failed(
    req: &HttpRequest,
    state: &AppState,
    user_id: UserId,
    what: String,
) -> Result<(), AppError> {
    let entry = Entry::new(Event::FactorEnrolmentFailed)
        .user(user_id)
        .client(&Client::of(req))
        .detail(what);
    state
        .db(move |conn| Ok(crate::audit::record(conn, &entry)?))
        .await?;
    state.metrics.event(Event::FactorEnrolmentFailed);
    Ok(())
}

/// After an account action: count it, and forget the user's cached sessions
/// here at once (other instances hear of it through the session events).
pub fn acted(state: &AppState, user_id: UserId, event: Event) {
    state.metrics.event(event);
    state.cache.forget_user(user_id);
}

/// The answer to a successful account action: a message for programs, or
/// `303` to `location` with a one-time notice for browsers.
pub fn done(
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
