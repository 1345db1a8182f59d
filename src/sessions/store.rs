//! actix-session's `SessionStore` over the Diesel pool.
//!
//! The cookie carries a random 64-character key; the row is stored under its
//! SHA-256, so a leaked table cannot be replayed as cookies. Deleting the row
//! (logout, revocation) makes every copy of the cookie worthless, on every
//! instance, because every request loads its session from the database.
//!
//! Two limits, both kept in the row and enforced by every query:
//! - idle: the expiry slides to `now + idle timeout` as the session is used;
//! - absolute: it never slides past `absolute_expires_at`, set at creation to
//!   `now + max lifetime` (or `now + remember-me lifetime` for a remembered session,
//!   whose idle window is that whole lifetime).
//!
//! Sliding without a write per request: `load` pushes a live session's expiry
//! only when the last push is older than a tenth of its idle window (and at
//! least every 5 minutes). A session therefore ends between `ttl - ttl/10` and
//! `ttl` after its last use, and at its absolute limit regardless.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix_session::storage::{
    generate_session_key, LoadError, SaveError, SessionKey, SessionStore, UpdateError,
};
use actix_web::body::MessageBody;
use actix_web::cookie::time::Duration as CookieDuration;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::error::InternalError;
use actix_web::middleware::Next;
use actix_web::ResponseError as _;
use chrono::NaiveDateTime;
use diesel::Connection as _;
use sha2::{Digest as _, Sha256};

use super::cache::{CachedSession, SessionCache};
use super::fence;
use super::queries::{self, NewSession};
use super::remember::is_remembered;
use crate::db::{self, DbError, Pool};
use crate::error::AppError;
use crate::users::{Principal, User, UserId};

/// Session-state keys this crate writes, mirrored into columns.
pub const USER_ID_KEY: &str = "actix_identity.user_id";
pub const CLIENT_IP_KEY: &str = "latchkey.client_ip";
pub const USER_AGENT_KEY: &str = "latchkey.user_agent";
/// Written by the store: the session's public id, so a handler knows which row is its own.
pub const PUBLIC_ID_KEY: &str = "latchkey.sid";
/// Put by the store into a loaded state, never stored: the session's user (a
/// [`Principal`]), read in the same query or from the same cache entry.
pub const PRINCIPAL_KEY: &str = "latchkey.user";

/// Longest pause between two extensions of a session's expiry.
const MAX_EXTENSION_INTERVAL: Duration = Duration::from_secs(300);

/// How long sessions live.
#[derive(Debug, Clone, Copy)]
pub struct SessionPolicy {
    pub idle_timeout: Duration,
    pub max_lifetime: Duration,
    pub remember_lifetime: Duration,
    /// Live sessions per user; a new one past it ends the least recently seen.
    pub max_per_user: u32,
    /// How long a session no one is signed in to is kept (see
    /// `current::ANONYMOUS_LIFETIME`), not the idle timeout: a flood of them
    /// does not pile up.
    pub anonymous_lifetime: Duration,
}

impl SessionPolicy {
    /// The idle window and the absolute limit of a new session, in seconds.
    fn limits(&self, signed_in: bool, remembered: bool) -> (i64, i64) {
        let secs = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX).max(1);
        if !signed_in {
            (secs(self.anonymous_lifetime), secs(self.anonymous_lifetime))
        } else if remembered {
            (secs(self.remember_lifetime), secs(self.remember_lifetime))
        } else {
            (secs(self.idle_timeout), secs(self.max_lifetime))
        }
    }
}

#[derive(Clone)]
pub struct DbSessionStore {
    pool: Pool,
    policy: SessionPolicy,
    cache: Arc<SessionCache>,
}

impl DbSessionStore {
    pub fn new(pool: Pool, policy: SessionPolicy, cache: Arc<SessionCache>) -> Self {
        Self {
            pool,
            policy,
            cache,
        }
    }

    /// A live session from the cache, slid when due; `Err(CacheMiss)` when the
    /// cache has nothing to say, `Ok(None)` when the session turned out to be over.
    async fn load_cached(
        &self,
        key_hash: &str,
    ) -> Result<Option<HashMap<String, String>>, CacheMiss> {
        let hit = self.cache.session(key_hash).ok_or(CacheMiss)?;
        let now = db::now();
        if hit.expires_at <= now {
            self.cache.forget_session(key_hash);
            return Ok(None);
        }
        if let Some(slid) = slide(
            now,
            hit.expires_at,
            hit.ttl_seconds,
            hit.absolute_expires_at,
        ) {
            let owned = key_hash.to_owned();
            let extended = self
                .with_conn(move |conn| Ok(queries::extend(conn, &owned, now, slid)?))
                .await
                .map_err(|_| CacheMiss)?;
            if extended == 0 {
                // Ended elsewhere before the news arrived.
                self.cache.forget_session(key_hash);
                return Ok(None);
            }
            self.cache.extended(key_hash, slid);
        }
        Ok(Some(hit.state))
    }

