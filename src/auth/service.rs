//! Checking credentials: the work behind the login route.

use crate::error::AppError;
use crate::users::{queries, User, Username};
use crate::web::AppState;

/// The user these credentials belong to, or `None`.
///
/// Unknown users, disabled users and wrong passwords are indistinguishable: one bcrypt
/// verify each (against a dummy hash when there is no user) and the same `None`.
/// A hash of another cost than the configured one is replaced on success.
pub async fn authenticate(
    state: &AppState,
    username: &Username,
    password: String,
) -> Result<Option<User>, AppError> {
    let name = username.as_str().to_owned();
    let user = state
        .db(move |conn| Ok(queries::find_by_username(conn, &name)?))
        .await?;
    let stored_hash = user.as_ref().map(|u| u.password_hash.clone());
    let matched = state.hasher.verify(password.clone(), stored_hash).await?;
    let Some(user) = user.filter(|u| matched && u.is_active) else {
        return Ok(None);
    };

    let rehash = if state.hasher.needs_rehash(&user.password_hash) {
        Some(state.hasher.hash(password).await?)
    } else {
        None
    };
    let id = user.id;
    state
        .db(move |conn| {
            if let Some(hash) = &rehash {
                queries::set_password_hash(conn, id, hash)?;
            }
            queries::record_login(conn, id)?;
            Ok(())
        })
        .await?;
    Ok(Some(user))
}
