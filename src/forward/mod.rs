//! Protecting other apps: the question a reverse proxy asks before it lets a
//! request through to the app behind it.
//!
//! - `/auth/verify` (nginx `auth_request`, which understands 2xx, 401 and 403
//!   only): `200` with the user in `X-Latchkey-User`, `X-Latchkey-User-Id` and
//!   `X-Latchkey-Second-Factor`, else `401`.
//! - `/auth/forward` (Caddy `forward_auth`, Traefik `forwardAuth`, which hand a
//!   non-2xx answer back to the client): the same, except that a browser is
//!   sent to the login page with the URL it asked for as `next` (or, signed
//!   in but yet to set up a required second factor, to the account page).
//!
//! A session cookie or a bearer token is read on the same hot path as
//! `/protected`, so a revocation is in force here before it is answered.
//! `?second_factor=required` (among whatever query the proxy appends) refuses
//! a session without a second factor: a client can only tighten.

use actix_web::http::header::{HeaderName, HeaderValue, LOCATION};
use actix_web::{web, HttpRequest, HttpResponse};

use crate::auth::CurrentUser;
use crate::error::AppError;
use crate::state::AppState;
use crate::web::client::from_trusted_proxy;
use crate::web::Wants;

const NOT_SIGNED_IN: &str = "Not signed in.";

/// Whether any `second_factor=required` is among the query's pairs (parsed
/// leniently: a malformed pair elsewhere cannot hide it).
fn second_factor_required(query: &str) -> bool {
    url::form_urlencoded::parse(query.as_bytes())
        .any(|(key, value)| key == "second_factor" && value == "required")
}

/// `200` and the identity headers, or `403` when a second factor is required.
fn pass(req: &HttpRequest, current: &CurrentUser) -> Result<HttpResponse, AppError> {
    let second_factor = current.second_factor;
    if second_factor_required(req.query_string()) && !second_factor {
        return Err(AppError::Forbidden("A second factor is required."));
    }
    let mut response = HttpResponse::Ok().finish();
    let headers = response.headers_mut();
    let mut set = |name: &'static str, value: &[u8]| {
        // A name is UTF-8 text: sent as its bytes (obs-text), never refused.
        if let Ok(value) = HeaderValue::from_bytes(value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    };
    set("x-latchkey-user", current.user.username.as_bytes());
    set("x-latchkey-user-id", current.user.id.to_string().as_bytes());
    set(
        "x-latchkey-second-factor",
        if second_factor { b"yes" } else { b"no" },
    );
    Ok(response)
}

/// `/auth/verify`, any method.
pub async fn verify(
    req: HttpRequest,
    current: Result<CurrentUser, AppError>,
) -> Result<HttpResponse, AppError> {
    match current {
        Ok(current) => pass(&req, &current),
        // nginx turns anything but 2xx, 401 and 403 into a 500 for the
        // client: whatever went wrong, this request does not pass.
        Err(_) => Err(AppError::Unauthorized(NOT_SIGNED_IN)),
    }
}

/// `/auth/forward`, any method: browsers without a session go to the login page.
pub async fn forward(
    req: HttpRequest,
    state: web::Data<AppState>,
    wants: Wants,
    current: Result<CurrentUser, AppError>,
) -> Result<HttpResponse, AppError> {
    match current {
        Ok(current) => pass(&req, &current),
        Err(AppError::LoginRequired | AppError::Unauthorized(_)) if wants == Wants::Html => {
            let login = login_url(&req, &state)?;
            Ok(HttpResponse::Found()
                .insert_header((LOCATION, login))
                .finish())
        }
        Err(AppError::LoginRequired) => Err(AppError::Unauthorized(NOT_SIGNED_IN)),
        // Signed in, but a second factor must be set up first: on to the
        // enrolment page, on latchkey's own host (the proxy hands this answer
        // to a browser that asked for the app's).
        Err(AppError::EnrolRequired) if wants == Wants::Html => {
            let account = public_url(&state)?
                .join("/account")
                .map_err(AppError::internal)?;
            Ok(HttpResponse::Found()
                .insert_header((LOCATION, account.to_string()))
                .finish())
        }
        Err(other) => Err(other),
    }
}

fn public_url(state: &AppState) -> Result<&url::Url, AppError> {
    state
        .settings
        .public_url
        .as_ref()
        .ok_or_else(|| AppError::internal(anyhow::anyhow!("the public URL is not resolved")))
}

/// `PUBLIC_URL/login?next=` the URL the browser asked the app for, rebuilt
/// from `X-Forwarded-Proto`, `-Host` and `-Uri` when a trusted proxy sent
/// them; without them, no `next`.
fn login_url(req: &HttpRequest, state: &AppState) -> Result<String, AppError> {
    let mut login = public_url(state)?
        .join("/login")
        .map_err(AppError::internal)?;
    if let Some(original) = original_url(req) {
        login.query_pairs_mut().append_pair("next", &original);
    }
    Ok(login.to_string())
}

fn original_url(req: &HttpRequest) -> Option<String> {
    if !from_trusted_proxy(req) {
        return None;
    }
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let proto = header("x-forwarded-proto")?;
    let host = header("x-forwarded-host")?;
    let uri = header("x-forwarded-uri").unwrap_or("/");
    let sane = matches!(proto, "http" | "https")
        && !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
        && uri.starts_with('/')
        && !uri.starts_with("//");
    sane.then(|| format!("{proto}://{host}{uri}"))
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/auth/verify", web::route().to(verify))
        .route("/auth/forward", web::route().to(forward));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_second_factor_required_pair_counts() {
        assert!(second_factor_required("second_factor=required"));
        assert!(second_factor_required("a=1&second_factor=required&b=%ZZ"));
        assert!(second_factor_required(
            "second_factor=no&second_factor=required"
        ));
        assert!(!second_factor_required("second_factor=no"));
        assert!(!second_factor_required(""));
        assert!(!second_factor_required("xsecond_factor=required"));
    }
}
