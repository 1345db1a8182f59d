//! The HTTP edge: negotiation, bodies, CSRF, pages, security headers, health routes.

pub mod body;
pub mod csrf;
pub mod edge;
pub mod flash;
pub mod health;
pub mod metrics;
pub mod negotiate;
pub mod pages;
pub mod redirect;
pub mod state;

use actix_web::{web, HttpRequest, HttpResponse};

pub use body::{Body, BodyKind};
pub use negotiate::Wants;
pub use state::AppState;

use crate::error::AppError;

/// The client's address: the TCP peer, or, when the peer is a trusted proxy,
/// the nearest address in `X-Forwarded-For` that is not a trusted proxy.
pub fn client_ip(req: &HttpRequest) -> Option<String> {
    let peer = req.peer_addr()?.ip();
    let trusted = req
        .app_data::<web::Data<AppState>>()
        .map(|state| state.settings.trusted_proxies.as_slice())
        .unwrap_or_default();
    Some(forwarded_client(peer, trusted, req.headers()).to_string())
}

fn forwarded_client(
    peer: std::net::IpAddr,
    trusted: &[ipnet::IpNet],
    headers: &actix_web::http::header::HeaderMap,
) -> std::net::IpAddr {
    let is_trusted = |ip: &std::net::IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let hops: Vec<std::net::IpAddr> = headers
        .get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map_while(|hop| hop.trim().parse().ok())
        .collect();
    // Right to left: each trusted hop vouches for the one before it.
    let mut client = peer;
    for hop in hops.into_iter().rev() {
        client = hop;
        if !is_trusted(&hop) {
            break;
        }
    }
    client
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
        .route("/metrics", web::get().to(metrics::metrics))
        .service(
            web::resource("/static/{name}")
                .route(web::get().to(pages::asset))
                .route(web::head().to(pages::asset)),
        );
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};

    fn xff(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            HeaderName::from_static("x-forwarded-for"),
            HeaderValue::from_str(value).unwrap(),
        );
        headers
    }

    #[test]
    fn forwarded_for_counts_only_from_trusted_proxies() {
        let proxy = "10.0.0.5".parse().unwrap();
        let stranger = "203.0.113.9".parse().unwrap();
        let trusted = ["10.0.0.0/8".parse().unwrap()];
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();

        assert_eq!(
            forwarded_client(stranger, &trusted, &xff("1.2.3.4")),
            stranger
        );
        assert_eq!(forwarded_client(proxy, &[], &xff("1.2.3.4")), proxy);
        assert_eq!(
            forwarded_client(proxy, &trusted, &xff("1.2.3.4")),
            ip("1.2.3.4")
        );
        // A client cannot choose its address by sending its own header first.
        assert_eq!(
            forwarded_client(proxy, &trusted, &xff("6.6.6.6, 1.2.3.4, 10.0.0.7")),
            ip("1.2.3.4")
        );
        assert_eq!(forwarded_client(proxy, &trusted, &xff("garbage")), proxy);
        assert_eq!(forwarded_client(proxy, &trusted, &HeaderMap::new()), proxy);
    }
}
