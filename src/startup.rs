//! The one app factory: `main` and the tests both build the server here.

use std::net::TcpListener;
use std::sync::Arc;

use actix_identity::IdentityMiddleware;
use actix_session::config::{BrowserSession, CookieContentSecurity};
use actix_session::SessionMiddleware;
use actix_web::cookie::{Key, SameSite};
use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpServer};
use anyhow::Context as _;

use crate::auth::throttle;
use crate::config::Settings;
use crate::sessions::cache::{spawn_maintenance, SessionCache};
use crate::sessions::events;
use crate::sessions::store::{self, SessionPolicy};
use crate::sessions::DbSessionStore;
use crate::users::PasswordHasher;
use crate::web::csrf::Csrf;
use crate::web::edge::edge;
use crate::web::metrics::Metrics;
use crate::web::AppState;
use crate::{account, auth, db};

/// How often expired rows are swept (also once at start).
const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(300);
/// Sessions (and users) kept in the in-process cache.
const CACHE_CAPACITY: usize = 10_000;

/// Deletes what has expired: sessions, old login failures, old session events.
/// Several instances may do it at once: deleting what is gone is harmless.
fn sweep(pool: &db::Pool, limits: &throttle::Limits) {
    let run = || -> anyhow::Result<(usize, usize, usize)> {
        let mut conn = pool.get()?;
        let now = db::now();
        let sessions = store::sweep(&mut conn, 1000)?;
        let failures = throttle::sweep(&mut conn, limits, now)?;
        let events = events::sweep(&mut conn, now - chrono::Duration::minutes(1))?;
        Ok((sessions, failures, events))
    };
    match run() {
        Ok((0, 0, _)) => {}
        Ok((sessions, failures, _)) => tracing::info!(sessions, failures, "swept expired rows"),
        Err(error) => tracing::warn!(error = format!("{error:#}"), "sweep failed"),
    }
}

/// The session cookie's name: with `Secure`, the `__Host-` prefix pins it to this
/// host, `Path=/` and HTTPS.
pub fn cookie_name(secure: bool) -> &'static str {
    if secure {
        "__Host-latchkey_session"
    } else {
        "latchkey_session"
    }
}

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

pub struct Application {
    port: u16,
    server: Server,
}

impl Application {
    /// Migrates the database, binds `settings.addr` (port 0: any free port) and
    /// prepares the server; [`Application::run_until_stopped`] serves.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let pool = db::build_pool(
            &settings.database_url,
            settings.db_pool_size,
            settings.db_pool_timeout,
        );
        let migrate_pool = pool.clone();
        actix_web::rt::task::spawn_blocking(move || -> anyhow::Result<usize> {
            let mut conn = migrate_pool
                .get()
                .context("cannot connect to the database")?;
            db::run_migrations(&mut conn)
        })
        .await??;

        // One key for every worker: built once, outside the server closure.
        let secret = settings.secret_key()?;
        let key = Key::from(secret.as_bytes());
        let csrf = Csrf::new(&secret, settings.cookie_secure);
        let (cost, workers, queue) = (
            settings.bcrypt_cost,
            settings.hash_workers,
            settings.hash_queue,
        );
        let hasher =
            actix_web::rt::task::spawn_blocking(move || PasswordHasher::new(cost, workers, queue))
                .await??;

        let listener = TcpListener::bind(settings.addr)
            .with_context(|| format!("cannot listen on {}", settings.addr))?;
        let port = listener.local_addr()?.port();
        let cache = SessionCache::new(if settings.session_cache {
            CACHE_CAPACITY
        } else {
            0
        });
        let limits = throttle::Limits::from_settings(&settings);
        spawn_maintenance(&cache, pool.clone(), SWEEP_EVERY, move |pool| {
            sweep(pool, &limits);
        });
        let state = web::Data::new(AppState {
            pool: pool.clone(),
            hasher,
            settings: Arc::new(settings.clone()),
            csrf,
            metrics: Arc::new(Metrics::new()?),
            cache: cache.clone(),
        });
        let store = DbSessionStore::new(
            pool.clone(),
            SessionPolicy {
                idle_timeout: settings.session_idle_timeout,
                max_lifetime: settings.session_max_lifetime,
                remember_lifetime: settings.remember_me_lifetime,
            },
            cache.clone(),
        );
        let http_workers = settings.http_workers;

        let mut server = HttpServer::new(move || {
            let session_ttl = actix_web::cookie::time::Duration::seconds(
                i64::try_from(settings.session_idle_timeout.as_secs()).unwrap_or(i64::MAX),
            );
            let sessions = SessionMiddleware::builder(store.clone(), key.clone())
                .cookie_name(cookie_name(settings.cookie_secure).to_owned())
                .cookie_secure(settings.cookie_secure)
                .cookie_http_only(true)
                .cookie_same_site(SameSite::Lax)
                .cookie_path("/".to_owned())
                .cookie_domain(None)
                .cookie_content_security(CookieContentSecurity::Signed)
                .session_lifecycle(BrowserSession::default().state_ttl(session_ttl))
                .build();
            // Both time limits are enforced by the store, row by row (see sessions::store).
            let identity = IdentityMiddleware::default();
            App::new()
                .app_data(state.clone())
                // Health and assets never touch a session (nor the database, for /healthz).
                .configure(crate::web::routes)
                .service(
                    web::scope("")
                        .configure(bench_ceiling)
                        .configure(auth::routes::routes)
                        .configure(account::routes)
                        .default_service(web::to(crate::web::not_found))
                        // The last wrap runs first: sessions must be loaded before identity.
                        .wrap(identity)
                        .wrap(sessions),
                )
                .wrap(from_fn(edge))
        })
        .listen(listener)?
        .shutdown_timeout(10);
        if let Some(workers) = http_workers {
            server = server.workers(workers);
        }
        Ok(Self {
            port,
            server: server.run(),
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server (gracefully with `true`) from elsewhere.
    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    /// Serves until SIGINT/SIGTERM, then drains in-flight requests.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}
