//! Who is asking: the client's address and user agent, as the audit trail and
//! the session list record them.

use std::net::IpAddr;

use actix_web::http::header::{self, HeaderMap};
use actix_web::HttpRequest;

use super::WebContext;

/// Longest user agent kept.
const MAX_USER_AGENT_CHARS: usize = 256;

/// Where a request came from; `None` fields for the command line.
#[derive(Debug, Clone, Default)]
pub struct Client {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

impl Client {
    pub fn of(req: &HttpRequest) -> Self {
        Self {
            ip: client_ip(req),
            user_agent: user_agent(req),
        }
    }
}

/// The client's address: the TCP peer, or, when the peer is a trusted proxy,
/// the nearest address in `X-Forwarded-For` that is not a trusted proxy.
fn client_ip(req: &HttpRequest) -> Option<String> {
    let peer = req.peer_addr()?.ip();
    let trusted = WebContext::of(req)
        .map(|web| web.settings.trusted_proxies.as_slice())
        .unwrap_or_default();
    Some(forwarded_client(peer, trusted, req.headers()).to_string())
}

fn forwarded_client(peer: IpAddr, trusted: &[ipnet::IpNet], headers: &HeaderMap) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let hops: Vec<IpAddr> = headers
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
fn user_agent(req: &HttpRequest) -> Option<String> {
    let agent = req.headers().get(header::USER_AGENT)?.to_str().ok()?;
    Some(agent.chars().take(MAX_USER_AGENT_CHARS).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderName, HeaderValue};

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
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();

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
