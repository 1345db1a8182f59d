//! The user's second factors: TOTP enrolment (a secret kept in the session,
//! sealed, until a code from the app confirms it), recovery codes, removal.
//! Every change needs a confirmed identity; never with an access token.

use actix_session::SessionExt as _;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::ops::{self, FactorRemoval};
use super::page::{account_page, acted, done, enrolment_failed, FormError, Shown};
use crate::audit::{Entry, Event};
use crate::auth::{CurrentUser, SessionUser};
use crate::error::AppError;
use crate::factors::{self, TotpCode, TotpSecret};
use crate::sessions::current::{self, TOTP_ENROLMENT_KEY};
use crate::state::AppState;
use crate::web::flash::Flash;
use crate::web::{self as edge, Body, BodyKind, Client};

/// What a TOTP factor is called when the user names none.
const DEFAULT_NAME: &str = "Authenticator app";
const BAD_CODE: &str = "That code is not right: enter the one your app shows now.";

fn enrolment(req: &HttpRequest, state: &AppState) -> Option<TotpSecret> {
    let sealed = req
        .get_session()
        .get::<String>(TOTP_ENROLMENT_KEY)
        .ok()
        .flatten()?;
    state.sealer.open(&sealed).map(|(secret, _)| secret)
}

/// `POST /account/totp`: a new secret to enrol, `{"secret", "otpauth_url"}`;
/// the page shows its QR code. Starting again replaces the one under way.
pub async fn start(
    req: HttpRequest,
    state: web::Data<AppState>,
    current: SessionUser,
    body: Body<serde::de::IgnoredAny>,
) -> Result<HttpResponse, AppError> {
    current::require_recent(&req, state.settings.reauth_window)?;
    let secret = TotpSecret::generate();
    req.get_session()
        .insert(TOTP_ENROLMENT_KEY, state.sealer.seal(&secret))
        .map_err(AppError::internal)?;
    let base32 = secret.base32();
    if body.kind == BodyKind::Form {
        let shown = Shown {
            totp_secret: Some(&base32),
            ..Shown::default()
        };
        return account_page(&req, &state, &current, StatusCode::OK, shown).await;
    }
    Ok(HttpResponse::Ok().json(json!({
        "secret": base32,
        "otpauth_url": secret.otpauth_url(&current.user.username),
    })))
}

/// `GET /account/totp/qr.svg`: the QR code of the enrolment under way, served
/// from here because the CSP allows images from this origin only.
pub async fn qr(
    req: HttpRequest,
    state: web::Data<AppState>,
    current: SessionUser,
) -> Result<HttpResponse, AppError> {
    let secret = enrolment(&req, &state).ok_or(AppError::NotFound)?;
    let svg = factors::qr_svg(&secret.otpauth_url(&current.user.username)).ok_or_else(|| {
        AppError::internal(anyhow::anyhow!("the otpauth URL does not fit a QR code"))
    })?;
    Ok(HttpResponse::Ok()
        .content_type("image/svg+xml")
        .insert_header(("cache-control", "no-store"))
        .body(svg))
}

#[derive(Deserialize)]
pub struct ConfirmTotp {
    #[serde(default)]
    code: String,
    #[serde(default)]
    name: Option<String>,
}

/// The name a user gave a new factor (trimmed), or `default` when none.
pub(super) fn factor_name(name: Option<&str>, default: &str) -> Result<String, &'static str> {
    match name.map(str::trim) {
        None | Some("") => Ok(default.to_owned()),
        Some(name) => crate::tokens::valid_name(name)
            .map(str::to_owned)
            .map_err(|_| "A factor's name is 1-100 characters without control characters."),
    }
}

/// `POST /account/totp/confirm` `{"code"}`: enrols the secret under way;
/// on the first factor, `{"recovery_codes": [...]}` (shown this once).
pub async fn confirm(
    req: HttpRequest,
    state: web::Data<AppState>,
    current: SessionUser,
    body: Body<ConfirmTotp>,
) -> Result<HttpResponse, AppError> {
    current::require_recent(&req, state.settings.reauth_window)?;
    let kind = body.kind;
    let refuse = |message: &'static str, secret: Option<String>| {
        refuse_enrolment(&req, &state, &current, kind, message, secret)
    };
    let Some(secret) = enrolment(&req, &state) else {
        return refuse("Start setting up an authenticator app first.", None).await;
    };
    let name = match factor_name(body.value.name.as_deref(), DEFAULT_NAME) {
        Ok(name) => name,
        Err(message) => return refuse(message, Some(secret.base32())).await,
    };
    let step = TotpCode::parse(&body.value.code).and_then(|code| secret.matching_step(&code));
    let Some(step) = step else {
        return refuse(BAD_CODE, Some(secret.base32())).await;
    };
    let sealed = state.sealer.seal(&secret);
    let user_id = current.user.id;
    let entry = Entry::new(Event::FactorEnrolled).client(&Client::of(&req));
    let codes = state
        .db(move |conn| Ok(ops::enrol_totp(conn, user_id, &name, &sealed, step, entry)?))
        .await?;
    req.get_session().remove(TOTP_ENROLMENT_KEY);
    enrolled(&req, &state, &current, kind, codes, "Second factor added.").await
}

