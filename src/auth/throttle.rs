//! Login throttling, kept in the database so every instance sees the same counts.
//!
//! Each failed login is one row (`login_failures`): concurrent instances only
//! ever insert, so no count is lost to a race. A try is refused (`429`, no
//! password check) when, within the window,
//! - this username from this client has failed `per_user_client` times, or
//! - this client has failed `per_client` times across all usernames (spraying).
//!
//! A success clears that username's failures from that client. `Retry-After` is
//! when the oldest counted failure leaves the window.

use std::time::Duration;

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::schema::login_failures;
use crate::db::AnyConnection;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub per_user_client: u32,
    pub per_client: u32,
    pub window: Duration,
}

impl Limits {
    pub fn from_settings(settings: &crate::config::Settings) -> Self {
        Self {
            per_user_client: settings.login_max_failures,
            per_client: settings.login_max_failures_per_client,
            window: settings.login_window,
        }
    }

    fn window(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.window).unwrap_or(chrono::Duration::MAX)
    }
}

/// Whether a try may go ahead; if not, in how many seconds it may.
pub fn check(
    conn: &mut AnyConnection,
    limits: &Limits,
    username: &str,
    client_ip: &str,
    now: NaiveDateTime,
) -> QueryResult<Option<u64>> {
    let since = now - limits.window();
    let for_user = login_failures::table
        .filter(login_failures::username.eq(username.to_owned()))
        .filter(login_failures::client_ip.eq(client_ip.to_owned()))
        .into_boxed();
    let for_client = login_failures::table
        .filter(login_failures::client_ip.eq(client_ip.to_owned()))
        .into_boxed();
    let user_wait = nth_newest(conn, for_user, limits.per_user_client, since)?;
    let client_wait = nth_newest(conn, for_client, limits.per_client, since)?;
    let open_at = user_wait.into_iter().chain(client_wait).max();
    Ok(open_at.map(|at| {
        let wait = (at + limits.window() - now).num_milliseconds().max(0);
        u64::try_from(wait).unwrap_or(0).div_ceil(1000).max(1)
    }))
}

type Backend = <AnyConnection as diesel::Connection>::Backend;

/// The time of the `n`-th newest failure in the window, when there are `n`.
fn nth_newest(
    conn: &mut AnyConnection,
    failures: login_failures::BoxedQuery<'static, Backend>,
    n: u32,
    since: NaiveDateTime,
) -> QueryResult<Option<NaiveDateTime>> {
    let times: Vec<NaiveDateTime> = failures
        .filter(login_failures::at.gt(since))
        .select(login_failures::at)
        .order(login_failures::at.desc())
        .limit(i64::from(n))
        .load(conn)?;
    Ok(n.checked_sub(1)
        .and_then(|i| times.get(i as usize))
        .copied())
}

pub fn record_failure(
    conn: &mut AnyConnection,
    username: &str,
    client_ip: &str,
    now: NaiveDateTime,
) -> QueryResult<()> {
    diesel::insert_into(login_failures::table)
        .values((
            login_failures::at.eq(now),
            login_failures::username.eq(username),
            login_failures::client_ip.eq(client_ip),
        ))
        .execute(conn)
        .map(drop)
}

/// A success forgives this username's failures from this client.
pub fn clear(conn: &mut AnyConnection, username: &str, client_ip: &str) -> QueryResult<usize> {
    diesel::delete(
        login_failures::table
            .filter(login_failures::username.eq(username))
            .filter(login_failures::client_ip.eq(client_ip)),
    )
    .execute(conn)
}

/// Deletes failures older than the window.
pub fn sweep(conn: &mut AnyConnection, limits: &Limits, now: NaiveDateTime) -> QueryResult<usize> {
    diesel::delete(login_failures::table.filter(login_failures::at.le(now - limits.window())))
        .execute(conn)
}
