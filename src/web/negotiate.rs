//! HTML or JSON: decided once per request, from `Accept` and the body's type.

use std::future::{ready, Ready};

use actix_web::dev::Payload;
use actix_web::http::header::{self, HeaderMap};
use actix_web::{FromRequest, HttpMessage as _, HttpRequest};

use super::BodyKind;

/// What the client wants back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wants {
    Html,
    Json,
}

impl Wants {
    /// HTML when `Accept` prefers `text/html` to JSON, or when the body is a form.
    pub fn of(headers: &HeaderMap) -> Self {
        if matches!(BodyKind::of(headers), Ok(Some(BodyKind::Form))) {
            return Self::Html;
        }
        let accept = headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if prefers_html(accept) {
            Self::Html
        } else {
            Self::Json
        }
    }
}

/// The quality `accept` gives a media type (`type/subtype`), the most specific range winning.
fn quality(accept: &str, media: &str) -> f32 {
    let (kind, _) = media.split_once('/').unwrap_or((media, ""));
    let mut best: Option<(u8, f32)> = None;
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let name = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0)
            .clamp(0.0, 1.0);
        let specificity = if name == media {
            3
        } else if name.strip_suffix("/*") == Some(kind) {
            2
        } else if name == "*/*" {
            1
        } else {
            continue;
        };
        if best.is_none_or(|(s, _)| specificity > s) {
            best = Some((specificity, q));
        }
    }
    best.map_or(0.0, |(_, q)| q)
}

fn prefers_html(accept: &str) -> bool {
    let html = quality(accept, "text/html");
    html > 0.0 && html > quality(accept, "application/json")
}

impl FromRequest for Wants {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, Self::Error>>;

    /// The edge middleware records the decision; computed again only outside it.
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let wants = req
            .extensions()
            .get::<Wants>()
            .copied()
            .unwrap_or_else(|| Wants::of(req.headers()));
        ready(Ok(wants))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn browsers_get_html_and_programs_get_json() {
        let chromium =
            "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8";
        assert!(prefers_html(chromium));
        assert!(prefers_html("text/html"));
        assert!(prefers_html("text/*"));
        assert!(!prefers_html(""));
        assert!(!prefers_html("*/*"), "curl");
        assert!(!prefers_html("application/json"));
        assert!(!prefers_html("application/json, text/html;q=0.5"));
        assert!(!prefers_html("text/html;q=0"));
        assert!(prefers_html("application/json;q=0.2, text/html"));
    }
}
