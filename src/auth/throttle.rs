//! Login throttling, kept in the database so every instance sees the same counts.
//!
//! Every password try is recorded *before* its check ([`reserve`]), in a
//! transaction that also counts the tries in the window: however many arrive
//! at once, on any number of instances, at most the limit reach a password
//! check (Postgres: advisory locks on the client and the account serialise
//! the count-and-insert; SQLite: the insert takes the database's one write
//! lock first). A refused try is rolled back: `429`, no password check, not
//! counted. A success clears the user's failures from that client (and from
//! that device); a failure's row stays as its record.
//!
//! A try is refused when, within the window,
//! - this username from this client has failed `per_user_client` times, or
//! - this client has failed `per_client` times across all usernames (spraying), or
//! - without this account's device cookie: the account has failed
//!   `per_account` times in an hour, whatever the client (distributed guessing);
//! - with it: this device has failed `per_user_client` times (its own limit,
//!   so an attacker elsewhere cannot lock the real user out).
//!
//! `Retry-After` is when the oldest counted failure leaves its window.

use std::time::Duration;

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::schema::login_failures;
use crate::db::AnyConnection;
use crate::users::fold::fold;
use crate::web::Client;

/// The per-account ceiling counts failures over this window.
const ACCOUNT_WINDOW: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub per_user_client: u32,
    pub per_client: u32,
    pub per_account: u32,
    pub window: Duration,
}

impl Limits {
    pub fn from_settings(settings: &crate::config::Settings) -> Self {
        Self {
            per_user_client: settings.login_max_failures,
            per_client: settings.login_max_failures_per_client,
            per_account: settings.login_max_failures_per_account,
            window: settings.login_window,
        }
    }

    /// Failures are kept as long as the longest window that counts them.
    fn longest_window(&self) -> Duration {
        self.window.max(ACCOUNT_WINDOW)
    }
}

fn chrono(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// Who is trying: the throttle's keys.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// The username as compared (folded).
    pub username: String,
    /// The client as throttled (an address, an IPv6 /64).
    pub client: String,
    /// The device cookie's id, when it names the account being tried.
    pub device: Option<String>,
    /// Whether the per-account ceiling applies (not to bad bearer tokens,
    /// whose "account" is a pseudo-name shared by every client).
    pub per_account: bool,
}

impl Attempt {
    /// A try of `username` from `client`, before its device is known.
    /// Throttled (and locked) by the folded name: `Alice` and `ALICE` share
    /// one count and one lock.
    pub fn new(username: &str, client: &Client, per_account: bool) -> Self {
        Self {
            username: fold(username),
            client: client.throttle_bucket(),
            device: None,
            per_account,
        }
    }
}

/// A try refused: retry in this many seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled {
    pub retry_after_secs: u64,
}

