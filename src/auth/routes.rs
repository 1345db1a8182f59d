//! `/login`, `/logout`, `/protected` and `/`: the seed contract for JSON clients,
//! and the same routes as pages and forms for browsers.

use actix_identity::Identity;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{guard, web, HttpRequest, HttpResponse, ResponseError as _};
use serde::Deserialize;
use serde_json::json;

use super::current_user::CurrentUser;
use super::service::{self, Asker, Purpose};
use crate::audit::{self, Entry, Event};
use crate::error::AppError;
use crate::factors;
use crate::sessions::current;
use crate::state::AppState;
use crate::users::{User, UserId, Username};
use crate::web::flash::{self, Flash};
use crate::web::pages::{LoginPage, PageContext, ProtectedPage, STYLE_HREF};
use crate::web::redirect::{next_param, safe_next_for};
use crate::web::{self as edge, Body, BodyKind, Client, Wants, WebContext};

pub const INVALID_CREDENTIALS: &str = "Invalid username or password.";

/// `POST /login` as JSON.
#[derive(Deserialize)]
pub struct LoginJson {
    pub username: String,
    pub password: String,
    #[serde(default)]
    pub remember: bool,
}

/// `POST /login` from the login form.
#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub password: String,
    #[serde(default)]
    pub next: String,
    /// A checkbox: present (`on`) when ticked.
    pub remember: Option<String>,
}

/// A login that went through: its user, and whether they should be told to
/// change their password.
struct SignedIn {
    user: User,
    /// The password is in the breached-password list (`LATCHKEY_BREACHED_PASSWORDS`).
    password_breached: bool,
}

/// The answer to a login that went through (a password, a second factor, a
/// passkey): for a form, `303` to `next` (`/protected` when empty; already
/// checked as safe), with the breached-password notice when so; for JSON,
/// the seed's success body, with `"password_breached": true` only then. The
/// device cookie goes with both.
pub fn login_succeeded(
    req: &HttpRequest,
    form: bool,
    user_id: UserId,
    next: &str,
    password_breached: bool,
) -> Result<HttpResponse, AppError> {
    let web = WebContext::of(req)?;
    let mut response = if form {
        let mut response = edge::see_other(if next.is_empty() { "/protected" } else { next });
        if password_breached {
            response
                .add_cookie(&flash::set(Flash::PasswordBreached, &web.settings))
                .map_err(AppError::internal)?;
        }
        response
    } else {
        let mut body = json!({
            "message": "Login successful!",
            "user_id": user_id,
        });
        // Only then: otherwise the seed's body, exactly.
        if password_breached {
            body["password_breached"] = json!(true);
        }
        HttpResponse::Ok().json(body)
    };
    response
        .add_cookie(&web.devices.issue(user_id))
        .map_err(AppError::internal)?;
    Ok(response)
}

