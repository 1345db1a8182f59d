//! Checking a password — the work behind the login route, and behind every
//! other check of a current password (a password change, a confirmation) —
//! and checking a second factor (a code, a passkey's assertion): throttled
//! and audited alike, but for passkeys, through which nothing can be guessed.

use actix_web::HttpRequest;
use diesel::Connection as _;

use super::throttle::{self, Attempt, Limits, Reservation, ReserveError};
use crate::audit::{self, Entry, Event};
use crate::db;
use crate::error::AppError;
use crate::factors::{self, Proof, Verifier};
use crate::sessions::current::{Pending, PENDING_MAX_TRIES};
use crate::sessions::events;
use crate::state::AppState;
use crate::users::{queries, User, UserId};
use crate::web::device::Device;
use crate::web::{Client, WebContext};

/// What a password is checked for: which events it records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// `POST /login`: success and failure are login events; a success is the last login.
    Login,
    /// A password change: a failure is `password_change_failed`; the change
    /// itself is audited by the operation that makes it.
    PasswordChange,
    /// A bearer token that matched nothing (see [`bad_token`]).
    Token,
    /// Confirming identity before a sensitive change: success and failure are
    /// `identity_confirmed` and `identity_confirmation_failed`.
    Confirm,
    /// A second-factor code (completing a login, or confirming identity):
    /// `second_factor_used` / `second_factor_failed`.
    SecondFactor,
}

/// Who is asking, as the throttle sees them.
#[derive(Debug, Clone)]
pub struct Asker {
    pub client: Client,
    /// The request's device cookie, if any (it counts only for its own user).
    pub device: Option<Device>,
}

impl Asker {
    pub fn of(req: &HttpRequest) -> Result<Self, AppError> {
        Ok(Self {
            client: Client::of(req),
            device: WebContext::of(req)?.devices.read(req),
        })
    }
}

/// The user these credentials belong to, or `None`.
///
/// - Throttled first (see [`throttle`]): the try is recorded before its check,
///   so racing tries cannot pass the limits; a refused try costs no password
///   check and answers `429` with `Retry-After`.
/// - Unknown users, disabled users and wrong passwords are indistinguishable: one
///   bcrypt verify each at the configured cost at least (see `PasswordHasher::verify`).
/// - A hash of another cost than the configured one is replaced on success.
/// - The outcome goes to the audit trail either way.
pub async fn check_password(
    state: &AppState,
    username: &str,
    password: String,
    asker: &Asker,
    purpose: Purpose,
) -> Result<Option<User>, AppError> {
    let (found, attempt, reservation) = reserve(state, username, asker, purpose).await?;
    let stored_hash = found.as_ref().map(|u| u.password_hash.clone());
    let matched = match state.hasher.verify(password.clone(), stored_hash).await {
        Ok(matched) => matched,
        Err(err) => {
            // No check happened: the try is not a failure.
            let _ = state
                .db(move |conn| Ok(throttle::release(conn, reservation)?))
                .await;
            return Err(err.into());
        }
    };

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
    let rehash_stored = rehash.clone();
    let outcome = Outcome {
        username: username.to_owned(),
        user: found.clone(),
        failure,
        attempt,
        client: asker.client.clone(),
        rehash,
        purpose,
    };
    let waits = state
        .db(move |conn| {
            // One commit for all the bookkeeping, whatever the outcome.
            conn.transaction(|conn| {
                db::write_first(conn)?;
                outcome.record(conn)
            })
            .map_err(AppError::from)
        })
        .await?;
    count(state, purpose, failure, waits);
    // The user as stored now (a rehashed password included).
    let mut found = found.filter(|_| failure.is_none());
    if let (Some(user), Some(hash)) = (found.as_mut(), rehash_stored) {
        user.password_hash = hash;
    }
    Ok(found)
}

