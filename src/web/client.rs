//! Who is asking: the client's address and user agent, as the audit trail and
//! the session list record them, and the key its login tries are throttled by.

use std::net::{IpAddr, SocketAddr};

use actix_web::http::header::{self, HeaderMap};
use actix_web::HttpRequest;

use super::WebContext;

/// Longest user agent kept.
const MAX_USER_AGENT_CHARS: usize = 256;

/// How much of an IPv6 address one client is: a /64 is what a single
/// customer line gets, so any address in it is the same client.
const IPV6_CLIENT_PREFIX: u8 = 64;

/// Where a request came from; `None` fields for the command line.
#[derive(Debug, Clone, Default)]
pub struct Client {
    /// The full address, as recorded (audit trail, session list).
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    addr: Option<IpAddr>,
}

impl Client {
    pub fn of(req: &HttpRequest) -> Self {
        let addr = client_addr(req);
        Self {
            ip: addr.map(|addr| addr.to_string()),
            user_agent: user_agent(req),
            addr,
        }
    }

    /// The client's address, when known.
    pub fn addr(&self) -> Option<IpAddr> {
        self.addr
    }

    /// What login throttling counts by: the address for IPv4, its /64
    /// network for IPv6 (one host there holds a whole /64 to pick from).
    pub fn throttle_key(&self) -> Option<String> {
        self.addr.map(throttle_key)
    }

    /// Who is counted for limits: [`Client::throttle_key`], or one shared
    /// `unknown` for every client whose address is not known.
    pub fn throttle_bucket(&self) -> String {
        self.throttle_key().unwrap_or_else(|| "unknown".to_owned())
    }
}

fn throttle_key(addr: IpAddr) -> String {
    match addr {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => ipnet::Ipv6Net::new(v6, IPV6_CLIENT_PREFIX)
            .map_or_else(|_| v6.to_string(), |net| net.trunc().to_string()),
    }
}

/// Whether the request came straight from one of `LATCHKEY_TRUSTED_PROXIES`
/// (whose `X-Forwarded-*` headers may then be believed).
pub fn from_trusted_proxy(req: &HttpRequest) -> bool {
    let Some(peer) = req.peer_addr().map(|p| p.ip().to_canonical()) else {
        return false;
    };
    WebContext::of(req).is_ok_and(|web| {
        web.settings
            .trusted_proxies
            .iter()
            .any(|net| net.contains(&peer))
    })
}

/// The client's address: the TCP peer, or, when the peer is a trusted proxy,
/// what `X-Forwarded-For` says (see [`forwarded_client`]).
fn client_addr(req: &HttpRequest) -> Option<IpAddr> {
    let peer = req.peer_addr()?.ip();
    let trusted = WebContext::of(req)
        .map(|web| web.settings.trusted_proxies.as_slice())
        .unwrap_or_default();
    Some(forwarded_client(peer, trusted, req.headers()))
}

/// Walks `X-Forwarded-For` right to left, from the peer, while each hop is a
/// trusted proxy: each vouches for the entry before it. The first entry that
/// is not a trusted proxy is the client; if it is not an address at all, the
/// client is the last trusted hop (a proxy's own view, never the client's
/// words). Several header lines are one list, in order. An IPv4-mapped IPv6
/// address is its IPv4 address.
fn forwarded_client(peer: IpAddr, trusted: &[ipnet::IpNet], headers: &HeaderMap) -> IpAddr {
    let peer = peer.to_canonical();
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    // An unreadable (non-ASCII) line is one entry that is not an address.
    let entries: Vec<Option<IpAddr>> = headers
        .get_all("x-forwarded-for")
        .flat_map(|line| match line.to_str() {
            Ok(text) => text.split(',').map(parse_entry).collect(),
            Err(_) => vec![None],
        })
        .collect();
    let mut client = peer;
    for entry in entries.into_iter().rev() {
        match entry {
            Some(hop) if is_trusted(&hop) => client = hop,
            Some(hop) => return hop,
            None => return client,
        }
    }
    client
}

