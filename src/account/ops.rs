//! What may be done to an account, by its user (the account pages) or by an
//! admin (the command line): one set of operations for both.
//!
//! Each is one transaction that also writes its audit row and the session
//! events that tell every instance's cache to forget the user (the session
//! queries record those as they delete); [`Sessions`] says which sessions an
//! operation ends. An operation that ends sessions or changes what a session
//! grants returns only once every instance has applied it (see
//! `sessions::fence`): its answer, or the command's exit, means it is in force
//! everywhere. Hashing happens before, outside the transaction: callers pass
//! the new hash.

use diesel::prelude::*;

use crate::audit::{self, Entry};
use crate::db;
use crate::db::{AnyConnection, DbError};
use crate::factors::{self, queries as factor_queries};
use crate::links::{self, Link, LinkPurpose, LinkToken};
use crate::sessions::{events, fence, queries as sessions};
use crate::tokens::{queries as tokens, Secret, TokenRow};
use crate::users::{queries as users, NewUser, User, UserId};

pub use crate::sessions::queries::UserSessions as Sessions;

fn ended(count: usize) -> String {
    format!("{count} session(s) ended")
}

/// Runs `body` in one transaction, then waits until every instance has
/// applied the session events it wrote.
fn in_force<T>(
    conn: &mut AnyConnection,
    body: impl FnOnce(&mut AnyConnection) -> QueryResult<T>,
) -> Result<T, DbError> {
    let (value, fence) = fence::guarded(conn, body)?;
    fence.wait(conn)?;
    Ok(value)
}

/// Creates a user.
pub fn create(conn: &mut AnyConnection, new_user: &NewUser<'_>, entry: Entry) -> QueryResult<User> {
    conn.transaction(|conn| {
        let user = users::insert(conn, new_user)?;
        audit::record(conn, &entry.of(&user))?;
        Ok(user)
    })
}

/// Sets a new password hash and ends the user's sessions (`which`); returns how many ended.
pub fn set_password(
    conn: &mut AnyConnection,
    user_id: UserId,
    hash: &str,
    which: Sessions<'_>,
    entry: Entry,
) -> Result<usize, DbError> {
    in_force(conn, |conn| {
        users::set_password_hash(conn, user_id, hash)?;
        let count = sessions::delete_for_user(conn, user_id, which)?;
        audit::record(conn, &entry.user(user_id).note(ended(count)))?;
        Ok(count)
    })
}

/// Disables a user and ends all of their sessions; returns how many ended.
pub fn disable(conn: &mut AnyConnection, user_id: UserId, entry: Entry) -> Result<usize, DbError> {
    in_force(conn, |conn| {
        users::set_active(conn, user_id, false)?;
        let count = sessions::delete_for_user(conn, user_id, Sessions::All)?;
        audit::record(conn, &entry.user(user_id).note(ended(count)))?;
        Ok(count)
    })
}

/// Enables a disabled user.
pub fn enable(conn: &mut AnyConnection, user_id: UserId, entry: Entry) -> QueryResult<()> {
    conn.transaction(|conn| {
        users::set_active(conn, user_id, true)?;
        events::user_changed(conn, user_id)?;
        audit::record(conn, &entry.user(user_id))
    })
}

/// Removes a user and all of their sessions; returns how many sessions ended.
pub fn remove(conn: &mut AnyConnection, user_id: UserId, entry: Entry) -> Result<usize, DbError> {
    in_force(conn, |conn| {
        let count = sessions::delete_for_user(conn, user_id, Sessions::All)?;
        audit::record(conn, &entry.user(user_id).note(ended(count)))?;
        users::delete(conn, user_id)?;
        Ok(count)
    })
}

/// Ends the user's sessions (`which`); returns how many ended. Nothing is
/// recorded when none did (a revoke of an unknown session).
pub fn end_sessions(
    conn: &mut AnyConnection,
    user_id: UserId,
    which: Sessions<'_>,
    entry: Entry,
) -> Result<usize, DbError> {
    in_force(conn, |conn| {
        let count = sessions::delete_for_user(conn, user_id, which)?;
        if count > 0 || !matches!(which, Sessions::One(_)) {
            audit::record(conn, &entry.user(user_id).note(ended(count)))?;
        }
        Ok(count)
    })
}

