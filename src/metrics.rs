//! Prometheus metrics: the registry, and what the app counts.
//!
//! Counters and histograms are updated where things happen (the edge for
//! requests, the login service for outcomes, the pool's event handler for
//! checkouts); gauges that describe a state (hashing queue, pool, sessions) are
//! set when scraped ([`Metrics::observe`]). Route labels are the route's
//! pattern, never the raw path, so a scanner cannot blow up the number of series.

use std::time::Duration;

use prometheus::core::Collector;
use prometheus::{
    Encoder as _, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::audit::Event;

const LATENCY_BUCKETS: [f64; 13] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Login outcomes, shown at zero before the first login.
const LOGIN_OUTCOMES: [&str; 5] = [
    "success",
    "bad_password",
    "unknown_user",
    "disabled",
    "throttled",
];

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    request_seconds: HistogramVec,
    logins: IntCounterVec,
    events: IntCounterVec,
    pool_wait_seconds: Histogram,
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

/// A state read at scrape time.
#[derive(Debug, Clone, Copy, Default)]
pub struct Snapshot {
    pub hash_computed: u64,
    pub hash_rejected: u64,
    pub hash_waiting: usize,
    pub pool_connections: u32,
    pub pool_idle: u32,
    pub cache_hits: u64,
    pub cache_misses: u64,
    /// `None` when the database could not be asked.
    pub sessions_active: Option<i64>,
}

/// Registers `metric` and hands it back.
fn registered<T: Collector + Clone + 'static>(
    registry: &Registry,
    metric: T,
) -> Result<T, prometheus::Error> {
    registry.register(Box::new(metric.clone()))?;
    Ok(metric)
}

fn gauge(value: impl TryInto<i64>) -> i64 {
    value.try_into().unwrap_or(i64::MAX)
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new_custom(Some("latchkey".to_owned()), None)?;
        let r = &registry;
        let counters = |name: &str, help: &str, labels: &[&str]| {
            registered(r, IntCounterVec::new(Opts::new(name, help), labels)?)
        };
        let gauge_vec = |name: &str, help: &str, labels: &[&str]| {
            registered(r, IntGaugeVec::new(Opts::new(name, help), labels)?)
        };
        let int_gauge = |name: &str, help: &str| registered(r, IntGauge::new(name, help)?);
        let latency = |name: &str, help: &str| {
            HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec())
        };

        let metrics = Self {
            requests: counters(
                "http_requests_total",
                "HTTP requests by route and status.",
                &["method", "route", "status"],
            )?,
            request_seconds: registered(
                r,
                HistogramVec::new(
                    latency("http_request_duration_seconds", "HTTP request latency."),
                    &["method", "route"],
                )?,
            )?,
            logins: counters(
                "logins_total",
                "Login attempts by outcome (success, bad_password, unknown_user, disabled, throttled).",
                &["outcome"],
            )?,
            events: counters(
                "auth_events_total",
                "Authentication events served by this instance, as in the audit trail.",
                &["event"],
            )?,
            pool_wait_seconds: registered(
                r,
                Histogram::with_opts(latency(
                    "db_pool_wait_seconds",
                    "Time spent waiting for a database connection.",
                ))?,
            )?,
            pool_timeouts: registered(
                r,
                IntCounter::new(
                    "db_pool_timeouts_total",
                    "Database connection checkouts that timed out.",
                )?,
            )?,
            hash_computed: int_gauge("hash_computed_total", "bcrypt computations run.")?,
            hash_rejected: int_gauge(
                "hash_rejected_total",
                "Password checks shed because the hashing queue was full.",
            )?,
            hash_waiting: int_gauge(
                "hash_queue_depth",
                "Password checks waiting for a hashing slot.",
            )?,
            pool_connections: gauge_vec(
                "db_pool_connections",
                "Database connections by state (idle, in_use).",
                &["state"],
            )?,
            sessions_active: int_gauge("sessions_active", "Live (unexpired) sessions.")?,
            cache_lookups: gauge_vec(
                "session_cache_lookups_total",
                "Session lookups by result (hit: no database round trip; miss).",
                &["result"],
            )?,
            registry,
        };
        for outcome in LOGIN_OUTCOMES {
            metrics.logins.with_label_values(&[outcome]);
        }
        Ok(metrics)
    }

    /// Feeds the pool's checkouts (waits and timeouts) into these metrics.
    pub fn pool_events(&self) -> Box<dyn r2d2::HandleEvent> {
        Box::new(PoolEvents {
            wait_seconds: self.pool_wait_seconds.clone(),
            timeouts: self.pool_timeouts.clone(),
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

    /// Sets the gauges that describe a state.
    pub fn observe(&self, now: Snapshot) {
        self.hash_computed.set(gauge(now.hash_computed));
        self.hash_rejected.set(gauge(now.hash_rejected));
        self.hash_waiting.set(gauge(now.hash_waiting));
        let idle = i64::from(now.pool_idle);
        self.pool_connections.with_label_values(&["idle"]).set(idle);
        self.pool_connections
            .with_label_values(&["in_use"])
            .set(i64::from(now.pool_connections) - idle);
        self.cache_lookups
            .with_label_values(&["hit"])
            .set(gauge(now.cache_hits));
        self.cache_lookups
            .with_label_values(&["miss"])
            .set(gauge(now.cache_misses));
        if let Some(active) = now.sessions_active {
            self.sessions_active.set(active);
        }
    }

    /// Everything, in Prometheus' text format.
    pub fn encode(&self) -> Result<Vec<u8>, prometheus::Error> {
        let mut body = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut body)?;
        Ok(body)
    }
}

/// The pool's event handler: how long each checkout waited.
#[derive(Debug)]
struct PoolEvents {
    wait_seconds: Histogram,
    timeouts: IntCounter,
}

impl r2d2::HandleEvent for PoolEvents {
    fn handle_checkout(&self, event: r2d2::event::CheckoutEvent) {
        self.wait_seconds.observe(event.duration().as_secs_f64());
    }

    fn handle_timeout(&self, event: r2d2::event::TimeoutEvent) {
        self.wait_seconds.observe(event.timeout().as_secs_f64());
        self.timeouts.inc();
    }
}
