//! Which error type to use where, and the one status mapping of the web layer.
//!
//! Error types, by layer:
//! - **Domain code** (`users`, `sessions`, `audit`, `account::ops`, `auth::throttle`)
//!   returns typed errors that know nothing of HTTP: `diesel::QueryResult` for
//!   plain SQL, [`DbError`] when a job also needs a pooled connection,
//!   [`UsernameError`] / [`PasswordError`] from the validators, [`HashError`]
//!   from the hasher.
//! - **Handlers and extractors** return [`AppError`]. Every domain error
//!   converts into it by `From` here, at the HTTP edge, so `?` does the mapping
//!   and no handler chooses a status for a database or hashing failure.
//! - **Start-up and the command line** use `anyhow` (one line to the operator),
//!   except `config`, whose [`ConfigError`](crate::config::ConfigError) always
//!   names the variable at fault.
//!
//! Status policy:
//! - A client's mistake gets its own status and a message meant for that client
//!   (`400`, `401`, `403`, `404`, `405`, `408`, `409`, `413`, `415`, `429`).
//! - Diesel `NotFound` is `404`; a unique violation is `409`.
//! - The database being away (pool checkout timeout, closed connection) is `503`
//!   with `Retry-After`, as is a full hashing queue: try again shortly.
//! - Anything else is `500`: the cause chain goes to the log, the client gets a
//!   generic message and nothing of the cause.
//!
//! The body is `{"message": ...}`; the shell's edge middleware renders the same
//! error as an HTML page for browsers, titled from the same table ([`status_text`]).

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use diesel::result::{DatabaseErrorKind, Error as DieselError};

use crate::db::DbError;
use crate::users::{HashError, PasswordError, UsernameError};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    BadRequest(String),
    /// Not signed in: JSON clients get 401, browsers are sent to the login page.
    #[error("Please log in to access this page.")]
    LoginRequired,
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("{0}")]
    Forbidden(&'static str),
    /// A sensitive change without a recent login or confirmation: JSON gets
    /// `403` with `"reauth": true`, browsers are sent to `/account/confirm`.
    #[error("Please confirm your identity.")]
    ReauthRequired,
    /// `LATCHKEY_REQUIRE_SECOND_FACTOR` and none enrolled yet: JSON gets `403`
    /// with `"enrol": true`, browsers are sent to the account page to enrol.
    #[error("Please set up a second factor.")]
    EnrolRequired,
    #[error("Not found.")]
    NotFound,
    /// A one-time link that is unknown, used or expired: one answer for all.
    #[error("This link does not work any more: ask for a new one.")]
    Gone,
    #[error("Method not allowed.")]
    MethodNotAllowed,
    #[error("{0}")]
    Conflict(String),
    #[error("Request body is too large.")]
    PayloadTooLarge,
    /// The body did not arrive in time (see `web::body::BODY_DEADLINE`).
    #[error("The request took too long to arrive.")]
    RequestTimeout,
    #[error("{0}")]
    UnsupportedMediaType(&'static str),
    #[error("Too many attempts. Try again later.")]
    TooManyRequests { retry_after_secs: u64 },
    #[error("Service temporarily unavailable. Try again shortly.")]
    Unavailable {
        retry_after_secs: u64,
        #[source]
        cause: Option<anyhow::Error>,
    },
    #[error("Internal server error.")]
    Internal(#[source] anyhow::Error),
    /// An error status raised outside our handlers (by the framework or a middleware).
    #[error("{}", status_text(*.0).message)]
    Status(StatusCode),
}

/// How a status reads to people: the error page's title and the generic message.
#[derive(Debug, Clone, Copy)]
pub struct StatusText {
    pub title: &'static str,
    pub message: &'static str,
}

/// The one status→text table (error pages, and errors raised outside our handlers).
pub fn status_text(status: StatusCode) -> StatusText {
    let (title, message) = match status.as_u16() {
        400 => ("Bad request", "Bad request."),
        401 => ("Please log in", "Please log in to access this page."),
        403 => ("Forbidden", "Forbidden."),
        404 => ("Page not found", "Not found."),
        405 => ("Method not allowed", "Method not allowed."),
        408 => ("Request timeout", "The request took too long to arrive."),
        409 => ("Conflict", "That already exists."),
        410 => (
            "Link no longer valid",
            "This link does not work any more: ask for a new one.",
        ),
        413 => ("Request too large", "Request body is too large."),
        415 => ("Unsupported request", "Unsupported media type."),
        429 => ("Too many attempts", "Too many attempts. Try again later."),
        503 => (
            "Service unavailable",
            "Service temporarily unavailable. Try again shortly.",
        ),
        s if s >= 500 => ("Something went wrong", "Internal server error."),
        _ => ("Request refused", "Request refused."),
    };
    StatusText { title, message }
}

impl AppError {
    pub fn internal(err: impl Into<anyhow::Error>) -> Self {
        Self::Internal(err.into())
    }

    pub fn unavailable(cause: impl Into<anyhow::Error>) -> Self {
        Self::Unavailable {
            retry_after_secs: 1,
            cause: Some(cause.into()),
        }
    }

    /// The message a client may see.
    pub fn message(&self) -> String {
        self.to_string()
    }
}

impl ResponseError for AppError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::LoginRequired | Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) | Self::ReauthRequired | Self::EnrolRequired => {
                StatusCode::FORBIDDEN
            }
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Gone => StatusCode::GONE,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Status(status) => *status,
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            Self::Internal(cause) => {
                tracing::error!(error = format!("{cause:#}"), "request failed")
            }
            Self::Unavailable {
                cause: Some(cause), ..
            } => tracing::warn!(error = format!("{cause:#}"), "service unavailable"),
            _ => {}
        }
        let mut response = HttpResponse::build(self.status_code());
        match self {
            Self::TooManyRequests { retry_after_secs }
            | Self::Unavailable {
                retry_after_secs, ..
            } => {
                response.insert_header((header::RETRY_AFTER, retry_after_secs.to_string()));
            }
            _ => {}
        }
        let mut body = serde_json::json!({ "message": self.message() });
        if matches!(self, Self::ReauthRequired) {
            body["reauth"] = serde_json::json!(true);
        }
        if matches!(self, Self::EnrolRequired) {
            body["enrol"] = serde_json::json!(true);
        }
        let mut response = response
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .json(body);
        // For the edge middleware, which renders the HTML page for browsers.
        response.extensions_mut().insert(ErrorInfo {
            message: self.message(),
            send_to: match self {
                Self::LoginRequired => Some("/login"),
                Self::ReauthRequired => Some("/account/confirm"),
                Self::EnrolRequired => Some("/account"),
                _ => None,
            },
        });
        response
    }
}