/// One `X-Forwarded-For` entry: an address, or an address with a port
/// (`203.0.113.7:4711`, `[2001:db8::1]:443`), as some proxies write it.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    entry
        .parse::<IpAddr>()
        .or_else(|_| entry.parse::<SocketAddr>().map(|addr| addr.ip()))
        .ok()
        .map(|ip| ip.to_canonical())
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

    /// One `X-Forwarded-For` line per item.
    fn xff(lines: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for line in lines {
            headers.append(
                HeaderName::from_static("x-forwarded-for"),
                HeaderValue::from_str(line).unwrap(),
            );
        }
        headers
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn nets(list: &[&str]) -> Vec<ipnet::IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    #[test]
    fn forwarded_for_counts_only_from_trusted_proxies() {
        let proxy = ip("10.0.0.5");
        let stranger = ip("203.0.113.9");
        let trusted = nets(&["10.0.0.0/8"]);

        assert_eq!(
            forwarded_client(stranger, &trusted, &xff(&["1.2.3.4"])),
            stranger
        );
        assert_eq!(forwarded_client(proxy, &[], &xff(&["1.2.3.4"])), proxy);
        assert_eq!(
            forwarded_client(proxy, &trusted, &xff(&["1.2.3.4"])),
            ip("1.2.3.4")
        );
        // A client cannot choose its address by sending its own header first.
        assert_eq!(
            forwarded_client(proxy, &trusted, &xff(&["6.6.6.6, 1.2.3.4, 10.0.0.7"])),
            ip("1.2.3.4")
        );
        assert_eq!(forwarded_client(proxy, &trusted, &xff(&["garbage"])), proxy);
        assert_eq!(forwarded_client(proxy, &trusted, &HeaderMap::new()), proxy);
    }

    #[test]
    fn junk_in_the_list_never_lets_a_client_pick_its_address() {
        let proxy = ip("10.66.0.1");
        let trusted = nets(&["10.66.0.0/16"]);
        let client = |lines: &[&str]| forwarded_client(proxy, &trusted, &xff(lines));

        // The audit's shape: a trusted-looking address, junk, then the real one.
        assert_eq!(
            client(&["10.66.0.9, junk, 198.51.100.7"]),
            ip("198.51.100.7")
        );
        assert_eq!(client(&["10.66.0.9, , 198.51.100.7"]), ip("198.51.100.7"));
        // Junk where the client should be: the last trusted hop is the client.
        assert_eq!(client(&["198.51.100.7, junk, 10.66.0.2"]), ip("10.66.0.2"));
        assert_eq!(client(&["198.51.100.7, unknown"]), proxy);
        assert_eq!(client(&["198.51.100.7, "]), proxy);
        // Addresses with ports are addresses.
        assert_eq!(client(&["203.0.113.7:4711"]), ip("203.0.113.7"));
        assert_eq!(client(&["[2001:db8::1]:443"]), ip("2001:db8::1"));
    }

    #[test]
    fn several_header_lines_read_as_one_list_in_order() {
        let proxy = ip("10.0.0.1");
        let trusted = nets(&["10.0.0.0/8"]);
        let client = |lines: &[&str]| forwarded_client(proxy, &trusted, &xff(lines));

        assert_eq!(client(&["6.6.6.6", "198.51.100.7"]), ip("198.51.100.7"));
        assert_eq!(
            client(&["6.6.6.6, 198.51.100.7", "10.0.0.2"]),
            ip("198.51.100.7")
        );
        assert_eq!(
            client(&["198.51.100.7", "junk", "10.0.0.2"]),
            ip("10.0.0.2")
        );
        // A line that is not even text is junk too, not skipped.
        let mut headers = xff(&["198.51.100.7"]);
        headers.append(
            HeaderName::from_static("x-forwarded-for"),
            HeaderValue::from_bytes(b"\xff\xfe").unwrap(),
        );
        assert_eq!(forwarded_client(proxy, &trusted, &headers), proxy);
    }

    #[test]
    fn ipv6_clients_are_walked_and_mapped_addresses_are_ipv4() {
        let proxy = ip("2001:db8:ffff::1");
        let trusted = nets(&["2001:db8:ffff::/48", "127.0.0.1/32"]);
        let client = |peer, lines: &[&str]| forwarded_client(peer, &trusted, &xff(lines));

        assert_eq!(
            client(proxy, &["2001:db8:1:2::99, 2001:db8:ffff::2"]),
            ip("2001:db8:1:2::99")
        );
        assert_eq!(
            client(ip("::ffff:127.0.0.1"), &["::ffff:203.0.113.7"]),
            ip("203.0.113.7")
        );
        assert_eq!(
            client(ip("2001:db8:1::1"), &["203.0.113.7"]),
            ip("2001:db8:1::1")
        );
    }

    #[test]
    fn an_ipv6_client_is_throttled_as_its_slash_64() {
        let key = |text: &str| throttle_key(ip(text));

        assert_eq!(key("2001:db8:1:2::1"), "2001:db8:1:2::/64");
        assert_eq!(key("2001:db8:1:2:ffff:ffff:ffff:ffff"), "2001:db8:1:2::/64");
        assert_ne!(key("2001:db8:1:3::1"), key("2001:db8:1:2::1"));
        assert_eq!(key("203.0.113.7"), "203.0.113.7");
        let client = Client {
            ip: Some("2001:db8:1:2::1".into()),
            user_agent: None,
            addr: Some(ip("2001:db8:1:2::1")),
        };
        assert_eq!(client.throttle_key().as_deref(), Some("2001:db8:1:2::/64"));
        assert_eq!(
            client.ip.as_deref(),
            Some("2001:db8:1:2::1"),
            "recorded in full"
        );
        assert_eq!(Client::default().throttle_key(), None);
    }
}
