//! The login body, as JSON, as a form or untyped: any bytes give a value or a
//! client error (4xx), never a panic or a server error.
#![no_main]

use actix_web::ResponseError as _;
use latchkey::auth::routes::{LoginForm, LoginJson};
use latchkey::users::{fold, Username};
use latchkey::web::body::{self, BodyKind};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    let kind = match selector % 3 {
        0 => Some(BodyKind::Json),
        1 => Some(BodyKind::Form),
        _ => None,
    };
    match body::parse::<LoginJson>(kind, bytes) {
        Ok((login, _)) => {
            if let Ok(name) = Username::parse(&login.username) {
                assert_eq!(fold::forbidden_char(name.as_str()), None);
            }
        }
        Err(error) => assert!(error.status_code().is_client_error(), "{error:?}"),
    }
    if let Err(error) = body::parse::<LoginForm>(kind, bytes) {
        assert!(error.status_code().is_client_error(), "{error:?}");
    }
});
