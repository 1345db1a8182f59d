//! Prometheus metrics at `GET /metrics`.
//!
//! Counters and histograms are updated where things happen (the edge for
//! requests, the login service for outcomes, the database helper for pool
//! waits); gauges that describe a state (hashing queue, pool, sessions) are
//! read when scraped. Route labels are the route's pattern, never the raw
//! path, so a scanner cannot blow up the number of series.

use std::time::Duration;

use actix_web::{web, HttpResponse};
use prometheus::{
    Encoder as _, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

use super::AppState;
use crate::audit::Event;
use crate::error::AppError;

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    request_seconds: HistogramVec,
    logins: IntCounterVec,
    events: IntCounterVec,
    pool_wait_seconds: prometheus::Histogram,
    pool_timeouts: IntCounter,
    hash_computed: IntGauge,
    hash_rejected: IntGauge,
    hash_waiting: IntGauge,
    pool_connections: IntGaugeVec,
    sessions_active: IntGauge,
    cache_lookups: IntGaugeVec,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new_custom(Some("latchkey".to_owned()), None)?;
        let latency_buckets = vec![
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
        ];
        let requests = IntCounterVec::new(
            Opts::new("http_requests_total", "HTTP requests by route and status."),
            &["method", "route", "status"],
        )?;
        let request_seconds = HistogramVec::new(
            HistogramOpts::new("http_request_duration_seconds", "HTTP request latency.")
                .buckets(latency_buckets.clone()),
            &["method", "route"],
        )?;
        let logins = IntCounterVec::new(
            Opts::new(
                "logins_total",
                "Login attempts by outcome (success, bad_password, unknown_user, disabled, throttled).",
            ),
            &["outcome"],
        )?;
        let events = IntCounterVec::new(
            Opts::new(
                "auth_events_total",
                "Authentication events served by this instance, as in the audit trail.",
            ),
            &["event"],
        )?;
        let pool_wait_seconds = prometheus::Histogram::with_opts(
            HistogramOpts::new(
                "db_pool_wait_seconds",
                "Time spent waiting for a database connection.",
            )
            .buckets(latency_buckets),
        )?;
        let pool_timeouts = IntCounter::new(
            "db_pool_timeouts_total",
            "Database connection checkouts that timed out.",
        )?;
        let hash_computed = IntGauge::new("hash_computed_total", "bcrypt computations run.")?;
        let hash_rejected = IntGauge::new(
            "hash_rejected_total",
            "Password checks shed because the hashing queue was full.",
        )?;
        let hash_waiting = IntGauge::new(
            "hash_queue_depth",
            "Password checks waiting for a hashing slot.",
        )?;
        let pool_connections = IntGaugeVec::new(
            Opts::new(
                "db_pool_connections",
                "Database connections by state (idle, in_use).",
            ),
            &["state"],
        )?;
        let sessions_active = IntGauge::new("sessions_active", "Live (unexpired) sessions.")?;
        let cache_lookups = IntGaugeVec::new(
            Opts::new(
                "session_cache_lookups_total",
                "Session lookups by result (hit: no database round trip; miss).",
            ),
            &["result"],
        )?;

        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(request_seconds.clone()))?;
        registry.register(Box::new(logins.clone()))?;
        registry.register(Box::new(events.clone()))?;
        registry.register(Box::new(pool_wait_seconds.clone()))?;
        registry.register(Box::new(pool_timeouts.clone()))?;
        registry.register(Box::new(hash_computed.clone()))?;
        registry.register(Box::new(hash_rejected.clone()))?;
        registry.register(Box::new(hash_waiting.clone()))?;
        registry.register(Box::new(pool_connections.clone()))?;
        registry.register(Box::new(sessions_active.clone()))?;
        registry.register(Box::new(cache_lookups.clone()))?;
        // Outcomes show up at zero before the first login.
        for outcome in [
            "success",
            "bad_password",
            "unknown_user",
            "disabled",
            "throttled",
        ] {
            logins.with_label_values(&[outcome]);
        }
        Ok(Self {
            registry,
            requests,
            request_seconds,
            logins,
            events,
            pool_wait_seconds,
            pool_timeouts,
            hash_computed,
            hash_rejected,
            hash_waiting,
            pool_connections,
            sessions_active,
            cache_lookups,
        })
    }

    pub fn request(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        self.requests
            .with_label_values(&[method, route, &status.to_string()])
            .inc();
        self.request_seconds
            .with_label_values(&[method, route])
            .observe(elapsed.as_secs_f64());
    }

    /// A login attempt's outcome (also counted as its authentication event).
    pub fn login(&self, outcome: &str) {
        self.logins.with_label_values(&[outcome]).inc();
        self.event(match outcome {
            "success" => Event::LoginSuccess,
            "throttled" => Event::LoginThrottled,
            _ => Event::LoginFailure,
        });
    }

    /// An authentication event, as recorded in the audit trail.
    pub fn event(&self, event: Event) {
        self.events.with_label_values(&[event.as_str()]).inc();
    }

    pub fn pool_wait(&self, waited: Duration, timed_out: bool) {
        self.pool_wait_seconds.observe(waited.as_secs_f64());
        if timed_out {
            self.pool_timeouts.inc();
        }
    }
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(state: web::Data<AppState>) -> Result<HttpResponse, AppError> {
    let m = &state.metrics;
    let hashing = state.hasher.stats();
    m.hash_computed
        .set(i64::try_from(hashing.computed).unwrap_or(i64::MAX));
    m.hash_rejected
        .set(i64::try_from(hashing.shed).unwrap_or(i64::MAX));
    m.hash_waiting
        .set(i64::try_from(hashing.waiting).unwrap_or(i64::MAX));
    let pool = state.pool.state();
    let idle = i64::from(pool.idle_connections);
    m.pool_connections.with_label_values(&["idle"]).set(idle);
    m.pool_connections
        .with_label_values(&["in_use"])
        .set(i64::from(pool.connections) - idle);
    let (hits, misses) = state.cache.hits_and_misses();
    m.cache_lookups
        .with_label_values(&["hit"])
        .set(i64::try_from(hits).unwrap_or(i64::MAX));
    m.cache_lookups
        .with_label_values(&["miss"])
        .set(i64::try_from(misses).unwrap_or(i64::MAX));
    // The database may be away: the other metrics still matter then.
    if let Ok(active) = state
        .db(|conn| {
            Ok(crate::sessions::queries::count_live(
                conn,
                crate::db::now(),
            )?)
        })
        .await
    {
        m.sessions_active.set(active);
    }

    let mut body = Vec::new();
    TextEncoder::new()
        .encode(&m.registry.gather(), &mut body)
        .map_err(AppError::internal)?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(body))
}
