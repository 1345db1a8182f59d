//! `/welcome/{token}`: a one-time link an admin printed (an invitation or a
//! password reset). It sets a password by the usual rules and signs the user
//! in (through the second factor when they have one); every other session of
//! the user ends. Unknown, used and expired links get one answer: `410`.

use actix_web::http::header;
use actix_web::http::StatusCode;
use actix_web::middleware::DefaultHeaders;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError as _};
use askama::Template;
use serde::Deserialize;
use serde_json::json;

use super::ops;
use super::page::acted;
use crate::audit::{Entry, Event};
use crate::auth::routes::second_factor_required;
use crate::error::AppError;
use crate::factors;
use crate::links::{self, Link, LinkToken};
use crate::sessions::current::{self, Pending};
use crate::state::AppState;
use crate::users::{queries as users, NewPassword, User};
use crate::web::pages::{PageContext, STYLE_HREF};
use crate::web::{self as edge, Body, BodyKind, Client, Wants};

#[derive(Template)]
#[template(path = "welcome.html")]
struct WelcomePage<'a> {
    style: &'a str,
    username: &'a str,
    token: &'a str,
    csrf_token: &'a str,
    error: Option<&'a str>,
}

#[derive(Deserialize)]
pub struct SetPassword {
    #[serde(default)]
    password: String,
}

/// The live link of this path and its user; `410` for anything else.
async fn live(state: &AppState, token: &str) -> Result<(LinkToken, Link, User), AppError> {
    let token = LinkToken::parse(token).ok_or(AppError::Gone)?;
    let lookup = token.clone();
    let found = state
        .db(move |conn| {
            let Some(link) = links::find_live(conn, &lookup, crate::db::now())? else {
                return Ok(None);
            };
            Ok(users::find_by_id(conn, link.user_id)?.map(|user| (link, user)))
        })
        .await?;
    let (link, user) = found.ok_or(AppError::Gone)?;
    Ok((token, link, user))
}

fn page(
    req: &HttpRequest,
    user: &User,
    token: &LinkToken,
    status: StatusCode,
    error: Option<&str>,
) -> Result<HttpResponse, AppError> {
    let context = PageContext::new(req)?;
    context.render(
        status,
        &WelcomePage {
            style: &STYLE_HREF,
            username: &user.username,
            token: token.expose(),
            csrf_token: &context.csrf_token,
            error,
        },
    )
}

/// `GET /welcome/{token}`: the form (JSON: how to use the link).
pub async fn show(
    req: HttpRequest,
    state: web::Data<AppState>,
    wants: Wants,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let (token, _, user) = live(&state, &path).await?;
    if wants == Wants::Json {
        return Ok(HttpResponse::Ok().json(json!({
            "message": "POST this link with {\"password\": ...} to set your password.",
        })));
    }
    page(&req, &user, &token, StatusCode::OK, None)
}

/// `POST /welcome/{token}` `{"password"}`.
pub async fn submit(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: Body<SetPassword>,
) -> Result<HttpResponse, AppError> {
    let form = body.kind == BodyKind::Form;
    let (token, link, user) = live(&state, &path).await?;
    let password = match NewPassword::parse_for(
        body.value.password,
        &user.name(),
        state.breached.as_deref(),
    ) {
        Ok(password) => password,
        Err(err) if form => {
            return page(
                &req,
                &user,
                &token,
                StatusCode::BAD_REQUEST,
                Some(&err.to_string()),
            )
        }
        Err(err) => return Err(AppError::BadRequest(err.to_string())),
    };
    let hash = state.hasher.hash(password).await?;
    let new_hash = hash.clone();
    let client = Client::of(&req);
    let entry = Entry::new(Event::LinkUsed).client(&client);
    let used = state
        .db(move |conn| Ok(ops::use_link(conn, link, &hash, entry)?))
        .await?;
    if !used {
        return Err(AppError::Gone);
    }
    acted(&state, user.id, Event::LinkUsed);
    let user_id = user.id;
    let kinds = state
        .db(move |conn| Ok(factors::kinds(conn, user_id)?))
        .await?;
    // A link replaces the password, never the second factor.
    if !kinds.is_empty() {
        current::begin_pending(
            &req,
            &Pending::new(user.id, &user.username, &new_hash, false, ""),
            &client,
        )?;
        if form {
            return Ok(edge::see_other("/login/second-factor"));
        }
        let kinds: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
        return Ok(second_factor_required(&kinds));
    }
    current::begin(&req, user.id, &client, false)?;
    if state.settings.require_second_factor {
        current::require_enrolment(&req)?;
    }
    if form {
        return Ok(edge::see_other(if state.settings.require_second_factor {
            "/account#factors"
        } else {
            "/protected"
        }));
    }
    if state.settings.require_second_factor {
        // Signed in, but only to enrol: the answer `POST /login` gives.
        return Ok(AppError::EnrolRequired.error_response());
    }
    Ok(HttpResponse::Ok().json(json!({
        "message": "Login successful!",
        "user_id": user.id,
    })))
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/welcome/{token}")
            .route(web::get().to(show))
            .route(web::post().to(submit))
            .default_service(web::to(edge::method_not_allowed))
            // The page's own requests must not carry its one-time link as
            // Referer: they name the origin only. Not `no-referrer`: under it
            // browsers post the form with `Origin: null`, which is refused.
            .wrap(DefaultHeaders::new().add((header::REFERRER_POLICY, "strict-origin"))),
    );
}
