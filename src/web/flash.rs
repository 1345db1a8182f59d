//! One-time notices carried to the next page in a short-lived cookie.
//!
//! The cookie holds only a code from a fixed list, never text: a forged one can
//! show nothing but one of our own notices.

use actix_web::cookie::{time::Duration, Cookie, SameSite};
use actix_web::HttpRequest;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flash {
    LoggedOut,
    SignedOutEverywhere,
    SessionRevoked,
    PasswordChanged,
}

impl Flash {
    const ALL: [Self; 4] = [
        Self::LoggedOut,
        Self::SignedOutEverywhere,
        Self::SessionRevoked,
        Self::PasswordChanged,
    ];

    fn code(self) -> &'static str {
        match self {
            Self::LoggedOut => "logged_out",
            Self::SignedOutEverywhere => "signed_out_everywhere",
            Self::SessionRevoked => "session_revoked",
            Self::PasswordChanged => "password_changed",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Self::LoggedOut => "You have been logged out.",
            Self::SignedOutEverywhere => "You have been signed out everywhere.",
            Self::SessionRevoked => "That session has been signed out.",
            Self::PasswordChanged => {
                "Your password has been changed. Your other sessions were signed out."
            }
        }
    }
}

fn cookie_name(secure: bool) -> &'static str {
    if secure {
        "__Host-latchkey_flash"
    } else {
        "latchkey_flash"
    }
}

fn cookie(secure: bool, value: &'static str, max_age: Duration) -> Cookie<'static> {
    Cookie::build(cookie_name(secure), value)
        .path("/")
        .http_only(true)
        .secure(secure)
        .same_site(SameSite::Lax)
        .max_age(max_age)
        .finish()
}

/// The cookie that carries `flash` to the next page (for a minute at most).
pub fn set(flash: Flash, secure: bool) -> Cookie<'static> {
    cookie(secure, flash.code(), Duration::minutes(1))
}

/// The request's notice, if any, and the cookie that clears it (shown once).
pub fn take(req: &HttpRequest, secure: bool) -> Option<(Flash, Cookie<'static>)> {
    let value = req.cookie(cookie_name(secure))?;
    let clear = cookie(secure, "", Duration::ZERO);
    let flash = Flash::ALL.into_iter().find(|f| f.code() == value.value());
    flash.map(|flash| (flash, clear))
}
