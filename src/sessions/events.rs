//! `session_events`: what every instance's cache must forget.
//!
//! Every query that ends sessions or changes what a cached user looks like
//! records an event here, in the same connection (so the CLI and other
//! instances are covered too); each instance polls the table a few times a
//! second (see [`super::cache`]) and acknowledges what it applied (see
//! [`super::fence`]).

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::schema::{event_acks, session_events};
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

/// The events `instance` has not acknowledged yet (whatever order their
/// transactions committed in), oldest first.
pub fn unacknowledged(conn: &mut AnyConnection, instance: &str) -> QueryResult<Vec<Event>> {
    let acknowledged = event_acks::table
        .filter(event_acks::instance_id.eq(instance.to_owned()))
        .select(event_acks::event_id);
    session_events::table
        .filter(session_events::id.ne_all(acknowledged))
        .order(session_events::id.asc())
        .limit(10_000)
        .select(Event::as_select())
        .load(conn)
}

/// Deletes events older than `before` (every cache has long seen them).
pub fn sweep(conn: &mut AnyConnection, before: NaiveDateTime) -> QueryResult<usize> {
    diesel::delete(session_events::table.filter(session_events::at.lt(before))).execute(conn)
}
