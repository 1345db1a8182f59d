//! Server-rendered pages (Askama) and the stylesheet they share.

use std::sync::LazyLock;

use actix_web::cookie::Cookie;
use actix_web::http::{header, StatusCode};
use actix_web::{HttpRequest, HttpResponse};
use askama::Template;
use sha2::{Digest as _, Sha256};

use super::{flash, WebContext};
use crate::error::AppError;

/// The stylesheet, embedded in the binary.
pub const STYLE: &str = include_str!("../../static/style.css");

/// Its URL carries a fingerprint of its content, so it may be cached for a year.
pub static STYLE_HREF: LazyLock<String> = LazyLock::new(|| {
    let digest = hex::encode(Sha256::digest(STYLE.as_bytes()));
    format!("/static/style.{}.css", &digest[..16])
});

#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage<'a> {
    pub style: &'a str,
    pub csrf_token: &'a str,
    pub next: &'a str,
    pub username: &'a str,
    pub error: Option<&'a str>,
    pub notice: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "protected.html")]
pub struct ProtectedPage<'a> {
    pub style: &'a str,
    pub username: &'a str,
    pub csrf_token: &'a str,
    pub notice: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage<'a> {
    pub style: &'a str,
    pub title: &'a str,
    pub message: &'a str,
}

/// What every page with forms needs: the CSRF token (and its cookie, when the
/// client had none) and the one-time notice (and the cookie that clears it).
pub struct PageContext {
    pub csrf_token: String,
    pub notice: Option<&'static str>,
    cookies: Vec<Cookie<'static>>,
}

impl PageContext {
    pub fn new(req: &HttpRequest) -> Result<Self, AppError> {
        let web = WebContext::of(req)?;
        let (csrf_token, csrf_cookie) = web.csrf.token(req);
        let mut cookies: Vec<Cookie<'static>> = csrf_cookie.into_iter().collect();
        let notice = flash::take(req, &web.settings).map(|(flash, clear)| {
            cookies.push(clear);
            flash.message()
        });
        Ok(Self {
            csrf_token,
            notice,
            cookies,
        })
    }

    /// `page`, rendered with `status`, with the cookies it needs.
    pub fn render(
        &self,
        status: StatusCode,
        page: &impl Template,
    ) -> Result<HttpResponse, AppError> {
        let mut response = render(status, page)?;
        for cookie in &self.cookies {
            response.add_cookie(cookie).map_err(AppError::internal)?;
        }
        Ok(response)
    }
}

/// A rendered page with the given status.
pub fn render(status: StatusCode, page: &impl Template) -> Result<HttpResponse, AppError> {
    let html = page.render().map_err(AppError::internal)?;
    Ok(HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .body(html))
}

/// `GET /static/{name}`: the fingerprinted stylesheet; anything else is not found.
pub async fn asset(req: HttpRequest) -> Result<HttpResponse, AppError> {
    if req.path() != STYLE_HREF.as_str() {
        return Err(AppError::NotFound);
    }
    Ok(HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "public, max-age=31536000, immutable"))
        .body(STYLE))
}
