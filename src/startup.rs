//! The one app factory: `main` and the tests both build the server here.

use std::net::TcpListener;
use std::sync::Arc;

use actix_identity::IdentityMiddleware;
use actix_session::config::{BrowserSession, CookieContentSecurity};
use actix_session::SessionMiddleware;
use actix_web::cookie::{time::Duration as CookieDuration, Key, SameSite};
use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpServer};
use anyhow::Context as _;

use crate::audit::Sampler;
use crate::config::{SecretKey, Settings};
use crate::db::DbError;
use crate::factors::passkeys::RelyingParty;
use crate::factors::{self, Sealer};
use crate::metrics::Metrics;
use crate::sessions::cache::SessionCache;
use crate::sessions::remember::{self, RememberCookie};
use crate::sessions::store::{self, SessionPolicy};
use crate::sessions::{self, DbSessionStore};
use crate::shell::housekeeping::{self, Housekeeping, Retention};
use crate::shell::rotation::{self, Rotation};
use crate::shell::{self, edge::edge};
use crate::state::AppState;
use crate::users::{self, breached, PasswordHasher};
use crate::web::limit::PerClient;
use crate::web::WebContext;
use crate::{account, auth, db, forward};

/// Sessions (and users) kept in the in-process cache.
const CACHE_CAPACITY: usize = 10_000;
/// Throttled tries: at most one audit row per username and client this often,
/// for at most this many of them at once.
const THROTTLED_SAMPLE_EVERY: std::time::Duration = std::time::Duration::from_secs(60);
const THROTTLED_SAMPLE_KEYS: usize = 1000;
/// Passwordless sign-in challenges per client a minute: a person needs a
/// few; each costs a session row (see `web::limit`).
const PASSKEY_CHALLENGES_PER_MINUTE: u32 = 30;

/// The ceiling of bench/run: as much of the stack as a request can go through
/// without touching the database (compiled only with the `bench` feature).
fn bench_ceiling(cfg: &mut web::ServiceConfig) {
    #[cfg(feature = "bench")]
    cfg.route(
        "/bench/ceiling",
        web::get()
            .to(|| async { actix_web::HttpResponse::Ok().json(serde_json::json!({"ok": true})) }),
    );
    #[cfg(not(feature = "bench"))]
    let _ = cfg;
}

/// What every worker's `App` is built from: made once, cloned into each worker.
#[derive(Clone)]
struct Parts {
    state: web::Data<AppState>,
    web: web::Data<WebContext>,
    remember: web::Data<RememberCookie>,
    rotation: web::Data<Rotation>,
    store: DbSessionStore,
    key: Key,
}

pub struct Application {
    port: u16,
    server: Server,
    housekeeping: Housekeeping,
    /// The metrics listener's port and server, when `LATCHKEY_METRICS_ADDR` is set.
    metrics: Option<(u16, Server)>,
}

