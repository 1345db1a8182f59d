//! `/login/second-factor`: finishing a login that passed its password, for a
//! user with a second factor. The pending login lives in the session (see
//! `sessions::current::Pending`): 5 minutes, 5 wrong codes (counted in the
//! database, so concurrent requests cannot share out more). Every code is
//! throttled and audited like a password (`service::check_pending_code`), so
//! starting new pending logins buys no more guesses. A passkey finishes it
//! too: `/login/second-factor/options`, then its assertion as `"credential"`.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;
use serde_json::json;

use super::passkey;
use super::service::{self, Asker, PendingCode};
use crate::error::AppError;
use crate::factors::passkeys;
use crate::factors::queries as factor_queries;
use crate::factors::{Code, PasskeyProof, Proof};
use crate::sessions::current::{self, CeremonyKind, Pending};
use crate::state::AppState;
use crate::users::{queries, UserId};
use crate::web::flash::{self, Flash};
use crate::web::pages::{PageContext, STYLE_HREF};
use crate::web::{self as edge, Body, BodyKind, Wants, WebContext};

pub const INVALID_CODE: &str = "Invalid code.";
const NO_PENDING: &str = "No login is waiting for a second factor: log in first.";
const MALFORMED: &str = "A code is the 6 digits your app shows, or a recovery code.";

#[derive(Template)]
#[template(path = "second_factor.html")]
struct SecondFactorPage<'a> {
    style: &'a str,
    username: &'a str,
    csrf_token: &'a str,
    error: Option<&'a str>,
    /// Offer the user's passkey.
    passkey: bool,
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
    error: Option<&str>,
) -> Result<HttpResponse, AppError> {
    let context = PageContext::new(req)?;
    context.render(
        status,
        &SecondFactorPage {
            style: &STYLE_HREF,
            username: &pending.username,
            csrf_token: &context.csrf_token,
            error,
            passkey: pending.passkey,
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
    let proof = match credential {
        Some(sent) => passkey_proof(&req, &state, Some(sent)),
        // A code of no possible shape is no guess: refused, not counted.
        None => Code::parse(&code).map(Proof::Code).ok_or(MALFORMED),
    };
    let proof = match proof {
        Ok(proof) => proof,
        Err(message) if form => {
            return page(&req, &pending, StatusCode::BAD_REQUEST, Some(message));
        }
        Err(message) => return Err(AppError::BadRequest(message.to_owned())),
    };
    let asker = Asker::of(&req)?;
    match service::check_pending_code(&state, &pending, proof, &asker).await? {
        PendingCode::Accepted => {}
        PendingCode::Wrong if form => {
            return page(&req, &pending, StatusCode::UNAUTHORIZED, Some(INVALID_CODE))
        }
        PendingCode::Wrong => return Err(AppError::Unauthorized(INVALID_CODE)),
        // The last wrong code it was allowed, or one past it: the login is over.
        verdict @ (PendingCode::LockedOut | PendingCode::Over) => {
            current::end_pending(&req);
            if form {
                return Ok(edge::see_other("/login"));
            }
            return Err(AppError::Unauthorized(if verdict == PendingCode::Over {
                NO_PENDING
            } else {
                INVALID_CODE
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
    let device = WebContext::of(&req)?.devices.issue(pending.user_id);
    let mut response = if form {
        let mut response = edge::see_other(if pending.next.is_empty() {
            "/protected"
        } else {
            &pending.next
        });
        if pending.password_breached {
            response
                .add_cookie(&flash::set(Flash::PasswordBreached, &state.settings))
                .map_err(AppError::internal)?;
        }
        response
    } else {
        let mut body = json!({
            "message": "Login successful!",
            "user_id": pending.user_id,
        });
        // As `POST /login` says it (only then: otherwise the seed's body).
        if pending.password_breached {
            body["password_breached"] = json!(true);
        }
        HttpResponse::Ok().json(body)
    };
    response.add_cookie(&device).map_err(AppError::internal)?;
    Ok(response)
}

/// A passkey's assertion with the challenge it answers, which this session
/// was given by an `/options` route under `key` (used once).
pub fn passkey_proof_under(
    req: &HttpRequest,
    state: &AppState,
    kind: CeremonyKind,
    sent: Option<serde_json::Value>,
) -> Result<Proof, &'static str> {
    passkey::relying_party(state).map_err(|_| PASSKEYS_OFF)?;
    let credential = passkey::credential(sent).map_err(|_| BAD_CREDENTIAL)?;
    let state = current::take_ceremony(req, kind).ok_or(EXPIRED)?;
    Ok(Proof::Passkey(Box::new(PasskeyProof { credential, state })))
}

fn passkey_proof(
    req: &HttpRequest,
    state: &AppState,
    sent: Option<serde_json::Value>,
) -> Result<Proof, &'static str> {
    passkey_proof_under(req, state, CeremonyKind::SecondFactor, sent)
}

const PASSKEYS_OFF: &str = "Passkeys are not available on this server.";
const BAD_CREDENTIAL: &str = "\"credential\" must be a WebAuthn PublicKeyCredential.";
const EXPIRED: &str = "The passkey request has expired or was used: ask for new options.";

/// A challenge for one of `user_id`'s passkeys, kept under `key`; `404`
/// when passkeys are off, `400` when the user has none.
pub async fn passkey_challenge(
    req: &HttpRequest,
    state: &AppState,
    user_id: UserId,
    kind: CeremonyKind,
) -> Result<HttpResponse, AppError> {
    let rp = passkey::relying_party(state)?;
    let rows = state
        .db(move |conn| Ok(factor_queries::passkeys(conn, user_id)?))
        .await?;
    let stored: Vec<_> = rows
        .iter()
        .filter_map(|row| passkeys::load(&row.secret))
        .collect();
    if stored.is_empty() {
        return Err(AppError::BadRequest(
            "There is no passkey on this account.".to_owned(),
        ));
    }
    let (challenge, ceremony) = rp
        .start_authentication(&stored)
        .map_err(AppError::internal)?;
    current::keep_ceremony(req, kind, ceremony)?;
    Ok(passkey::options(&challenge))
}

/// `POST /login/second-factor/options`: a challenge for the pending user's passkeys.
pub async fn options(
    req: HttpRequest,
    state: web::Data<AppState>,
    _body: Body<serde::de::IgnoredAny>,
) -> Result<HttpResponse, AppError> {
    let pending = current::pending(&req).ok_or(AppError::Unauthorized(NO_PENDING))?;
    passkey_challenge(&req, &state, pending.user_id, CeremonyKind::SecondFactor).await
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