/// The answer to an enrolment: on the user's first factor (`codes`: the
/// recovery codes, shown this once) the session is marked as having shown a
/// second factor, which completes a required enrolment; a factor added to
/// others proves nothing about this session's login, which keeps what it had.
pub(super) async fn enrolled(
    req: &HttpRequest,
    state: &AppState,
    current: &CurrentUser,
    kind: BodyKind,
    codes: Option<Vec<String>>,
    message: &str,
) -> Result<HttpResponse, AppError> {
    if codes.is_some() {
        current::mark_second_factor(req)?;
    }
    acted(state, current.user.id, Event::FactorEnrolled);
    recovery_codes_answer(req, state, current, kind, codes, message).await
}

/// A confirmation refused: `400`, or the page again with the enrolment under way.
async fn refuse_enrolment(
    req: &HttpRequest,
    state: &AppState,
    current: &CurrentUser,
    kind: BodyKind,
    message: &'static str,
    secret: Option<String>,
) -> Result<HttpResponse, AppError> {
    enrolment_failed(req, state, current.user.id, format!("totp: {message}")).await?;
    if kind != BodyKind::Form {
        return Err(AppError::BadRequest(message.to_owned()));
    }
    let shown = Shown {
        error: Some(FormError::TotpCode(message)),
        totp_secret: secret.as_deref(),
        ..Shown::default()
    };
    account_page(req, state, current, StatusCode::BAD_REQUEST, shown).await
}

async fn recovery_codes_answer(
    req: &HttpRequest,
    state: &AppState,
    current: &CurrentUser,
    kind: BodyKind,
    codes: Option<Vec<String>>,
    message: &str,
) -> Result<HttpResponse, AppError> {
    if kind == BodyKind::Form {
        let shown = Shown {
            recovery_codes: codes.as_deref(),
            ..Shown::default()
        };
        return account_page(req, state, current, StatusCode::OK, shown).await;
    }
    Ok(HttpResponse::Ok().json(match codes {
        Some(codes) => json!({ "recovery_codes": codes }),
        None => json!({ "message": message }),
    }))
}

/// `POST /account/recovery-codes`: ten new codes, the old ones void.
pub async fn regenerate(
    req: HttpRequest,
    state: web::Data<AppState>,
    current: SessionUser,
    body: Body<serde::de::IgnoredAny>,
) -> Result<HttpResponse, AppError> {
    current::require_recent(&req, state.settings.reauth_window)?;
    let user_id = current.user.id;
    let entry = Entry::new(Event::RecoveryCodesGenerated).client(&Client::of(&req));
    let codes = state
        .db(move |conn| Ok(ops::regenerate_recovery_codes(conn, user_id, entry)?))
        .await?;
    if codes.is_none() {
        return Err(AppError::BadRequest(
            "Add a second factor first: recovery codes back it up.".to_owned(),
        ));
    }
    state.metrics.event(Event::RecoveryCodesGenerated);
    recovery_codes_answer(&req, &state, &current, body.kind, codes, "").await
}

/// Why the last factor stays when one is required.
const LAST_FACTOR: &str =
    "This account must keep a second factor: add another one before removing this one.";

/// `POST /account/factors/{id}/remove`. Under `LATCHKEY_REQUIRE_SECOND_FACTOR`
/// the last factor is not removed (`409`): like Google Workspace or Entra ID
/// with enforced 2-step verification, or GitHub with an organisation's 2FA
/// rule, the policy outranks the user's wish. Removing it anyway would leave
/// a password-only account until its next login, and this session, proven
/// with that factor, still counting as a second-factor login meanwhile. The
/// user adds another factor first (then removes this one); an admin's
/// `latchkey user reset-factors` still clears them all and ends the
/// sessions, so the next login enrols afresh.
pub async fn remove(
    req: HttpRequest,
    state: web::Data<AppState>,
    current: SessionUser,
    path: web::Path<String>,
    body: Body<serde::de::IgnoredAny>,
) -> Result<HttpResponse, AppError> {
    current::require_recent(&req, state.settings.reauth_window)?;
    let id: i32 = path.parse().map_err(|_| AppError::NotFound)?;
    let user_id = current.user.id;
    let keep_one = state.settings.require_second_factor;
    let entry = Entry::new(Event::FactorRemoved).client(&Client::of(&req));
    let removal = state
        .db(move |conn| Ok(ops::remove_factor(conn, user_id, id, keep_one, entry)?))
        .await?;
    match removal {
        FactorRemoval::Removed => {}
        FactorRemoval::NotFound => return Err(AppError::NotFound),
        FactorRemoval::Last if body.kind == BodyKind::Form => {
            let shown = Shown {
                error: Some(FormError::Factor(LAST_FACTOR)),
                ..Shown::default()
            };
            return account_page(&req, &state, &current, StatusCode::CONFLICT, shown).await;
        }
        FactorRemoval::Last => return Err(AppError::Conflict(LAST_FACTOR.to_owned())),
    }
    acted(&state, user_id, Event::FactorRemoved);
    done(
        body.kind,
        &state,
        "Second factor removed.",
        "/account#factors",
        Flash::FactorRemoved,
    )
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(edge::only("/account/totp", web::post().to(start)))
        .service(edge::only("/account/totp/qr.svg", web::get().to(qr)))
        .service(edge::only("/account/totp/confirm", web::post().to(confirm)))
        .service(edge::only(
            "/account/recovery-codes",
            web::post().to(regenerate),
        ))
        .service(edge::only(
            "/account/factors/{id}/remove",
            web::post().to(remove),
        ));
}
