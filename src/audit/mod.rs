//! The audit trail: every authentication event, with who, when and from where.
//! Nothing secret is stored: no password, hash, cookie or session key.

use std::fmt;

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::schema::audit_events;
use crate::db::{self, AnyConnection};
use crate::users::UserId;

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
        }
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a request came from; `None` fields for the command line.
#[derive(Debug, Clone, Default)]
pub struct Client {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

impl Client {
    pub fn of(req: &actix_web::HttpRequest) -> Self {
        Self {
            ip: crate::web::client_ip(req),
            user_agent: crate::web::user_agent(req),
        }
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
pub fn record(
    conn: &mut AnyConnection,
    event: Event,
    user_id: Option<UserId>,
    username: Option<&str>,
    client: &Client,
    detail: Option<&str>,
) -> QueryResult<()> {
    diesel::insert_into(audit_events::table)
        .values(&NewEvent {
            at: db::now(),
            event: event.as_str(),
            user_id,
            username,
            client_ip: client.ip.as_deref(),
            user_agent: client.user_agent.as_deref(),
            detail,
        })
        .execute(conn)
        .map(drop)
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