    async fn with_conn<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut db::AnyConnection) -> Result<T, DbError> + Send + 'static,
    ) -> Result<T, DbError> {
        db::run(&self.pool, job).await
    }
}

/// The stored form of a session key.
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

fn expiry(now: NaiveDateTime, ttl_seconds: i64) -> NaiveDateTime {
    now + chrono::Duration::seconds(ttl_seconds)
}

/// The new expiry a use at `now` gives — one idle window on, never past the
/// absolute limit — when it is due to be written (see the module docs).
fn slide(
    now: NaiveDateTime,
    expires_at: NaiveDateTime,
    ttl_seconds: i64,
    absolute_expires_at: NaiveDateTime,
) -> Option<NaiveDateTime> {
    let slid = expiry(now, ttl_seconds).min(absolute_expires_at);
    (slid > expires_at && due_for_extension(now, expires_at, ttl_seconds)).then_some(slid)
}

/// Whether a session last extended to `expires_at` is due for another extension.
fn due_for_extension(now: NaiveDateTime, expires_at: NaiveDateTime, ttl_seconds: i64) -> bool {
    let interval = (ttl_seconds / 10).clamp(1, MAX_EXTENSION_INTERVAL.as_secs() as i64);
    expiry(now, ttl_seconds) - expires_at >= chrono::Duration::seconds(interval)
}

/// A string value from the session state (values are JSON-encoded there).
fn state_str(state: &HashMap<String, String>, key: &str) -> Option<String> {
    state
        .get(key)
        .and_then(|v| serde_json::from_str::<String>(v).ok())
}

fn state_user_id(state: &HashMap<String, String>) -> Option<UserId> {
    state_str(state, USER_ID_KEY).and_then(|id| id.parse().ok())
}

/// Whether a stored session was started with "remember me".
pub fn row_is_remembered(row: &queries::SessionRow) -> bool {
    serde_json::from_str::<HashMap<String, String>>(&row.state)
        .is_ok_and(|state| is_remembered(&state))
}

/// The cache had nothing to say: ask the database.
struct CacheMiss;

/// Loads a live session (and its user, in the same query) and slides its
/// expiry when due (see the module docs).
fn load_and_slide(
    conn: &mut db::AnyConnection,
    key_hash: &str,
) -> Result<Option<(queries::SessionRow, Option<User>)>, DbError> {
    let now = db::now();
    let Some((mut row, user)) = queries::find_live_with_user(conn, key_hash, now)? else {
        return Ok(None);
    };
    if let Some(slid) = slide(
        now,
        row.expires_at,
        row.ttl_seconds,
        row.absolute_expires_at,
    ) {
        queries::extend(conn, key_hash, now, slid)?;
        row.expires_at = slid;
    }
    Ok(Some((row, user)))
}

impl SessionStore for DbSessionStore {
    async fn load(
        &self,
        session_key: &SessionKey,
    ) -> Result<Option<HashMap<String, String>>, LoadError> {
        let key_hash = hash_key(session_key.as_ref());
        if let Ok(found) = self.load_cached(&key_hash).await {
            return Ok(found);
        }
        let generation = self.cache.generation();
        let lookup = key_hash.clone();
        // A read (and an idempotent slide): retried once on a fresh connection
        // if the pool's turns out broken.
        let Some((row, user)) =
            db::run_idempotent(&self.pool, move |conn| load_and_slide(conn, &lookup))
                .await
                .map_err(|e| LoadError::Other(e.into()))?
        else {
            return Ok(None);
        };
        let mut state: HashMap<String, String> = serde_json::from_str(&row.state)
            .map_err(|e| LoadError::Deserialization(anyhow::Error::new(e)))?;
        // The user came with the session: it travels in the state to
        // `CurrentUser`, which then needs no query of its own.
        if let Some(user) = &user {
            let principal = serde_json::to_string(&Principal::from(user))
                .map_err(|e| LoadError::Deserialization(anyhow::Error::new(e)))?;
            state.insert(PRINCIPAL_KEY.to_owned(), principal);
        }
        self.cache.put_session(
            generation,
            key_hash,
            CachedSession::new(state.clone(), &row),
        );
        Ok(Some(state))
    }

