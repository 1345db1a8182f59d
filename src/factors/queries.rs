//! SQL for second factors and recovery codes.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::Kind;
use crate::db::schema::{recovery_codes, second_factors, used_challenges};
use crate::db::AnyConnection;
use crate::users::UserId;

/// A factor as its owner (and an admin) sees it: never the secret.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = second_factors)]
pub struct FactorRow {
    pub id: i32,
    pub user_id: UserId,
    pub kind: String,
    pub name: String,
    pub created_at: NaiveDateTime,
    pub last_used_at: Option<NaiveDateTime>,
}

/// A TOTP factor's sealed secret, for checking a code.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = second_factors)]
pub struct SealedTotp {
    pub id: i32,
    pub secret: String,
    pub last_step: Option<i64>,
}

/// Stores a confirmed TOTP factor; `step` is the step of the code that
/// confirmed it, already used.
pub fn insert_totp(
    conn: &mut AnyConnection,
    user_id: UserId,
    name: &str,
    sealed: &str,
    step: i64,
    now: NaiveDateTime,
) -> QueryResult<i32> {
    diesel::insert_into(second_factors::table)
        .values((
            second_factors::user_id.eq(user_id),
            second_factors::kind.eq(Kind::Totp.as_str()),
            second_factors::name.eq(name),
            second_factors::secret.eq(sealed),
            second_factors::last_step.eq(Some(step)),
            second_factors::created_at.eq(now),
            second_factors::last_used_at.eq(Some(now)),
        ))
        .returning(second_factors::id)
        .get_result(conn)
}

/// A stored passkey: webauthn-rs's credential record as JSON.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = second_factors)]
pub struct StoredPasskey {
    pub id: i32,
    pub user_id: UserId,
    pub secret: String,
}

/// Stores a registered passkey (a credential registered already is a
/// unique violation).
pub fn insert_passkey(
    conn: &mut AnyConnection,
    user_id: UserId,
    name: &str,
    stored: &str,
    credential_key: &str,
    now: NaiveDateTime,
) -> QueryResult<i32> {
    diesel::insert_into(second_factors::table)
        .values((
            second_factors::user_id.eq(user_id),
            second_factors::kind.eq(Kind::Passkey.as_str()),
            second_factors::name.eq(name),
            second_factors::secret.eq(stored),
            second_factors::credential_id.eq(Some(credential_key)),
            second_factors::created_at.eq(now),
        ))
        .returning(second_factors::id)
        .get_result(conn)
}

/// The user's passkeys.
pub fn passkeys(conn: &mut AnyConnection, user_id: UserId) -> QueryResult<Vec<StoredPasskey>> {
    second_factors::table
        .filter(second_factors::user_id.eq(user_id))
        .filter(second_factors::kind.eq(Kind::Passkey.as_str()))
        .select(StoredPasskey::as_select())
        .load(conn)
}

/// The passkey with this credential id (base64url), whoever holds it.
pub fn passkey_by_credential(
    conn: &mut AnyConnection,
    credential_key: &str,
) -> QueryResult<Option<StoredPasskey>> {
    second_factors::table
        .filter(second_factors::credential_id.eq(credential_key))
        .filter(second_factors::kind.eq(Kind::Passkey.as_str()))
        .select(StoredPasskey::as_select())
        .first(conn)
        .optional()
}

/// Records a passkey's use, with its record updated (signature counter, backup state).
pub fn passkey_used(
    conn: &mut AnyConnection,
    id: i32,
    stored: &str,
    now: NaiveDateTime,
) -> QueryResult<usize> {
    diesel::update(second_factors::table.find(id))
        .set((
            second_factors::secret.eq(stored),
            second_factors::last_used_at.eq(Some(now)),
        ))
        .execute(conn)
}

/// Claims a passkey assertion's challenge (its SHA-256): `true` only the
/// first time. Inside the transaction that accepts the assertion; the
/// challenge is locked first (Postgres: an advisory lock on it; SQLite: the
/// write lock), so racing claims queue and the second finds the first.
pub fn claim_challenge(
    conn: &mut AnyConnection,
    challenge_hash: &str,
    now: NaiveDateTime,
) -> QueryResult<bool> {
    match conn {
        AnyConnection::Postgresql(pg) => {
            diesel::sql_query("SELECT pg_advisory_xact_lock(hashtextextended($1, 7433920062))")
                .bind::<diesel::sql_types::Text, _>(challenge_hash)
                .execute(pg)?;
        }
        AnyConnection::Sqlite(_) => crate::db::write_first(conn)?,
    }
    let used: i64 = used_challenges::table
        .filter(used_challenges::challenge_hash.eq(challenge_hash))
        .count()
        .get_result(conn)?;
    if used > 0 {
        return Ok(false);
    }
    diesel::insert_into(used_challenges::table)
        .values((
            used_challenges::challenge_hash.eq(challenge_hash),
            used_challenges::used_at.eq(now),
        ))
        .execute(conn)?;
    Ok(true)
}

/// Forgets challenges used before `before` (their ceremonies are over).
pub fn sweep_challenges(conn: &mut AnyConnection, before: NaiveDateTime) -> QueryResult<usize> {
    diesel::delete(used_challenges::table.filter(used_challenges::used_at.lt(before))).execute(conn)
}

