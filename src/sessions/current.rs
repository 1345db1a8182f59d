//! The request's own session: starting one at login, and which row it is.

use actix_identity::Identity;
use actix_session::SessionExt as _;
use actix_web::{HttpMessage as _, HttpRequest};

use super::remember;
use super::store::{CLIENT_IP_KEY, PUBLIC_ID_KEY, USER_AGENT_KEY};
use crate::error::AppError;
use crate::users::UserId;
use crate::web::{identify, Client};

/// Starts a session for a user who has just proved who they are. The key is
/// renewed (the old row deleted: no session fixation); the client's address
/// and user agent go into the state, which the store mirrors into the row's
/// columns when it saves it.
pub fn begin(
    req: &HttpRequest,
    user_id: UserId,
    client: &Client,
    remembered: bool,
) -> Result<(), AppError> {
    let session = req.get_session();
    // Nothing proved by an earlier login in this browser carries over.
    session.remove(SECOND_FACTOR_KEY);
    session.remove(PENDING_KEY);
    session.remove(MUST_ENROL_KEY);
    session.remove(TOTP_ENROLMENT_KEY);
    for kind in CeremonyKind::ALL {
        session.remove(kind.key());
    }
    Identity::login(&req.extensions(), user_id.to_string()).map_err(AppError::internal)?;
    identify(req, user_id);
    for (key, value) in [
        (CLIENT_IP_KEY, &client.ip),
        (USER_AGENT_KEY, &client.user_agent),
    ] {
        if let Some(value) = value {
            session.insert(key, value).map_err(AppError::internal)?;
        }
    }
    if remembered {
        remember::remember(req)?;
    } else {
        // A remembered session this browser had before does not carry over.
        remember::forget(req);
    }
    confirmed(req)
}

/// When this session's user last proved who they are (unix seconds).
const AUTHENTICATED_AT_KEY: &str = "latchkey.authenticated_at";

fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The user has just proved who they are (a login, or a confirmation).
pub fn confirmed(req: &HttpRequest) -> Result<(), AppError> {
    req.get_session()
        .insert(AUTHENTICATED_AT_KEY, unix_now())
        .map_err(AppError::internal)
}

/// `Ok` when the user proved who they are within `window` (sensitive
/// changes: new tokens, factors); `403` asking for a confirmation otherwise.
pub fn require_recent(req: &HttpRequest, window: std::time::Duration) -> Result<(), AppError> {
    let at = req
        .get_session()
        .get::<i64>(AUTHENTICATED_AT_KEY)
        .ok()
        .flatten();
    let window = i64::try_from(window.as_secs()).unwrap_or(i64::MAX);
    match at {
        Some(at) if unix_now().saturating_sub(at) <= window => Ok(()),
        _ => Err(AppError::ReauthRequired),
    }
}

/// The public id of this request's own session.
pub fn public_id(req: &HttpRequest) -> Option<String> {
    req.get_session()
        .get::<String>(PUBLIC_ID_KEY)
        .ok()
        .flatten()
}

/// A login that passed its password and waits for a second factor. Kept in
/// the session's state (server-side), with no identity: nothing treats this
/// session as signed in, and it does not count towards the user's sessions.
///
/// Its wrong codes are not counted here: a count in the session would be
/// read and written back by each request, so concurrent requests (or an old
/// copy of the state) could each see it low. They are counted in the
/// database, under a lock (see `auth::service::check_pending_code`), by `id`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Pending {
    /// Random, this login's own: its wrong codes are counted by it. (A state
    /// from before it existed does not parse: that login starts over.)
    pub id: String,
    pub user_id: UserId,
    pub username: String,
    /// What the password was when it was proven (see
    /// [`credentials_fingerprint`]): a password changed or reset meanwhile
    /// voids the pending login.
    #[serde(default)]
    pub credentials: String,
    /// Unix seconds.
    pub started_at: i64,
    pub remember: bool,
    /// Where a browser goes once the login is complete (already checked as safe).
    pub next: String,
    /// The user has a passkey to finish with (the page offers it).
    #[serde(default)]
    pub passkey: bool,
    /// The password is in the breached-password list: the login, once
    /// complete, says so as a login without a second factor does.
    #[serde(default)]
    pub password_breached: bool,
}

