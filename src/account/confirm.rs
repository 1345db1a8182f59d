//! Confirming identity ("sudo mode"): sensitive changes (new tokens, factors)
//! need a login or a confirmation within `LATCHKEY_REAUTH_WINDOW`. The check of
//! the password is throttled and audited like a login.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;
use serde_json::json;

use super::page::done;
use crate::auth::passkey;
use crate::auth::service::{self, Asker, Purpose};
use crate::auth::SessionUser;
use crate::error::AppError;
use crate::factors::{self, Code, Kind, Proof};
use crate::sessions::current::{self, CeremonyKind};
use crate::state::AppState;
use crate::web::flash::Flash;
use crate::web::pages::{PageContext, STYLE_HREF};
use crate::web::redirect::{next_param, safe_next};
use crate::web::{self as edge, Body, BodyKind, Wants};

#[derive(Template)]
#[template(path = "confirm.html")]
struct ConfirmPage<'a> {
    style: &'a str,
    username: &'a str,
    csrf_token: &'a str,
    next: &'a str,
    error: Option<&'a str>,
    /// A passkey refused, shown beside its button.
    passkey_error: Option<&'a str>,
    /// Offer the user's passkey.
    has_passkey: bool,
}

#[derive(Deserialize)]
pub struct Confirm {
    #[serde(default)]
    password: String,
    /// A TOTP or recovery code: needed when the user has a second factor.
    #[serde(default)]
    code: String,
    #[serde(default)]
    next: String,
    /// A passkey's assertion, answering `/account/confirm/options`: proves
    /// both factors at once (no password needed).
    #[serde(default)]
    credential: Option<serde_json::Value>,
}

/// The page; it offers a passkey when the user has one (and passkeys are on).
async fn page(
    req: &HttpRequest,
    current: &SessionUser,
    status: StatusCode,
    next: &str,
    refused: Option<Refused>,
) -> Result<HttpResponse, AppError> {
    let (error, passkey_error) = match refused {
        Some(Refused {
            message,
            by_passkey: true,
            ..
        }) => (None, Some(message)),
        Some(Refused { message, .. }) => (Some(message), None),
        None => (None, None),
    };
    let state = AppState::of(req)?;
    let user_id = current.user.id;
    let has_passkey = state.passkeys.is_some()
        && state
            .db(move |conn| Ok(factors::kinds(conn, user_id)?.contains(&Kind::Passkey)))
            .await?;
    let context = PageContext::new(req)?;
    context.render(
        status,
        &ConfirmPage {
            style: &STYLE_HREF,
            username: &current.user.username,
            csrf_token: &context.csrf_token,
            next: safe_next(next).unwrap_or(""),
            error,
            passkey_error,
            has_passkey,
        },
    )
}

/// `GET /account/confirm`: the page (JSON: how to confirm).
pub async fn show(
    req: HttpRequest,
    wants: Wants,
    current: SessionUser,
) -> Result<HttpResponse, AppError> {
    if wants == Wants::Json {
        return Ok(HttpResponse::Ok().json(json!({
            "message": "POST /account/confirm with {\"password\": ...} to confirm your identity.",
        })));
    }
    let next = next_param(&req);
    page(&req, &current, StatusCode::OK, &next, None).await
}

/// `POST /account/confirm` `{"password"}` (plus `"code"` for a user with a
/// factor), or `{"credential"}`: `400` for what is no try at all, `401` for a
/// wrong one (the page again, for a form).
pub async fn confirm(
    req: HttpRequest,
    state: web::Data<AppState>,
    current: SessionUser,
    body: Body<Confirm>,
) -> Result<HttpResponse, AppError> {
    let kind = body.kind;
    let next = body.value.next.clone();
    match check(&req, &state, &current, body.value).await? {
        Ok(()) => confirmed(&req, &state, kind, &next),
        Err(refused) if kind == BodyKind::Form => {
            page(&req, &current, refused.status, &next, Some(refused)).await
        }
        Err(refused) if refused.status == StatusCode::BAD_REQUEST => {
            Err(AppError::BadRequest(refused.message.to_owned()))
        }
        Err(refused) => Err(AppError::Unauthorized(refused.message)),
    }
}

