use std::sync::Arc;

use actix_web::{web, HttpRequest};

use super::csrf::Csrf;
use super::metrics::Metrics;
use crate::config::Settings;
use crate::db::{AnyConnection, Pool};
use crate::error::AppError;
use crate::sessions::cache::SessionCache;
use crate::users::PasswordHasher;

/// What every handler may use; cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    pub pool: Pool,
    pub hasher: PasswordHasher,
    pub settings: Arc<Settings>,
    pub csrf: Csrf,
    pub metrics: Arc<Metrics>,
    pub cache: Arc<SessionCache>,
}

impl AppState {
    /// The state registered with the app (every route has it).
    pub fn of(req: &HttpRequest) -> Result<&web::Data<AppState>, AppError> {
        req.app_data::<web::Data<AppState>>()
            .ok_or_else(|| AppError::internal(anyhow::anyhow!("AppState is not registered")))
    }

    /// Runs `job` with a pooled connection on the blocking pool. A checkout that
    /// times out (database away or saturated) becomes `503`.
    pub async fn db<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut AnyConnection) -> Result<T, AppError> + Send + 'static,
    ) -> Result<T, AppError> {
        let pool = self.pool.clone();
        let metrics = self.metrics.clone();
        web::block(move || {
            let started = std::time::Instant::now();
            let conn = pool.get();
            metrics.pool_wait(started.elapsed(), conn.is_err());
            job(&mut *conn?)
        })
        .await?
    }
}