/// What a right password leads to.
enum Outcome {
    SignedIn(Box<SignedIn>),
    /// The user has a second factor: the session waits for it (these kinds).
    Pending(Vec<&'static str>),
}

/// Checks the credentials and starts a new session for their user
/// (remembered when `remember` is set), or, for a user with a second factor,
/// a pending login (see `second_factor`). A password found in the breached
/// list still signs in (refusing it would lock the user out), but is audited.
async fn sign_in(
    req: &HttpRequest,
    state: &AppState,
    username: &str,
    password: String,
    remember: bool,
    next: &str,
) -> Result<Outcome, AppError> {
    let username = Username::parse(username)?;
    let asker = Asker::of(req)?;
    // Looked up for every try alike, before the password moves on.
    let password_breached = state
        .breached
        .as_deref()
        .is_some_and(|filter| filter.contains(&password));
    let user = service::check_password(state, username.as_str(), password, &asker, Purpose::Login)
        .await?
        .ok_or(AppError::Unauthorized(INVALID_CREDENTIALS))?;
    let user_id = user.id;
    let kinds = state
        .db(move |conn| Ok(factors::kinds(conn, user_id)?))
        .await?;
    if !kinds.is_empty() {
        let mut pending =
            current::Pending::new(user.id, &user.username, &user.password_hash, remember, next);
        pending.passkey = kinds.contains(&factors::Kind::Passkey) && state.passkeys.is_some();
        // Said and audited when the login completes (see `second_factor`).
        pending.password_breached = password_breached;
        current::begin_pending(req, &pending, &asker.client)?;
        // Passkeys off: what the user can still finish with (a passkey-only
        // user with no recovery code left must ask an admin).
        let usable = kinds
            .iter()
            .filter(|kind| **kind != factors::Kind::Passkey || state.passkeys.is_some());
        return Ok(Outcome::Pending(usable.map(|k| k.as_str()).collect()));
    }
    current::begin(req, user.id, &asker.client, remember)?;
    if state.settings.require_second_factor {
        current::require_enrolment(req)?;
    }
    if password_breached {
        self::password_breached(state, &user, &asker.client).await?;
    }
    Ok(Outcome::SignedIn(Box::new(SignedIn {
        user,
        password_breached,
    })))
}

/// A login completed with a password in the breached-password list: audited
/// and counted (the response tells the user, see [`Flash::PasswordBreached`]).
pub(super) async fn password_breached(
    state: &AppState,
    user: &User,
    client: &Client,
) -> Result<(), AppError> {
    let entry = Entry::new(Event::PasswordBreached).of(user).client(client);
    state
        .db(move |conn| Ok(audit::record(conn, &entry)?))
        .await?;
    state.metrics.event(Event::PasswordBreached);
    Ok(())
}

/// The answer to JSON clients for a login that waits for its second factor.
pub fn second_factor_required(kinds: &[&str]) -> HttpResponse {
    HttpResponse::Unauthorized().json(json!({
        "message": "Second factor required.",
        "second_factor": kinds,
    }))
}

/// `POST /login` with JSON (or no body at all).
pub async fn login_json(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: Body<LoginJson>,
) -> Result<HttpResponse, AppError> {
    let LoginJson {
        username,
        password,
        remember,
    } = body.value;
    let signed_in = match sign_in(&req, &state, &username, password, remember, "").await? {
        Outcome::SignedIn(signed_in) => signed_in,
        Outcome::Pending(kinds) => return Ok(second_factor_required(&kinds)),
    };
    if state.settings.require_second_factor {
        // Signed in, but only to enrol (see `CurrentUser`); the browser is the
        // user's all the same (the device cookie).
        let mut response = AppError::EnrolRequired.error_response();
        let device = WebContext::of(&req)?.devices.issue(signed_in.user.id);
        response.add_cookie(&device).map_err(AppError::internal)?;
        return Ok(response);
    }
    login_succeeded(
        &req,
        false,
        signed_in.user.id,
        "",
        signed_in.password_breached,
    )
}

/// `POST /login` from the login form (its CSRF token checked by `Body`).
pub async fn login_form(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: Body<LoginForm>,
) -> Result<HttpResponse, AppError> {
    let LoginForm {
        username,
        password,
        next,
        remember,
    } = body.value;
    let remember = remember.is_some_and(|v| edge::ticked(&v));
    let safe_next = safe_next_for(&next, &state.settings.allowed_hosts).unwrap_or("");
    match sign_in(&req, &state, &username, password, remember, safe_next).await {
        Ok(Outcome::Pending(_)) => Ok(edge::see_other("/login/second-factor")),
        Ok(Outcome::SignedIn(signed_in)) => {
            // Signed in, but only to enrol (see `CurrentUser`).
            let next = if state.settings.require_second_factor {
                "/account#factors"
            } else {
                safe_next
            };
            login_succeeded(
                &req,
                true,
                signed_in.user.id,
                next,
                signed_in.password_breached,
            )
        }
        // Any refusal of the credentials: the form again, one generic message.
        Err(AppError::BadRequest(_) | AppError::Unauthorized(_)) => login_page_response(
            &req,
            StatusCode::UNAUTHORIZED,
            &username,
            safe_next_for(&next, &state.settings.allowed_hosts).unwrap_or(""),
            Some(LoginError::Password(INVALID_CREDENTIALS)),
        ),
        Err(other) => Err(other),
    }
}

/// `GET /login`: the form (already signed in: on to `/protected`).
pub async fn login_page(
    req: HttpRequest,
    state: web::Data<AppState>,
    wants: Wants,
    identity: Option<Identity>,
) -> Result<HttpResponse, AppError> {
    let next = next_param(&req);
    let next = safe_next_for(&next, &state.settings.allowed_hosts);
    if identity.is_some() {
        return Ok(edge::see_other(next.unwrap_or("/protected")));
    }
    if wants == Wants::Json {
        return Ok(HttpResponse::Ok().json(json!({
            "message": "POST /login with {\"username\": ..., \"password\": ...} to log in.",
        })));
    }
    login_page_response(&req, StatusCode::OK, "", next.unwrap_or(""), None)
}

/// Why the login form is shown again: about the password form, or the
/// passkey's (each is shown beside its own form).
#[derive(Debug, Clone, Copy)]
pub enum LoginError<'a> {
    Password(&'a str),
    Passkey(&'a str),
}

/// The login form with `status`, the name typed kept and an error, if any.
pub fn login_page_response(
    req: &HttpRequest,
    status: StatusCode,
    username: &str,
    next: &str,
    error: Option<LoginError<'_>>,
) -> Result<HttpResponse, AppError> {
    let (error, passkey_error) = match error {
        Some(LoginError::Password(message)) => (Some(message), None),
        Some(LoginError::Passkey(message)) => (None, Some(message)),
        None => (None, None),
    };
    let context = PageContext::new(req)?;
    context.render(
        status,
        &LoginPage {
            style: &STYLE_HREF,
            csrf_token: &context.csrf_token,
            next,
            username,
            error,
            passkey_error,
            notice: context.notice,
            passkeys: AppState::of(req)?.passkeys.is_some(),
        },
    )
}

/// `POST /logout`: ends the session (its row is deleted). Idempotent. A form must
/// carry its CSRF token (checked by `Body`); `GET /logout` does nothing.
pub async fn logout(
    req: HttpRequest,
    state: web::Data<AppState>,
    identity: Option<Identity>,
    body: Body<serde::de::IgnoredAny>,
) -> Result<HttpResponse, AppError> {
    if let Some(identity) = identity {
        let user_id = identity.id().ok().and_then(|id| id.parse().ok());
        identity.logout();
        let mut entry = Entry::new(Event::Logout).client(&Client::of(&req));
        if let Some(id) = user_id {
            entry = entry.user(id);
        }
        state
            .db(move |conn| Ok(audit::record(conn, &entry)?))
            .await?;
        state.metrics.event(Event::Logout);
    } else if current::pending(&req).is_some() {
        // A login still waiting for its second factor ends too.
        current::end_pending(&req);
    }
    let mut response = if body.kind == BodyKind::Form {
        let mut response = edge::see_other("/login");
        response
            .add_cookie(&flash::set(Flash::LoggedOut, &state.settings))
            .map_err(AppError::internal)?;
        response
    } else {
        HttpResponse::Ok().json(json!({ "message": "Logout successful!" }))
    };
    // The back button must not show what this browser saw while signed in.
    response.headers_mut().insert(
        HeaderName::from_static("clear-site-data"),
        HeaderValue::from_static("\"cache\""),
    );
    Ok(response)
}

/// `GET /protected`: the greeting, as JSON or as a page with a logout button.
pub async fn protected(
    req: HttpRequest,
    wants: Wants,
    current: CurrentUser,
) -> Result<HttpResponse, AppError> {
    let username = &current.user.username;
    if wants == Wants::Json {
        return Ok(HttpResponse::Ok().json(json!({
            "message": format!("Hello, {username}! This is a protected route."),
        })));
    }
    let context = PageContext::new(&req)?;
    context.render(
        StatusCode::OK,
        &ProtectedPage {
            style: &STYLE_HREF,
            username,
            csrf_token: &context.csrf_token,
            notice: context.notice,
        },
    )
}

/// `GET /`: on to the protected page, or to the login page.
pub async fn index(identity: Option<Identity>) -> HttpResponse {
    edge::see_other(if identity.is_some() {
        "/protected"
    } else {
        "/login"
    })
}

fn is_form(ctx: &guard::GuardContext<'_>) -> bool {
    matches!(BodyKind::of(ctx.head().headers()), Ok(Some(BodyKind::Form)))
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/login")
            .route(web::get().to(login_page))
            .route(web::post().guard(guard::fn_guard(is_form)).to(login_form))
            .route(web::post().to(login_json))
            .default_service(web::to(edge::method_not_allowed)),
    )
    .service(
        web::resource("/logout")
            .route(web::post().to(logout))
            .default_service(web::to(edge::method_not_allowed)),
    )
    .service(
        web::resource("/protected")
            .route(web::get().to(protected))
            .default_service(web::to(edge::method_not_allowed)),
    )
    .service(
        web::resource("/")
            .route(web::get().to(index))
            .default_service(web::to(edge::method_not_allowed)),
    );
}
