//! `/login/second-factor`: finishing a login that passed its password, for a
//! user with a second factor. The pending login lives in the session (see
//! `sessions::current::Pending`): 5 minutes, 5 wrong codes (counted in the
//! database, so concurrent requests cannot share out more). Every code is
//! throttled and audited like a password (`service::check_pending_code`), so
//! starting new pending logins buys no more guesses. A passkey finishes it
//! too: `/login/second-factor/options`, then its assertion as `"credential"`
//! (not throttled: nothing can be guessed through it; a refused one counts
//! towards the 5).

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;
use serde_json::json;

use super::passkey;
use super::service::{self, Asker, PendingCode};
use crate::error::AppError;
use crate::factors::{Code, Proof};
use crate::sessions::current::{self, CeremonyKind, Pending};
use crate::state::AppState;
use crate::users::queries;
use crate::web::pages::{PageContext, STYLE_HREF};
use crate::web::{self as edge, Body, BodyKind, Wants};

const INVALID_CODE: &str = "Invalid code.";
const NO_PENDING: &str = "No login is waiting for a second factor: log in first.";
const MALFORMED: &str = "A code is the 6 digits your app shows, or a recovery code.";

#[derive(Template)]
#[template(path = "second_factor.html")]
struct SecondFactorPage<'a> {
    style: &'a str,
    username: &'a str,
    csrf_token: &'a str,
    /// About the code.
    error: Option<&'a str>,
    /// About the passkey.
    passkey_error: Option<&'a str>,
    /// Offer the user's passkey.
    has_passkey: bool,
}

/// Why the page is shown again: about the code, or about the passkey.
#[derive(Debug, Clone, Copy)]
enum Refusal<'a> {
    Code(&'a str),
    Passkey(&'a str),
}

#[derive(Deserialize)]
pub struct CodeBody {
    #[serde(default)]
    code: String,
    /// A passkey's assertion, answering `/login/second-factor/options`.
    #[serde(default)]
    credential: Option<serde_json::Value>,
}

fn page(
    req: &HttpRequest,
    pending: &Pending,
    status: StatusCode,
    refusal: Option<Refusal<'_>>,
) -> Result<HttpResponse, AppError> {
    let context = PageContext::new(req)?;
    let (error, passkey_error) = match refusal {
        Some(Refusal::Code(message)) => (Some(message), None),
        Some(Refusal::Passkey(message)) => (None, Some(message)),
        None => (None, None),
    };
    context.render(
        status,
        &SecondFactorPage {
            style: &STYLE_HREF,
            username: &pending.username,
            csrf_token: &context.csrf_token,
            error,
            passkey_error,
            has_passkey: pending.passkey,
        },
    )
}

/// `GET /login/second-factor`: the page (no pending login: back to `/login`).
pub async fn show(req: HttpRequest, wants: Wants) -> Result<HttpResponse, AppError> {
    let Some(pending) = current::pending(&req) else {
        return match wants {
            Wants::Html => Ok(edge::see_other("/login")),
            Wants::Json => Err(AppError::Unauthorized(NO_PENDING)),
        };
    };
    if wants == Wants::Json {
        return Ok(HttpResponse::Ok().json(json!({
            "message": "POST /login/second-factor with {\"code\": ...} to finish logging in.",
        })));
    }
    page(&req, &pending, StatusCode::OK, None)
}

/// `POST /login/second-factor` `{"code"}`: the login success body, or
/// `401 {"message": "Invalid code."}`.
pub async fn submit(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: Body<CodeBody>,
) -> Result<HttpResponse, AppError> {
    let form = body.kind == BodyKind::Form;
    let Some(pending) = current::pending(&req) else {
        if form {
            return Ok(edge::see_other("/login"));
        }
        return Err(AppError::Unauthorized(NO_PENDING));
    };
    let CodeBody { code, credential } = body.value;
    let by_passkey = credential.is_some();
    let refusal = |message| {
        if by_passkey {
            Refusal::Passkey(message)
        } else {
            Refusal::Code(message)
        }
    };
    let proof = match credential {
        Some(sent) => passkey::proof(&req, &state, CeremonyKind::SecondFactor, Some(sent))?,
        // A code of no possible shape is no guess: refused, not counted.
        None => Code::parse(&code).map(Proof::Code).ok_or(MALFORMED),
    };
    let proof = match proof {
        Ok(proof) => proof,
        Err(message) if form => {
            return page(
                &req,
                &pending,
                StatusCode::BAD_REQUEST,
                Some(refusal(message)),
            );
        }
        Err(message) => return Err(AppError::BadRequest(message.to_owned())),
    };
    let wrong = if by_passkey {
        passkey::NOT_RECOGNISED
    } else {
        INVALID_CODE
    };
    let asker = Asker::of(&req)?;
    match service::check_pending_code(&state, &pending, proof, &asker).await? {
        PendingCode::Accepted => {}
        PendingCode::Wrong if form => {
            return page(
                &req,
                &pending,
                StatusCode::UNAUTHORIZED,
                Some(refusal(wrong)),
            )
        }
        PendingCode::Wrong => return Err(AppError::Unauthorized(wrong)),
        // The last wrong code it was allowed, or one past it: the login is over.
        verdict @ (PendingCode::LockedOut | PendingCode::Over) => {
            current::end_pending(&req);
            if form {
                return Ok(edge::see_other("/login"));
            }
            return Err(AppError::Unauthorized(if verdict == PendingCode::Over {
                NO_PENDING
            } else {
                wrong
            }));
        }
    }
    // The password proven may have been changed or reset, or the user
    // disabled, while the login waited for its code: then it ends here.
    let user_id = pending.user_id;
    let user = state
        .db(move |conn| Ok(queries::find_by_id(conn, user_id)?))
        .await?;
    let still = user.as_ref().is_some_and(|u| {
        u.is_active && current::credentials_fingerprint(&u.password_hash) == pending.credentials
    });
    if !still {
        current::end_pending(&req);
        if form {
            return Ok(edge::see_other("/login"));
        }
        return Err(AppError::Unauthorized(NO_PENDING));
    }
    current::complete(&req, &pending, &asker.client)?;
    if pending.password_breached {
        if let Some(user) = &user {
            super::routes::password_breached(&state, user, &asker.client).await?;
        }
    }
    super::routes::login_succeeded(
        &req,
        form,
        pending.user_id,
        &pending.next,
        pending.password_breached,
    )
}

/// `POST /login/second-factor/options`: a challenge for the pending user's passkeys.
pub async fn options(
    req: HttpRequest,
    state: web::Data<AppState>,
    _body: Body<serde::de::IgnoredAny>,
) -> Result<HttpResponse, AppError> {
    let pending = current::pending(&req).ok_or(AppError::Unauthorized(NO_PENDING))?;
    passkey::challenge(&req, &state, pending.user_id, CeremonyKind::SecondFactor).await
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(edge::only(
        "/login/second-factor/options",
        web::post().to(options),
    ))
    .service(
        web::resource("/login/second-factor")
            .route(web::get().to(show))
            .route(web::post().to(submit))
            .default_service(web::to(edge::method_not_allowed)),
    );
}
