//! Where a `next` parameter may send the browser: a local path, or an absolute
//! URL on a host listed in `LATCHKEY_ALLOWED_HOSTS` (the apps behind forward auth).

use crate::config::AllowedHost;

/// The request's `?next=` (unchecked: pass it through [`safe_next`] or
/// [`safe_next_for`]); empty when there is none.
pub fn next_param(req: &actix_web::HttpRequest) -> String {
    #[derive(serde::Deserialize)]
    struct Next {
        next: Option<String>,
    }
    serde_urlencoded::from_str::<Next>(req.query_string())
        .ok()
        .and_then(|q| q.next)
        .unwrap_or_default()
}

/// Longest `next` kept.
const MAX_LEN: usize = 2048;

/// `next` when it is a local path (`/...`), else `None`.
///
/// Refused: anything not starting with exactly one `/` (`//host`, `/\host`,
/// schemes, relative paths), any backslash, control character, space or
/// non-ASCII character, and percent-encoded slashes or backslashes, which some
/// servers and browsers decode before following.
pub fn safe_next(next: &str) -> Option<&str> {
    let bytes = next.as_bytes();
    let local = bytes.first() == Some(&b'/') && !matches!(bytes.get(1), Some(b'/' | b'\\'));
    let clean = next.len() <= MAX_LEN && bytes.iter().all(|b| b.is_ascii_graphic() && *b != b'\\');
    let lower = next.to_ascii_lowercase();
    let encoded_separator = lower.contains("%2f") || lower.contains("%5c");
    (local && clean && !encoded_separator).then_some(next)
}

/// `next` when it is a local path ([`safe_next`]), or an absolute `http(s)` URL
/// on an allowed host: parsed as a browser would, with no user info, no
/// control characters, spaces or backslashes, and a port only when the host's
/// entry names it.
pub fn safe_next_for<'a>(next: &'a str, allowed: &[AllowedHost]) -> Option<&'a str> {
    if let Some(local) = safe_next(next) {
        return Some(local);
    }
    let lower = next.to_ascii_lowercase();
    let absolute = lower.starts_with("https://") || lower.starts_with("http://");
    let clean = next.len() <= MAX_LEN && next.bytes().all(|b| b.is_ascii_graphic() && b != b'\\');
    if !(absolute && clean) || allowed.is_empty() {
        return None;
    }
    let url = url::Url::parse(next).ok()?;
    let plain = url.username().is_empty() && url.password().is_none();
    let host = url.host_str()?;
    let port = url.port();
    (plain && allowed.iter().any(|h| h.allows(host, port))).then_some(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(list: &[&str]) -> Vec<AllowedHost> {
        let joined = list.join(",");
        crate::config::Settings::from_lookup(|k| {
            (k == "LATCHKEY_ALLOWED_HOSTS").then(|| joined.clone())
        })
        .unwrap()
        .allowed_hosts
    }

    #[test]
    fn absolute_urls_only_on_allowed_hosts() {
        let allowed = hosts(&["app.example.com", "*.apps.example.com"]);
        for ok in [
            "https://app.example.com/",
            "https://app.example.com/a?b=c#d",
            "http://APP.example.com/x",
            "https://one.apps.example.com/x",
        ] {
            assert_eq!(safe_next_for(ok, &allowed), Some(ok), "{ok}");
        }
        for bad in [
            "https://evil.example/",
            "https://app.example.com.evil.example/",
            "https://app.example.com@evil.example/",
            "https://evil.example@app.example.com/",
            "https://user:pw@app.example.com/",
            "https://app.example.com:8443/",
            "https://apps.example.com/",
            "javascript://app.example.com/%0aalert(1)",
            "ftp://app.example.com/",
            "https:\\\\app.example.com/",
            "https://app.example.com\\@evil.example/",
            "https://app.example.com/\r\nSet-Cookie:x",
            "//app.example.com/",
        ] {
            assert_eq!(safe_next_for(bad, &allowed), None, "{bad:?}");
        }
        assert_eq!(safe_next_for("https://app.example.com/", &[]), None);
        assert_eq!(safe_next_for("/protected", &[]), Some("/protected"));
    }

    #[test]
    fn local_paths_are_kept() {
        for ok in [
            "/",
            "/protected",
            "/protected?tab=2",
            "/account#sessions",
            "/a/b?x=%20y",
        ] {
            assert_eq!(safe_next(ok), Some(ok), "{ok}");
        }
    }

    #[test]
    fn hostile_targets_are_refused() {
        let hostile = [
            "",
            "//evil.example",
            "///evil.example",
            "/\\evil.example",
            "\\\\evil.example",
            "/\\/evil.example",
            "https://evil.example",
            "http:evil.example",
            "javascript:alert(1)",
            "data:text/html,hi",
            "evil.example",
            "protected",
            "/%2F%2Fevil.example",
            "/%2fevil.example",
            "/%5Cevil.example",
            "/%5c%5cevil.example",
            "/\t/evil.example",
            "/\n/evil.example",
            "/\r\nLocation: https://evil.example",
            "/ /evil.example",
            "/\u{0}",
            "/caf\u{e9}",
            "/\u{ff0f}evil.example",
            "\u{3000}//evil.example",
            " /protected",
        ];
        for bad in hostile {
            assert_eq!(safe_next(bad), None, "{bad:?}");
        }
        assert_eq!(safe_next(&format!("/{}", "a".repeat(3000))), None);
    }
}
