//! The HTTP edge: negotiation, bodies, CSRF, pages, security headers, health routes.

pub mod body;
pub mod csrf;
pub mod edge;
pub mod flash;
pub mod health;
pub mod negotiate;
pub mod pages;
pub mod redirect;
pub mod state;

use actix_web::{web, HttpRequest, HttpResponse};

pub use body::{Body, BodyKind};
pub use negotiate::Wants;
pub use state::AppState;

use crate::error::AppError;

/// The client's address: the TCP peer.
pub fn client_ip(req: &HttpRequest) -> Option<String> {
    req.peer_addr().map(|addr| addr.ip().to_string())
}

/// The client's `User-Agent`, cut to a sane length for storage.
pub fn user_agent(req: &HttpRequest) -> Option<String> {
    let agent = req
        .headers()
        .get(actix_web::http::header::USER_AGENT)?
        .to_str()
        .ok()?;
    Some(agent.chars().take(256).collect())
}

/// `303 See Other` to a local path.
pub fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((actix_web::http::header::LOCATION, location))
        .finish()
}

pub async fn not_found() -> Result<HttpResponse, AppError> {
    Err(AppError::NotFound)
}

pub async fn method_not_allowed() -> Result<HttpResponse, AppError> {
    Err(AppError::MethodNotAllowed)
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(health::healthz))
        .route("/readyz", web::get().to(health::readyz))
        .service(
            web::resource("/static/{name}")
                .route(web::get().to(pages::asset))
                .route(web::head().to(pages::asset)),
        );
}
