//! The app's background thread: it keeps the session cache honest (polling
//! `session_events`) and sweeps what has expired.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crate::audit;
use crate::auth::throttle;
use crate::config::{DatabaseUrl, Settings};
use crate::db::{self, AnyConnection, Pool};
use crate::factors::queries as factor_queries;
use crate::sessions::cache::{EventFeed, SessionCache, POLL_EVERY};
use crate::sessions::{current, events, fence, store};

/// How often expired rows are swept (also once at start).
const SWEEP_EVERY: Duration = Duration::from_secs(300);
/// Sessions swept per statement.
const SWEEP_BATCH: i64 = 1000;
/// How long session events are kept (every instance with a lease has
/// acknowledged them within milliseconds; one that lost its lease empties its
/// cache before it serves again).
const EVENTS_KEPT: Duration = Duration::from_secs(60);

/// How long what is swept is kept.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub throttle: throttle::Limits,
    pub audit: Duration,
}

impl Retention {
    pub fn from_settings(settings: &Settings) -> Self {
        Self {
            throttle: throttle::Limits::from_settings(settings),
            audit: settings.audit_retention,
        }
    }
}

/// The running thread, to stop when the server has stopped.
pub struct Housekeeping {
    cache: Arc<SessionCache>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Housekeeping {
    /// Stops the thread and waits for it: it gives its lease up on the way
    /// out, so no revoker waits for a stopped instance.
    pub fn stop(mut self) {
        self.cache.stop();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Starts the thread; it stops when told to ([`Housekeeping::stop`]) or once
/// the cache is dropped.
pub fn spawn(
    cache: &Arc<SessionCache>,
    pool: Pool,
    url: DatabaseUrl,
    retention: Retention,
) -> Housekeeping {
    let weak: Weak<SessionCache> = Arc::downgrade(cache);
    let spawned = std::thread::Builder::new()
        .name("latchkey-housekeeping".to_owned())
        .spawn(move || run(&weak, &pool, EventFeed::new(url), &retention));
    let thread = match spawned {
        Ok(thread) => Some(thread),
        Err(error) => {
            tracing::error!(%error, "cannot start the housekeeping thread: the session cache stays off");
            None
        }
    };
    Housekeeping {
        cache: cache.clone(),
        thread,
    }
}

fn run(cache: &Weak<SessionCache>, pool: &Pool, mut feed: EventFeed, retention: &Retention) {
    let mut last_sweep: Option<Instant> = None;
    while let Some(cache) = cache.upgrade().filter(|c| !c.stopped()) {
        // A cache that never serves takes no lease: revokers never wait for it.
        if cache.enabled() {
            if let Err(error) = feed.poll(&cache) {
                feed.failed(&cache, &error);
            }
        }
        drop(cache);
        if last_sweep.is_none_or(|at| at.elapsed() >= SWEEP_EVERY) {
            sweep(pool, retention);
            last_sweep = Some(Instant::now());
        }
        std::thread::sleep(POLL_EVERY);
    }
    feed.release();
}

/// Deletes what has expired: sessions, old login failures, old session events,
/// used passkey challenges, audit events past their retention. Several instances may do it at once:
/// deleting what is gone is harmless.
fn sweep(pool: &Pool, retention: &Retention) {
    let run = |conn: &mut AnyConnection| -> anyhow::Result<(usize, usize, usize)> {
        let now = db::now();
        let sessions = store::sweep(conn, SWEEP_BATCH)?;
        let failures = throttle::sweep(conn, &retention.throttle, now)?;
        // By the database's clock: instances on other hosts read these events.
        let kept = chrono::Duration::from_std(EVENTS_KEPT)?;
        let before = db::clock(conn)? - kept;
        events::sweep(conn, before)?;
        fence::sweep(conn)?;
        // A used challenge matters while its ceremony could still be
        // answered; kept twice that long, for clocks a little apart.
        let ceremony = chrono::Duration::seconds(2 * current::CEREMONY_LIFETIME_SECS);
        factor_queries::sweep_challenges(conn, now - ceremony)?;
        let audit_kept = chrono::Duration::from_std(retention.audit)?;
        let audited = audit::sweep(conn, now - audit_kept, SWEEP_BATCH)?;
        Ok((sessions, failures, audited))
    };
    match db::run_here(pool, run) {
        Ok((0, 0, 0)) => {}
        Ok((sessions, failures, audit_events)) => {
            tracing::info!(sessions, failures, audit_events, "swept expired rows")
        }
        Err(error) => tracing::warn!(error = format!("{error:#}"), "sweep failed"),
    }
}