/// Checks a second factor of `user` that confirms their identity (a code,
/// or a passkey's assertion), audited. A code is throttled like a password
/// (the try is recorded first, as a failure of the username, the client and
/// the account; `429` past a limit); a passkey is not. `true` when it was
/// accepted: the code or challenge is used up and the user's failures from
/// this client are forgiven.
pub async fn check_factor(
    state: &AppState,
    user_id: UserId,
    username: &str,
    proof: Proof,
    asker: &Asker,
) -> Result<bool, AppError> {
    let verdict = judge_code(state, user_id, username, proof, asker, false, None).await?;
    Ok(verdict == PendingCode::Accepted)
}

/// What became of a code offered to finish a pending login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PendingCode {
    /// Accepted: the code is used up; the login may complete.
    Accepted,
    /// Wrong; the pending login waits on.
    Wrong,
    /// Wrong, and the last wrong code the pending login was allowed: it is over.
    LockedOut,
    /// Not judged: the pending login had had all its wrong codes already (a
    /// request racing the one that ended it, or an old copy of the session).
    /// Not counted as a failure either.
    Over,
}

/// Checks a proof that would finish `pending`, as [`check_factor`] does, and
/// holds it to [`PENDING_MAX_TRIES`] wrong codes however many arrive at once:
/// its wrong codes are counted in the audit trail (each row names the pending
/// login) inside the transaction that judges the code, under the lock the
/// throttle takes for the account, so two requests never both see room for
/// one more.
pub async fn check_pending_code(
    state: &AppState,
    pending: &Pending,
    proof: Proof,
    asker: &Asker,
) -> Result<PendingCode, AppError> {
    let tries = PendingTries {
        detail: pending.audit_detail(),
        // The id alone tells its rows; the time narrows the search, with a
        // margin for instances whose clocks differ a little.
        since: pending.started() - chrono::Duration::minutes(10),
    };
    judge_code(
        state,
        pending.user_id,
        &pending.username,
        proof,
        asker,
        true,
        Some(tries),
    )
    .await
}

/// Which pending login a code is for: its wrong codes' audit detail, and since when.
struct PendingTries {
    detail: String,
    since: chrono::NaiveDateTime,
}

async fn judge_code(
    state: &AppState,
    user_id: UserId,
    username: &str,
    proof: Proof,
    asker: &Asker,
    completes_login: bool,
    pending: Option<PendingTries>,
) -> Result<PendingCode, AppError> {
    let (attempt, reservation) = match &proof {
        // Nothing can be guessed through a passkey: its tries are not
        // throttled (a lockout reached by guessing passwords must not keep
        // the owner's authenticator out), nor counted as the password's
        // failures. A pending login's wrong answers still count (below).
        Proof::Passkey(_) => (Attempt::new(username, &asker.client, true), None),
        Proof::Code(_) => {
            let (_, attempt, reservation) =
                reserve(state, username, asker, Purpose::SecondFactor).await?;
            (attempt, Some(reservation))
        }
    };
    let sealer = state.sealer.clone();
    let passkeys = state.passkeys.clone();
    let entry = |event| {
        Entry::new(event)
            .user(user_id)
            .username(username)
            .client(&asker.client)
    };
    let (used_entry, mut failed_entry, lockout_entry) = (
        entry(Event::SecondFactorUsed),
        entry(Event::SecondFactorFailed),
        entry(Event::SecondFactorLockout),
    );
    if let Some(pending) = &pending {
        failed_entry = failed_entry.detail(&pending.detail);
    }
    let name = username.to_owned();
    let verdict = state
        .db(move |conn| {
            conn.transaction(|conn| {
                let mut failed = 0;
                match &pending {
                    Some(pending) => {
                        // The throttle's own lock (SQLite: the write lock):
                        // every code for this account waits its turn here.
                        throttle::lock(conn, &attempt)?;
                        failed = audit::count_since(
                            conn,
                            Event::SecondFactorFailed,
                            &name,
                            &pending.detail,
                            pending.since,
                        )?;
                        if failed >= i64::from(PENDING_MAX_TRIES) {
                            return Ok(PendingCode::Over);
                        }
                    }
                    None => db::write_first(conn)?,
                }
                let verifier = Verifier {
                    sealer: &sealer,
                    passkeys: passkeys.as_deref(),
                };
                let used = factors::verify(conn, verifier, user_id, &proof, db::now())?;
                match used {
                    Some(used) => {
                        throttle::clear(conn, &attempt)?;
                        if completes_login {
                            queries::record_login(conn, user_id)?;
                        }
                        audit::record(conn, &used_entry.detail(used.describe()))?;
                        Ok(PendingCode::Accepted)
                    }
                    // The try's row stays: it is the failure.
                    None => {
                        audit::record(conn, &failed_entry)?;
                        if pending.is_some() && failed + 1 >= i64::from(PENDING_MAX_TRIES) {
                            audit::record(conn, &lockout_entry)?;
                            return Ok(PendingCode::LockedOut);
                        }
                        Ok(PendingCode::Wrong)
                    }
                }
            })
            .map_err(|err: diesel::result::Error| AppError::from(err))
        })
        .await?;
    match verdict {
        PendingCode::Accepted => state.metrics.event(Event::SecondFactorUsed),
        PendingCode::Wrong => state.metrics.event(Event::SecondFactorFailed),
        PendingCode::LockedOut => {
            state.metrics.event(Event::SecondFactorFailed);
            state.metrics.event(Event::SecondFactorLockout);
        }
        // No code was checked: the try is not a failure.
        PendingCode::Over => {
            if let Some(reservation) = reservation {
                let _ = state
                    .db(move |conn| Ok(throttle::release(conn, reservation)?))
                    .await;
            }
        }
    }
    Ok(verdict)
}

