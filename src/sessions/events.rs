//! `session_events`: what every instance's cache must forget.
//!
//! Every query that ends sessions or changes what a cached user looks like
//! records an event here, in the same connection (so the CLI and other
//! instances are covered too); each instance polls the table a few times a
//! second (see [`super::cache`]).

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::schema::session_events;
use crate::db::{self, AnyConnection};
use crate::users::UserId;

/// What to forget: one session (by key hash), or everything about one user.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = session_events)]
pub struct Event {
    pub id: i64,
    pub at: NaiveDateTime,
    pub key_hash: Option<String>,
    pub user_id: Option<UserId>,
}

/// One session ended.
pub fn session_ended(conn: &mut AnyConnection, key_hash: &str) -> QueryResult<()> {
    diesel::insert_into(session_events::table)
        .values((
            session_events::at.eq(db::now()),
            session_events::key_hash.eq(key_hash),
        ))
        .execute(conn)
        .map(drop)
}

/// A user's sessions ended, or the user changed (password, disabled, removed).
pub fn user_changed(conn: &mut AnyConnection, user_id: UserId) -> QueryResult<()> {
    diesel::insert_into(session_events::table)
        .values((
            session_events::at.eq(db::now()),
            session_events::user_id.eq(user_id),
        ))
        .execute(conn)
        .map(drop)
}

/// Events after `after`, plus those of `also` (ids skipped earlier: on Postgres a
/// smaller id may commit after a larger one).
pub fn since(conn: &mut AnyConnection, after: i64, also: &[i64]) -> QueryResult<Vec<Event>> {
    session_events::table
        .filter(
            session_events::id
                .gt(after)
                .or(session_events::id.eq_any(also)),
        )
        .order(session_events::id.asc())
        .limit(10_000)
        .select(Event::as_select())
        .load(conn)
}

/// The newest event's id (0 when there is none).
pub fn last_id(conn: &mut AnyConnection) -> QueryResult<i64> {
    session_events::table
        .select(diesel::dsl::max(session_events::id))
        .first::<Option<i64>>(conn)
        .map(Option::unwrap_or_default)
}

/// Deletes events older than `before` (every cache has long seen them).
pub fn sweep(conn: &mut AnyConnection, before: NaiveDateTime) -> QueryResult<usize> {
    diesel::delete(session_events::table.filter(session_events::at.lt(before))).execute(conn)
}
