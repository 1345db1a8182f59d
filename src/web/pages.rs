//! Server-rendered pages (Askama) and the stylesheet and icon they share.

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
pub static STYLE_HREF: LazyLock<String> = LazyLock::new(|| fingerprinted("style", "css", STYLE));

/// The icon of every page, embedded and fingerprinted like the stylesheet.
pub const FAVICON: &str = include_str!("../../static/favicon.svg");

pub static FAVICON_HREF: LazyLock<String> =
    LazyLock::new(|| fingerprinted("favicon", "svg", FAVICON));

/// The passkey buttons' script (see the file), embedded and fingerprinted.
pub const PASSKEYS_SCRIPT: &str = include_str!("../../static/passkeys.js");

pub static PASSKEYS_SCRIPT_HREF: LazyLock<String> =
    LazyLock::new(|| fingerprinted("passkeys", "js", PASSKEYS_SCRIPT));

/// For `base.html`: every page loads it (it does nothing where there is no
/// passkey button).
pub fn passkeys_script_href() -> &'static str {
    &PASSKEYS_SCRIPT_HREF
}

/// For `base.html`: every page links the icon without carrying it as a field.
pub fn favicon_href() -> &'static str {
    &FAVICON_HREF
}

fn fingerprinted(name: &str, extension: &str, content: &str) -> String {
    let digest = hex::encode(Sha256::digest(content.as_bytes()));
    format!("/static/{name}.{}.{extension}", &digest[..16])
}

const SVG: &str = "image/svg+xml";

#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage<'a> {
    pub style: &'a str,
    pub csrf_token: &'a str,
    pub next: &'a str,
    pub username: &'a str,
    pub error: Option<&'a str>,
    /// A passkey sign-in refused, shown beside its button.
    pub passkey_error: Option<&'a str>,
    pub notice: Option<&'a str>,
    /// Offer "Sign in with a passkey" (passkeys are on).
    pub passkeys: bool,
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

/// `GET /static/{name}`: the fingerprinted stylesheet, icon and script; anything else is not found.
pub async fn asset(req: HttpRequest) -> Result<HttpResponse, AppError> {
    let (content_type, body) = match req.path() {
        path if path == STYLE_HREF.as_str() => ("text/css; charset=utf-8", STYLE),
        path if path == FAVICON_HREF.as_str() => (SVG, FAVICON),
        path if path == PASSKEYS_SCRIPT_HREF.as_str() => {
            ("text/javascript; charset=utf-8", PASSKEYS_SCRIPT)
        }
        _ => return Err(AppError::NotFound),
    };
    Ok(HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CACHE_CONTROL, "public, max-age=31536000, immutable"))
        .body(body))
}

/// `GET /favicon.ico`, which browsers ask for by themselves (beside a JSON
/// answer, say): the icon itself. Its URL never changes, so it is cached for a
/// day only.
pub async fn favicon() -> HttpResponse {
    HttpResponse::Ok()
        .content_type(SVG)
        .insert_header((header::CACHE_CONTROL, "public, max-age=86400"))
        .body(FAVICON)
}
