//! Prometheus metrics: the registry, and what the app counts.
//!
//! Conventions (prometheus.io "Metric and label naming"): every `_total` is a
//! counter, units are in names (`_seconds`, `_bytes`), labels are bounded: a
//! route is its pattern, never the raw path, and a method outside the standard
//! ones is `OTHER`, so a scanner cannot blow up the number of series.
//!
//! Counters and histograms are updated where things happen (the edge for
//! requests, the login service for outcomes, the pool's event handler for
//! checkouts); the hasher and the session cache keep counters of their own,
//! read when scraped and reported as counters ([`ReadCounter`]). Gauges that
//! describe a state (hashing queue, pool, sessions) are set when scraped
//! ([`Metrics::observe`]). Beside them: `latchkey_build_info` and the standard
//! `process_*` metrics.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, LabelPair, MetricFamily, MetricType};
use prometheus::{
    Encoder as _, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::audit::Event;
use crate::sessions::cache::SessionCache;
use crate::users::PasswordHasher;

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

/// Methods that are labelled as themselves; any other is `OTHER`.
const METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "CONNECT", "TRACE",
];

/// `sessions_active` counts the whole sessions table: at most this often, however
/// often Prometheus scrapes.
const SESSIONS_COUNTED_EVERY: Duration = Duration::from_secs(30);

pub struct Metrics {
    /// Ours, every name prefixed `latchkey_`.
    registry: Registry,
    /// The standard `process_*` metrics, unprefixed: the names every exporter
    /// uses and dashboards expect.
    process: Registry,
    requests: IntCounterVec,
    request_seconds: HistogramVec,
    logins: IntCounterVec,
    events: IntCounterVec,
    pool_wait_seconds: Histogram,
    pool_timeouts: IntCounter,
    hash_waiting: IntGauge,
    pool_connections: IntGaugeVec,
    sessions_active: IntGauge,
    /// When `sessions_active` was last counted (see [`Metrics::sessions_due`]).
    sessions_counted_at: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// A state read at scrape time.
#[derive(Debug, Clone, Copy, Default)]
pub struct Snapshot {
    pub hash_waiting: usize,
    pub pool_connections: u32,
    pub pool_idle: u32,
    /// `None` when not counted this time (see [`Metrics::sessions_due`]) or
    /// when the database could not be asked: the last count stands.
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

