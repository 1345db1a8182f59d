//! Request bodies: JSON or a urlencoded form, at most 16 KiB, whole within
//! 10 s of the headers, else a clear error.

use std::time::{Duration, Instant};

use actix_web::dev::Payload;
use actix_web::http::header::{self, HeaderMap};
use actix_web::{FromRequest, HttpMessage as _, HttpRequest};
use futures_util::future::LocalBoxFuture;
use futures_util::StreamExt as _;
use serde::de::DeserializeOwned;

use super::WebContext;
use crate::error::AppError;

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// How long after its headers a body may take to arrive whole. A client that
/// trickles its body (slowloris) holds a connection and a worker's attention
/// for at most this long, then gets `408`.
pub const BODY_DEADLINE: Duration = Duration::from_secs(10);

/// When a request's headers had arrived: recorded by the edge middleware, the
/// first to see the request, so the body's deadline counts from there.
#[derive(Debug, Clone, Copy)]
pub struct HeadersArrived(pub Instant);

/// How a body was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    Json,
    Form,
}

impl BodyKind {
    /// The kind named by `Content-Type`; `Ok(None)` when there is none.
    pub fn of(headers: &HeaderMap) -> Result<Option<Self>, AppError> {
        let Some(value) = headers.get(header::CONTENT_TYPE) else {
            return Ok(None);
        };
        let essence = value
            .to_str()
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match essence.as_str() {
            "application/json" => Ok(Some(Self::Json)),
            "application/x-www-form-urlencoded" => Ok(Some(Self::Form)),
            _ => Err(unsupported_media_type()),
        }
    }
}

/// A body of no kind we read (or of no kind at all).
pub fn unsupported_media_type() -> AppError {
    AppError::UnsupportedMediaType(
        "Send the body as application/json or application/x-www-form-urlencoded.",
    )
}

/// Parses a whole body of the kind its `Content-Type` named (`None`: none named).
/// No body at all is an empty JSON object; a body of no named kind is refused.
pub fn parse<T: DeserializeOwned>(
    kind: Option<BodyKind>,
    bytes: &[u8],
) -> Result<(T, BodyKind), AppError> {
    match kind {
        Some(BodyKind::Form) => serde_urlencoded::from_bytes(bytes)
            .map(|value| (value, BodyKind::Form))
            .map_err(|e| AppError::BadRequest(format!("Invalid form: {e}."))),
        Some(BodyKind::Json) | None => {
            if kind.is_none() && !bytes.is_empty() {
                return Err(unsupported_media_type());
            }
            let json: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
                b"{}"
            } else {
                bytes
            };
            serde_json::from_slice(json)
                .map(|value| (value, BodyKind::Json))
                .map_err(|e| AppError::BadRequest(format!("Invalid JSON body: {e}.")))
        }
    }
}

/// Every form must carry the CSRF token made for this client's cookie.
fn check_csrf(req: &HttpRequest, form: &[u8]) -> Result<(), AppError> {
    #[derive(serde::Deserialize)]
    struct Token {
        csrf_token: Option<String>,
    }
    let token = serde_urlencoded::from_bytes::<Token>(form)
        .ok()
        .and_then(|t| t.csrf_token);
    if WebContext::of(req)?.csrf.verify(req, token.as_deref()) {
        Ok(())
    } else {
        Err(AppError::Forbidden(
            "This form has expired or did not come from this site. Reload the page and try again.",
        ))
    }
}

/// The whole body, refused once it passes [`MAX_BODY_BYTES`].
async fn read(mut payload: Payload) -> Result<Vec<u8>, AppError> {
    let mut bytes = Vec::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| AppError::BadRequest(format!("Unreadable body: {e}.")))?;
        if bytes.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(AppError::PayloadTooLarge);
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// A deserialised body and how it came. A body without `Content-Type` is refused
/// (`415`), but no body at all counts as an empty JSON object. A form is
/// refused (`403`) unless it carries a valid CSRF token.
#[derive(Debug)]
pub struct Body<T> {
    pub value: T,
    pub kind: BodyKind,
}

impl<T: DeserializeOwned + 'static> FromRequest for Body<T> {
    type Error = AppError;
    type Future = LocalBoxFuture<'static, Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        // A declared length over the limit was refused by the edge already;
        // this counts what actually arrives (chunked bodies declare none).
        let kind = BodyKind::of(req.headers());
        let arrived = req
            .extensions()
            .get::<HeadersArrived>()
            .map_or_else(Instant::now, |at| at.0);
        let payload = payload.take();
        let req = req.clone();
        Box::pin(async move {
            let left = (arrived + BODY_DEADLINE).saturating_duration_since(Instant::now());
            let bytes = actix_web::rt::time::timeout(left, read(payload))
                .await
                .map_err(|_| AppError::RequestTimeout)??;
            let kind = kind?;
            if kind == Some(BodyKind::Form) {
                check_csrf(&req, &bytes)?;
            }
            let (value, kind) = parse(kind, &bytes)?;
            Ok(Self { value, kind })
        })
    }
}

/// Whether a form's checkbox value says "ticked" (`on`, as browsers send it,
/// or `true`/`1`).
pub fn ticked(value: &str) -> bool {
    matches!(value, "on" | "true" | "1")
}