    /// A new session (the middleware's `ttl` is ignored: the policy decides).
    async fn save(
        &self,
        mut session_state: HashMap<String, String>,
        _ttl: &CookieDuration,
    ) -> Result<SessionKey, SaveError> {
        session_state.remove(PRINCIPAL_KEY);
        let public_id = hex::encode(rand::random::<[u8; 16]>());
        let encoded_id =
            serde_json::to_string(&public_id).map_err(|e| SaveError::Serialization(e.into()))?;
        session_state.insert(PUBLIC_ID_KEY.to_owned(), encoded_id);
        let state = serde_json::to_string(&session_state)
            .map_err(|e| SaveError::Serialization(e.into()))?;
        let (ttl_seconds, lifetime_seconds) = self.policy.limits(
            state_user_id(&session_state).is_some(),
            is_remembered(&session_state),
        );
        let key = generate_session_key();
        let key_hash = hash_key(key.as_ref());
        let max_per_user = i64::from(self.policy.max_per_user);
        self.with_conn(move |conn| {
            let now = db::now();
            let absolute_expires_at = expiry(now, lifetime_seconds);
            let ip = state_str(&session_state, CLIENT_IP_KEY);
            let agent = state_str(&session_state, USER_AGENT_KEY);
            let user_id = state_user_id(&session_state);
            let row = NewSession {
                key_hash: &key_hash,
                public_id: &public_id,
                user_id,
                state: &state,
                created_at: now,
                last_seen_at: now,
                expires_at: expiry(now, ttl_seconds).min(absolute_expires_at),
                absolute_expires_at,
                ttl_seconds,
                client_ip: ip.as_deref(),
                user_agent: agent.as_deref(),
            };
            conn.transaction(|conn| {
                queries::insert(conn, &row)?;
                if let Some(user_id) = user_id {
                    queries::trim_for_user(conn, user_id, max_per_user, now)?;
                }
                Ok(())
            })
        })
        .await
        .map_err(|e| SaveError::Other(e.into()))?;
        Ok(key)
    }

    async fn update(
        &self,
        session_key: SessionKey,
        mut session_state: HashMap<String, String>,
        _ttl: &CookieDuration,
    ) -> Result<SessionKey, UpdateError> {
        session_state.remove(PRINCIPAL_KEY);
        let state = serde_json::to_string(&session_state)
            .map_err(|e| UpdateError::Serialization(e.into()))?;
        let key_hash = hash_key(session_key.as_ref());
        self.cache.forget_session(&key_hash);
        let updated = self
            .with_conn(move |conn| {
                let user_id = state_user_id(&session_state);
                Ok(queries::update_state(
                    conn,
                    &key_hash,
                    &state,
                    user_id,
                    db::now(),
                )?)
            })
            .await
            .map_err(|e| UpdateError::Other(e.into()))?;
        if updated == 0 {
            // The session ended meanwhile (revoked, expired): never bring it back.
            // The client gets a fresh key that matches nothing.
            return Ok(generate_session_key());
        }
        Ok(session_key)
    }

    async fn update_ttl(
        &self,
        session_key: &SessionKey,
        _ttl: &CookieDuration,
    ) -> Result<(), anyhow::Error> {
        let key_hash = hash_key(session_key.as_ref());
        self.with_conn(move |conn| load_and_slide(conn, &key_hash).map(drop))
            .await?;
        Ok(())
    }

    async fn delete(&self, session_key: &SessionKey) -> Result<(), anyhow::Error> {
        let key_hash = hash_key(session_key.as_ref());
        self.cache.forget_session(&key_hash);
        // A logout is answered only once every instance has let the session go.
        self.with_conn(move |conn| {
            let ((), fence) =
                fence::guarded(conn, |conn| queries::delete(conn, &key_hash).map(drop))?;
            fence.wait(conn)
        })
        .await?;
        Ok(())
    }
}

/// Answers for the session middleware's failures, which are the store's: the
/// database could not be reached. Wrapped just outside `SessionMiddleware`, so
/// what it sees can come from nowhere else.
pub async fn store_failures(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    next.call(req).await.map_err(|err| {
        let status = err.as_response_error().status_code();
        if !status.is_server_error() {
            return err;
        }
        tracing::warn!(error = ?err, "session store unavailable");
        let unavailable = AppError::Unavailable {
            retry_after_secs: 1,
            cause: None,
        };
        InternalError::from_response(err, unavailable.error_response()).into()
    })
}

/// Deletes expired sessions in batches of `batch`, until none is left.
pub fn sweep(conn: &mut db::AnyConnection, batch: i64) -> diesel::QueryResult<usize> {
    let now = db::now();
    let mut total = 0;
    loop {
        let removed = queries::sweep_expired(conn, now, batch)?;
        total += removed;
        if removed < usize::try_from(batch).unwrap_or(usize::MAX) {
            return Ok(total);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stored_as_sha256_hex() {
        let hash = hash_key("abc");
        assert_eq!(hash.len(), 64);
        assert_ne!(hash, "abc");
    }

    #[test]
    fn expiry_slides_only_after_a_tenth_of_the_ttl() {
        let now = db::now();
        let ttl = 1800;
        assert!(!due_for_extension(now, expiry(now, ttl), ttl));
        let pushed_a_minute_ago = expiry(now, ttl) - chrono::Duration::seconds(60);
        assert!(!due_for_extension(now, pushed_a_minute_ago, ttl));
        let pushed_three_minutes_ago = expiry(now, ttl) - chrono::Duration::seconds(180);
        assert!(due_for_extension(now, pushed_three_minutes_ago, ttl));
    }

    #[test]
    fn long_sessions_still_slide_every_five_minutes() {
        let now = db::now();
        let ttl = 30 * 86400;
        let pushed = expiry(now, ttl) - chrono::Duration::seconds(300);
        assert!(due_for_extension(now, pushed, ttl));
    }
}
