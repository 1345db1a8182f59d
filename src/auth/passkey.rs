//! Signing in with a passkey and no password (`/login/passkey`), and what
//! every passkey route shares: the relying party, the challenges (kept in the
//! session, see `current::CeremonyKind`), reading the browser's credential,
//! and what a client is told.
//!
//! A passkey proves two factors (user verification is required), so a
//! sign-in with one is complete: no password, no second-factor step, and
//! `LATCHKEY_REQUIRE_SECOND_FACTOR` is satisfied. It is never throttled by
//! password failures (a lockout aimed at guessing must not keep the owner's
//! authenticator out); nothing can be guessed through it, and every refused
//! assertion is audited.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use webauthn_rs::prelude::{DiscoverableAuthentication, PublicKeyCredential};

use super::routes::{login_page_response, login_succeeded, LoginError};
use crate::audit::{self, Entry, Event};
use crate::db;
use crate::error::AppError;
use crate::factors::passkeys::{self, RelyingParty};
use crate::factors::queries as factor_queries;
use crate::factors::{self, PasskeyProof, Proof};
use crate::sessions::current::{self, CeremonyKind};
use crate::state::AppState;
use crate::users::{queries, UserId};
use crate::web::redirect::safe_next_for;
use crate::web::{self as edge, Body, BodyKind, Client};

/// An assertion that was judged and refused (`401`), on every route.
pub const NOT_RECOGNISED: &str = "That passkey was not recognised.";
/// No challenge of this kind open in the session: no try at all (`400`).
pub const EXPIRED: &str = "The passkey request has expired or was used: ask for new options.";
/// Not a credential (`400`).
pub const BAD_CREDENTIAL: &str = "\"credential\" must be a WebAuthn PublicKeyCredential.";

/// The relying party, or `404` when passkeys are off (see [`RelyingParty::new`]).
pub fn relying_party(state: &AppState) -> Result<&RelyingParty, AppError> {
    state.passkeys.as_deref().ok_or(AppError::NotFound)
}

/// A credential as the browser sent it: a JSON object, or (from a form that
/// the page's script filled in) a string holding one.
pub fn parse_credential<T: DeserializeOwned>(
    value: Option<serde_json::Value>,
) -> Result<T, &'static str> {
    let parsed = match value {
        Some(serde_json::Value::String(text)) => serde_json::from_str(&text).ok(),
        Some(value) => serde_json::from_value(value).ok(),
        None => None,
    };
    parsed.ok_or(BAD_CREDENTIAL)
}

/// Options for the browser: what webauthn-rs serialises, `{"publicKey": ...}`.
pub fn options_response(options: &impl serde::Serialize) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(("cache-control", "no-store"))
        .json(options)
}

/// A passkey's assertion with the challenge of `kind` it answers, taken out
/// of the session (answered once). `404` when passkeys are off; otherwise
/// `Err(why)` when it is no try at all (`400`: not a credential, no challenge).
pub fn proof(
    req: &HttpRequest,
    state: &AppState,
    kind: CeremonyKind,
    sent: Option<serde_json::Value>,
) -> Result<Result<Proof, &'static str>, AppError> {
    relying_party(state)?;
    let credential = match parse_credential(sent) {
        Ok(credential) => credential,
        Err(why) => return Ok(Err(why)),
    };
    let Some(state) = current::take_ceremony(req, kind) else {
        return Ok(Err(EXPIRED));
    };
    Ok(Ok(Proof::Passkey(Box::new(PasskeyProof {
        credential,
        state,
    }))))
}

/// A challenge for one of `user_id`'s passkeys (a second factor, a
/// confirmation), kept as `kind`; `404` when passkeys are off, `400` when the
/// user has none.
pub async fn challenge(
    req: &HttpRequest,
    state: &AppState,
    user_id: UserId,
    kind: CeremonyKind,
) -> Result<HttpResponse, AppError> {
    let rp = relying_party(state)?;
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
    Ok(options_response(&challenge))
}

/// `POST /login/passkey/options`: a challenge for any of the site's passkeys.
pub async fn start(
    req: HttpRequest,
    state: web::Data<AppState>,
    _body: Body<serde::de::IgnoredAny>,
) -> Result<HttpResponse, AppError> {
    let rp = relying_party(&state)?;
    // Each challenge is a session row for someone who proved nothing yet.
    state.passkey_challenges.check(&Client::of(&req))?;
    let (challenge, ceremony) = rp.start_discoverable().map_err(AppError::internal)?;
    current::keep_ceremony(&req, CeremonyKind::PasskeyLogin, ceremony)?;
    Ok(options_response(&challenge))
}

#[derive(Deserialize)]
pub struct PasskeyLogin {
    #[serde(default)]
    credential: Option<serde_json::Value>,
    /// JSON: `true`; the form: the checkbox's `on`.
    #[serde(default)]
    remember: Option<serde_json::Value>,
    #[serde(default)]
    next: String,
}

