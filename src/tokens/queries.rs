//! SQL for access tokens. Rows are found by the SHA-256 of the token.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::{TokenRow, MAX_PER_USER};
use crate::db::schema::{access_tokens, users};
use crate::db::AnyConnection;
use crate::sessions::events;
use crate::users::{User, UserId};

/// A new token's row.
#[derive(Debug, Insertable)]
#[diesel(table_name = access_tokens)]
pub struct NewToken<'a> {
    pub user_id: UserId,
    pub name: &'a str,
    pub token_hash: &'a str,
    pub created_at: NaiveDateTime,
    pub expires_at: NaiveDateTime,
}

/// Stores a token unless the user holds [`MAX_PER_USER`] already (`Ok(None)`).
pub fn create(conn: &mut AnyConnection, token: &NewToken<'_>) -> QueryResult<Option<TokenRow>> {
    conn.transaction(|conn| {
        crate::db::write_first(conn)?;
        let held: i64 = access_tokens::table
            .filter(access_tokens::user_id.eq(token.user_id))
            .count()
            .get_result(conn)?;
        if held >= MAX_PER_USER {
            return Ok(None);
        }
        diesel::insert_into(access_tokens::table)
            .values(token)
            .execute(conn)?;
        access_tokens::table
            .filter(access_tokens::token_hash.eq(token.token_hash))
            .select(TokenRow::as_select())
            .first(conn)
            .map(Some)
    })
}

/// A user's tokens, newest first (expired ones included, marked by their date).
pub fn list(conn: &mut AnyConnection, user_id: UserId) -> QueryResult<Vec<TokenRow>> {
    access_tokens::table
        .filter(access_tokens::user_id.eq(user_id))
        .order(access_tokens::id.desc())
        .select(TokenRow::as_select())
        .load(conn)
}

/// The unexpired token stored under `token_hash`, with its user, in one query.
pub fn find_live_with_user(
    conn: &mut AnyConnection,
    token_hash: &str,
    now: NaiveDateTime,
) -> QueryResult<Option<(TokenRow, User)>> {
    access_tokens::table
        .inner_join(users::table)
        .filter(access_tokens::token_hash.eq(token_hash))
        .filter(access_tokens::expires_at.gt(now))
        .select((TokenRow::as_select(), User::as_select()))
        .first(conn)
        .optional()
}

/// Records a use.
pub fn touch(conn: &mut AnyConnection, id: i32, now: NaiveDateTime) -> QueryResult<usize> {
    diesel::update(access_tokens::table.find(id))
        .set(access_tokens::last_used_at.eq(now))
        .execute(conn)
}

/// Revokes one of a user's tokens (and tells every cache); 0 when there is none.
pub fn revoke(conn: &mut AnyConnection, user_id: UserId, id: i32) -> QueryResult<usize> {
    let hashes: Vec<String> = access_tokens::table
        .filter(access_tokens::user_id.eq(user_id))
        .filter(access_tokens::id.eq(id))
        .select(access_tokens::token_hash)
        .load(conn)?;
    for hash in &hashes {
        diesel::delete(access_tokens::table.filter(access_tokens::token_hash.eq(hash)))
            .execute(conn)?;
        events::session_ended(conn, hash)?;
    }
    Ok(hashes.len())
}
