//! What every handler may use.

use std::sync::Arc;

use actix_web::{web, HttpRequest};

use crate::audit::Sampler;
use crate::config::Settings;
use crate::db::{self, AnyConnection, Pool};
use crate::error::AppError;
use crate::factors::passkeys::RelyingParty;
use crate::factors::Sealer;
use crate::metrics::Metrics;
use crate::sessions::cache::SessionCache;
use crate::users::breached::BreachedFilter;
use crate::users::PasswordHasher;
use crate::web::limit::PerClient;

/// The app's shared parts; cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    pub pool: Pool,
    pub hasher: PasswordHasher,
    pub settings: Arc<Settings>,
    pub metrics: Arc<Metrics>,
    pub cache: Arc<SessionCache>,
    /// Throttled tries are audited sampled (see [`Sampler`]).
    pub throttled: Arc<Sampler>,
    /// `LATCHKEY_BREACHED_PASSWORDS`, opened at start (`None` when unset).
    pub breached: Option<Arc<BreachedFilter>>,
    /// Seals TOTP secrets at rest (a key derived from the secret key).
    pub sealer: Arc<Sealer>,
    /// The WebAuthn relying party (`None`: passkeys are off, see
    /// [`RelyingParty::new`]).
    pub passkeys: Option<Arc<RelyingParty>>,
    /// Anonymous passkey challenges a client may ask for a minute (each is a
    /// session row).
    pub passkey_challenges: Arc<PerClient>,
}

impl AppState {
    /// The state registered with the app (every route has it).
    pub fn of(req: &HttpRequest) -> Result<&web::Data<AppState>, AppError> {
        req.app_data::<web::Data<AppState>>()
            .ok_or_else(|| AppError::internal(anyhow::anyhow!("AppState is not registered")))
    }

    /// Runs `job` with a pooled connection on the blocking pool (see [`db::run`]);
    /// a checkout that times out becomes `503`.
    pub async fn db<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut AnyConnection) -> Result<T, AppError> + Send + 'static,
    ) -> Result<T, AppError> {
        db::run(&self.pool, job).await
    }
}
