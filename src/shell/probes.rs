//! Operational routes: liveness, readiness and Prometheus metrics.

use actix_web::{web, HttpResponse};
use diesel::r2d2::R2D2Connection as _;

use crate::db;
use crate::error::AppError;
use crate::metrics::Snapshot;
use crate::sessions::queries as sessions;
use crate::state::AppState;

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

/// `GET /metrics`: Prometheus text format, on the metrics listener only (its
/// login outcomes would tell an outsider which usernames exist).
pub async fn metrics(state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    let pool = state.pool.state();
    // The database may be away: the other metrics still matter then.
    let sessions_active = if state.metrics.sessions_due() {
        state
            .db(|conn| Ok(sessions::count_live(conn, db::now())?))
            .await
            .ok()
    } else {
        None
    };
    state.metrics.observe(Snapshot {
        hash_waiting: state.hasher.stats().waiting,
        pool_connections: pool.connections,
        pool_idle: pool.idle_connections,
        sessions_active,
    });
    let body = state.metrics.encode().map_err(AppError::internal)?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(body))
}
