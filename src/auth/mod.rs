//! Logging in and out, and the `CurrentUser` extractor (= `login_required`).

pub mod bearer;
pub mod current_user;
pub mod passkey;
pub mod routes;
pub mod second_factor;
pub mod service;
pub mod throttle;

pub use current_user::{Credential, CurrentUser, SessionUser};
