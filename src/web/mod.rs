//! The HTTP toolkit the handlers stand on: negotiation, bodies, CSRF, one-time
//! notices, pages, redirects, who the client is, the request's span. It
//! imports nothing above it (only `config`, `users` and `error`); the app
//! shell (`crate::shell`) and the feature modules build on it.

pub mod body;
pub mod client;
pub mod csrf;
pub mod device;
pub mod flash;
pub mod limit;
pub mod negotiate;
pub mod pages;
pub mod redirect;

use std::sync::Arc;

use actix_web::{web, HttpMessage as _, HttpRequest, HttpResponse};

pub use body::{ticked, Body, BodyKind};
pub use client::Client;
pub use negotiate::Wants;

use crate::config::{SecretKey, Settings};
use crate::error::AppError;
use crate::users::UserId;
use csrf::Csrf;
use device::DeviceCookies;

/// What the toolkit needs from the app, registered once as app data.
#[derive(Debug)]
pub struct WebContext {
    pub settings: Arc<Settings>,
    pub csrf: Csrf,
    pub devices: DeviceCookies,
}

impl WebContext {
    pub fn new(settings: Arc<Settings>, secret: &SecretKey) -> web::Data<Self> {
        web::Data::new(Self {
            csrf: Csrf::new(secret, &settings),
            devices: DeviceCookies::new(secret, &settings),
            settings,
        })
    }

    /// The context registered with the app (every route has it).
    pub fn of(req: &HttpRequest) -> Result<&Self, AppError> {
        req.app_data::<web::Data<Self>>()
            .map(|data| data.get_ref())
            .ok_or_else(|| AppError::internal(anyhow::anyhow!("WebContext is not registered")))
    }
}

/// The request's root span, opened by the edge middleware (with the request
/// id) and kept in the request's extensions: what is learnt while serving
/// it is recorded there, so every later log line of the request carries it.
#[derive(Debug, Clone)]
pub struct RequestSpan(pub tracing::Span);

/// Names the user a request is served for, once known: in the request's log
/// line (the edge reads the id back) and on every line logged after.
pub fn identify(req: &HttpRequest, user_id: UserId) {
    if let Some(span) = req.extensions().get::<RequestSpan>() {
        span.0.record("user_id", user_id.0);
    }
    req.extensions_mut().insert(user_id);
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

/// A resource answering `route` (e.g. `web::post().to(handler)`), and `405`
/// to every other method.
pub fn only(path: &str, route: actix_web::Route) -> actix_web::Resource {
    web::resource(path)
        .route(route)
        .default_service(web::to(method_not_allowed))
}
