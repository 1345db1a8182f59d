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
//!   header, cookie or body;
//! - serves the request inside a span holding its request id (and its user
//!   id once known), so that every line logged meanwhile, warnings and errors
//!   included, names the request it belongs to.

use std::time::Instant;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::error::InternalError;
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::http::{Method, StatusCode, Uri};
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage as _, HttpRequest, HttpResponse, ResponseError as _};
use tracing::Instrument as _;

use crate::error::{status_text, AppError, ErrorInfo};
use crate::metrics::Metrics;
use crate::state::AppState;
use crate::users::UserId;
use crate::web::body::{unsupported_media_type, BodyKind, HeadersArrived, MAX_BODY_BYTES};
use crate::web::pages::{self, ErrorPage, STYLE_HREF};
use crate::web::{RequestSpan, Wants};

const CSP: &str = "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; \
                   img-src 'self'; form-action 'self'; \
                   base-uri 'none'; frame-ancestors 'none'";

pub async fn edge(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let exchange = Exchange::begin(&req);
    // Every line logged while the request is served carries its id, and its
    // user's once known (`web::identify`). ERROR: the span's level decides
    // when it exists, and it must whenever any line of the request is logged.
    let span = tracing::error_span!(
        target: "latchkey::request",
        "request",
        request_id = %exchange.request_id,
        user_id = tracing::field::Empty,
    );
    req.extensions_mut().insert(exchange.wants);
    req.extensions_mut()
        .insert(HeadersArrived(exchange.started));
    req.extensions_mut().insert(RequestSpan(span.clone()));

    let (result, served) = exchange.serve(req, next).instrument(span).await;
    // Outside the span: the line names the request id and user itself.
    exchange.log(served);
    result
}

/// What the edge keeps of a request to finish its response and log it.
struct Exchange {
    started: Instant,
    request_id: String,
    method: Method,
    /// A cheap clone (shared bytes): the path for the log line, and where a
    /// browser sent to the login page comes back to.
    uri: Uri,
    wants: Wants,
    secure: bool,
    metrics: Option<std::sync::Arc<Metrics>>,
}

/// What the request's log line says of how it was served.
struct Served {
    status: StatusCode,
    user: Option<UserId>,
    route: Option<String>,
}

impl Served {
    /// `req`: the request, unless a middleware's error took it away.
    fn of(response: &HttpResponse<BoxBody>, req: Option<&HttpRequest>) -> Self {
        Self {
            status: response.status(),
            user: req.and_then(|req| req.extensions().get::<UserId>().copied()),
            route: req.and_then(HttpRequest::match_pattern),
        }
    }
}

impl Exchange {
    /// Checks the request, passes it on, and finishes the response.
    async fn serve(
        &self,
        req: ServiceRequest,
        next: Next<impl MessageBody + 'static>,
    ) -> (Result<ServiceResponse<BoxBody>, actix_web::Error>, Served) {
        if let Err(err) = check_unsafe_request(&req, self.secure) {
            let (req, _) = req.into_parts();
            let response = self.finish(err.error_response());
            let served = Served::of(&response, Some(&req));
            return (Ok(ServiceResponse::new(req, response)), served);
        }
        match next.call(req).await {
            Ok(response) => {
                let (req, res) = response.map_into_boxed_body().into_parts();
                let response = self.finish(res);
                let served = Served::of(&response, Some(&req));
                (Ok(ServiceResponse::new(req, response)), served)
            }
            // Raised by a middleware, not a handler (the request is gone with it);
            // its response, if it made one, is rendered like any other error.
            Err(err) => {
                let response = self.finish(err.error_response());
                let served = Served::of(&response, None);
                (
                    Err(InternalError::from_response(err, response).into()),
                    served,
                )
            }
        }
    }

    fn begin(req: &ServiceRequest) -> Self {
        let state = req.app_data::<web::Data<AppState>>();
        Self {
            started: Instant::now(),
            request_id: request_id(req.headers()),
            method: req.method().clone(),
            uri: req.uri().clone(),
            wants: Wants::of(req.headers()),
            secure: state.is_some_and(|s| s.settings.cookie_secure),
            metrics: state.map(|s| s.metrics.clone()),
        }
    }