/// How long a pending login waits for its second factor.
pub const PENDING_LIFETIME_SECS: i64 = 300;
/// Wrong codes that end a pending login.
pub const PENDING_MAX_TRIES: u32 = 5;

const PENDING_KEY: &str = "latchkey.pending_login";
/// Set when a login under `LATCHKEY_REQUIRE_SECOND_FACTOR` has no factor yet.
const MUST_ENROL_KEY: &str = "latchkey.must_enrol";
/// Set when this session's login was completed with a second factor.
const SECOND_FACTOR_KEY: &str = "latchkey.second_factor";

impl Pending {
    pub fn new(
        user_id: UserId,
        username: &str,
        password_hash: &str,
        remember: bool,
        next: &str,
    ) -> Self {
        Self {
            id: hex::encode(rand::random::<[u8; 16]>()),
            user_id,
            username: username.to_owned(),
            credentials: credentials_fingerprint(password_hash),
            started_at: unix_now(),
            remember,
            next: next.to_owned(),
            passkey: false,
            password_breached: false,
        }
    }

    /// When it started, as the database's timestamps read.
    pub fn started(&self) -> chrono::NaiveDateTime {
        chrono::DateTime::from_timestamp(self.started_at, 0)
            .unwrap_or_default()
            .naive_utc()
    }

    /// The detail of the audit rows of its wrong codes, by which they are counted.
    pub fn audit_detail(&self) -> String {
        format!("pending login {}", self.id)
    }
}

/// A short digest of a stored password hash: equal while the password is unchanged.
pub fn credentials_fingerprint(password_hash: &str) -> String {
    use sha2::{Digest as _, Sha256};
    hex::encode(&Sha256::digest(password_hash.as_bytes())[..8])
}

/// Turns this session into a pending login: whatever it held before is
/// dropped (a signed-in user logging in as someone else is signed out), and
/// it gets a fresh key.
pub fn begin_pending(
    req: &HttpRequest,
    pending: &Pending,
    client: &Client,
) -> Result<(), AppError> {
    let session = req.get_session();
    session.clear();
    session.renew();
    for (key, value) in [
        (CLIENT_IP_KEY, &client.ip),
        (USER_AGENT_KEY, &client.user_agent),
    ] {
        if let Some(value) = value {
            session.insert(key, value).map_err(AppError::internal)?;
        }
    }
    save_pending(req, pending)
}

pub fn save_pending(req: &HttpRequest, pending: &Pending) -> Result<(), AppError> {
    req.get_session()
        .insert(PENDING_KEY, pending)
        .map_err(AppError::internal)
}

/// This session's pending login, unless there is none or it is over.
pub fn pending(req: &HttpRequest) -> Option<Pending> {
    let pending = req
        .get_session()
        .get::<Pending>(PENDING_KEY)
        .ok()
        .flatten()?;
    let age = unix_now().saturating_sub(pending.started_at);
    (0..=PENDING_LIFETIME_SECS)
        .contains(&age)
        .then_some(pending)
}

/// Ends a pending login (too many wrong codes, a logout): the session is deleted.
pub fn end_pending(req: &HttpRequest) {
    req.get_session().purge();
}

/// Completes a pending login: the session signs the user in (a new key
/// again) and records that a second factor was used.
pub fn complete(req: &HttpRequest, pending: &Pending, client: &Client) -> Result<(), AppError> {
    begin_with_second_factor(req, pending.user_id, client, pending.remember)
}

/// [`begin`], for a login proven with a second factor too (a pending login
/// completed, a passkey sign-in).
pub fn begin_with_second_factor(
    req: &HttpRequest,
    user_id: UserId,
    client: &Client,
    remembered: bool,
) -> Result<(), AppError> {
    begin(req, user_id, client, remembered)?;
    mark_second_factor(req)
}

