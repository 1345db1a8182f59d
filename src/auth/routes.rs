//! `POST /login`, `POST /logout`, `GET /protected`: the seed contract.

use actix_identity::Identity;
use actix_session::SessionExt as _;
use actix_web::http::header;
use actix_web::{web, HttpMessage as _, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::current_user::CurrentUser;
use super::service;
use crate::error::AppError;
use crate::sessions::store::{CLIENT_IP_KEY, USER_AGENT_KEY};
use crate::users::Username;
use crate::web::{self as edge, AppState, Body};

pub const INVALID_CREDENTIALS: &str = "Invalid username or password.";

#[derive(Deserialize)]
pub struct LoginRequest {
    username: String,
    password: String,
}

pub async fn login(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: Body<LoginRequest>,
) -> Result<HttpResponse, AppError> {
    let LoginRequest { username, password } = body.value;
    let username = Username::parse(&username).map_err(AppError::BadRequest)?;
    let user = service::authenticate(&state, &username, password)
        .await?
        .ok_or(AppError::Unauthorized(INVALID_CREDENTIALS))?;

    // Renews the session: a new key, the old row deleted (no fixation).
    Identity::login(&req.extensions(), user.id.to_string()).map_err(AppError::internal)?;
    let session = req.get_session();
    for (key, value) in [
        (CLIENT_IP_KEY, edge::client_ip(&req)),
        (USER_AGENT_KEY, edge::user_agent(&req)),
    ] {
        if let Some(value) = value {
            session.insert(key, value).map_err(AppError::internal)?;
        }
    }
    Ok(HttpResponse::Ok().json(json!({
        "message": "Login successful!",
        "user_id": user.id,
    })))
}

/// Ends the session (its row is deleted). Idempotent: without a session it still succeeds.
pub async fn logout(identity: Option<Identity>) -> HttpResponse {
    if let Some(identity) = identity {
        identity.logout();
    }
    HttpResponse::Ok()
        .insert_header((
            header::HeaderName::from_static("clear-site-data"),
            "\"cache\"",
        ))
        .json(json!({ "message": "Logout successful!" }))
}

pub async fn protected(current: CurrentUser) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "message": format!("Hello, {}! This is a protected route.", current.user.username),
    }))
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/login")
            .route(web::post().to(login))
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
    );
}
