use actix_web::{web, HttpResponse};
use diesel::r2d2::R2D2Connection as _;

use super::AppState;
use crate::error::AppError;

/// Liveness: the process answers. Never touches the database.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

/// Readiness: a database connection can be checked out and answers.
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    state.db(|conn| Ok(conn.ping()?)).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "status": "ready" })))
}