impl Application {
    /// Checks the key, binds `settings.addr` (port 0: any free port) and the
    /// metrics address if any, migrates the database and prepares the
    /// servers; [`Application::run_until_stopped`] serves.
    pub async fn build(mut settings: Settings) -> anyhow::Result<Self> {
        // Refused before anything is bound, created or migrated.
        let secret = settings.secret_key()?;
        let listener = bind(settings.addr, "LATCHKEY_ADDR")?;
        let port = listener.local_addr()?.port();
        settings.public_url = Some(settings.public_url(port)?);
        let metrics_listener = settings
            .metrics_addr
            .map(|addr| bind(addr, "LATCHKEY_METRICS_ADDR"))
            .transpose()?;
        let http_workers = settings.http_workers;
        let (parts, housekeeping) = assemble(settings, secret).await?;

        let metrics = match metrics_listener {
            Some(listener) => Some((
                listener.local_addr()?.port(),
                metrics_server(listener, parts.state.clone())?,
            )),
            None => None,
        };
        let mut server = HttpServer::new(move || app(parts.clone()))
            .listen(listener)?
            .shutdown_timeout(10);
        if let Some(workers) = http_workers {
            server = server.workers(workers);
        }
        Ok(Self {
            port,
            server: server.run(),
            housekeeping,
            metrics,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The metrics listener's port (`None`: metrics are not served).
    pub fn metrics_port(&self) -> Option<u16> {
        self.metrics.as_ref().map(|(port, _)| *port)
    }

    /// Stops the server (gracefully with `true`) from elsewhere; the metrics
    /// listener goes with it.
    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    /// Serves until SIGINT/SIGTERM (or the handle's stop), then drains
    /// in-flight requests and stops the metrics listener.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let served = match self.metrics {
            None => self.server.await,
            Some((_, metrics)) => {
                let metrics_handle = metrics.handle();
                let server = self.server;
                let main = async move {
                    let served = server.await;
                    metrics_handle.stop(true).await;
                    served
                };
                // Both futures must be polled: each runs its server's stop commands.
                let (served, metrics_served) = futures_util::future::join(main, metrics).await;
                served.and(metrics_served)
            }
        };
        // The lease goes with the server: no revoker waits for a stopped instance.
        let housekeeping = self.housekeeping;
        let _ = actix_web::rt::task::spawn_blocking(move || housekeeping.stop()).await;
        served
    }
}

fn bind(addr: std::net::SocketAddr, var: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).with_context(|| format!("{var}: cannot listen on {addr}"))
}

/// `GET /metrics` and nothing else, on a server of its own: the public
/// listener has no `/metrics` at all. It takes no signals: it is stopped
/// with the main server (see [`Application::run_until_stopped`]).
fn metrics_server(listener: TcpListener, state: web::Data<AppState>) -> std::io::Result<Server> {
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .route("/metrics", web::get().to(shell::probes::metrics))
            .default_service(web::to(crate::web::not_found))
    })
    .listen(listener)?
    .workers(1)
    .disable_signals()
    .shutdown_timeout(1);
    Ok(server.run())
}

/// Connects and migrates, computes the keys and the hasher's dummy hash, starts
/// the housekeeping thread: everything the workers share.
async fn assemble(settings: Settings, secret: SecretKey) -> anyhow::Result<(Parts, Housekeeping)> {
    // First: a bad filter file stops start-up before the database is touched.
    let breached = breached::load(&settings)?.map(Arc::new);
    let metrics = Arc::new(Metrics::new()?);
    let pool = db::build_pool(
        &settings.database_url,
        settings.db_pool_size,
        settings.db_pool_timeout,
        metrics.pool_events(),
    );
    db::run(&pool, |conn| db::run_migrations(conn).map(drop))
        .await
        .context("cannot migrate the database")?;
    db::run(&pool, |conn| {
        users::queries::fill_folded_names(conn).map_err(DbError::from)
    })
    .await
    .context("cannot fold the names of seeded users")?;
    let sealer = Arc::new(Sealer::new(&secret, settings.secret_key_previous.as_ref()));
    if settings.secret_key_previous.is_some() {
        let resealer = sealer.clone();
        let resealed = db::run(&pool, move |conn| {
            factors::reseal_all(conn, &resealer).map_err(DbError::from)
        })
        .await
        .context("cannot reseal TOTP secrets under the new key")?;
        if resealed > 0 {
            tracing::info!(resealed, "TOTP secrets resealed under the new secret key");
        }
    }

    let (cost, workers, queue) = (
        settings.bcrypt_cost,
        settings.hash_workers,
        settings.hash_queue,
    );
    let hasher =
        actix_web::rt::task::spawn_blocking(move || PasswordHasher::new(cost, workers, queue))
            .await??;

    let capacity = if settings.session_cache {
        CACHE_CAPACITY
    } else {
        0
    };
    let cache = SessionCache::new(capacity);
    metrics.count_from(&hasher, &cache)?;
    let housekeeping = housekeeping::spawn(
        &cache,
        pool.clone(),
        settings.database_url.clone(),
        Retention::from_settings(&settings),
    );
    let policy = SessionPolicy {
        idle_timeout: settings.session_idle_timeout,
        max_lifetime: settings.session_max_lifetime,
        remember_lifetime: settings.remember_me_lifetime,
        max_per_user: settings.max_sessions_per_user,
        anonymous_lifetime: sessions::current::ANONYMOUS_LIFETIME,
    };
    let ceremony =
        std::time::Duration::from_secs(sessions::current::CEREMONY_LIFETIME_SECS.unsigned_abs());
    let passkeys = settings
        .public_url
        .as_ref()
        .and_then(|url| RelyingParty::new(url, ceremony))
        .map(Arc::new);
    if passkeys.is_none() {
        tracing::warn!(
            "passkeys are off: WebAuthn needs LATCHKEY_PUBLIC_URL on a domain name \
             (http://localhost:PORT for local use), not an IP address"
        );
    }
    let settings = Arc::new(settings);
    // One key for every worker: built once, outside the server closure.
    let key = Key::from(secret.as_bytes());
    let web = WebContext::new(settings.clone(), &secret);
    let store = DbSessionStore::new(pool.clone(), policy, cache.clone());
    let parts = Parts {
        rotation: web::Data::new(Rotation::new(
            key.clone(),
            &settings,
            store.clone(),
            web.devices.clone(),
        )),
        web,
        remember: web::Data::new(RememberCookie {
            name: settings.session_cookie_name(),
            lifetime: settings.remember_me_lifetime,
        }),
        store,
        state: web::Data::new(AppState {
            pool,
            hasher,
            settings,
            metrics,
            cache,
            throttled: Arc::new(Sampler::new(THROTTLED_SAMPLE_EVERY, THROTTLED_SAMPLE_KEYS)),
            breached,
            sealer,
            passkeys,
            passkey_challenges: Arc::new(PerClient::new(PASSKEY_CHALLENGES_PER_MINUTE)),
        }),
        key,
    };
    Ok((parts, housekeeping))
}

