//! A small in-process cache of validated sessions and users, so the hot path
//! (`GET /protected` with a live session) needs no database round trip.
//!
//! Coherence, on every instance:
//! - this instance forgets at once what it ends or changes itself;
//! - everything else arrives through `session_events` (written by every query
//!   that ends sessions or changes a user, the CLI's included), polled every
//!   [`POLL_EVERY`]: a logout, revocation, password change or disable anywhere is
//!   honoured here within a second;
//! - while polling fails, the cache is off (every lookup goes to the database)
//!   and emptied; it comes back on with the first successful poll;
//! - an entry is trusted for [`MAX_AGE`] at most, then read again.
//!
//! Expiry is still checked on every hit, and the sliding extension still writes
//! when due (see `store`), so time limits are exactly as without the cache.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::NaiveDateTime;

use super::events;
use crate::db::Pool;
use crate::users::{User, UserId};

/// How often other instances' changes are read.
pub const POLL_EVERY: Duration = Duration::from_millis(250);
/// Longest an entry is trusted without reading it again.
pub const MAX_AGE: Duration = Duration::from_secs(30);
/// How long an id skipped by a poll is looked for (Postgres commits out of order).
const GAP_PATIENCE: Duration = Duration::from_secs(5);

/// A validated session, as the store loaded it.
#[derive(Debug, Clone)]
pub struct CachedSession {
    pub state: HashMap<String, String>,
    pub user_id: Option<UserId>,
    pub expires_at: NaiveDateTime,
    pub absolute_expires_at: NaiveDateTime,
    pub ttl_seconds: i64,
    cached_at: Instant,
}

impl CachedSession {
    pub fn new(state: HashMap<String, String>, row: &super::queries::SessionRow) -> Self {
        Self {
            state,
            user_id: row.user_id,
            expires_at: row.expires_at,
            absolute_expires_at: row.absolute_expires_at,
            ttl_seconds: row.ttl_seconds,
            cached_at: Instant::now(),
        }
    }
}

#[derive(Default)]
struct Entries {
    sessions: HashMap<String, CachedSession>,
    users: HashMap<UserId, (User, Instant)>,
}

pub struct SessionCache {
    entries: Mutex<Entries>,
    /// Off until the first successful poll, and whenever polling fails.
    on: AtomicBool,
    /// Bumped by every forget: an entry read from the database before a forget
    /// may be stale, so it is not cached (see [`SessionCache::generation`]).
    generation: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
    capacity: usize,
}

impl std::fmt::Debug for SessionCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionCache")
            .field("on", &self.is_on())
            .finish_non_exhaustive()
    }
}

impl SessionCache {
    /// A cache of at most `capacity` sessions (and as many users); with a
    /// capacity of 0 it never turns on.
    pub fn new(capacity: usize) -> Arc<Self> {
        Arc::new(Self {
            entries: Mutex::new(Entries::default()),
            on: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            capacity,
        })
    }

    fn entries(&self) -> MutexGuard<'_, Entries> {
        // A panic while holding the lock cannot leave the maps inconsistent.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn is_on(&self) -> bool {
        self.on.load(Ordering::Acquire)
    }

    /// Take before reading from the database; pass to the `put_*` that caches the result.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn session(&self, key_hash: &str) -> Option<CachedSession> {
        let found = if self.is_on() {
            self.entries()
                .sessions
                .get(key_hash)
                .filter(|hit| hit.cached_at.elapsed() < MAX_AGE)
                .cloned()
        } else {
            None
        };
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Session lookups answered from the cache, and those that were not.
    pub fn hits_and_misses(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }

    /// Caches a session read at `generation`, unless something was forgotten since.
    pub fn put_session(&self, generation: u64, key_hash: String, session: CachedSession) {
        if !self.is_on() {
            return;
        }
        let mut entries = self.entries();
        if self.generation() != generation {
            return;
        }
        if entries.sessions.len() >= self.capacity {
            // Rare (more live sessions than capacity): start over rather than track use.
            entries.sessions.clear();
        }
        entries.sessions.insert(key_hash, session);
    }

    /// Records a new expiry after a sliding extension.
    pub fn extended(&self, key_hash: &str, expires_at: NaiveDateTime) {
        if let Some(session) = self.entries().sessions.get_mut(key_hash) {
            session.expires_at = expires_at;
        }
    }

    pub fn user(&self, id: UserId) -> Option<User> {
        if !self.is_on() {
            return None;
        }
        let entries = self.entries();
        let (user, cached_at) = entries.users.get(&id)?;
        (cached_at.elapsed() < MAX_AGE).then(|| user.clone())
    }

    /// Caches a user read at `generation`, unless something was forgotten since.
    pub fn put_user(&self, generation: u64, user: User) {
        if !self.is_on() {
            return;
        }
        let mut entries = self.entries();
        if self.generation() != generation {
            return;
        }
        if entries.users.len() >= self.capacity {
            entries.users.clear();
        }
        entries.users.insert(user.id, (user, Instant::now()));
    }

    pub fn forget_session(&self, key_hash: &str) {
        let mut entries = self.entries();
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.sessions.remove(key_hash);
    }

    /// Forgets a user and every cached session of theirs.
    pub fn forget_user(&self, id: UserId) {
        let mut entries = self.entries();
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.users.remove(&id);
        entries.sessions.retain(|_, s| s.user_id != Some(id));
    }

    fn apply(&self, event: &events::Event) {
        if let Some(key_hash) = &event.key_hash {
            self.forget_session(key_hash);
        }
        if let Some(id) = event.user_id {
            self.forget_user(id);
        }
    }

    /// The feed was read: the cache may serve (if it has room at all).
    pub fn feed_ok(&self) {
        if !self.is_on() && self.capacity > 0 {
            self.switch_on();
            tracing::info!("session cache on");
        }
    }

    /// The feed could not be read: serve from the database until it can.
    pub fn feed_failed(&self, error: &anyhow::Error) {
        if self.is_on() {
            tracing::warn!(
                error = format!("{error:#}"),
                "session cache off: cannot read session events"
            );
        }
        self.switch_off();
    }

    fn switch_off(&self) {
        self.on.store(false, Ordering::Release);
        let mut entries = self.entries();
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.sessions.clear();
        entries.users.clear();
    }

    fn switch_on(&self) {
        self.on.store(self.capacity > 0, Ordering::Release);
    }
}

/// Reads `session_events` for a cache: where the poll has got to.
#[derive(Default)]
pub struct EventFeed {
    last: Option<i64>,
    /// Ids skipped so far, and since when.
    gaps: BTreeMap<i64, Instant>,
}

impl EventFeed {
    /// Applies the events committed since the last poll.
    pub fn poll(&mut self, cache: &SessionCache, pool: &Pool) -> anyhow::Result<()> {
        let mut conn = pool.get()?;
        let Some(last) = self.last else {
            // Start from now: the cache holds nothing older.
            self.last = Some(events::last_id(&mut conn)?);
            return Ok(());
        };
        let gaps: Vec<i64> = self.gaps.keys().copied().collect();
        let mut newest = last;
        for event in events::since(&mut conn, last, &gaps)? {
            cache.apply(&event);
            self.gaps.remove(&event.id);
            if event.id > newest {
                for skipped in newest + 1..event.id {
                    self.gaps.insert(skipped, Instant::now());
                }
                newest = event.id;
            }
        }
        self.last = Some(newest);
        self.gaps.retain(|_, since| since.elapsed() < GAP_PATIENCE);
        if self.gaps.len() > 1000 {
            // Too many holes to follow: forget everything instead.
            self.gaps.clear();
            cache.switch_off();
        }
        Ok(())
    }
}
