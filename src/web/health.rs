use actix_web::{web, HttpResponse};
use diesel::r2d2::R2D2Connection as _;

use super::AppState;
use crate::db;
use crate::error::AppError;

/// Liveness: the process answers. Never touches the database.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

/// Readiness: a database connection can be checked out, answers, and has every
/// migration this binary knows applied.
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    let pending = state
        .db(|conn| {
            conn.ping()?;
            db::has_pending_migrations(conn).map_err(AppError::unavailable)
        })
        .await?;
    if pending {
        return Err(AppError::unavailable(anyhow::anyhow!(
            "migrations are pending"
        )));
    }
    Ok(HttpResponse::Ok().json(serde_json::json!({ "status": "ready" })))
}
