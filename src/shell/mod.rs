//! The app shell, beside `startup`: the edge middleware every request passes,
//! the operational routes, and the background housekeeping. `/metrics` is
//! not among the public routes: `startup` serves it on its own listener.

pub mod edge;
pub mod housekeeping;
pub mod probes;
pub mod rotation;

use actix_web::web;

use crate::web::pages;

/// Routes outside the session scope: they never load a session.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(probes::healthz))
        .route("/readyz", web::get().to(probes::readyz))
        .service(
            web::resource("/static/{name}")
                .route(web::get().to(pages::asset))
                .route(web::head().to(pages::asset)),
        )
        .service(
            web::resource("/favicon.ico")
                .route(web::get().to(pages::favicon))
                .route(web::head().to(pages::favicon)),
        );
}
