//! The outermost middleware: what every request and response goes through.
//!
//! - decides once whether the client wants HTML or JSON ([`Wants`]);
//! - refuses unsafe requests from other sites (`Origin`, `Sec-Fetch-Site`: 403),
//!   bodies over 16 KiB (413) and bodies that do not say what they are (415);
//! - renders every error, whoever raised it, as the HTML error page for browsers
//!   or `{"message": ...}` for programs; a browser that needs to log in is sent
//!   to `/login?next=...` instead;
//! - adds the security headers, and `Cache-Control: no-store` wherever a
//!   handler did not choose a cache policy itself;
//! - logs one line per request (method, path without the query, status,
//!   latency, request id, user id when known) and answers the request id in
//!   `X-Request-Id`. Nothing else of the request is logged: no query string,
//!   header, cookie or body.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::cookie::{time::Duration, Cookie};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::error::InternalError;
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage as _, HttpResponse, ResponseError as _};

use super::body::{unsupported_media_type, BodyKind, MAX_BODY_BYTES};
use super::pages::{self, ErrorPage, STYLE_HREF};
use super::{AppState, Wants};
use crate::error::{AppError, ErrorInfo};
use crate::sessions::Remembered;
use crate::startup::cookie_name;
use crate::users::UserId;

const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
                   base-uri 'none'; frame-ancestors 'none'";

pub async fn edge(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let started = std::time::Instant::now();
    let request_id = request_id(req.headers());
    let method = req.method().clone();
    // A cheap clone (shared bytes): the path for the log line, and where a
    // browser sent to the login page comes back to.
    let uri = req.uri().clone();
    let wants = Wants::of(req.headers());
    req.extensions_mut().insert(wants);
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let settings = state.as_ref().map(|state| &state.settings);
    let secure = settings.is_some_and(|s| s.cookie_secure);
    let get_path =
        (method == Method::GET).then(|| uri.path_and_query().map_or(uri.path(), |pq| pq.as_str()));
    let finish = |response: HttpResponse<BoxBody>| {
        let mut response =
            if response.status().is_client_error() || response.status().is_server_error() {
                render_error(response, wants, get_path)
            } else {
                response
            };
        let remembered = response.extensions().get::<Remembered>().is_some();
        if let (Some(settings), true) = (settings, remembered) {
            persist_session_cookie(
                response.headers_mut(),
                cookie_name(settings.cookie_secure),
                settings.remember_me_lifetime,
            );
        }
        add_headers(response.headers_mut(), secure);
        if let Ok(id) = HeaderValue::from_str(&request_id) {
            response
                .headers_mut()
                .insert(HeaderName::from_static("x-request-id"), id);
        }
        response
    };
    let log = |status: StatusCode, user: Option<UserId>, route: Option<&str>| {
        if let Some(state) = &state {
            let route = route.unwrap_or("unmatched");
            state
                .metrics
                .request(method.as_str(), route, status.as_u16(), started.elapsed());
        }
        tracing::info!(
            target: "latchkey::request",
            method = %method,
            path = %uri.path(),
            status = status.as_u16(),
            latency_ms = started.elapsed().as_secs_f64() * 1000.0,
            request_id = %request_id,
            user_id = user.map(|id| id.0),
            "request"
        );
    };

    if let Err(err) = check_unsafe_request(&req) {
        let (req, _) = req.into_parts();
        let response = finish(err.error_response());
        log(response.status(), None, req.match_pattern().as_deref());
        return Ok(ServiceResponse::new(req, response));
    }
    match next.call(req).await {
        Ok(response) => {
            let (req, res) = response.map_into_boxed_body().into_parts();
            let response = finish(res);
            let user = req.extensions().get::<UserId>().copied();
            log(response.status(), user, req.match_pattern().as_deref());
            Ok(ServiceResponse::new(req, response))
        }
        // Raised by a middleware, not a handler: in practice the session store,
        // which fails when the database cannot be reached.
        Err(err) => {
            let status = err.as_response_error().status_code();
            let app_error = if status.is_server_error() {
                tracing::warn!(error = ?err, "session store unavailable");
                AppError::Unavailable {
                    retry_after_secs: 1,
                    cause: None,
                }
            } else {
                AppError::Status(status)
            };
            let response = finish(app_error.error_response());
            log(response.status(), None, None);
            Err(InternalError::from_response(err, response).into())
        }
    }
}

