//! A small in-process cache of validated sessions (each with its user) and
//! access tokens, so the
//! hot path (`GET /protected` with a live session) needs no database round trip.
//!
//! It serves only under the rule that a revocation is in force everywhere
//! before it is acknowledged (see [`super::fence`]):
//! - it serves only while this instance's lease is fresh, by this instance's
//!   monotonic clock with a margin, so it has stopped before any revoker
//!   stops waiting for it; a lease that lapsed empties it before it serves again;
//! - the feed ([`EventFeed`], polled every [`POLL_EVERY`]) applies every session
//!   event this instance has not acknowledged, whatever order they committed
//!   in, then acknowledges them: a revoker answers only after that;
//! - while the feed fails, the lease is not renewed: the cache is off (every
//!   lookup goes to the database) and emptied;
//! - a read from the database that raced a forget is not cached (generations),
//!   and an entry is trusted for [`MAX_AGE`] at most.
//!
//! Expiry is still checked on every hit, and the sliding extension still writes
//! when due (see `store`), so time limits are exactly as without the cache.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::NaiveDateTime;

use super::{events, fence};
use crate::config::DatabaseUrl;
use crate::db::{self, AnyConnection};
use crate::users::{Principal, UserId};

/// How often other instances' changes are read.
pub const POLL_EVERY: Duration = Duration::from_millis(10);
/// Longest an entry is trusted without reading it again.
pub const MAX_AGE: Duration = Duration::from_secs(30);

/// A validated session, as the store loaded it (its state carries its user).
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

/// A validated access token (see `tokens`), with its user.
#[derive(Debug, Clone)]
pub struct CachedToken {
    pub principal: Principal,
    pub token_id: i32,
    pub expires_at: NaiveDateTime,
    pub last_used_at: Option<NaiveDateTime>,
    cached_at: Instant,
}

impl CachedToken {
    pub fn new(
        principal: Principal,
        token_id: i32,
        expires_at: NaiveDateTime,
        last_used_at: Option<NaiveDateTime>,
    ) -> Self {
        Self {
            principal,
            token_id,
            expires_at,
            last_used_at,
            cached_at: Instant::now(),
        }
    }
}

/// Sessions by key hash, tokens by token hash: one event names either.
#[derive(Default)]
struct Entries {
    sessions: HashMap<String, CachedSession>,
    tokens: HashMap<String, CachedToken>,
}

pub struct SessionCache {
    entries: Mutex<Entries>,
    /// Until when the lease is trusted, in nanoseconds after `epoch`; 0: never.
    leased_until: AtomicU64,
    epoch: Instant,
    /// Bumped by every forget: an entry read from the database before a forget
    /// may be stale, so it is not cached (see [`SessionCache::generation`]).
    generation: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
    capacity: usize,
    /// The server has stopped: the feed gives its lease up and ends.
    stopped: AtomicBool,
}

impl std::fmt::Debug for SessionCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionCache")
            .field("on", &self.is_on())
            .finish_non_exhaustive()
    }
}

impl SessionCache {
    /// A cache of at most `capacity` sessions; with a capacity of 0 it never
    /// turns on (and the instance takes no lease: revokers never wait for it).
    pub fn new(capacity: usize) -> Arc<Self> {
        Arc::new(Self {
            entries: Mutex::new(Entries::default()),
            leased_until: AtomicU64::new(0),
            epoch: Instant::now(),
            generation: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            capacity,
            stopped: AtomicBool::new(false),
        })
    }

    pub fn enabled(&self) -> bool {
        self.capacity > 0
    }

    fn entries(&self) -> MutexGuard<'_, Entries> {
        // A panic while holding the lock cannot leave the maps inconsistent.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Whether the cache may serve: only while the lease is trusted.
    pub fn is_on(&self) -> bool {
        self.nanos(Instant::now()) < self.leased_until.load(Ordering::Acquire)
    }

    /// Take before reading from the database; pass to the `put_session` that caches the result.
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

    pub fn token(&self, token_hash: &str) -> Option<CachedToken> {
        if !self.is_on() {
            return None;
        }
        self.entries()
            .tokens
            .get(token_hash)
            .filter(|hit| hit.cached_at.elapsed() < MAX_AGE)
            .cloned()
    }

    /// Caches a token read at `generation`, unless something was forgotten since.
    pub fn put_token(&self, generation: u64, token_hash: String, token: CachedToken) {
        if !self.is_on() {
            return;
        }
        let mut entries = self.entries();
        if self.generation() != generation {
            return;
        }
        if entries.tokens.len() >= self.capacity {
            entries.tokens.clear();
        }
        entries.tokens.insert(token_hash, token);
    }

    /// Records a token's use, as written.
    pub fn token_used(&self, token_hash: &str, at: NaiveDateTime) {
        if let Some(token) = self.entries().tokens.get_mut(token_hash) {
            token.last_used_at = Some(at);
        }
    }

