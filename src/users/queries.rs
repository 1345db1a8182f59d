//! SQL for users: plain sync functions over one connection, run inside `web::block`.

use diesel::prelude::*;

use super::model::{NewUser, User, UserId};
use crate::db::schema::users;
use crate::db::AnyConnection;

pub fn find_by_username(conn: &mut AnyConnection, username: &str) -> QueryResult<Option<User>> {
    users::table
        .filter(users::username.eq(username))
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

/// Inserts a user and returns the stored row (a unique violation if the name is taken).
pub fn insert(conn: &mut AnyConnection, new_user: &NewUser<'_>) -> QueryResult<User> {
    conn.transaction(|conn| {
        diesel::insert_into(users::table)
            .values(new_user)
            .execute(conn)?;
        users::table
            .filter(users::username.eq(new_user.username))
            .select(User::as_select())
            .first(conn)
    })
}

pub fn list(conn: &mut AnyConnection) -> QueryResult<Vec<User>> {
    users::table
        .order(users::id.asc())
        .select(User::as_select())
        .load(conn)
}

// Changing a user also changes what every instance may have cached: callers
// record that (`sessions::events`) in the same transaction; see `account::ops`.

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