fn ticked(value: Option<&serde_json::Value>) -> bool {
    match value {
        Some(serde_json::Value::Bool(b)) => *b,
        Some(serde_json::Value::String(s)) => edge::ticked(s),
        _ => false,
    }
}

/// `POST /login/passkey` `{"credential"}`: the login success body; from the
/// login page's form, `303` to `next`.
pub async fn finish(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: Body<PasskeyLogin>,
) -> Result<HttpResponse, AppError> {
    let form = body.kind == BodyKind::Form;
    let PasskeyLogin {
        credential: sent,
        remember,
        next,
    } = body.value;
    let next = safe_next_for(&next, &state.settings.allowed_hosts)
        .unwrap_or("")
        .to_owned();
    let refuse = |status: StatusCode, message: &'static str| {
        if form {
            let error = LoginError::Passkey(message);
            return login_page_response(&req, status, "", &next, Some(error));
        }
        Err(match status {
            StatusCode::UNAUTHORIZED => AppError::Unauthorized(message),
            _ => AppError::BadRequest(message.to_owned()),
        })
    };
    let rp = relying_party(&state)?;
    let sent: PublicKeyCredential = match parse_credential(sent) {
        Ok(sent) => sent,
        Err(why) => return refuse(StatusCode::BAD_REQUEST, why),
    };
    let Some(ceremony) =
        current::take_ceremony::<DiscoverableAuthentication>(&req, CeremonyKind::PasskeyLogin)
    else {
        return refuse(StatusCode::BAD_REQUEST, EXPIRED);
    };
    let client = Client::of(&req);
    let Some(user_id) = check(&state, rp, &sent, ceremony, &client).await? else {
        return refuse(StatusCode::UNAUTHORIZED, NOT_RECOGNISED);
    };
    current::begin_with_second_factor(&req, user_id, &client, ticked(remember.as_ref()))?;
    login_succeeded(&req, form, user_id, &next, false)
}

/// A sign-in with a credential that is not one of ours (or names another
/// user): audited without a user, counted. Bounded like the challenges: each
/// try answers one.
async fn unknown(state: &AppState, client: &Client) -> Result<Option<UserId>, AppError> {
    let entry = Entry::new(Event::LoginFailure)
        .client(client)
        .detail("passkey: not a registered credential");
    state
        .db(move |conn| Ok(audit::record(conn, &entry)?))
        .await?;
    state.metrics.login("bad_passkey");
    Ok(None)
}

/// Checks a sign-in without a password: the user it proves, or `None`.
/// Audited when the credential is one of ours (success, or why not), counted
/// either way; the credential's use (counter, last used) and the login are
/// recorded with the challenge claimed, in one transaction.
async fn check(
    state: &AppState,
    rp: &RelyingParty,
    sent: &PublicKeyCredential,
    ceremony: DiscoverableAuthentication,
    client: &Client,
) -> Result<Option<UserId>, AppError> {
    let Some((user_id, key)) = rp.identify(sent) else {
        return unknown(state, client).await;
    };
    let found = state
        .db(move |conn| {
            let row = factor_queries::passkey_by_credential(conn, &key)?
                .filter(|row| row.user_id == user_id);
            let user = match &row {
                Some(_) => queries::find_by_id(conn, user_id)?,
                None => None,
            };
            Ok(row.zip(user))
        })
        .await?;
    let Some((row, user)) = found else {
        return unknown(state, client).await;
    };
    let checked = passkeys::load(&row.secret)
        .ok_or_else(|| AppError::internal(anyhow::anyhow!("passkey {} does not load", row.id)))
        .map(|stored| rp.finish_discoverable(sent, ceremony, &stored))?;
    let failure = match &checked {
        Err(_) => Some("bad_passkey"),
        Ok(_) if !user.is_active => Some("disabled"),
        Ok(_) => None,
    };
    let entry = |event| Entry::new(event).of(&user).client(client);
    let (success, failed) = (entry(Event::LoginSuccess), entry(Event::LoginFailure));
    let updated = checked.ok().filter(|_| failure.is_none());
    let factor_id = row.id;
    let sent = sent.clone();
    let failure = state
        .db(move |conn| {
            use diesel::Connection as _;
            conn.transaction(|conn| {
                let failure = match &updated {
                    None => failure,
                    Some(updated) => {
                        if factors::accept_passkey(conn, factor_id, updated, &sent, db::now())? {
                            queries::record_login(conn, user_id)?;
                            None
                        } else {
                            // Answered already: a replay, or a request racing its twin.
                            Some("replayed")
                        }
                    }
                };
                let entry = match failure {
                    None => success.detail(format!("passkey {factor_id}")),
                    Some(reason) => failed.detail(format!("passkey {factor_id}: {reason}")),
                };
                audit::record(conn, &entry)?;
                Ok::<_, diesel::result::Error>(failure)
            })
            .map_err(AppError::from)
        })
        .await?;
    state.metrics.login(failure.unwrap_or("success"));
    Ok(failure.is_none().then_some(user_id))
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(edge::only("/login/passkey/options", web::post().to(start)))
        .service(edge::only("/login/passkey", web::post().to(finish)));
}