        gauge_vec(
            "build_info",
            "The running build (always 1): its version and git commit.",
            &["version", "commit"],
        )?
        .with_label_values(&[env!("CARGO_PKG_VERSION"), env!("LATCHKEY_COMMIT")])
        .set(1);
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
            hash_waiting: int_gauge(
                "hash_queue_depth",
                "Password checks waiting for a hashing slot.",
            )?,
            pool_connections: gauge_vec(
                "db_pool_connections",
                "Database connections by state (idle, in_use).",
                &["state"],
            )?,
            sessions_active: int_gauge(
                "sessions_active",
                "Live (unexpired) sessions, counted at most every 30 seconds.",
            )?,
            sessions_counted_at: Mutex::new(None),
            process: process_registry()?,
            registry,
        };
        for outcome in LOGIN_OUTCOMES {
            metrics.logins.with_label_values(&[outcome]);
        }
        Ok(metrics)
    }

    /// Reports the counters the hasher and the session cache keep themselves.
    pub fn count_from(
        &self,
        hasher: &PasswordHasher,
        cache: &Arc<SessionCache>,
    ) -> Result<(), prometheus::Error> {
        let computed = hasher.clone();
        let shed = hasher.clone();
        let cache = cache.clone();
        for counter in [
            ReadCounter::new(
                "hash_computed_total",
                "bcrypt computations run.",
                None,
                move || vec![computed.stats().computed],
            )?,
            ReadCounter::new(
                "hash_rejected_total",
                "Password checks shed because the hashing queue was full.",
                None,
                move || vec![shed.stats().shed],
            )?,
            ReadCounter::new(
                "session_cache_lookups_total",
                "Session lookups by result (hit: no database round trip; miss).",
                Some(("result", &["hit", "miss"])),
                move || {
                    let (hits, misses) = cache.hits_and_misses();
                    vec![hits, misses]
                },
            )?,
        ] {
            self.registry.register(Box::new(counter))?;
        }
        Ok(())
    }

    /// Feeds the pool's checkouts (waits and timeouts) into these metrics.
    pub fn pool_events(&self) -> Box<dyn r2d2::HandleEvent> {
        Box::new(PoolEvents {
            wait_seconds: self.pool_wait_seconds.clone(),
            timeouts: self.pool_timeouts.clone(),
        })
    }

    pub fn request(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let method = METHODS
            .into_iter()
            .find(|known| *known == method)
            .unwrap_or("OTHER");
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

    /// Whether `sessions_active` should be counted now. A "yes" marks it
    /// counted, so concurrent scrapes (or a database that is away) ask the
    /// database at most once per [`SESSIONS_COUNTED_EVERY`].
    pub fn sessions_due(&self) -> bool {
        let mut last = self
            .sessions_counted_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if last.is_some_and(|at| at.elapsed() < SESSIONS_COUNTED_EVERY) {
            return false;
        }
        *last = Some(Instant::now());
        true
    }

    /// Sets the gauges that describe a state.
    pub fn observe(&self, now: Snapshot) {
        self.hash_waiting.set(gauge(now.hash_waiting));
        let idle = i64::from(now.pool_idle);
        self.pool_connections.with_label_values(&["idle"]).set(idle);
        self.pool_connections
            .with_label_values(&["in_use"])
            .set(i64::from(now.pool_connections) - idle);
        if let Some(active) = now.sessions_active {
            self.sessions_active.set(active);
        }
    }

    /// Everything, in Prometheus' text format.
    pub fn encode(&self) -> Result<Vec<u8>, prometheus::Error> {
        let mut families = self.registry.gather();
        families.extend(self.process.gather());
        let mut body = Vec::new();
        TextEncoder::new().encode(&families, &mut body)?;
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

/// The standard `process_*` metrics (CPU, memory, file descriptors, start
/// time), read from `/proc`: Linux only, like the crate's collector.
fn process_registry() -> Result<Registry, prometheus::Error> {
    let registry = Registry::new();
    #[cfg(target_os = "linux")]
    registry.register(Box::new(
        prometheus::process_collector::ProcessCollector::for_self(),
    ))?;
    Ok(registry)
}

/// A counter kept elsewhere (an atomic that only goes up), read when scraped
/// and reported as a counter.
struct ReadCounter {
    desc: Desc,
    /// The label's name and its value for each number `read` returns, in
    /// order; `None`: `read` returns one number.
    label: Option<(&'static str, &'static [&'static str])>,
    read: Box<dyn Fn() -> Vec<u64> + Send + Sync>,
}

impl ReadCounter {
    fn new(
        name: &str,
        help: &str,
        label: Option<(&'static str, &'static [&'static str])>,
        read: impl Fn() -> Vec<u64> + Send + Sync + 'static,
    ) -> Result<Self, prometheus::Error> {
        let labels = label.map(|(name, _)| name.to_owned()).into_iter().collect();
        Ok(Self {
            desc: Desc::new(name.to_owned(), help.to_owned(), labels, Default::default())?,
            label,
            read: Box::new(read),
        })
    }
}

impl Collector for ReadCounter {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.desc]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let series = (self.read)().into_iter().enumerate().map(|(i, value)| {
            let labels = self
                .label
                .and_then(|(name, values)| Some((name, *values.get(i)?)))
                .map(|(name, value)| {
                    let mut pair = LabelPair::default();
                    pair.set_name(name.to_owned());
                    pair.set_value(value.to_owned());
                    pair
                });
            let mut counter = proto::Counter::default();
            // Exact up to 2^53: far beyond what one process counts.
            counter.set_value(value as f64);
            let mut metric = proto::Metric::from_label(labels.into_iter().collect());
            metric.set_counter(counter);
            metric
        });
        let mut family = MetricFamily::default();
        family.set_name(self.desc.fq_name.clone());
        family.set_help(self.desc.help.clone());
        family.set_field_type(MetricType::COUNTER);
        family.set_metric(series.collect());
        vec![family]
    }
}