/// Finds the user and records the try, unless a limit refuses it.
async fn reserve(
    state: &AppState,
    username: &str,
    asker: &Asker,
    purpose: Purpose,
) -> Result<(Option<User>, Attempt, Reservation), AppError> {
    let limits = Limits::from_settings(&state.settings);
    let name = username.to_owned();
    let mut attempt = Attempt::new(username, &asker.client, purpose != Purpose::Token);
    let device = asker.device.clone();
    let reserved = state
        .db(move |conn| {
            let result = conn.transaction(|conn| {
                throttle::lock(conn, &attempt)?;
                let found = queries::find_by_username(conn, &name)?;
                // A device cookie counts only for the user it names.
                attempt.device = device
                    .filter(|d| found.as_ref().is_some_and(|u| u.id == d.user_id))
                    .map(|d| d.id);
                let reservation = throttle::reserve(conn, &limits, &attempt, db::now())?;
                Ok::<_, ReserveError>((found, attempt, reservation))
            });
            match result {
                Ok(reserved) => Ok(Ok(reserved)),
                Err(ReserveError::Throttled(throttled)) => Ok(Err(throttled)),
                Err(ReserveError::Db(err)) => Err(err.into()),
            }
        })
        .await?;
    match reserved {
        Ok(reserved) => Ok(reserved),
        Err(throttled) => {
            throttled_try(state, username, &asker.client, purpose, throttled).await?;
            Err(AppError::TooManyRequests {
                retry_after_secs: throttled.retry_after_secs,
            })
        }
    }
}

/// Counts a refused try; audits it too, sampled (a flood of them must not
/// grow the audit table or hold the database's writer).
async fn throttled_try(
    state: &AppState,
    username: &str,
    client: &Client,
    purpose: Purpose,
    throttled: throttle::Throttled,
) -> Result<(), AppError> {
    state.metrics.login("throttled");
    let key = format!("{username}|{}", client.ip.as_deref().unwrap_or(""));
    let Some(tries) = state.throttled.sample(&key) else {
        return Ok(());
    };
    let what = match purpose {
        Purpose::Login => "login",
        Purpose::PasswordChange => "password change",
        Purpose::Token => "access token",
        Purpose::Confirm => "identity confirmation",
        Purpose::SecondFactor => "second factor",
    };
    let entry = Entry::new(Event::LoginThrottled)
        .username(username)
        .client(client)
        .detail(format!(
            "{what}: {tries} tr{} refused; retry after {}s",
            if tries == 1 { "y" } else { "ies" },
            throttled.retry_after_secs
        ));
    state.db(move |conn| Ok(audit::record(conn, &entry)?)).await
}