    /// Records a new expiry after a sliding extension.
    pub fn extended(&self, key_hash: &str, expires_at: NaiveDateTime) {
        if let Some(session) = self.entries().sessions.get_mut(key_hash) {
            session.expires_at = expires_at;
        }
    }

    /// Forgets a session, or a token, by its hash.
    pub fn forget_session(&self, key_hash: &str) {
        let mut entries = self.entries();
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.sessions.remove(key_hash);
        entries.tokens.remove(key_hash);
    }

    /// Forgets every cached session and token of a user.
    pub fn forget_user(&self, id: UserId) {
        let mut entries = self.entries();
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.sessions.retain(|_, s| s.user_id != Some(id));
        entries.tokens.retain(|_, t| t.principal.id != id);
    }

    fn forget_all(&self) {
        let mut entries = self.entries();
        self.generation.fetch_add(1, Ordering::AcqRel);
        *entries = Entries::default();
    }

    fn apply(&self, event: &events::Event) {
        if let Some(key_hash) = &event.key_hash {
            self.forget_session(key_hash);
        }
        if let Some(id) = event.user_id {
            self.forget_user(id);
        }
    }

    /// The lease was renewed (the renewal sent at `sent`): trusted until
    /// `sent + LEASE - LEASE_MARGIN`. After a lapse, whatever is cached may
    /// have missed events: it is emptied first.
    fn leased(&self, sent: Instant) {
        if !self.is_on() {
            self.forget_all();
        }
        let until = sent + fence::LEASE - fence::LEASE_MARGIN;
        self.leased_until
            .store(self.nanos(until), Ordering::Release);
    }

    /// The server has stopped: serve nothing more, and let the feed end.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        self.switch_off();
    }

    pub fn stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    /// Stops serving at once, and empties.
    pub fn switch_off(&self) {
        self.leased_until.store(0, Ordering::Release);
        self.forget_all();
    }
}

/// Keeps a cache honest: its lease, and the events it must apply and acknowledge.
///
/// It has a connection of its own, outside the pool: revokers hold pooled
/// connections while they wait for acknowledgements, and must never starve
/// the feed that gives them.
pub struct EventFeed {
    /// This instance, as `instances` and `event_acks` name it.
    instance: String,
    renewed: Option<Instant>,
    url: DatabaseUrl,
    conn: Option<AnyConnection>,
}

impl EventFeed {
    pub fn new(url: DatabaseUrl) -> Self {
        Self {
            instance: hex::encode(rand::random::<[u8; 16]>()),
            renewed: None,
            url,
            conn: None,
        }
    }

    /// Renews the lease when due, then applies and acknowledges every event
    /// not acknowledged yet; only then does a renewed lease let the cache
    /// serve (so nothing committed before the lease was taken can be missed).
    pub fn poll(&mut self, cache: &SessionCache) -> anyhow::Result<()> {
        let mut conn = match self.conn.take() {
            Some(conn) => conn,
            None => db::connect(&self.url)?,
        };
        let polled = self.poll_on(cache, &mut conn);
        // A connection that failed is opened anew next time.
        if polled.is_ok() {
            self.conn = Some(conn);
        }
        polled
    }

    fn poll_on(&mut self, cache: &SessionCache, conn: &mut AnyConnection) -> anyhow::Result<()> {
        let renewal = match self.renewed {
            Some(at) if at.elapsed() < fence::RENEW_EVERY => None,
            _ => {
                let sent = Instant::now();
                fence::renew(conn, &self.instance)?;
                Some(sent)
            }
        };
        let events = events::unacknowledged(conn, &self.instance)?;
        for event in &events {
            cache.apply(event);
        }
        if !events.is_empty() {
            let ids: Vec<i64> = events.iter().map(|e| e.id).collect();
            fence::acknowledge(conn, &self.instance, &ids)?;
        }
        if let Some(sent) = renewal {
            cache.leased(sent);
            self.renewed = Some(sent);
        }
        Ok(())
    }

    /// The feed failed: the cache stops serving, and the lease is taken anew
    /// at the next poll.
    pub fn failed(&mut self, cache: &SessionCache, error: &anyhow::Error) {
        if cache.is_on() {
            tracing::warn!(
                error = format!("{error:#}"),
                "session cache off: cannot read session events"
            );
        }
        cache.switch_off();
        self.renewed = None;
    }

    /// Gives the lease up (the server is stopping): no revoker waits for us.
    pub fn release(&mut self) {
        if self.renewed.is_none() && self.conn.is_none() {
            return; // never took a lease
        }
        let released = match self.conn.take() {
            Some(mut conn) => {
                fence::release(&mut conn, &self.instance).map_err(anyhow::Error::from)
            }
            None => db::connect(&self.url)
                .map_err(anyhow::Error::from)
                .and_then(|mut conn| Ok(fence::release(&mut conn, &self.instance)?)),
        };
        if let Err(error) = released {
            tracing::warn!(
                error = format!("{error:#}"),
                "cannot give up the cache's lease"
            );
        }
    }
}
