//! One-time links, printed by an admin for a user (no email): an invitation
//! (`latchkey user invite`) or a password reset (`latchkey user reset`). A
//! link's token carries 256 random bits; only its SHA-256 is stored; it works
//! once, until `LATCHKEY_LINK_LIFETIME` runs out. Domain code: no HTTP here.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::NaiveDateTime;
use diesel::prelude::*;
use sha2::{Digest as _, Sha256};

use crate::db::schema::welcome_links;
use crate::db::AnyConnection;
use crate::users::UserId;

/// The password hash of an invited user until the link is used: not a bcrypt
/// hash, so no password ever matches it.
pub const NO_PASSWORD: &str = "!invited";

/// What a link is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkPurpose {
    Invite,
    Reset,
}

impl LinkPurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Invite => "invite",
            Self::Reset => "reset",
        }
    }
}

/// A link's secret part. `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct LinkToken(String);

impl LinkToken {
    pub fn generate() -> Self {
        Self(URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>()))
    }

    /// A token as it comes back in a URL: anything else than our shape is no
    /// token at all (refused without a database look-up).
    pub fn parse(text: &str) -> Option<Self> {
        (text.len() == 43
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        .then(|| Self(text.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> String {
        hex::encode(Sha256::digest(self.0.as_bytes()))
    }
}

impl fmt::Debug for LinkToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LinkToken(..)")
    }
}

/// A live link: its user and purpose.
#[derive(Debug, Clone, Copy)]
pub struct Link {
    pub id: i32,
    pub user_id: UserId,
    pub purpose: LinkPurpose,
}

/// Stores a new link for the user; earlier unused links of the user stop working.
pub fn create(
    conn: &mut AnyConnection,
    user_id: UserId,
    token: &LinkToken,
    purpose: LinkPurpose,
    now: NaiveDateTime,
    expires_at: NaiveDateTime,
) -> QueryResult<()> {
    diesel::delete(
        welcome_links::table
            .filter(welcome_links::user_id.eq(user_id))
            .filter(welcome_links::used_at.is_null()),
    )
    .execute(conn)?;
    diesel::insert_into(welcome_links::table)
        .values((
            welcome_links::user_id.eq(user_id),
            welcome_links::token_hash.eq(token.hash()),
            welcome_links::purpose.eq(purpose.as_str()),
            welcome_links::created_at.eq(now),
            welcome_links::expires_at.eq(expires_at),
        ))
        .execute(conn)
        .map(drop)
}

/// The unused, unexpired link of this token.
pub fn find_live(
    conn: &mut AnyConnection,
    token: &LinkToken,
    now: NaiveDateTime,
) -> QueryResult<Option<Link>> {
    let row: Option<(i32, UserId, String)> = welcome_links::table
        .filter(welcome_links::token_hash.eq(token.hash()))
        .filter(welcome_links::used_at.is_null())
        .filter(welcome_links::expires_at.gt(now))
        .select((
            welcome_links::id,
            welcome_links::user_id,
            welcome_links::purpose,
        ))
        .first(conn)
        .optional()?;
    Ok(row.map(|(id, user_id, purpose)| Link {
        id,
        user_id,
        purpose: if purpose == LinkPurpose::Invite.as_str() {
            LinkPurpose::Invite
        } else {
            LinkPurpose::Reset
        },
    }))
}

/// Uses the link up: `true` only for the first use (a conditional update, so
/// two racing uses cannot both win).
pub fn take(conn: &mut AnyConnection, id: i32, now: NaiveDateTime) -> QueryResult<bool> {
    let updated = diesel::update(
        welcome_links::table
            .filter(welcome_links::id.eq(id))
            .filter(welcome_links::used_at.is_null())
            .filter(welcome_links::expires_at.gt(now)),
    )
    .set(welcome_links::used_at.eq(Some(now)))
    .execute(conn)?;
    Ok(updated == 1)
}
