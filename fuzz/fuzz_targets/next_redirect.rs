//! `next` after login: whatever is accepted stays on this site.
#![no_main]

use latchkey::web::redirect::safe_next;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(next) = std::str::from_utf8(data) else {
        return;
    };
    let Some(accepted) = safe_next(next) else {
        return;
    };
    assert!(
        accepted.starts_with('/') && !accepted.starts_with("//"),
        "{accepted:?}"
    );
    // Resolved as a browser would, it never leaves the origin.
    let base = url::Url::parse("https://latchkey.invalid/login").unwrap();
    let target = base.join(accepted).expect("a local path resolves");
    assert_eq!(target.origin(), base.origin(), "{accepted:?} -> {target}");
});
