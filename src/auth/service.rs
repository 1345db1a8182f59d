//! Checking credentials: the work behind the login route.

use crate::audit::{self, Client, Event};
use crate::error::AppError;
use crate::users::{queries, User, Username};
use crate::web::AppState;

/// The user these credentials belong to, or `None`.
///
/// Unknown users, disabled users and wrong passwords are indistinguishable: one bcrypt
/// verify each (against a dummy hash when there is no user) and the same `None`.
/// A hash of another cost than the configured one is replaced on success.
/// The outcome goes to the audit trail either way.
pub async fn authenticate(
    state: &AppState,
    username: &Username,
    password: String,
    client: Client,
) -> Result<Option<User>, AppError> {
    let name = username.as_str().to_owned();
    let user = state
        .db(move |conn| Ok(queries::find_by_username(conn, &name)?))
        .await?;
    let stored_hash = user.as_ref().map(|u| u.password_hash.clone());
    let matched = state.hasher.verify(password.clone(), stored_hash).await?;

    let failure = match &user {
        None => Some("unknown_user"),
        Some(_) if !matched => Some("bad_password"),
        Some(u) if !u.is_active => Some("disabled"),
        Some(_) => None,
    };
    let rehash = match (&user, failure) {
        (Some(u), None) if state.hasher.needs_rehash(&u.password_hash) => {
            Some(state.hasher.hash(password).await?)
        }
        _ => None,
    };
    let name = username.as_str().to_owned();
    let id = user.as_ref().map(|u| u.id);
    state
        .db(move |conn| {
            if let (Some(id), None) = (id, failure) {
                if let Some(hash) = &rehash {
                    queries::set_password_hash(conn, id, hash)?;
                }
                queries::record_login(conn, id)?;
            }
            let event = if failure.is_some() {
                Event::LoginFailure
            } else {
                Event::LoginSuccess
            };
            audit::record(conn, event, id, Some(&name), &client, failure)?;
            Ok(())
        })
        .await?;
    Ok(user.filter(|_| failure.is_none()))
}