    /// Renders errors for the client, adds the security headers and the request id.
    fn finish(&self, response: HttpResponse<BoxBody>) -> HttpResponse<BoxBody> {
        let status = response.status();
        let mut response = if status.is_client_error() || status.is_server_error() {
            let get_path = (self.method == Method::GET).then(|| {
                self.uri
                    .path_and_query()
                    .map_or(self.uri.path(), |pq| pq.as_str())
            });
            render_error(response, self.wants, get_path)
        } else {
            response
        };
        add_headers(response.headers_mut(), self.secure);
        if let Ok(id) = HeaderValue::from_str(&self.request_id) {
            response
                .headers_mut()
                .insert(HeaderName::from_static("x-request-id"), id);
        }
        response
    }

    /// Counts the request and logs its one line.
    fn log(&self, served: Served) {
        let Served {
            status,
            user,
            route,
        } = served;
        let elapsed = self.started.elapsed();
        if let Some(metrics) = &self.metrics {
            let route = route.as_deref().unwrap_or("unmatched");
            metrics.request(self.method.as_str(), route, status.as_u16(), elapsed);
        }
        tracing::info!(
            target: "latchkey::request",
            method = %self.method,
            path = %logged_path(self.uri.path()),
            status = status.as_u16(),
            latency_ms = elapsed.as_secs_f64() * 1000.0,
            request_id = %self.request_id,
            user_id = user.map(|id| id.0),
            "request"
        );
    }
}

/// The path as the log line shows it: a one-time link's token (`/welcome/TOKEN`)
/// is a credential, so it is never written down.
fn logged_path(path: &str) -> &str {
    if path.starts_with("/welcome/") {
        "/welcome/…"
    } else {
        path
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
/// `secure`: cookies are `Secure`, so this site is served over https.
fn check_unsafe_request(req: &ServiceRequest, secure: bool) -> Result<(), AppError> {
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
        let scheme = if secure { "https" } else { "http" };
        if !same_origin(origin, scheme, host) {
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

/// Whether `Origin` is this site: this host, and the scheme it is served
/// over (`null` never is). The scheme is taken from the settings, not from a
/// header: with `Secure` cookies the site is https (behind a TLS proxy, say),
/// else plain http, so an `https://` page of another server on this host
/// name (or an `http://` one, for an https site) is another origin.
fn same_origin(origin: &HeaderValue, scheme: &str, host: Option<&str>) -> bool {
    let (Ok(origin), Some(host)) = (origin.to_str(), host) else {
        return false;
    };
    origin
        .split_once("://")
        .is_some_and(|(their_scheme, authority)| {
            their_scheme.eq_ignore_ascii_case(scheme) && authority.eq_ignore_ascii_case(host)
        })
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
    let text = status_text(status);
    let message = match &info {
        Some(info) => info.message.clone(),
        None => text.message.to_owned(),
    };

    match wants {
        Wants::Html if info.as_ref().is_some_and(|i| i.send_to.is_some()) => {
            let to = info.as_ref().and_then(|i| i.send_to).unwrap_or("/login");
            let location = match get_path {
                Some(path) => format!(
                    "{to}?{}",
                    serde_urlencoded::to_string([("next", path)]).unwrap_or_default()
                ),
                None => to.to_owned(),
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
                title: text.title,
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

fn add_headers(headers: &mut HeaderMap, secure: bool) {
    let set = |headers: &mut HeaderMap, name: &'static str, value: &'static str| {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    };
    set(headers, "content-security-policy", CSP);
    set(headers, "x-content-type-options", "nosniff");
    // A route may choose a stricter policy (a one-time link's page: strict-origin).
    if !headers.contains_key(header::REFERRER_POLICY) {
        set(headers, "referrer-policy", "same-origin");
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_host_is_the_same_origin() {
        let host = Some("127.0.0.1:8080");
        let origin = |o: &'static str| HeaderValue::from_static(o);
        assert!(same_origin(&origin("http://127.0.0.1:8080"), "http", host));
        assert!(!same_origin(&origin("http://127.0.0.1:8081"), "http", host));
        assert!(!same_origin(&origin("https://evil.example"), "http", host));
        assert!(!same_origin(&origin("null"), "http", host));
        assert!(!same_origin(&origin("http://127.0.0.1:8080"), "http", None));
    }

    #[test]
    fn the_scheme_is_part_of_the_origin() {
        let same = |origin: &'static str, scheme| {
            same_origin(
                &HeaderValue::from_static(origin),
                scheme,
                Some("login.example.com"),
            )
        };
        assert!(!same("https://login.example.com", "http"));
        assert!(!same("http://login.example.com", "https"));
        assert!(same("https://login.example.com", "https"));
        assert!(same("HTTPS://Login.Example.com", "https"));
        assert!(!same("login.example.com", "https"));
    }
}