/// The kinds of the user's factors (one entry a factor).
pub fn kinds(conn: &mut AnyConnection, user_id: UserId) -> QueryResult<Vec<String>> {
    second_factors::table
        .filter(second_factors::user_id.eq(user_id))
        .select(second_factors::kind)
        .load(conn)
}

/// The user's factors, oldest first.
pub fn list(conn: &mut AnyConnection, user_id: UserId) -> QueryResult<Vec<FactorRow>> {
    second_factors::table
        .filter(second_factors::user_id.eq(user_id))
        .order(second_factors::id.asc())
        .select(FactorRow::as_select())
        .load(conn)
}

pub fn count(conn: &mut AnyConnection, user_id: UserId) -> QueryResult<i64> {
    second_factors::table
        .filter(second_factors::user_id.eq(user_id))
        .count()
        .get_result(conn)
}

pub fn totp_secrets(conn: &mut AnyConnection, user_id: UserId) -> QueryResult<Vec<SealedTotp>> {
    second_factors::table
        .filter(second_factors::user_id.eq(user_id))
        .filter(second_factors::kind.eq(Kind::Totp.as_str()))
        .select(SealedTotp::as_select())
        .load(conn)
}

/// Claims time step `step` of factor `id`: `true` only for the first claim of
/// a step later than every step used before (a conditional update, so two
/// racing uses of one code cannot both win).
pub fn claim_step(
    conn: &mut AnyConnection,
    id: i32,
    step: i64,
    now: NaiveDateTime,
) -> QueryResult<bool> {
    let updated = diesel::update(
        second_factors::table
            .filter(second_factors::id.eq(id))
            .filter(
                second_factors::last_step
                    .is_null()
                    .or(second_factors::last_step.lt(step)),
            ),
    )
    .set((
        second_factors::last_step.eq(Some(step)),
        second_factors::last_used_at.eq(Some(now)),
    ))
    .execute(conn)?;
    Ok(updated == 1)
}

/// Every TOTP factor's sealed secret, for resealing after a key rotation.
pub fn all_totp_secrets(conn: &mut AnyConnection) -> QueryResult<Vec<SealedTotp>> {
    second_factors::table
        .filter(second_factors::kind.eq(Kind::Totp.as_str()))
        .select(SealedTotp::as_select())
        .load(conn)
}

/// Stores a secret sealed anew (after a key rotation).
pub fn reseal(conn: &mut AnyConnection, id: i32, sealed: &str) -> QueryResult<usize> {
    diesel::update(second_factors::table.find(id))
        .set(second_factors::secret.eq(sealed))
        .execute(conn)
}

/// Removes one of the user's factors; 0 when there is no such factor.
pub fn delete(conn: &mut AnyConnection, user_id: UserId, id: i32) -> QueryResult<usize> {
    diesel::delete(
        second_factors::table
            .filter(second_factors::user_id.eq(user_id))
            .filter(second_factors::id.eq(id)),
    )
    .execute(conn)
}

/// Removes every factor and recovery code of the user; returns how many factors went.
pub fn delete_all(conn: &mut AnyConnection, user_id: UserId) -> QueryResult<usize> {
    delete_recovery_codes(conn, user_id)?;
    diesel::delete(second_factors::table.filter(second_factors::user_id.eq(user_id))).execute(conn)
}

pub fn delete_recovery_codes(conn: &mut AnyConnection, user_id: UserId) -> QueryResult<usize> {
    diesel::delete(recovery_codes::table.filter(recovery_codes::user_id.eq(user_id))).execute(conn)
}

/// Replaces the user's recovery codes with these (hashes).
pub fn replace_recovery_codes(
    conn: &mut AnyConnection,
    user_id: UserId,
    hashes: &[String],
    now: NaiveDateTime,
) -> QueryResult<()> {
    delete_recovery_codes(conn, user_id)?;
    // One insert per row: batch inserts are not on the multi backend.
    for hash in hashes {
        diesel::insert_into(recovery_codes::table)
            .values((
                recovery_codes::user_id.eq(user_id),
                recovery_codes::code_hash.eq(hash),
                recovery_codes::created_at.eq(now),
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// Uses up the recovery code with this hash: `true` only the first time.
pub fn use_recovery_code(
    conn: &mut AnyConnection,
    user_id: UserId,
    hash: &str,
    now: NaiveDateTime,
) -> QueryResult<bool> {
    let updated = diesel::update(
        recovery_codes::table
            .filter(recovery_codes::user_id.eq(user_id))
            .filter(recovery_codes::code_hash.eq(hash))
            .filter(recovery_codes::used_at.is_null()),
    )
    .set(recovery_codes::used_at.eq(Some(now)))
    .execute(conn)?;
    Ok(updated == 1)
}

/// Unused recovery codes left.
pub fn recovery_codes_left(conn: &mut AnyConnection, user_id: UserId) -> QueryResult<i64> {
    recovery_codes::table
        .filter(recovery_codes::user_id.eq(user_id))
        .filter(recovery_codes::used_at.is_null())
        .count()
        .get_result(conn)
}
