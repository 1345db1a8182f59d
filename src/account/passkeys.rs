//! Registering passkeys and security keys: `POST /account/passkeys/options`
//! gives the browser a challenge (its state kept in the session), and
//! `POST /account/passkeys` `{"name", "credential"}` stores the credential
//! the authenticator made. Identity confirmed first, as for every factor.
//! Listing and removal are the factors' own (`GET /account`,
//! `/account/factors/{id}/remove`).

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use webauthn_rs::prelude::{PasskeyRegistration, RegisterPublicKeyCredential};

use super::factors::{enrolled, factor_name};
use super::ops::{self, PasskeyEnrolment};
use super::page::{account_page, enrolment_failed, FormError, Shown};
use crate::audit::{Entry, Event};
use crate::auth::passkey::{
    options_response, parse_credential, relying_party, BAD_CREDENTIAL, EXPIRED,
};
use crate::auth::SessionUser;
use crate::error::AppError;
use crate::factors::passkeys;
use crate::factors::queries as factor_queries;
use crate::sessions::current::{self, CeremonyKind};
use crate::state::AppState;
use crate::web::{self as edge, Body, BodyKind, Client};

/// What a passkey is called when the user names none.
const DEFAULT_NAME: &str = "Passkey";
const TAKEN: &str = "This passkey is registered already.";

/// `POST /account/passkeys/options`: creation options for a new credential.
pub async fn start(
    req: HttpRequest,
    state: web::Data<AppState>,
    current: SessionUser,
    _body: Body<serde::de::IgnoredAny>,
) -> Result<HttpResponse, AppError> {
    current::require_recent(&req, state.settings.reauth_window)?;
    let rp = relying_party(&state)?;
    let user_id = current.user.id;
    let rows = state
        .db(move |conn| Ok(factor_queries::passkeys(conn, user_id)?))
        .await?;
    let existing = rows
        .iter()
        .filter_map(|row| passkeys::load(&row.secret))
        .map(|passkey| passkey.cred_id().clone())
        .collect();
    let (challenge, ceremony) = rp
        .start_registration(user_id, &current.user.username, existing)
        .map_err(AppError::internal)?;
    current::keep_ceremony(&req, CeremonyKind::Registration, ceremony)?;
    Ok(options_response(&challenge))
}

#[derive(Deserialize)]
pub struct NewPasskey {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    credential: Option<serde_json::Value>,
}

/// `POST /account/passkeys` `{"name", "credential"}`: on the first factor,
/// `{"recovery_codes": [...]}` (shown this once), else `{"message", "id"}`.
pub async fn register(
    req: HttpRequest,
    state: web::Data<AppState>,
    current: SessionUser,
    body: Body<NewPasskey>,
) -> Result<HttpResponse, AppError> {
    current::require_recent(&req, state.settings.reauth_window)?;
    let kind = body.kind;
    let refuse = |status, message| refuse(&req, &state, &current, kind, status, message);
    let rp = relying_party(&state)?;
    let name = match factor_name(body.value.name.as_deref(), DEFAULT_NAME) {
        Ok(name) => name,
        Err(message) => return refuse(StatusCode::BAD_REQUEST, message).await,
    };
    let Ok(sent) = parse_credential::<RegisterPublicKeyCredential>(body.value.credential) else {
        return refuse(StatusCode::BAD_REQUEST, BAD_CREDENTIAL).await;
    };
    let Some(ceremony) =
        current::take_ceremony::<PasskeyRegistration>(&req, CeremonyKind::Registration)
    else {
        return refuse(StatusCode::BAD_REQUEST, EXPIRED).await;
    };
    // Registered already (webauthn-rs refuses the user's own as excluded;
    // another account's would be a unique violation): one clear answer.
    let key = passkeys::credential_key(&sent.raw_id);
    let taken = state
        .db(move |conn| Ok(factor_queries::passkey_by_credential(conn, &key)?.is_some()))
        .await?;
    if taken {
        return refuse(StatusCode::CONFLICT, TAKEN).await;
    }
    let Ok(passkey) = rp.finish_registration(&sent, &ceremony) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "The authenticator's answer did not verify: try again.",
        )
        .await;
    };
    let stored = passkeys::store(&passkey);
    let key = passkeys::credential_key(passkey.cred_id());
    let user_id = current.user.id;
    let entry = Entry::new(Event::FactorEnrolled).client(&Client::of(&req));
    let enrolment = state
        .db(move |conn| {
            Ok(ops::enrol_passkey(
                conn, user_id, &name, &stored, &key, entry,
            )?)
        })
        .await?;
    let codes = match enrolment {
        PasskeyEnrolment::Taken => return refuse(StatusCode::CONFLICT, TAKEN).await,
        PasskeyEnrolment::Enrolled(codes) => codes,
    };
    enrolled(&req, &state, &current, kind, codes, "Passkey added.").await
}

/// A registration refused: `400`/`409`, or the account page with the error.
async fn refuse(
    req: &HttpRequest,
    state: &AppState,
    current: &SessionUser,
    kind: BodyKind,
    status: StatusCode,
    message: &'static str,
) -> Result<HttpResponse, AppError> {
    enrolment_failed(req, state, current.user.id, format!("passkey: {message}")).await?;
    if kind != BodyKind::Form {
        return Err(match status {
            StatusCode::CONFLICT => AppError::Conflict(message.to_owned()),
            _ => AppError::BadRequest(message.to_owned()),
        });
    }
    let shown = Shown {
        error: Some(FormError::Factor(message)),
        ..Shown::default()
    };
    account_page(req, state, current, status, shown).await
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(edge::only(
        "/account/passkeys/options",
        web::post().to(start),
    ))
    .service(edge::only("/account/passkeys", web::post().to(register)));
}
