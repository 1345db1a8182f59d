//! The audit trail: every authentication event, with who, when and from where.
//! Nothing secret is stored: no password, hash, cookie or session key.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::schema::audit_events;
use crate::db::{self, AnyConnection};
use crate::users::{User, UserId};
use crate::web::Client;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    LoginSuccess,
    LoginFailure,
    LoginThrottled,
    Logout,
    SessionRevoked,
    LogoutEverywhere,
    PasswordChanged,
    PasswordChangeFailed,
    UserCreated,
    UserDisabled,
    UserEnabled,
    UserRemoved,
    SessionsEnded,
    TokenCreated,
    TokenRevoked,
    TokenRefused,
    IdentityConfirmed,
    IdentityConfirmationFailed,
    /// A login succeeded with a password in the breached-password list.
    PasswordBreached,
    /// A right password for a user with a second factor: the login waits for it.
    SecondFactorRequired,
    /// A second factor (TOTP or recovery code) was accepted.
    SecondFactorUsed,
    /// A wrong, reused or malformed second-factor code.
    SecondFactorFailed,
    /// A pending login ended after too many wrong codes.
    SecondFactorLockout,
    FactorEnrolled,
    /// An enrolment refused: a wrong code, an authenticator's answer that did
    /// not verify, a credential registered already, an expired challenge.
    FactorEnrolmentFailed,
    FactorRemoved,
    /// Every factor of a user removed by an admin.
    FactorsReset,
    RecoveryCodesGenerated,
    /// A one-time link (invitation, reset) was made, used, or refused.
    LinkCreated,
    LinkUsed,
}

impl Event {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LoginSuccess => "login_success",
            Self::LoginFailure => "login_failure",
            Self::LoginThrottled => "login_throttled",
            Self::Logout => "logout",
            Self::SessionRevoked => "session_revoked",
            Self::LogoutEverywhere => "logout_everywhere",
            Self::PasswordChanged => "password_changed",
            Self::PasswordChangeFailed => "password_change_failed",
            Self::UserCreated => "user_created",
            Self::UserDisabled => "user_disabled",
            Self::UserEnabled => "user_enabled",
            Self::UserRemoved => "user_removed",
            Self::SessionsEnded => "sessions_ended",
            Self::TokenCreated => "token_created",
            Self::TokenRevoked => "token_revoked",
            Self::TokenRefused => "token_refused",
            Self::IdentityConfirmed => "identity_confirmed",
            Self::IdentityConfirmationFailed => "identity_confirmation_failed",
            Self::PasswordBreached => "password_breached",
            Self::SecondFactorRequired => "second_factor_required",
            Self::SecondFactorUsed => "second_factor_used",
            Self::SecondFactorFailed => "second_factor_failed",
            Self::SecondFactorLockout => "second_factor_lockout",
            Self::FactorEnrolled => "factor_enrolled",
            Self::FactorEnrolmentFailed => "factor_enrolment_failed",
            Self::FactorRemoved => "factor_removed",
            Self::FactorsReset => "factors_reset",
            Self::RecoveryCodesGenerated => "recovery_codes_generated",
            Self::LinkCreated => "link_created",
            Self::LinkUsed => "link_used",
        }
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One event to record, built up by what is known of it:
/// `Entry::new(Event::Logout).user(id).client(&client)`.
#[derive(Debug, Clone)]
pub struct Entry {
    event: Event,
    user_id: Option<UserId>,
    username: Option<String>,
    client: Client,
    detail: Option<String>,
}

impl Entry {
    pub fn new(event: Event) -> Self {
        Self {
            event,
            user_id: None,
            username: None,
            client: Client::default(),
            detail: None,
        }
    }

    pub fn event(&self) -> Event {
        self.event
    }

    pub fn user(mut self, id: UserId) -> Self {
        self.user_id = Some(id);
        self
    }

    pub fn username(mut self, name: &str) -> Self {
        self.username = Some(name.to_owned());
        self
    }

    /// The user's id and name.
    pub fn of(self, user: &User) -> Self {
        self.user(user.id).username(&user.username)
    }