/// The client's `X-Request-Id` when it is a sane token (a proxy's), else a new one.
fn request_id(headers: &HeaderMap) -> String {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|id| {
            (1..=64).contains(&id.len())
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .map_or_else(|| hex::encode(rand::random::<[u8; 8]>()), str::to_owned)
}

/// Rules for every request that may change something (anything but GET/HEAD/OPTIONS).
fn check_unsafe_request(req: &ServiceRequest) -> Result<(), AppError> {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    let headers = req.headers();
    let text = |name: HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    if text(HeaderName::from_static("sec-fetch-site")) == Some("cross-site") {
        return Err(AppError::Forbidden(CROSS_SITE));
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let host = text(header::HOST).or_else(|| req.uri().authority().map(|a| a.as_str()));
        if !same_origin(origin, host) {
            return Err(AppError::Forbidden(CROSS_SITE));
        }
    }
    let length = text(header::CONTENT_LENGTH).and_then(|v| v.trim().parse::<u64>().ok());
    if length.is_some_and(|len| len > MAX_BODY_BYTES as u64) {
        return Err(AppError::PayloadTooLarge);
    }
    let has_body =
        length.is_some_and(|len| len > 0) || headers.contains_key(header::TRANSFER_ENCODING);
    if has_body && BodyKind::of(headers)?.is_none() {
        return Err(unsupported_media_type());
    }
    Ok(())
}

const CROSS_SITE: &str = "Requests from other sites are not accepted.";

/// Whether `Origin` names this host (the authority part; `null` never does).
fn same_origin(origin: &HeaderValue, host: Option<&str>) -> bool {
    let (Ok(origin), Some(host)) = (origin.to_str(), host) else {
        return false;
    };
    origin
        .split_once("://")
        .is_some_and(|(_, authority)| authority.eq_ignore_ascii_case(host))
}

fn render_error(
    response: HttpResponse<BoxBody>,
    wants: Wants,
    get_path: Option<&str>,
) -> HttpResponse<BoxBody> {
    let status = response.status();
    let info = response.extensions().get::<ErrorInfo>().cloned();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let message = match &info {
        Some(info) => info.message.clone(),
        None => AppError::Status(status).message(),
    };

    match wants {
        Wants::Html if info.as_ref().is_some_and(|i| i.login_required) => {
            let location = match get_path {
                Some(path) => format!(
                    "/login?{}",
                    serde_urlencoded::to_string([("next", path)]).unwrap_or_default()
                ),
                None => "/login".to_owned(),
            };
            let mut redirect = HttpResponse::SeeOther()
                .insert_header((header::LOCATION, location))
                .finish();
            for cookie in response.headers().get_all(header::SET_COOKIE) {
                redirect
                    .headers_mut()
                    .append(header::SET_COOKIE, cookie.clone());
            }
            redirect
        }
        // A page that answers with an error status itself (the login form after a failure).
        Wants::Html if content_type.starts_with("text/html") => response,
        Wants::Html => {
            let page = ErrorPage {
                style: &STYLE_HREF,
                title: title(status),
                message: &message,
            };
            let html = match pages::render(status, &page) {
                Ok(page) => page.into_body(),
                Err(_) => BoxBody::new(message),
            };
            replace_body(response, "text/html; charset=utf-8", html)
        }
        Wants::Json if content_type.starts_with("application/json") => response,
        Wants::Json => {
            let json = serde_json::json!({ "message": message }).to_string();
            replace_body(response, "application/json", BoxBody::new(json))
        }
    }
}

fn replace_body(
    response: HttpResponse<BoxBody>,
    content_type: &'static str,
    body: BoxBody,
) -> HttpResponse<BoxBody> {
    let mut response = response.set_body(body);
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.remove(header::CONTENT_LENGTH);
    response
}

/// Gives the session cookie set by this response a `Max-Age` (remember me).
fn persist_session_cookie(headers: &mut HeaderMap, name: &str, lifetime: std::time::Duration) {
    let max_age = Duration::seconds(i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX));
    let cookies: Vec<HeaderValue> = headers.get_all(header::SET_COOKIE).cloned().collect();
    headers.remove(header::SET_COOKIE);
    for value in cookies {
        let persisted = value
            .to_str()
            .ok()
            .and_then(|text| Cookie::parse(text.to_owned()).ok())
            .filter(|cookie| cookie.name() == name && !cookie.value().is_empty())
            .and_then(|mut cookie| {
                cookie.set_max_age(max_age);
                HeaderValue::from_str(&cookie.to_string()).ok()
            });
        headers.append(header::SET_COOKIE, persisted.unwrap_or(value));
    }
}

fn add_headers(headers: &mut HeaderMap, secure: bool) {
    let set = |headers: &mut HeaderMap, name: &'static str, value: &'static str| {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    };
    set(headers, "content-security-policy", CSP);
    set(headers, "x-content-type-options", "nosniff");
    set(headers, "referrer-policy", "same-origin");
    set(headers, "x-frame-options", "DENY");
    if secure {
        set(
            headers,
            "strict-transport-security",
            "max-age=31536000; includeSubDomains",
        );
    }
    if !headers.contains_key(header::CACHE_CONTROL) {
        set(headers, "cache-control", "no-store");
    }
}

fn title(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "Bad request",
        401 => "Please log in",
        403 => "Forbidden",
        404 => "Page not found",
        405 => "Method not allowed",
        409 => "Conflict",
        413 => "Request too large",
        415 => "Unsupported request",
        429 => "Too many attempts",
        503 => "Service unavailable",
        s if s >= 500 => "Something went wrong",
        _ => "Request refused",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_host_is_the_same_origin() {
        let host = Some("127.0.0.1:8080");
        let origin = |o: &'static str| HeaderValue::from_static(o);
        assert!(same_origin(&origin("http://127.0.0.1:8080"), host));
        assert!(!same_origin(&origin("http://127.0.0.1:8081"), host));
        assert!(!same_origin(&origin("https://evil.example"), host));
        assert!(!same_origin(&origin("null"), host));
        assert!(!same_origin(&origin("http://127.0.0.1:8080"), None));
    }
}
