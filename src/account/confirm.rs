//! Confirming identity ("sudo mode"): sensitive changes (new tokens, factors)
//! need a login or a confirmation within `LATCHKEY_REAUTH_WINDOW`. The check of
//! the password is throttled and audited like a login.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;
use serde_json::json;

use super::page::done;
use crate::auth::service::{self, Asker, Purpose};
use crate::auth::SessionUser;
use crate::error::AppError;
use crate::factors::{self, Code};
use crate::sessions::current;
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
}

fn page(
    req: &HttpRequest,
    current: &SessionUser,
    status: StatusCode,
    next: &str,
    error: Option<&str>,
) -> Result<HttpResponse, AppError> {
    let context = PageContext::new(req)?;
    context.render(
        status,
        &ConfirmPage {
            style: &STYLE_HREF,
            username: &current.user.username,
            csrf_token: &context.csrf_token,
            next: safe_next(next).unwrap_or(""),
            error,
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
    page(&req, &current, StatusCode::OK, &next, None)
}

/// `POST /account/confirm` `{"password"}`.
pub async fn confirm(
    req: HttpRequest,
    state: web::Data<AppState>,
    current: SessionUser,
    body: Body<Confirm>,
) -> Result<HttpResponse, AppError> {
    let Confirm {
        password,
        code,
        next,
    } = body.value;
    let form = body.kind == BodyKind::Form;
    let asker = Asker::of(&req)?;
    let username = &current.user.username;
    let user_id = current.user.id;
    let has_factor = state
        .db(move |conn| Ok(factors::queries::count(conn, user_id)? > 0))
        .await?;
    // Checked before the password, so a missing code costs no try.
    let code = match (has_factor, Code::parse(&code)) {
        (false, _) => None,
        (true, Some(code)) => Some(code),
        (true, None) => {
            const NEEDED: &str =
                "Enter the code your authenticator app shows, or a recovery code, with your password.";
            if form {
                return page(&req, &current, StatusCode::BAD_REQUEST, &next, Some(NEEDED));
            }
            return Err(AppError::BadRequest(NEEDED.to_owned()));
        }
    };
    let matched =
        service::check_password(&state, username, password, &asker, Purpose::Confirm).await?;
    let wrong = |message: &'static str| {
        if form {
            return page(
                &req,
                &current,
                StatusCode::UNAUTHORIZED,
                &next,
                Some(message),
            );
        }
        Err(AppError::Unauthorized(message))
    };
    if matched.is_none() {
        return wrong("That password is not right.");
    }
    if let Some(code) = code {
        if !service::check_code(&state, user_id, username, code, &asker, false).await? {
            return wrong("That code is not right.");
        }
    }
    current::confirmed(&req)?;
    let location = safe_next(&next).unwrap_or("/account");
    done(
        body.kind,
        &state,
        "Identity confirmed.",
        location,
        Flash::IdentityConfirmed,
    )
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/account/confirm")
            .route(web::get().to(show))
            .route(web::post().to(confirm))
            .default_service(web::to(edge::method_not_allowed)),
    );
}