/// What an error response was about, kept beside its JSON body.
#[derive(Debug, Clone)]
pub struct ErrorInfo {
    pub message: String,
    /// Where a browser is sent instead of an error page (`?next=` the page it
    /// asked for): the login page, or the page that confirms identity.
    pub send_to: Option<&'static str>,
}

impl From<DieselError> for AppError {
    fn from(err: DieselError) -> Self {
        match err {
            DieselError::NotFound => Self::NotFound,
            DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => {
                Self::Conflict("That already exists.".to_owned())
            }
            DieselError::DatabaseError(DatabaseErrorKind::ClosedConnection, _)
            | DieselError::BrokenTransactionManager => Self::unavailable(err),
            DieselError::DatabaseError(DatabaseErrorKind::Unknown, ref info)
                if is_transient(info.message()) =>
            {
                Self::unavailable(err)
            }
            other => Self::internal(other),
        }
    }
}

/// Messages of errors that mean "the database is away or busy", not "the query is wrong".
fn is_transient(message: &str) -> bool {
    const SIGNS: [&str; 6] = [
        "database is locked",
        "database table is locked",
        "server closed the connection",
        "terminating connection",
        "connection to server",
        "no connection to the server",
    ];
    SIGNS.iter().any(|sign| message.contains(sign))
}

impl From<r2d2::Error> for AppError {
    /// A pool checkout that timed out: the database is unreachable or saturated.
    fn from(err: r2d2::Error) -> Self {
        Self::unavailable(err)
    }
}

impl From<DbError> for AppError {
    fn from(err: DbError) -> Self {
        match err {
            DbError::Query(err) => err.into(),
            DbError::Checkout(_) | DbError::Blocking | DbError::Unacknowledged => {
                Self::unavailable(err)
            }
        }
    }
}

impl From<actix_web::error::BlockingError> for AppError {
    fn from(err: actix_web::error::BlockingError) -> Self {
        Self::unavailable(anyhow::anyhow!("blocking pool: {err}"))
    }
}

impl From<HashError> for AppError {
    fn from(err: HashError) -> Self {
        match err {
            // Shed by the bounded queue: nothing to log, the client retries.
            HashError::Busy => Self::Unavailable {
                retry_after_secs: 1,
                cause: None,
            },
            HashError::Gone => Self::unavailable(err),
            HashError::Failed(_) => Self::internal(err),
        }
    }
}

impl From<UsernameError> for AppError {
    fn from(err: UsernameError) -> Self {
        Self::BadRequest(err.to_string())
    }
}

impl From<PasswordError> for AppError {
    fn from(err: PasswordError) -> Self {
        Self::BadRequest(err.to_string())
    }
}
