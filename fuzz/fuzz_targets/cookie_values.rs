//! Cookie values and CSRF tokens from a client: any text is checked without a
//! panic, and only the real token for a cookie value ever matches it.
#![no_main]

use std::sync::LazyLock;

use latchkey::config::{SecretKey, Settings};
use latchkey::web::csrf::Csrf;
use libfuzzer_sys::fuzz_target;

static CSRF: LazyLock<Csrf> = LazyLock::new(|| {
    let secure = |var: &str| (var == "LATCHKEY_COOKIE_SECURE").then(|| "true".to_owned());
    let settings = Settings::from_lookup(secure).expect("settings");
    Csrf::new(&SecretKey::generate(), &settings)
});
static ISSUED: LazyLock<(String, String)> = LazyLock::new(|| CSRF.issue());

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (value, token) = text.split_once('\n').unwrap_or((&text, ""));
    let (real_value, real_token) = &*ISSUED;

    // A guessed token never matches the issued cookie value.
    if token.trim() != real_token {
        assert!(!CSRF.token_matches(real_value, token));
    }
    // Arbitrary pairs are checked without panicking.
    let _ = CSRF.token_matches(value, token);
    // And a whole Cookie header parses or is refused, without panicking.
    for pair in text.split(';') {
        if let Ok(cookie) = actix_web::cookie::Cookie::parse(pair.trim()) {
            let _ = CSRF.token_matches(cookie.value(), token);
        }
    }
});
