//! `CurrentUser`: the extractor that is `login_required`; `SessionUser`: the
//! same, for what only a signed-in person (not a token) may do.

use actix_identity::IdentityExt as _;
use actix_session::SessionExt as _;
use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest};
use futures_util::future::{ready, Either, LocalBoxFuture, Ready};

use super::bearer;
use crate::error::AppError;
use crate::sessions::current;
use crate::sessions::store::PRINCIPAL_KEY;
use crate::state::AppState;
use crate::users::{Principal, UserId};
use crate::web::{identify, Wants};

/// What a request signed in with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    Session,
    /// A personal access token (`Authorization: Bearer lk_...`).
    Token,
}

/// The signed-in, active user of this request; `401` otherwise. A session whose
/// user is gone or disabled is purged on the way.
///
/// The user comes with the session (the store reads both in one query, or one
/// cache entry), or with the token: no second trip to the database.
#[derive(Debug)]
pub struct CurrentUser {
    pub user: Principal,
    pub via: Credential,
    /// The session's login was completed with a second factor (never a token's).
    pub second_factor: bool,
}

impl FromRequest for CurrentUser {
    type Error = AppError;
    type Future =
        Either<Ready<Result<Self, AppError>>, LocalBoxFuture<'static, Result<Self, AppError>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let Some(token) = bearer::presented(req) else {
            return Either::Left(ready(from_session(req)));
        };
        let req = req.clone();
        Either::Right(Box::pin(async move {
            let state = AppState::of(&req)?;
            let user = bearer::authenticate(state, &req, &token).await?;
            identify(&req, user.id);
            Ok(CurrentUser {
                user,
                via: Credential::Token,
                second_factor: false,
            })
        }))
    }
}

/// What a session that must enrol a second factor (a login under
/// `LATCHKEY_REQUIRE_SECOND_FACTOR` by a user with none) may still reach
/// through this extractor; everything else behind it answers `403` with
/// `"enrol": true` (browsers: `303` to `/account`):
/// - `GET /account` as a page: the enrolment form is there (the page shows
///   only that while enrolling); as JSON it is refused like the rest, since
///   it lists the account's sessions and tokens;
/// - `GET|POST /account/confirm`: enrolling needs a recent confirmation,
///   which may lapse while the user fetches their phone;
/// - `POST /account/totp`, `GET /account/totp/qr.svg`,
///   `POST /account/totp/confirm`: the enrolment itself, whose confirmation
///   completes the login; `POST /account/passkeys/options` and
///   `POST /account/passkeys` likewise, and `POST /account/confirm/options`
///   (confirming with a passkey).
///
/// Routes that need no signed-in user are not concerned: `POST /logout`,
/// `/login`, `/login/second-factor`, `/welcome/...`, `/static/...`, the
/// probes. `/auth/verify` answers `401` for such a session (nginx sends that
/// to `/auth/forward`, which sends a browser to enrol).
const ENROLMENT_PATHS: [&str; 7] = [
    "/account/confirm",
    "/account/totp",
    "/account/totp/qr.svg",
    "/account/totp/confirm",
    "/account/passkeys/options",
    "/account/passkeys",
    "/account/confirm/options",
];

fn may_enrol_at(req: &HttpRequest) -> bool {
    match req.path() {
        "/account" => Wants::of(req.headers()) == Wants::Html,
        path => ENROLMENT_PATHS.contains(&path),
    }
}

fn from_session(req: &HttpRequest) -> Result<CurrentUser, AppError> {
    let identity = req.get_identity().map_err(|_| AppError::LoginRequired)?;
    let id = identity.id().ok().and_then(|id| id.parse::<UserId>().ok());
    let principal = req
        .get_session()
        .get::<Principal>(PRINCIPAL_KEY)
        .ok()
        .flatten();
    match principal {
        Some(user) if user.is_active && Some(user.id) == id => {
            identify(req, user.id);
            if current::must_enrol(req) && !may_enrol_at(req) {
                return Err(AppError::EnrolRequired);
            }
            Ok(CurrentUser {
                user,
                via: Credential::Session,
                second_factor: current::second_factor(req),
            })
        }
        _ => {
            identity.logout();
            Err(AppError::LoginRequired)
        }
    }
}

/// The signed-in user, through a session: what changes credentials (passwords,
/// sessions, tokens) is never done with an access token (`403`).
#[derive(Debug)]
pub struct SessionUser(pub CurrentUser);

impl std::ops::Deref for SessionUser {
    type Target = CurrentUser;
    fn deref(&self) -> &CurrentUser {
        &self.0
    }
}

impl FromRequest for SessionUser {
    type Error = AppError;
    type Future = LocalBoxFuture<'static, Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let current = CurrentUser::from_request(req, payload);
        Box::pin(async move {
            let current = current.await?;
            if current.via == Credential::Token {
                return Err(AppError::Forbidden(
                    "An access token cannot change credentials: sign in with a password.",
                ));
            }
            Ok(SessionUser(current))
        })
    }
}