/// Issues an access token lasting `days`; `None` when the user holds the
/// most they may ([`crate::tokens::MAX_PER_USER`]). The secret is returned
/// once, to be shown once: only its hash is stored.
pub fn create_token(
    conn: &mut AnyConnection,
    user_id: UserId,
    name: &str,
    days: u32,
    entry: Entry,
) -> QueryResult<Option<(TokenRow, Secret)>> {
    let secret = Secret::generate();
    let hash = secret.hash();
    let now = db::now();
    let new = tokens::NewToken {
        user_id,
        name,
        token_hash: &hash,
        created_at: now,
        expires_at: now + chrono::Duration::days(i64::from(days)),
    };
    conn.transaction(|conn| {
        let Some(row) = tokens::create(conn, &new)? else {
            return Ok(None);
        };
        let detail = format!("token {} ({name})", row.id);
        audit::record(conn, &entry.user(user_id).detail(detail))?;
        Ok(Some((row, secret)))
    })
}

/// Revokes one of the user's access tokens; `false` when there is no such token.
pub fn revoke_token(
    conn: &mut AnyConnection,
    user_id: UserId,
    token_id: i32,
    entry: Entry,
) -> Result<bool, DbError> {
    in_force(conn, |conn| {
        let revoked = tokens::revoke(conn, user_id, token_id)? > 0;
        if revoked {
            audit::record(
                conn,
                &entry.user(user_id).detail(format!("token {token_id}")),
            )?;
        }
        Ok(revoked)
    })
}

/// Enrols a confirmed TOTP factor (its secret sealed; `step` the step of the
/// confirming code, used up). On the user's first factor, also the recovery
/// codes, returned to be shown once.
pub fn enrol_totp(
    conn: &mut AnyConnection,
    user_id: UserId,
    name: &str,
    sealed: &str,
    step: i64,
    entry: Entry,
) -> QueryResult<Option<Vec<String>>> {
    conn.transaction(|conn| {
        db::write_first(conn)?;
        let first = factor_queries::count(conn, user_id)? == 0;
        let id = factor_queries::insert_totp(conn, user_id, name, sealed, step, db::now())?;
        audit::record(
            conn,
            &entry.user(user_id).detail(format!("totp {id} ({name})")),
        )?;
        if !first {
            return Ok(None);
        }
        let (shown, hashes) = factors::new_recovery_codes();
        factor_queries::replace_recovery_codes(conn, user_id, &hashes, db::now())?;
        Ok(Some(shown))
    })
}

/// What enrolling a passkey came to.
#[derive(Debug)]
pub enum PasskeyEnrolment {
    /// Enrolled; on the user's first factor, the recovery codes (shown once).
    Enrolled(Option<Vec<String>>),
    /// The credential is registered already (to this account or another).
    Taken,
}

/// Enrols a registered passkey (`stored`: its record; `credential_key`: its
/// credential id). On the user's first factor, also the recovery codes.
pub fn enrol_passkey(
    conn: &mut AnyConnection,
    user_id: UserId,
    name: &str,
    stored: &str,
    credential_key: &str,
    entry: Entry,
) -> QueryResult<PasskeyEnrolment> {
    let enrolled = conn.transaction(|conn| {
        db::write_first(conn)?;
        if factor_queries::passkey_by_credential(conn, credential_key)?.is_some() {
            return Ok(PasskeyEnrolment::Taken);
        }
        let first = factor_queries::count(conn, user_id)? == 0;
        let id =
            factor_queries::insert_passkey(conn, user_id, name, stored, credential_key, db::now())?;
        audit::record(
            conn,
            &entry.user(user_id).detail(format!("passkey {id} ({name})")),
        )?;
        if !first {
            return Ok(PasskeyEnrolment::Enrolled(None));
        }
        let (shown, hashes) = factors::new_recovery_codes();
        factor_queries::replace_recovery_codes(conn, user_id, &hashes, db::now())?;
        Ok(PasskeyEnrolment::Enrolled(Some(shown)))
    });
    match enrolled {
        // Registered by a racing request between the check and the insert.
        Err(diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UniqueViolation,
            _,
        )) => Ok(PasskeyEnrolment::Taken),
        other => other,
    }
}

