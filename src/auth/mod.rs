//! Logging in and out, and the `CurrentUser` extractor (= `login_required`).

pub mod bearer;
pub mod current_user;
pub mod passkey;
pub mod routes;
pub mod second_factor;
pub mod service;
pub mod throttle;

pub use current_user::{Credential, CurrentUser, SessionUser};

/// Every route of logging in and out: the seed's, the second factor's and
/// the passkey sign-in's.
pub fn routes(cfg: &mut actix_web::web::ServiceConfig) {
    cfg.configure(routes::routes)
        .configure(second_factor::routes)
        .configure(passkey::routes);
}
