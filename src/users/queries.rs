//! SQL for users: plain sync functions over one connection, run inside `web::block`.

use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};

use super::fold::fold;
use super::model::{NewUser, User, UserId};
use crate::db::schema::users;
use crate::db::AnyConnection;

/// The user whose name folds like `username` (`Alice`, `ALICE` and `ａｌｉｃｅ`
/// are one). A miss first folds the name of a user seeded by SQL since the
/// last fill (see [`fill_folded_names`]) if it is this one, so a seed
/// migration applied to a running server works at once.
pub fn find_by_username(conn: &mut AnyConnection, username: &str) -> QueryResult<Option<User>> {
    let folded = fold(username);
    let found = find_by_folded(conn, &folded)?;
    if found.is_none() && fill(conn, Some(&folded))? > 0 {
        return find_by_folded(conn, &folded);
    }
    Ok(found)
}

fn find_by_folded(conn: &mut AnyConnection, folded: &str) -> QueryResult<Option<User>> {
    users::table
        .filter(users::username_folded.eq(folded))
        .select(User::as_select())
        .first(conn)
        .optional()
}

pub fn find_by_id(conn: &mut AnyConnection, id: UserId) -> QueryResult<Option<User>> {
    users::table
        .find(id)
        .select(User::as_select())
        .first(conn)
        .optional()
}

/// Inserts a user with its folded name and returns the stored row (a unique
/// violation if a name that folds the same is taken).
pub fn insert(conn: &mut AnyConnection, new_user: &NewUser<'_>) -> QueryResult<User> {
    let folded = fold(new_user.username);
    conn.transaction(|conn| {
        // Written first: a SQLite transaction that reads before it writes
        // fails at once, rather than waiting, when another connection wrote.
        diesel::insert_into(users::table)
            .values((new_user, users::username_folded.eq(&folded)))
            .execute(conn)?;
        // A seeded user not folded yet holds its name too.
        let unfolded: Vec<String> = users::table
            .filter(users::username_folded.is_null())
            .select(users::username)
            .load(conn)?;
        if unfolded.iter().any(|name| fold(name) == folded) {
            let message = "the name folds like a seeded user's".to_owned();
            return Err(DieselError::DatabaseError(
                DatabaseErrorKind::UniqueViolation,
                Box::new(message),
            ));
        }
        find_by_folded(conn, &folded)?.ok_or(DieselError::NotFound)
    })
}

/// Fills in the folded name of users inserted by SQL (an admin's seed
/// migration sets only `username` and `password_hash`); returns how many.
///
/// A name that folds like another user's is left unfolded, so that user
/// cannot log in, and logged: two accounts may not share a name.
pub fn fill_folded_names(conn: &mut AnyConnection) -> QueryResult<usize> {
    fill(conn, None)
}

/// [`fill_folded_names`], of the rows whose name folds to `only` when given
/// (a login's miss: an unknown name must not retry every collision).
fn fill(conn: &mut AnyConnection, only: Option<&str>) -> QueryResult<usize> {
    let unfolded: Vec<(UserId, String)> = users::table
        .filter(users::username_folded.is_null())
        .select((users::id, users::username))
        .load(conn)?;
    let mut filled = 0;
    for (id, name) in unfolded {
        let folded = fold(&name);
        if only.is_some_and(|only| only != folded) {
            continue;
        }
        // Its own (nested) transaction: on Postgres a failed statement would
        // otherwise abort the caller's transaction too.
        let set = conn.transaction(|conn| {
            diesel::update(
                users::table
                    .find(id)
                    .filter(users::username_folded.is_null()),
            )
            .set(users::username_folded.eq(&folded))
            .execute(conn)
        });
        match set {
            Ok(n) => filled += n,
            Err(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)) => {
                tracing::warn!(
                    user_id = %id,
                    username = %name,
                    "a seeded user's name folds like another user's: it cannot log in until renamed or removed"
                );
            }
            Err(other) => return Err(other),
        }
    }
    Ok(filled)
}

pub fn list(conn: &mut AnyConnection) -> QueryResult<Vec<User>> {
    users::table
        .order(users::id.asc())
        .select(User::as_select())
        .load(conn)
}

// Changing a user also changes what every instance may have cached: callers
// record that (`sessions::events`) in the same transaction; see `account::ops`.

/// Inside a transaction: holds off other changes to this user's credentials
/// until it ends (Postgres: the user's row locked; SQLite: the database's one
/// write lock, taken now), so a check and the change it allows are one step.
pub fn lock(conn: &mut AnyConnection, id: UserId) -> QueryResult<()> {
    match conn {
        AnyConnection::Postgresql(pg) => {
            diesel::sql_query("SELECT id FROM users WHERE id = $1 FOR UPDATE")
                .bind::<diesel::sql_types::Integer, _>(id.0)
                .execute(pg)?;
        }
        AnyConnection::Sqlite(_) => crate::db::write_first(conn)?,
    }
    Ok(())
}

pub fn set_password_hash(conn: &mut AnyConnection, id: UserId, hash: &str) -> QueryResult<usize> {
    diesel::update(users::table.find(id))
        .set(users::password_hash.eq(hash))
        .execute(conn)
}

pub fn set_active(conn: &mut AnyConnection, id: UserId, active: bool) -> QueryResult<usize> {
    diesel::update(users::table.find(id))
        .set(users::is_active.eq(active))
        .execute(conn)
}

pub fn record_login(conn: &mut AnyConnection, id: UserId) -> QueryResult<usize> {
    diesel::update(users::table.find(id))
        .set(users::last_login_at.eq(crate::db::now()))
        .execute(conn)
}

pub fn delete(conn: &mut AnyConnection, id: UserId) -> QueryResult<usize> {
    diesel::delete(users::table.find(id)).execute(conn)
}
