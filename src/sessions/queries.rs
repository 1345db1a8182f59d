//! SQL for sessions. Rows are found by the SHA-256 of the cookie's key, never the key.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::events;
use crate::db::schema::{sessions, users};
use crate::db::AnyConnection;
use crate::users::{User, UserId};

/// A stored session.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = sessions)]
pub struct SessionRow {
    pub key_hash: String,
    /// Names the session to its user (account page, revoke) without revealing the key.
    pub public_id: String,
    pub user_id: Option<UserId>,
    pub state: String,
    pub created_at: NaiveDateTime,
    pub last_seen_at: NaiveDateTime,
    pub expires_at: NaiveDateTime,
    /// The expiry never slides past this.
    pub absolute_expires_at: NaiveDateTime,
    pub ttl_seconds: i64,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = sessions)]
pub struct NewSession<'a> {
    pub key_hash: &'a str,
    pub public_id: &'a str,
    pub user_id: Option<UserId>,
    pub state: &'a str,
    pub created_at: NaiveDateTime,
    pub last_seen_at: NaiveDateTime,
    pub expires_at: NaiveDateTime,
    pub absolute_expires_at: NaiveDateTime,
    pub ttl_seconds: i64,
    pub client_ip: Option<&'a str>,
    pub user_agent: Option<&'a str>,
}

/// The live session stored under `key_hash` and its user, in one query.
pub fn find_live_with_user(
    conn: &mut AnyConnection,
    key_hash: &str,
    now: NaiveDateTime,
) -> QueryResult<Option<(SessionRow, Option<User>)>> {
    sessions::table
        .left_join(users::table)
        .filter(sessions::key_hash.eq(key_hash))
        .filter(sessions::expires_at.gt(now))
        .select((SessionRow::as_select(), Option::<User>::as_select()))
        .first(conn)
        .optional()
}

pub fn insert(conn: &mut AnyConnection, row: &NewSession<'_>) -> QueryResult<usize> {
    diesel::insert_into(sessions::table)
        .values(row)
        .execute(conn)
}

/// Replaces the state of a live session; 0 when it is gone (expired, revoked).
pub fn update_state(
    conn: &mut AnyConnection,
    key_hash: &str,
    state: &str,
    user_id: Option<UserId>,
    now: NaiveDateTime,
) -> QueryResult<usize> {
    diesel::update(
        sessions::table
            .find(key_hash)
            .filter(sessions::expires_at.gt(now)),
    )
    .set((
        sessions::state.eq(state),
        sessions::user_id.eq(user_id),
        sessions::last_seen_at.eq(now),
    ))
    .execute(conn)
}

/// Slides a live session's expiry forward.
pub fn extend(
    conn: &mut AnyConnection,
    key_hash: &str,
    now: NaiveDateTime,
    expires_at: NaiveDateTime,
) -> QueryResult<usize> {
    diesel::update(
        sessions::table
            .find(key_hash)
            .filter(sessions::expires_at.gt(now)),
    )
    .set((
        sessions::last_seen_at.eq(now),
        sessions::expires_at.eq(expires_at),
    ))
    .execute(conn)
}

// Every function that ends sessions records it in `session_events`, for the
// caches of every instance (see `cache`).

pub fn delete(conn: &mut AnyConnection, key_hash: &str) -> QueryResult<usize> {
    let deleted = diesel::delete(sessions::table.find(key_hash)).execute(conn)?;
    events::session_ended(conn, key_hash)?;
    Ok(deleted)
}

/// A user's live sessions, most recently seen first.
pub fn list_for_user(
    conn: &mut AnyConnection,
    user_id: UserId,
    now: NaiveDateTime,
) -> QueryResult<Vec<SessionRow>> {
    sessions::table
        .filter(sessions::user_id.eq(user_id))
        .filter(sessions::expires_at.gt(now))
        .order(sessions::last_seen_at.desc())
        .select(SessionRow::as_select())
        .load(conn)
}

/// Which of a user's sessions to end.
#[derive(Debug, Clone, Copy)]
pub enum UserSessions<'a> {
    /// Password change, disable, remove, "log out everywhere".
    All,
    /// All but this one (by public id): the session that changed the password.
    AllBut(&'a str),
    /// One, by its public id (revoke).
    One(&'a str),
}

/// Ends sessions of a user; returns how many ended.
pub fn delete_for_user(
    conn: &mut AnyConnection,
    user_id: UserId,
    which: UserSessions<'_>,
) -> QueryResult<usize> {
    let mut query = diesel::delete(sessions::table)
        .filter(sessions::user_id.eq(user_id))
        .into_boxed();
    query = match which {
        UserSessions::All => query,
        UserSessions::AllBut(keep) => query.filter(sessions::public_id.ne(keep)),
        UserSessions::One(public_id) => query.filter(sessions::public_id.eq(public_id)),
    };
    let deleted = query.execute(conn)?;
    // Even when none ended, what a cache holds of the user may have changed.
    if deleted > 0 || !matches!(which, UserSessions::One(_)) {
        events::user_changed(conn, user_id)?;
    }
    Ok(deleted)
}

/// Ends a user's least recently seen live sessions beyond the newest `keep`;
/// returns how many ended.
pub fn trim_for_user(
    conn: &mut AnyConnection,
    user_id: UserId,
    keep: i64,
    now: NaiveDateTime,
) -> QueryResult<usize> {
    let surplus: Vec<String> = sessions::table
        .filter(sessions::user_id.eq(user_id))
        .filter(sessions::expires_at.gt(now))
        .order((sessions::last_seen_at.desc(), sessions::created_at.desc()))
        .limit(i64::MAX)
        .offset(keep)
        .select(sessions::key_hash)
        .load(conn)?;
    for key_hash in &surplus {
        diesel::delete(sessions::table.find(key_hash)).execute(conn)?;
        events::session_ended(conn, key_hash)?;
    }
    Ok(surplus.len())
}

/// Deletes up to `batch` expired sessions; returns how many went.
pub fn sweep_expired(
    conn: &mut AnyConnection,
    now: NaiveDateTime,
    batch: i64,
) -> QueryResult<usize> {
    let expired: Vec<String> = sessions::table
        .select(sessions::key_hash)
        .filter(sessions::expires_at.le(now))
        .limit(batch)
        .load(conn)?;
    if expired.is_empty() {
        return Ok(0);
    }
    diesel::delete(sessions::table.filter(sessions::key_hash.eq_any(&expired))).execute(conn)
}

/// How many sessions are live.
pub fn count_live(conn: &mut AnyConnection, now: NaiveDateTime) -> QueryResult<i64> {
    sessions::table
        .filter(sessions::expires_at.gt(now))
        .count()
        .get_result(conn)
}
