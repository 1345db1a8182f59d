//! actix-session's `SessionStore` over the Diesel pool.
//!
//! The cookie carries a random 64-character key; the row is stored under its
//! SHA-256, so a leaked table cannot be replayed as cookies. Deleting the row
//! (logout, revocation) makes every copy of the cookie worthless, on every
//! instance, because every request loads its session from the database.
//!
//! Sliding expiry without a write per request: `load` pushes a live session's
//! expiry to `now + ttl` only when the last push is older than a tenth of the
//! ttl (at most 5 minutes). A session therefore ends between `ttl - ttl/10` and
//! `ttl` after its last use.

use std::collections::HashMap;
use std::time::Duration;

use actix_session::storage::{
    generate_session_key, LoadError, SaveError, SessionKey, SessionStore, UpdateError,
};
use actix_web::cookie::time::Duration as CookieDuration;
use actix_web::web;
use anyhow::Context as _;
use chrono::NaiveDateTime;
use sha2::{Digest as _, Sha256};

use super::queries::{self, NewSession};
use crate::db::{self, Pool};
use crate::users::UserId;

/// Session-state keys this crate writes, mirrored into columns.
pub const USER_ID_KEY: &str = "actix_identity.user_id";
pub const CLIENT_IP_KEY: &str = "latchkey.client_ip";
pub const USER_AGENT_KEY: &str = "latchkey.user_agent";

/// Longest pause between two extensions of a session's expiry.
const MAX_EXTENSION_INTERVAL: Duration = Duration::from_secs(300);

#[derive(Clone)]
pub struct DbSessionStore {
    pool: Pool,
}

impl DbSessionStore {
    pub fn new(pool: Pool) -> Self {
        Self { pool }
    }

    async fn with_conn<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut db::AnyConnection) -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let pool = self.pool.clone();
        web::block(move || {
            let mut conn = pool
                .get()
                .context("session store: no database connection")?;
            job(&mut conn)
        })
        .await
        .context("session store: blocking pool")?
    }
}

/// The stored form of a session key.
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

fn ttl_seconds(ttl: &CookieDuration) -> i64 {
    ttl.whole_seconds().max(1)
}

fn expiry(now: NaiveDateTime, ttl_seconds: i64) -> NaiveDateTime {
    now + chrono::Duration::seconds(ttl_seconds)
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

impl SessionStore for DbSessionStore {
    async fn load(
        &self,
        session_key: &SessionKey,
    ) -> Result<Option<HashMap<String, String>>, LoadError> {
        let key_hash = hash_key(session_key.as_ref());
        let row = self
            .with_conn(move |conn| {
                let now = db::now();
                let Some(row) = queries::find_live(conn, &key_hash, now)? else {
                    return Ok(None);
                };
                if due_for_extension(now, row.expires_at, row.ttl_seconds) {
                    queries::extend(conn, &key_hash, now, expiry(now, row.ttl_seconds))?;
                }
                Ok(Some(row))
            })
            .await
            .map_err(LoadError::Other)?;
        row.map(|row| {
            serde_json::from_str(&row.state)
                .map_err(|e| LoadError::Deserialization(anyhow::Error::new(e)))
        })
        .transpose()
    }

    async fn save(
        &self,
        session_state: HashMap<String, String>,
        ttl: &CookieDuration,
    ) -> Result<SessionKey, SaveError> {
        let state = serde_json::to_string(&session_state)
            .map_err(|e| SaveError::Serialization(e.into()))?;
        let ttl_seconds = ttl_seconds(ttl);
        let key = generate_session_key();
        let key_hash = hash_key(key.as_ref());
        self.with_conn(move |conn| {
            let now = db::now();
            let ip = state_str(&session_state, CLIENT_IP_KEY);
            let agent = state_str(&session_state, USER_AGENT_KEY);
            queries::insert(
                conn,
                &NewSession {
                    key_hash: &key_hash,
                    user_id: state_user_id(&session_state),
                    state: &state,
                    created_at: now,
                    last_seen_at: now,
                    expires_at: expiry(now, ttl_seconds),
                    ttl_seconds,
                    client_ip: ip.as_deref(),
                    user_agent: agent.as_deref(),
                },
            )?;
            Ok(())
        })
        .await
        .map_err(SaveError::Other)?;
        Ok(key)
    }

    async fn update(
        &self,
        session_key: SessionKey,
        session_state: HashMap<String, String>,
        ttl: &CookieDuration,
    ) -> Result<SessionKey, UpdateError> {
        let state = serde_json::to_string(&session_state)
            .map_err(|e| UpdateError::Serialization(e.into()))?;
        let ttl_seconds = ttl_seconds(ttl);
        let key_hash = hash_key(session_key.as_ref());
        let updated = self
            .with_conn(move |conn| {
                let now = db::now();
                let user_id = state_user_id(&session_state);
                let expires_at = expiry(now, ttl_seconds);
                Ok(queries::update_state(
                    conn, &key_hash, &state, user_id, now, expires_at,
                )?)
            })
            .await
            .map_err(UpdateError::Other)?;
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
        ttl: &CookieDuration,
    ) -> Result<(), anyhow::Error> {
        let ttl_seconds = ttl_seconds(ttl);
        let key_hash = hash_key(session_key.as_ref());
        self.with_conn(move |conn| {
            let now = db::now();
            queries::extend(conn, &key_hash, now, expiry(now, ttl_seconds))?;
            Ok(())
        })
        .await
    }

    async fn delete(&self, session_key: &SessionKey) -> Result<(), anyhow::Error> {
        let key_hash = hash_key(session_key.as_ref());
        self.with_conn(move |conn| {
            queries::delete(conn, &key_hash)?;
            Ok(())
        })
        .await
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