/// This session proved a second factor (a login completed with one or with
/// a passkey, or the user's first factor enrolled in it).
pub fn mark_second_factor(req: &HttpRequest) -> Result<(), AppError> {
    let session = req.get_session();
    session.remove(MUST_ENROL_KEY);
    session
        .insert(SECOND_FACTOR_KEY, true)
        .map_err(AppError::internal)
}

/// This session's user must enrol a second factor before anything else.
pub fn require_enrolment(req: &HttpRequest) -> Result<(), AppError> {
    req.get_session()
        .insert(MUST_ENROL_KEY, true)
        .map_err(AppError::internal)
}

/// Whether this session must enrol a second factor first.
pub fn must_enrol(req: &HttpRequest) -> bool {
    req.get_session()
        .get::<bool>(MUST_ENROL_KEY)
        .ok()
        .flatten()
        .unwrap_or(false)
}

/// Whether this session's login was completed with a second factor.
pub fn second_factor(req: &HttpRequest) -> bool {
    req.get_session()
        .get::<bool>(SECOND_FACTOR_KEY)
        .ok()
        .flatten()
        .unwrap_or(false)
}

/// A TOTP enrolment under way (its secret, sealed like a stored one: the
/// session row is in the database too), until a code confirms it.
pub const TOTP_ENROLMENT_KEY: &str = "latchkey.totp_enrolment";

/// How long a WebAuthn challenge stays open: what the browser is told too.
pub const CEREMONY_LIFETIME_SECS: i64 = 300;

/// How long the store keeps a session no one is signed in to: twice what
/// its contents last (a login waiting for its second factor, a challenge).
pub const ANONYMOUS_LIFETIME: std::time::Duration = std::time::Duration::from_secs(
    2 * if PENDING_LIFETIME_SECS > CEREMONY_LIFETIME_SECS {
        PENDING_LIFETIME_SECS.unsigned_abs()
    } else {
        CEREMONY_LIFETIME_SECS.unsigned_abs()
    },
);

/// The WebAuthn ceremonies a session may have under way, each under its own
/// key: a challenge made for one is never taken as another's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CeremonyKind {
    /// Signing in with a passkey and no password.
    PasskeyLogin,
    /// A passkey finishing a pending login.
    SecondFactor,
    /// A passkey confirming identity.
    Confirm,
    /// Registering a passkey.
    Registration,
}

impl CeremonyKind {
    const ALL: [Self; 4] = [
        Self::PasskeyLogin,
        Self::SecondFactor,
        Self::Confirm,
        Self::Registration,
    ];

    fn key(self) -> &'static str {
        match self {
            Self::PasskeyLogin => "latchkey.passkey_login",
            Self::SecondFactor => "latchkey.passkey_second_factor",
            Self::Confirm => "latchkey.passkey_confirm",
            Self::Registration => "latchkey.passkey_registration",
        }
    }
}

/// A WebAuthn ceremony under way (its challenge), kept in the session.
#[derive(serde::Serialize, serde::Deserialize)]
struct Ceremony<T> {
    state: T,
    /// Unix seconds.
    started_at: i64,
}

/// Keeps a ceremony's state, replacing any earlier one of its kind.
pub fn keep_ceremony<T: serde::Serialize>(
    req: &HttpRequest,
    kind: CeremonyKind,
    state: T,
) -> Result<(), AppError> {
    let ceremony = Ceremony {
        state,
        started_at: unix_now(),
    };
    req.get_session()
        .insert(kind.key(), ceremony)
        .map_err(AppError::internal)
}

/// Takes the ceremony of `kind` out of the session: each challenge is
/// answered once (the database holds that too, see
/// `factors::queries::claim_challenge`), and only while it is open.
pub fn take_ceremony<T: serde::de::DeserializeOwned>(
    req: &HttpRequest,
    kind: CeremonyKind,
) -> Option<T> {
    let ceremony = req
        .get_session()
        .remove_as::<Ceremony<T>>(kind.key())?
        .ok()?;
    let age = unix_now().saturating_sub(ceremony.started_at);
    (0..=CEREMONY_LIFETIME_SECS)
        .contains(&age)
        .then_some(ceremony.state)
}