    pub fn client(mut self, client: &Client) -> Self {
        self.client = client.clone();
        self
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Adds to the detail (`by admin (cli); 2 session(s) ended`).
    pub fn note(self, note: impl Into<String>) -> Self {
        let note = note.into();
        let detail = match &self.detail {
            Some(detail) => format!("{detail}; {note}"),
            None => note,
        };
        self.detail(detail)
    }
}

#[derive(Debug, Insertable)]
#[diesel(table_name = audit_events)]
struct NewEvent<'a> {
    at: NaiveDateTime,
    event: &'a str,
    user_id: Option<UserId>,
    username: Option<&'a str>,
    client_ip: Option<&'a str>,
    user_agent: Option<&'a str>,
    detail: Option<&'a str>,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = audit_events)]
pub struct AuditRow {
    pub id: i64,
    pub at: NaiveDateTime,
    pub event: String,
    pub user_id: Option<UserId>,
    pub username: Option<String>,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    pub detail: Option<String>,
}

/// Records one event.
pub fn record(conn: &mut AnyConnection, entry: &Entry) -> QueryResult<()> {
    diesel::insert_into(audit_events::table)
        .values(&NewEvent {
            at: db::now(),
            event: entry.event.as_str(),
            user_id: entry.user_id,
            username: entry.username.as_deref(),
            client_ip: entry.client.ip.as_deref(),
            user_agent: entry.client.user_agent.as_deref(),
            detail: entry.detail.as_deref(),
        })
        .execute(conn)
        .map(drop)
}

/// How many `event` rows of this user (by name, as recorded) with exactly
/// this `detail` were recorded since `since`.
pub fn count_since(
    conn: &mut AnyConnection,
    event: Event,
    username: &str,
    detail: &str,
    since: NaiveDateTime,
) -> QueryResult<i64> {
    audit_events::table
        .filter(audit_events::username.eq(username))
        .filter(audit_events::at.ge(since))
        .filter(audit_events::event.eq(event.as_str()))
        .filter(audit_events::detail.eq(detail))
        .count()
        .get_result(conn)
}

/// Deletes events older than `before`, in batches of `batch`; returns how many went.
pub fn sweep(conn: &mut AnyConnection, before: NaiveDateTime, batch: i64) -> QueryResult<usize> {
    let mut total = 0;
    loop {
        let old: Vec<i64> = audit_events::table
            .select(audit_events::id)
            .filter(audit_events::at.lt(before))
            .limit(batch)
            .load(conn)?;
        if old.is_empty() {
            return Ok(total);
        }
        total += diesel::delete(audit_events::table.filter(audit_events::id.eq_any(&old)))
            .execute(conn)?;
    }
}

/// Keeps a flood of one kind of event (throttled tries: no password check, so
/// they cost an attacker nothing) from growing the audit table or holding
/// SQLite's one writer: at most one row per key per interval, and at most
/// `capacity` keys an interval; the row says how many tries it stands for.
/// Every try is still counted in `/metrics`.
#[derive(Debug)]
pub struct Sampler {
    seen: Mutex<HashMap<String, (Instant, u64)>>,
    every: Duration,
    capacity: usize,
}

impl Sampler {
    pub fn new(every: Duration, capacity: usize) -> Self {
        Self {
            seen: Mutex::new(HashMap::new()),
            every,
            capacity,
        }
    }

    /// `Some(n)`: write a row now, standing for `n` tries (this one and those
    /// not written since the last row of this key); `None`: counted, not written.
    pub fn sample(&self, key: &str) -> Option<u64> {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, unwritten)) = seen.get_mut(key) {
            if at.elapsed() < self.every {
                *unwritten += 1;
                return None;
            }
            let tries = *unwritten + 1;
            *at = Instant::now();
            *unwritten = 0;
            return Some(tries);
        }
        if seen.len() >= self.capacity {
            let every = self.every;
            seen.retain(|_, (at, _)| at.elapsed() < every);
            if seen.len() >= self.capacity {
                return None;
            }
        }
        seen.insert(key.to_owned(), (Instant::now(), 0));
        Some(1)
    }
}

/// The newest events first; with `user`, only the events of that username or user id.
pub fn list(
    conn: &mut AnyConnection,
    user: Option<(&str, Option<UserId>)>,
    limit: i64,
) -> QueryResult<Vec<AuditRow>> {
    let mut query = audit_events::table
        .select(AuditRow::as_select())
        .order((audit_events::at.desc(), audit_events::id.desc()))
        .limit(limit)
        .into_boxed();
    match user {
        Some((name, Some(id))) => {
            query = query.filter(
                audit_events::username
                    .eq(name.to_owned())
                    .or(audit_events::user_id.eq(id)),
            );
        }
        Some((name, None)) => query = query.filter(audit_events::username.eq(name.to_owned())),
        None => {}
    }
    query.load(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_of_one_key_writes_one_row_an_interval() {
        let sampler = Sampler::new(Duration::from_millis(50), 2);
        assert_eq!(sampler.sample("alice|1.2.3.4"), Some(1));
        for _ in 0..100 {
            assert_eq!(sampler.sample("alice|1.2.3.4"), None);
        }
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(
            sampler.sample("alice|1.2.3.4"),
            Some(101),
            "the row covers the skipped tries"
        );
    }

    #[test]
    fn a_flood_of_many_keys_is_capped() {
        let sampler = Sampler::new(Duration::from_secs(60), 2);
        assert_eq!(sampler.sample("a"), Some(1));
        assert_eq!(sampler.sample("b"), Some(1));
        assert_eq!(sampler.sample("c"), None, "full: counted in metrics only");
    }
}
