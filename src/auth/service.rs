//! Checking credentials: the work behind the login route.

use diesel::Connection as _;

use super::throttle::{self, Limits};
use crate::audit::{self, Entry, Event};
use crate::db;
use crate::error::AppError;
use crate::sessions::events;
use crate::state::AppState;
use crate::users::{queries, User, UserId, Username};
use crate::web::Client;

/// The user these credentials belong to, or `None`.
///
/// - Throttled first (see [`throttle`]): a refused try costs no password check and
///   answers `429` with `Retry-After`.
/// - Unknown users, disabled users and wrong passwords are indistinguishable: one
///   bcrypt verify each (against a dummy hash when there is no user) and `None`.
/// - A hash of another cost than the configured one is replaced on success.
/// - The outcome goes to the audit trail either way.
pub async fn authenticate(
    state: &AppState,
    username: &Username,
    password: String,
    client: Client,
) -> Result<Option<User>, AppError> {
    let limits = Limits::from_settings(&state.settings);
    let name = username.as_str().to_owned();
    let ip = client
        .throttle_key()
        .unwrap_or_else(|| "unknown".to_owned());
    let (audit_client, check_ip) = (client.clone(), ip.clone());
    let metrics = state.metrics.clone();
    let found = state
        .db(move |conn| {
            if let Some(wait) = throttle::check(conn, &limits, &name, &check_ip, db::now())? {
                metrics.login("throttled");
                let entry = Entry::new(Event::LoginThrottled)
                    .username(&name)
                    .client(&audit_client)
                    .detail(format!("retry after {wait}s"));
                audit::record(conn, &entry)?;
                return Err(AppError::TooManyRequests {
                    retry_after_secs: wait,
                });
            }
            Ok(queries::find_by_username(conn, &name)?)
        })
        .await?;
    let stored_hash = found.as_ref().map(|u| u.password_hash.clone());
    let matched = state.hasher.verify(password.clone(), stored_hash).await?;

    let failure = match &found {
        None => Some("unknown_user"),
        Some(_) if !matched => Some("bad_password"),
        Some(u) if !u.is_active => Some("disabled"),
        Some(_) => None,
    };
    let rehash = match (&found, failure) {
        (Some(u), None) if state.hasher.needs_rehash(&u.password_hash) => {
            Some(state.hasher.rehash(password).await?)
        }
        _ => None,
    };
    state.metrics.login(failure.unwrap_or("success"));
    let name = username.as_str().to_owned();
    let id = found.as_ref().map(|u| u.id);
    state
        .db(move |conn| {
            // One commit for all the bookkeeping, whatever the outcome.
            conn.transaction(|conn| {
                record_outcome(conn, id, failure, &name, &ip, &client, rehash.as_deref())
            })
            .map_err(AppError::from)
        })
        .await?;
    Ok(found.filter(|_| failure.is_none()))
}

/// The last login, the throttle count and the audit trail, after a check.
fn record_outcome(
    conn: &mut db::AnyConnection,
    id: Option<UserId>,
    failure: Option<&str>,
    name: &str,
    ip: &str,
    client: &Client,
    rehash: Option<&str>,
) -> diesel::QueryResult<()> {
    match (id, failure) {
        (Some(id), None) => {
            if let Some(hash) = rehash {
                queries::set_password_hash(conn, id, hash)?;
                events::user_changed(conn, id)?;
            }
            queries::record_login(conn, id)?;
            throttle::clear(conn, name, ip)?;
            let entry = Entry::new(Event::LoginSuccess).user(id);
            audit::record(conn, &entry.username(name).client(client))
        }
        _ => {
            throttle::record_failure(conn, name, ip, db::now())?;
            let mut entry = Entry::new(Event::LoginFailure)
                .username(name)
                .client(client);
            if let Some(id) = id {
                entry = entry.user(id);
            }
            if let Some(reason) = failure {
                entry = entry.detail(reason);
            }
            audit::record(conn, &entry)
        }
    }
}