/// New recovery codes, voiding the old ones; `None` when the user has no
/// factor (recovery codes alone would be a second password, not a factor).
pub fn regenerate_recovery_codes(
    conn: &mut AnyConnection,
    user_id: UserId,
    entry: Entry,
) -> QueryResult<Option<Vec<String>>> {
    conn.transaction(|conn| {
        db::write_first(conn)?;
        if factor_queries::count(conn, user_id)? == 0 {
            return Ok(None);
        }
        let (shown, hashes) = factors::new_recovery_codes();
        factor_queries::replace_recovery_codes(conn, user_id, &hashes, db::now())?;
        audit::record(conn, &entry.user(user_id))?;
        Ok(Some(shown))
    })
}

/// What [`remove_factor`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FactorRemoval {
    Removed,
    /// The user has no such factor.
    NotFound,
    /// Refused: it is the user's last factor, and one is required.
    Last,
}

/// Removes one of the user's factors; removing the last one voids the
/// recovery codes (the user is back to password only), unless `keep_one`
/// (`LATCHKEY_REQUIRE_SECOND_FACTOR`), which refuses it.
pub fn remove_factor(
    conn: &mut AnyConnection,
    user_id: UserId,
    factor_id: i32,
    keep_one: bool,
    entry: Entry,
) -> QueryResult<FactorRemoval> {
    conn.transaction(|conn| {
        // Two removals at once must not each see the other's factor left.
        users::lock(conn, user_id)?;
        if keep_one && factor_queries::count(conn, user_id)? <= 1 {
            let theirs = factor_queries::list(conn, user_id)?
                .iter()
                .any(|f| f.id == factor_id);
            return Ok(if theirs {
                FactorRemoval::Last
            } else {
                FactorRemoval::NotFound
            });
        }
        if factor_queries::delete(conn, user_id, factor_id)? == 0 {
            return Ok(FactorRemoval::NotFound);
        }
        let mut detail = format!("factor {factor_id}");
        if factor_queries::count(conn, user_id)? == 0 {
            factor_queries::delete_recovery_codes(conn, user_id)?;
            detail.push_str("; the last one: recovery codes voided");
        }
        audit::record(conn, &entry.user(user_id).detail(detail))?;
        Ok(FactorRemoval::Removed)
    })
}

/// Removes every factor and recovery code of the user and ends all of their
/// sessions (an admin's answer to a lost authenticator); returns how many
/// factors and sessions went.
pub fn reset_factors(
    conn: &mut AnyConnection,
    user_id: UserId,
    entry: Entry,
) -> Result<(usize, usize), DbError> {
    in_force(conn, |conn| {
        let removed = factor_queries::delete_all(conn, user_id)?;
        let count = sessions::delete_for_user(conn, user_id, Sessions::All)?;
        let note = format!("{removed} factor(s) removed; {}", ended(count));
        audit::record(conn, &entry.user(user_id).note(note))?;
        Ok((removed, count))
    })
}

/// A one-time link for the user (an invitation or a reset), lasting
/// `lifetime`; earlier unused links of the user stop working.
pub fn create_link(
    conn: &mut AnyConnection,
    user_id: UserId,
    purpose: LinkPurpose,
    lifetime: std::time::Duration,
    entry: Entry,
) -> QueryResult<LinkToken> {
    let token = LinkToken::generate();
    let now = db::now();
    let expires_at = now + chrono::Duration::from_std(lifetime).unwrap_or(chrono::Duration::MAX);
    conn.transaction(|conn| {
        links::create(conn, user_id, &token, purpose, now, expires_at)?;
        audit::record(conn, &entry.user(user_id).note(purpose.as_str()))?;
        Ok(token)
    })
}

/// Uses a link: sets the password and ends every session of the user (a
/// reset: whoever held one is out). `false` when the link was used meanwhile.
pub fn use_link(
    conn: &mut AnyConnection,
    link: Link,
    hash: &str,
    entry: Entry,
) -> Result<bool, DbError> {
    in_force(conn, |conn| {
        if !links::take(conn, link.id, db::now())? {
            return Ok(false);
        }
        users::set_password_hash(conn, link.user_id, hash)?;
        let count = sessions::delete_for_user(conn, link.user_id, Sessions::All)?;
        let detail = format!("{}; {}", link.purpose.as_str(), ended(count));
        audit::record(conn, &entry.user(link.user_id).detail(detail))?;
        Ok(true)
    })
}