/// A bad bearer token: recorded as a failure of the client (the throttle's
/// username is a name no account can have), so guessing tokens is throttled
/// like guessing passwords; `429` once past the limit.
pub async fn bad_token(state: &AppState, client: &Client) -> Result<(), AppError> {
    // Surrounding whitespace: `Username::parse` refuses it.
    const TOKEN_GUESSER: &str = " bearer token ";
    let asker = Asker {
        client: client.clone(),
        device: None,
    };
    reserve(state, TOKEN_GUESSER, &asker, Purpose::Token).await?;
    state.metrics.event(Event::TokenRefused);
    let entry = Entry::new(Event::TokenRefused).client(client);
    state.db(move |conn| Ok(audit::record(conn, &entry)?)).await
}

fn count(state: &AppState, purpose: Purpose, failure: Option<&str>, waits: bool) {
    match (purpose, failure) {
        (Purpose::Login, None) if waits => state.metrics.event(Event::SecondFactorRequired),
        (Purpose::Login, outcome) => state.metrics.login(outcome.unwrap_or("success")),
        (Purpose::Confirm, None) if waits => {}
        (Purpose::PasswordChange, Some(_)) => state.metrics.event(Event::PasswordChangeFailed),
        (Purpose::Confirm, Some(_)) => state.metrics.event(Event::IdentityConfirmationFailed),
        (Purpose::Confirm, None) => state.metrics.event(Event::IdentityConfirmed),
        (Purpose::PasswordChange | Purpose::Token | Purpose::SecondFactor, None)
        | (Purpose::Token | Purpose::SecondFactor, Some(_)) => {}
    }
}

/// What a check found, to be recorded in one commit.
struct Outcome {
    /// The name as typed (the audit trail keeps it so).
    username: String,
    user: Option<User>,
    failure: Option<&'static str>,
    attempt: Attempt,
    client: Client,
    rehash: Option<String>,
    purpose: Purpose,
}

impl Outcome {
    /// Success: the rehash, the last login, the throttle forgiven, the audit row.
    /// Failure: the try's row stays as the failure; the audit row.
    ///
    /// A login or confirmation of a user with a second factor is not done
    /// yet: the try's row stays (counted like a failure until the code
    /// forgives it, so starting logins over buys no more code guesses), and
    /// the login is not recorded as one. Returns whether it waits so.
    fn record(&self, conn: &mut db::AnyConnection) -> diesel::QueryResult<bool> {
        let entry = |event| {
            let entry = Entry::new(event)
                .username(&self.username)
                .client(&self.client);
            match &self.user {
                Some(user) => entry.user(user.id),
                None => entry,
            }
        };
        match (&self.user, self.failure) {
            (Some(user), None) => {
                if let Some(hash) = &self.rehash {
                    queries::set_password_hash(conn, user.id, hash)?;
                    events::user_changed(conn, user.id)?;
                }
                let waits = matches!(self.purpose, Purpose::Login | Purpose::Confirm)
                    && factors::queries::count(conn, user.id)? > 0;
                if waits {
                    if self.purpose == Purpose::Login {
                        audit::record(conn, &entry(Event::SecondFactorRequired))?;
                    }
                    return Ok(true);
                }
                throttle::clear(conn, &self.attempt)?;
                match self.purpose {
                    Purpose::Login => {
                        queries::record_login(conn, user.id)?;
                        audit::record(conn, &entry(Event::LoginSuccess))?;
                    }
                    Purpose::Confirm => audit::record(conn, &entry(Event::IdentityConfirmed))?,
                    Purpose::PasswordChange | Purpose::Token | Purpose::SecondFactor => {}
                }
                Ok(false)
            }
            (_, failure) => {
                let event = match self.purpose {
                    Purpose::Login => Event::LoginFailure,
                    Purpose::PasswordChange => Event::PasswordChangeFailed,
                    Purpose::Token => Event::TokenRefused,
                    Purpose::Confirm => Event::IdentityConfirmationFailed,
                    Purpose::SecondFactor => Event::SecondFactorFailed,
                };
                let entry = entry(event);
                let entry = match failure {
                    Some(reason) => entry.detail(reason),
                    None => entry,
                };
                audit::record(conn, &entry).map(|()| false)
            }
        }
    }
}
