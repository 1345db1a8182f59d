//! Revocation in force everywhere before it is acknowledged.
//!
//! Every instance whose cache may serve holds a **lease** in `instances`
//! (renewed every [`RENEW_EVERY`], lasting [`LEASE`], on the database's clock)
//! and **acknowledges** in `event_acks` every session event it has applied to
//! its cache. An instance serves from its cache only while its lease is fresh
//! by its own monotonic clock, with a margin, so it stops before any revoker
//! counts it as gone (see `cache`).
//!
//! A revocation (logout, revoke, password change, disable, ...) writes its
//! session events in its transaction, inside a [`Fence`]; once committed, the
//! revoker [`Fence::wait`]s until every instance holding a fresh lease has
//! acknowledged those events, or its lease has run out. Only then is the
//! revocation answered (or the command line exits). A dead feed, a lost or
//! reordered event, or a skewed clock can only delay the answer (by at most
//! one lease), never leave a stale entry served.

use std::time::{Duration, Instant};

use diesel::prelude::*;

use crate::db::schema::{event_acks, instances, session_events};
use crate::db::{self, AnyConnection, DbError};

/// How long a lease lasts (on the database's clock).
pub const LEASE: Duration = Duration::from_secs(3);
/// How often an instance renews its lease.
pub const RENEW_EVERY: Duration = Duration::from_millis(500);
/// An instance stops trusting its lease this much before it ends.
pub const LEASE_MARGIN: Duration = Duration::from_millis(500);
/// A revoker gives up (the answer is `503`, the revocation stands) after this:
/// an instance that renews its lease but never acknowledges is broken.
const WAIT_AT_MOST: Duration = Duration::from_secs(10);
/// How often a waiting revoker looks again.
const WAIT_STEP: Duration = Duration::from_millis(2);

fn interval(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// The session events one transaction wrote: those with ids in `(after, through]`
/// (ids are allocated after the transaction began, so its own are in there).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "a revocation is acknowledged only after Fence::wait"]
pub struct Fence {
    after: i64,
    through: i64,
}

/// Runs `body` in a transaction and returns the fence around the events it wrote.
pub fn guarded<T, E>(
    conn: &mut AnyConnection,
    body: impl FnOnce(&mut AnyConnection) -> Result<T, E>,
) -> Result<(T, Fence), E>
where
    E: From<diesel::result::Error>,
{
    conn.transaction(|conn| {
        db::write_first(conn)?;
        let after = last_event(conn)?;
        let value = body(conn)?;
        let through = last_event(conn)?;
        Ok((value, Fence { after, through }))
    })
}

fn last_event(conn: &mut AnyConnection) -> QueryResult<i64> {
    session_events::table
        .select(diesel::dsl::max(session_events::id))
        .first::<Option<i64>>(conn)
        .map(Option::unwrap_or_default)
}

impl Fence {
    /// Returns once every instance with a fresh lease has acknowledged the
    /// fenced events (or its lease has run out). Call after the commit.
    pub fn wait(self, conn: &mut AnyConnection) -> Result<(), DbError> {
        if self.through <= self.after {
            return Ok(());
        }
        let started = Instant::now();
        while !self.acknowledged(conn)? {
            if started.elapsed() > WAIT_AT_MOST {
                return Err(DbError::Unacknowledged);
            }
            std::thread::sleep(WAIT_STEP);
        }
        Ok(())
    }

    fn acknowledged(&self, conn: &mut AnyConnection) -> QueryResult<bool> {
        let now = db::clock(conn)?;
        let fresh: Vec<String> = instances::table
            .filter(instances::lease_until.gt(now))
            .select(instances::id)
            .load(conn)?;
        if fresh.is_empty() {
            return Ok(true);
        }
        let fenced = session_events::id
            .gt(self.after)
            .and(session_events::id.le(self.through));
        let events: i64 = session_events::table
            .filter(fenced)
            .count()
            .get_result(conn)?;
        let acks: i64 = event_acks::table
            .filter(event_acks::event_id.gt(self.after))
            .filter(event_acks::event_id.le(self.through))
            .filter(event_acks::instance_id.eq_any(&fresh))
            .count()
            .get_result(conn)?;
        Ok(acks >= events * fresh.len() as i64)
    }
}

/// Takes or renews this instance's lease.
pub fn renew(conn: &mut AnyConnection, instance: &str) -> QueryResult<()> {
    let until = db::clock(conn)? + interval(LEASE);
    let updated = diesel::update(instances::table.find(instance))
        .set(instances::lease_until.eq(until))
        .execute(conn)?;
    if updated == 0 {
        diesel::insert_into(instances::table)
            .values((instances::id.eq(instance), instances::lease_until.eq(until)))
            .execute(conn)?;
    }
    Ok(())
}

/// Gives the lease up (a stopping instance): no revoker waits for it any more.
pub fn release(conn: &mut AnyConnection, instance: &str) -> QueryResult<()> {
    diesel::delete(event_acks::table.filter(event_acks::instance_id.eq(instance))).execute(conn)?;
    diesel::delete(instances::table.find(instance)).execute(conn)?;
    Ok(())
}

/// Records that `instance` has applied these events.
pub fn acknowledge(conn: &mut AnyConnection, instance: &str, events: &[i64]) -> QueryResult<()> {
    conn.transaction(|conn| {
        for event in events {
            diesel::insert_into(event_acks::table)
                .values((
                    event_acks::event_id.eq(event),
                    event_acks::instance_id.eq(instance),
                ))
                .execute(conn)?;
        }
        Ok(())
    })
}

/// Deletes acknowledgements of swept events and long-dead instances.
pub fn sweep(conn: &mut AnyConnection) -> QueryResult<usize> {
    let acks = diesel::delete(
        event_acks::table
            .filter(event_acks::event_id.ne_all(session_events::table.select(session_events::id))),
    )
    .execute(conn)?;
    let long_ago = db::clock(conn)? - chrono::Duration::hours(1);
    let dead = diesel::delete(instances::table.filter(instances::lease_until.lt(long_ago)))
        .execute(conn)?;
    Ok(acks + dead)
}
