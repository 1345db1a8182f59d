//! `/login/second-factor`: finishing a login that passed its password, for a
//! user with a second factor. The pending login lives in the session (see
//! `sessions::current::Pending`): 5 minutes, 5 wrong codes (counted in the
//! database, so concurrent requests cannot share out more). Every code is
//! throttled and audited like a password (`service::check_pending_code`), so
//! starting new pending logins buys no more guesses.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;
use serde_json::json;

use super::service::{self, Asker, PendingCode};
use crate::error::AppError;
use crate::factors::Code;
use crate::sessions::current::{self, Pending};
use crate::state::AppState;
use crate::users::queries;
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
}

#[derive(Deserialize)]
pub struct CodeBody {
    #[serde(default)]
    code: String,
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
    // A code of no possible shape is no guess: refused, not counted.
    let Some(code) = Code::parse(&body.value.code) else {
        if form {
            return page(&req, &pending, StatusCode::BAD_REQUEST, Some(MALFORMED));
        }
        return Err(AppError::BadRequest(MALFORMED.to_owned()));
    };
    let asker = Asker::of(&req)?;
    match service::check_pending_code(&state, &pending, code, &asker).await? {
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

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/login/second-factor")
            .route(web::get().to(show))
            .route(web::post().to(submit))
            .default_service(web::to(edge::method_not_allowed)),
    );
}
