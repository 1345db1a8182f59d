use std::sync::Arc;

use actix_web::web;

use super::csrf::Csrf;
use crate::config::Settings;
use crate::db::{AnyConnection, Pool};
use crate::error::AppError;
use crate::users::PasswordHasher;

/// What every handler may use; cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    pub pool: Pool,
    pub hasher: PasswordHasher,
    pub settings: Arc<Settings>,
    pub csrf: Csrf,
}

impl AppState {
    /// Runs `job` with a pooled connection on the blocking pool. A checkout that
    /// times out (database away or saturated) becomes `503`.
    pub async fn db<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut AnyConnection) -> Result<T, AppError> + Send + 'static,
    ) -> Result<T, AppError> {
        let pool = self.pool.clone();
        web::block(move || job(&mut *pool.get()?)).await?
    }
}