/// One worker's app: the routes and the middleware, in one place.
fn app(
    parts: Parts,
) -> App<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse<actix_web::body::BoxBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let settings = &parts.state.settings;
    // Both time limits are enforced by the store, row by row (see sessions::store).
    let session_ttl = CookieDuration::seconds(
        i64::try_from(settings.session_idle_timeout.as_secs()).unwrap_or(i64::MAX),
    );
    let sessions = SessionMiddleware::builder(parts.store, parts.key)
        .cookie_name(parts.remember.name.clone())
        .cookie_secure(settings.cookie_secure)
        .cookie_http_only(true)
        .cookie_same_site(SameSite::Lax)
        .cookie_path("/".to_owned())
        .cookie_domain(settings.cookie_domain.clone())
        .cookie_content_security(CookieContentSecurity::Signed)
        .session_lifecycle(BrowserSession::default().state_ttl(session_ttl))
        .build();
    App::new()
        .app_data(parts.state)
        .app_data(parts.web)
        .app_data(parts.remember)
        .app_data(parts.rotation)
        // Health and assets never touch a session (nor the database, for /healthz).
        .configure(shell::routes)
        .service(
            web::scope("")
                .configure(bench_ceiling)
                .configure(auth::routes)
                .configure(account::routes)
                .configure(forward::routes)
                .default_service(web::to(crate::web::not_found))
                // The last wrap runs first: sessions must be loaded before identity.
                .wrap(IdentityMiddleware::default())
                // Sees the state the handlers (and identity) leave, before the
                // session middleware takes it to save it and set the cookie.
                .wrap(from_fn(remember::mark_from_state))
                .wrap(sessions)
                .wrap(from_fn(store::store_failures))
                // Before anything reads a cookie; inside persist_cookie, which
                // gives a remembered session's re-issued cookie its Max-Age.
                .wrap(from_fn(rotation::resign_cookies))
                .wrap(from_fn(remember::persist_cookie)),
        )
        .wrap(from_fn(edge))
}
