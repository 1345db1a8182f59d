//! One-time notices carried to the next page in a short-lived cookie.
//!
//! The cookie holds only a code from a fixed list, never text: a forged one can
//! show nothing but one of our own notices.

use actix_web::cookie::{time::Duration, Cookie, SameSite};
use actix_web::HttpRequest;

use crate::config::Settings;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flash {
    LoggedOut,
    SignedOutEverywhere,
    SessionRevoked,
    PasswordChanged,
    PasswordBreached,
    TokenRevoked,
    IdentityConfirmed,
    FactorRemoved,
}

impl Flash {
    const ALL: [Self; 8] = [
        Self::LoggedOut,
        Self::SignedOutEverywhere,
        Self::SessionRevoked,
        Self::PasswordChanged,
        Self::PasswordBreached,
        Self::TokenRevoked,
        Self::IdentityConfirmed,
        Self::FactorRemoved,
    ];

    fn code(self) -> &'static str {
        match self {
            Self::LoggedOut => "logged_out",
            Self::SignedOutEverywhere => "signed_out_everywhere",
            Self::SessionRevoked => "session_revoked",
            Self::PasswordChanged => "password_changed",
            Self::PasswordBreached => "password_breached",
            Self::TokenRevoked => "token_revoked",
            Self::IdentityConfirmed => "identity_confirmed",
            Self::FactorRemoved => "factor_removed",
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
            Self::PasswordBreached => {
                "Your password appears in a list of passwords exposed in data breaches. Please change it on your account page."
            }
            Self::TokenRevoked => "The access token has been revoked.",
            Self::IdentityConfirmed => "Thank you: you can go on.",
            Self::FactorRemoved => "The second factor has been removed.",
        }
    }
}

const COOKIE: &str = "latchkey_flash";

fn cookie(settings: &Settings, value: &'static str, max_age: Duration) -> Cookie<'static> {
    Cookie::build(settings.cookie_name(COOKIE), value)
        .path("/")
        .http_only(true)
        .secure(settings.cookie_secure)
        .same_site(SameSite::Lax)
        .max_age(max_age)
        .finish()
}

/// The cookie that carries `flash` to the next page (for a minute at most).
pub fn set(flash: Flash, settings: &Settings) -> Cookie<'static> {
    cookie(settings, flash.code(), Duration::minutes(1))
}

/// The request's notice, if any, and the cookie that clears it (shown once).
pub fn take(req: &HttpRequest, settings: &Settings) -> Option<(Flash, Cookie<'static>)> {
    let value = req.cookie(&settings.cookie_name(COOKIE))?;
    let clear = cookie(settings, "", Duration::ZERO);
    let flash = Flash::ALL.into_iter().find(|f| f.code() == value.value());
    flash.map(|flash| (flash, clear))
}