/// Why a reservation did not go through.
#[derive(Debug, thiserror::Error)]
pub enum ReserveError {
    #[error("throttled")]
    Throttled(Throttled),
    #[error(transparent)]
    Db(#[from] diesel::result::Error),
}

/// The record of a try, made before its password check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reservation(i64);

/// Opens a reservation: call first in its transaction. Serialises concurrent
/// reservations for the same client and account: on Postgres by advisory
/// locks, always in this order, so two never wait on each other in a circle;
/// on SQLite by taking the database's write lock now, before any read (a read
/// first would make the later insert fail with "database is locked" instead
/// of waiting its turn).
pub fn lock(conn: &mut AnyConnection, attempt: &Attempt) -> QueryResult<()> {
    match conn {
        AnyConnection::Postgresql(pg) => {
            let client = format!("client:{}", attempt.client);
            let account = attempt
                .per_account
                .then(|| format!("account:{}", attempt.username));
            for key in std::iter::once(client).chain(account) {
                diesel::sql_query("SELECT pg_advisory_xact_lock(hashtextextended($1, 7433920061))")
                    .bind::<diesel::sql_types::Text, _>(key)
                    .execute(pg)?;
            }
        }
        AnyConnection::Sqlite(_) => crate::db::write_first(conn)?,
    }
    Ok(())
}

/// Inside a transaction opened by [`lock`]: records this try as a failure,
/// then counts; a try past a limit is refused (the caller's transaction rolls
/// it back).
pub fn reserve(
    conn: &mut AnyConnection,
    limits: &Limits,
    attempt: &Attempt,
    now: NaiveDateTime,
) -> Result<Reservation, ReserveError> {
    let id = diesel::insert_into(login_failures::table)
        .values((
            login_failures::at.eq(now),
            login_failures::username.eq(&attempt.username),
            login_failures::client_ip.eq(&attempt.client),
            login_failures::device.eq(&attempt.device),
        ))
        .returning(login_failures::id)
        .get_result::<i64>(conn)?;
    match wait(conn, limits, attempt, now)? {
        Some(retry_after_secs) => Err(ReserveError::Throttled(Throttled { retry_after_secs })),
        None => Ok(Reservation(id)),
    }
}

type Backend = <AnyConnection as diesel::Connection>::Backend;
type Tries = login_failures::BoxedQuery<'static, Backend>;

/// How long until every limit this try (already recorded) exceeds is clear again.
fn wait(
    conn: &mut AnyConnection,
    limits: &Limits,
    attempt: &Attempt,
    now: NaiveDateTime,
) -> QueryResult<Option<u64>> {
    let by_client =
        || login_failures::table.filter(login_failures::client_ip.eq(attempt.client.clone()));
    let by_user =
        || login_failures::table.filter(login_failures::username.eq(attempt.username.clone()));
    let mut checks: Vec<(Tries, u32, Duration)> = vec![
        (
            by_user()
                .filter(login_failures::client_ip.eq(attempt.client.clone()))
                .into_boxed(),
            limits.per_user_client,
            limits.window,
        ),
        (by_client().into_boxed(), limits.per_client, limits.window),
    ];
    match &attempt.device {
        Some(device) => checks.push((
            login_failures::table
                .filter(login_failures::device.eq(device.clone()))
                .into_boxed(),
            limits.per_user_client,
            limits.window,
        )),
        None if attempt.per_account => checks.push((
            by_user()
                .filter(login_failures::device.is_null())
                .into_boxed(),
            limits.per_account,
            ACCOUNT_WINDOW,
        )),
        None => {}
    }
    let mut open_at: Option<NaiveDateTime> = None;
    for (tries, limit, window) in checks {
        // The tries so far include this one: over the limit means `limit`
        // earlier ones are in the window.
        if let Some(at) = nth_newest(conn, tries, limit + 1, now - chrono(window))? {
            let clear = at + chrono(window);
            open_at = Some(open_at.map_or(clear, |o| o.max(clear)));
        }
    }
    Ok(open_at.map(|at| {
        let wait = (at - now).num_milliseconds().max(0);
        u64::try_from(wait).unwrap_or(0).div_ceil(1000).max(1)
    }))
}

/// The time of the `n`-th newest try in the window, when there are `n`.
fn nth_newest(
    conn: &mut AnyConnection,
    tries: Tries,
    n: u32,
    since: NaiveDateTime,
) -> QueryResult<Option<NaiveDateTime>> {
    let times: Vec<NaiveDateTime> = tries
        .filter(login_failures::at.gt(since))
        .select(login_failures::at)
        .order(login_failures::at.desc())
        .limit(i64::from(n))
        .load(conn)?;
    Ok(n.checked_sub(1)
        .and_then(|i| times.get(i as usize))
        .copied())
}

/// A try that did not reach its password check (the hashing queue was full):
/// it is not a failure.
pub fn release(conn: &mut AnyConnection, reservation: Reservation) -> QueryResult<usize> {
    diesel::delete(login_failures::table.find(reservation.0)).execute(conn)
}

/// A success forgives this username's failures from this client and this device
/// (this try's own record among them).
pub fn clear(conn: &mut AnyConnection, attempt: &Attempt) -> QueryResult<usize> {
    let from_client = diesel::delete(
        login_failures::table
            .filter(login_failures::username.eq(&attempt.username))
            .filter(login_failures::client_ip.eq(&attempt.client)),
    )
    .execute(conn)?;
    let from_device = match &attempt.device {
        Some(device) => {
            diesel::delete(login_failures::table.filter(login_failures::device.eq(device)))
                .execute(conn)?
        }
        None => 0,
    };
    Ok(from_client + from_device)
}

/// Deletes failures older than every window that counts them.
pub fn sweep(conn: &mut AnyConnection, limits: &Limits, now: NaiveDateTime) -> QueryResult<usize> {
    let before = now - chrono(limits.longest_window());
    diesel::delete(login_failures::table.filter(login_failures::at.le(before))).execute(conn)
}