/// A confirmation refused: `400` (no try at all) or `401`, why, and whether
/// it was about a passkey (the page shows it beside that button).
#[derive(Debug, Clone, Copy)]
struct Refused {
    status: StatusCode,
    message: &'static str,
    by_passkey: bool,
}

impl Refused {
    fn new(status: StatusCode, message: &'static str) -> Self {
        Self {
            status,
            message,
            by_passkey: false,
        }
    }
}

/// Whether the user proved who they are; if not, why.
async fn check(
    req: &HttpRequest,
    state: &AppState,
    current: &SessionUser,
    sent: Confirm,
) -> Result<Result<(), Refused>, AppError> {
    let asker = Asker::of(req)?;
    let username = &current.user.username;
    let user_id = current.user.id;
    if sent.credential.is_some() {
        let by_passkey = |status, message| Refused {
            status,
            message,
            by_passkey: true,
        };
        let proof = match passkey::proof(req, state, CeremonyKind::Confirm, sent.credential)? {
            Ok(proof) => proof,
            Err(why) => return Ok(Err(by_passkey(StatusCode::BAD_REQUEST, why))),
        };
        let accepted = service::check_factor(state, user_id, username, proof, &asker).await?;
        return Ok(accepted.then_some(()).ok_or(by_passkey(
            StatusCode::UNAUTHORIZED,
            passkey::NOT_RECOGNISED,
        )));
    }
    let has_factor = state
        .db(move |conn| Ok(factors::queries::count(conn, user_id)? > 0))
        .await?;
    // Checked before the password, so a missing code costs no try.
    let code = match (has_factor, Code::parse(&sent.code)) {
        (false, _) => None,
        (true, Some(code)) => Some(code),
        (true, None) => {
            const NEEDED: &str = "Enter a code from your authenticator app, or a recovery code, \
                                  with your password (or confirm with your passkey).";
            return Ok(Err(Refused::new(StatusCode::BAD_REQUEST, NEEDED)));
        }
    };
    let matched =
        service::check_password(state, username, sent.password, &asker, Purpose::Confirm).await?;
    if matched.is_none() {
        return Ok(Err(Refused::new(
            StatusCode::UNAUTHORIZED,
            "That password is not right.",
        )));
    }
    if let Some(code) = code {
        let proof = Proof::Code(code);
        if !service::check_factor(state, user_id, username, proof, &asker).await? {
            return Ok(Err(Refused::new(
                StatusCode::UNAUTHORIZED,
                "That code is not right.",
            )));
        }
    }
    Ok(Ok(()))
}

fn confirmed(
    req: &HttpRequest,
    state: &AppState,
    kind: BodyKind,
    next: &str,
) -> Result<HttpResponse, AppError> {
    current::confirmed(req)?;
    let location = safe_next(next).unwrap_or("/account");
    done(
        kind,
        state,
        "Identity confirmed.",
        location,
        Flash::IdentityConfirmed,
    )
}

/// `POST /account/confirm/options`: a challenge for the user's passkeys.
pub async fn options(
    req: HttpRequest,
    state: web::Data<AppState>,
    current: SessionUser,
    _body: Body<serde::de::IgnoredAny>,
) -> Result<HttpResponse, AppError> {
    passkey::challenge(&req, &state, current.user.id, CeremonyKind::Confirm).await
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(edge::only(
        "/account/confirm/options",
        web::post().to(options),
    ))
    .service(
        web::resource("/account/confirm")
            .route(web::get().to(show))
            .route(web::post().to(confirm))
            .default_service(web::to(edge::method_not_allowed)),
    );
}
