//! Second factors: TOTP (RFC 6238: SHA-1, 6 digits, 30 s, one step of drift),
//! passkeys and security keys (WebAuthn, see [`passkeys`]) and single-use
//! recovery codes. Domain code: no HTTP here.
//!
//! - A TOTP secret is stored sealed ([`Sealer`]: ChaCha20-Poly1305 under a key
//!   derived by HKDF-SHA256 from the secret key), so a copy of the database
//!   alone yields no working second factor.
//! - A TOTP code is accepted once: the row keeps the last accepted time step,
//!   and the step is claimed by a conditional update (two racing requests with
//!   one code cannot both win). totp-rs only says which step matched.
//! - A passkey's assertion is checked against the credential as stored now
//!   (its owner, its signature counter), and its challenge is claimed in the
//!   database ([`accept_passkey`]): one answer is accepted once, however
//!   many requests carry it.
//! - Recovery codes are 80 random bits each, stored as SHA-256 (a slow hash
//!   adds nothing at that entropy), and used up by a conditional update.

pub mod passkeys;
pub mod queries;

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead as _, KeyInit as _};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use sha2::{Digest as _, Sha256};
use totp_rs::{Algorithm, Builder, Totp};

use crate::config::SecretKey;

/// How many recovery codes a user holds after enrolling or regenerating.
pub const RECOVERY_CODES: usize = 10;
/// TOTP time step, in seconds (RFC 6238's default, what every app assumes).
pub const STEP_SECONDS: u64 = 30;
/// What authenticator apps show as the account's issuer.
pub const ISSUER: &str = "latchkey";

/// The kinds of factor, as the API names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Totp,
    Passkey,
    RecoveryCode,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Totp => "totp",
            Self::Passkey => "passkey",
            Self::RecoveryCode => "recovery_code",
        }
    }
}

/// A six-digit code from an authenticator app (spaces allowed, as apps show
/// `123 456`).
#[derive(Clone, PartialEq, Eq)]
pub struct TotpCode(String);

impl TotpCode {
    pub fn parse(text: &str) -> Option<Self> {
        let digits: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        (digits.len() == 6 && digits.bytes().all(|b| b.is_ascii_digit())).then_some(Self(digits))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for TotpCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TotpCode(..)")
    }
}

/// The alphabet of recovery codes: Crockford's base32 (no i, l, o, u), so a
/// code copied by hand reads back; `o`, `i` and `l` typed are read as 0 and 1.
const RECOVERY_ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
/// 16 characters of 5 bits: 80 bits.
const RECOVERY_LEN: usize = 16;

/// A recovery code, normalised (lower case, no separators). Shown as
/// `xxxx-xxxx-xxxx-xxxx`.
#[derive(Clone, PartialEq, Eq)]
pub struct RecoveryCode(String);

impl RecoveryCode {
    pub fn generate() -> Self {
        // 32 symbols: a random byte's low 5 bits are uniform over them.
        let alphabet = RECOVERY_ALPHABET;
        let code = rand::random::<[u8; RECOVERY_LEN]>()
            .iter()
            .map(|b| char::from(alphabet[usize::from(b & 31)]))
            .collect();
        Self(code)
    }

    /// What a person typed: case and `-`/space separators do not matter.
    pub fn parse(text: &str) -> Option<Self> {
        let code: String = text
            .chars()
            .filter(|c| *c != '-' && !c.is_whitespace())
            .map(|c| match c.to_ascii_lowercase() {
                'o' => '0',
                'i' | 'l' => '1',
                c => c,
            })
            .collect();
        (code.len() == RECOVERY_LEN && code.bytes().all(|b| RECOVERY_ALPHABET.contains(&b)))
            .then_some(Self(code))
    }

    /// For the user, once.
    pub fn display(&self) -> String {
        self.0
            .as_bytes()
            .chunks(4)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect::<Vec<_>>()
            .join("-")
    }

    pub fn hash(&self) -> String {
        hex::encode(Sha256::digest(self.0.as_bytes()))
    }
}

impl fmt::Debug for RecoveryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RecoveryCode(..)")
    }
}

/// A code offered as a second factor: which kind it is follows from its shape.
#[derive(Debug, Clone)]
pub enum Code {
    Totp(TotpCode),
    Recovery(RecoveryCode),
}

impl Code {
    pub fn parse(text: &str) -> Option<Self> {
        TotpCode::parse(text)
            .map(Self::Totp)
            .or_else(|| RecoveryCode::parse(text).map(Self::Recovery))
    }
}

/// A TOTP shared secret (160 bits, RFC 4226's recommendation). `Debug` hides it.
#[derive(Clone)]
pub struct TotpSecret(Vec<u8>);

impl TotpSecret {
    pub fn generate() -> Self {
        Self(rand::random::<[u8; 20]>().to_vec())
    }

    pub fn base32(&self) -> String {
        totp_rs::Secret::from(self.0.clone()).to_base32()
    }

    fn totp(&self) -> Option<Totp> {
        Builder::new()
            .with_algorithm(Algorithm::SHA1)
            .with_digits(6)
            .with_skew(1)
            .with_step_duration(STEP_SECONDS)
            .with_secret(self.0.clone())
            .build()
            .ok()
    }

    /// The time step `code` belongs to (now, give or take one step), if it matches.
    pub fn matching_step(&self, code: &TotpCode) -> Option<i64> {
        let step = self.totp()?.check_current(code.as_str())?;
        i64::try_from(step).ok()
    }

    /// `otpauth://totp/latchkey:NAME?secret=...&issuer=latchkey`, for the QR code.
    pub fn otpauth_url(&self, account: &str) -> String {
        let mut url = url::Url::parse("otpauth://totp/").expect("a constant URL");
        url.set_path(&format!("/{ISSUER}:{account}"));
        url.query_pairs_mut()
            .append_pair("secret", &self.base32())
            .append_pair("issuer", ISSUER)
            .append_pair("algorithm", "SHA1")
            .append_pair("digits", "6")
            .append_pair("period", "30");
        // `otpauth://totp//x` → `otpauth://totp/x`: the label is the path.
        url.to_string().replacen("totp//", "totp/", 1)
    }
}

impl fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TotpSecret(..)")
    }
}

/// The QR code of `text` as an SVG document (no network, no image crates).
pub fn qr_svg(text: &str) -> Option<String> {
    let code = qrcode::QrCode::new(text.as_bytes()).ok()?;
    Some(
        code.render::<qrcode::render::svg::Color<'_>>()
            .min_dimensions(200, 200)
            .quiet_zone(true)
            .build(),
    )
}

/// Seals TOTP secrets at rest. The key is derived from the secret key (HKDF,
/// its own label), so it rotates with it; secrets sealed under the previous
/// key still open, and are resealed under the current one when next used and
/// all at start (see [`reseal_all`]).
#[derive(Clone)]
pub struct Sealer {
    current: Key,
    previous: Option<Key>,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sealer(..)")
    }
}

fn derive(key: &SecretKey) -> Key {
    let mut out = [0u8; 32];
    hkdf::Hkdf::<Sha256>::new(None, key.as_bytes())
        .expand(b"latchkey totp secret v1", &mut out)
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    Key::from(out)
}

impl Sealer {
    pub fn new(current: &SecretKey, previous: Option<&SecretKey>) -> Self {
        Self {
            current: derive(current),
            previous: previous.map(derive),
        }
    }

    /// `base64(nonce || ciphertext)`.
    pub fn seal(&self, secret: &TotpSecret) -> String {
        let nonce = rand::random::<[u8; 12]>();
        let sealed = ChaCha20Poly1305::new(&self.current)
            .encrypt(Nonce::from_slice(&nonce), secret.0.as_slice())
            .expect("ChaCha20-Poly1305 encrypts any short message");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        STANDARD.encode(out)
    }

    /// The secret, and whether it was sealed under the previous key.
    pub fn open(&self, sealed: &str) -> Option<(TotpSecret, bool)> {
        let bytes = STANDARD.decode(sealed).ok()?;
        if bytes.len() < 12 {
            return None;
        }
        let (nonce, body) = bytes.split_at(12);
        let try_key = |key: &Key| {
            ChaCha20Poly1305::new(key)
                .decrypt(Nonce::from_slice(nonce), body)
                .ok()
                .map(TotpSecret)
        };
        if let Some(secret) = try_key(&self.current) {
            return Some((secret, false));
        }
        self.previous
            .as_ref()
            .and_then(try_key)
            .map(|secret| (secret, true))
    }
}

/// Which factor a proof was accepted as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Used {
    Totp { factor_id: i32 },
    Passkey { factor_id: i32 },
    Recovery,
}

impl Used {
    /// For the audit trail: the kind, and which factor.
    pub fn describe(self) -> String {
        match self {
            Self::Totp { factor_id } | Self::Passkey { factor_id } => {
                format!("{} {factor_id}", self.kind().as_str())
            }
            Self::Recovery => self.kind().as_str().to_owned(),
        }
    }

    pub fn kind(self) -> Kind {
        match self {
            Self::Totp { .. } => Kind::Totp,
            Self::Passkey { .. } => Kind::Passkey,
            Self::Recovery => Kind::RecoveryCode,
        }
    }
}

/// What a user offers as their second factor: a code, or a passkey's
/// assertion answering the challenge this session was given.
#[derive(Debug, Clone)]
pub enum Proof {
    Code(Code),
    Passkey(Box<PasskeyProof>),
}

#[derive(Debug, Clone)]
pub struct PasskeyProof {
    pub credential: webauthn_rs::prelude::PublicKeyCredential,
    pub state: webauthn_rs::prelude::PasskeyAuthentication,
}

/// What checking a proof needs beside the database.
#[derive(Debug, Clone, Copy)]
pub struct Verifier<'a> {
    pub sealer: &'a Sealer,
    /// `None` when passkeys are off (see [`passkeys::RelyingParty::new`]).
    pub passkeys: Option<&'a passkeys::RelyingParty>,
}

/// Checks `proof` against the user's factors and uses it up: `Some` the first
/// time a valid code or assertion is offered, `None` for a wrong or already
/// used one. Run it in the caller's transaction, with what it records about
/// the outcome.
pub fn verify(
    conn: &mut crate::db::AnyConnection,
    verifier: Verifier<'_>,
    user_id: crate::users::UserId,
    proof: &Proof,
    now: chrono::NaiveDateTime,
) -> diesel::QueryResult<Option<Used>> {
    let sealer = verifier.sealer;
    match proof {
        Proof::Passkey(proof) => {
            let Some(rp) = verifier.passkeys else {
                return Ok(None);
            };
            let key = passkeys::credential_key(proof.credential.get_credential_id());
            // The credential must still be the user's now, whatever the
            // challenge allowed when it was made.
            let Some(row) = queries::passkey_by_credential(conn, &key)? else {
                return Ok(None);
            };
            let Some(stored) = passkeys::load(&row.secret).filter(|_| row.user_id == user_id)
            else {
                return Ok(None);
            };
            match rp.finish_authentication(&proof.credential, &proof.state, &stored) {
                Ok(updated) => Ok(
                    accept_passkey(conn, row.id, &updated, &proof.credential, now)?
                        .then_some(Used::Passkey { factor_id: row.id }),
                ),
                Err(refused) => {
                    tracing::info!(factor = row.id, %refused, "a passkey assertion was refused");
                    Ok(None)
                }
            }
        }
        Proof::Code(Code::Totp(code)) => {
            for row in queries::totp_secrets(conn, user_id)? {
                let Some((secret, stale)) = sealer.open(&row.secret) else {
                    tracing::warn!(
                        factor = row.id,
                        "a TOTP secret does not open with the secret key"
                    );
                    continue;
                };
                let Some(step) = secret.matching_step(code) else {
                    continue;
                };
                if !queries::claim_step(conn, row.id, step, now)? {
                    // Used already (a replay): no other factor may take it either.
                    return Ok(None);
                }
                if stale {
                    queries::reseal(conn, row.id, &sealer.seal(&secret))?;
                }
                return Ok(Some(Used::Totp { factor_id: row.id }));
            }
            Ok(None)
        }
        Proof::Code(Code::Recovery(code)) => {
            Ok(
                queries::use_recovery_code(conn, user_id, &code.hash(), now)?
                    .then_some(Used::Recovery),
            )
        }
    }
}

/// Records an accepted assertion of passkey `factor_id`: its challenge is
/// claimed (`false`, and nothing recorded, when it was answered already: a
/// replay, or a request racing its twin) and the stored record updated
/// (signature counter, backup state, last used). In the accepting transaction.
pub fn accept_passkey(
    conn: &mut crate::db::AnyConnection,
    factor_id: i32,
    updated: &webauthn_rs::prelude::Passkey,
    credential: &webauthn_rs::prelude::PublicKeyCredential,
    now: chrono::NaiveDateTime,
) -> diesel::QueryResult<bool> {
    let Some(challenge) = passkeys::challenge_hash(credential) else {
        return Ok(false);
    };
    if !queries::claim_challenge(conn, &challenge, now)? {
        return Ok(false);
    }
    queries::passkey_used(conn, factor_id, &passkeys::store(updated), now)?;
    Ok(true)
}

/// Reseals under the current key every TOTP secret still sealed under the
/// previous one (at start, after a rotation): a user who does not sign in
/// before the previous key is dropped keeps a working factor. Returns how
/// many. Several instances doing it at once is harmless: each result opens.
pub fn reseal_all(
    conn: &mut crate::db::AnyConnection,
    sealer: &Sealer,
) -> diesel::QueryResult<usize> {
    let mut resealed = 0;
    for row in queries::all_totp_secrets(conn)? {
        if let Some((secret, true)) = sealer.open(&row.secret) {
            resealed += queries::reseal(conn, row.id, &sealer.seal(&secret))?;
        }
    }
    Ok(resealed)
}

/// The kinds of second factor a user can finish a login with (empty: none).
pub fn kinds(
    conn: &mut crate::db::AnyConnection,
    user_id: crate::users::UserId,
) -> diesel::QueryResult<Vec<Kind>> {
    let enrolled = queries::kinds(conn, user_id)?;
    let mut kinds: Vec<Kind> = [Kind::Totp, Kind::Passkey]
        .into_iter()
        .filter(|kind| enrolled.iter().any(|k| k == kind.as_str()))
        .collect();
    if !kinds.is_empty() && queries::recovery_codes_left(conn, user_id)? > 0 {
        kinds.push(Kind::RecoveryCode);
    }
    Ok(kinds)
}

/// Ten new recovery codes: what to show once, and what to store.
pub fn new_recovery_codes() -> (Vec<String>, Vec<String>) {
    let codes: Vec<RecoveryCode> = (0..RECOVERY_CODES)
        .map(|_| RecoveryCode::generate())
        .collect();
    (
        codes.iter().map(RecoveryCode::display).collect(),
        codes.iter().map(RecoveryCode::hash).collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_parse_by_shape() {
        assert!(matches!(Code::parse("123 456"), Some(Code::Totp(_))));
        assert!(Code::parse("12345").is_none());
        assert!(Code::parse("12345x").is_none());
        let recovery = RecoveryCode::generate();
        let shown = recovery.display();
        assert_eq!(shown.len(), 19);
        let typed = RecoveryCode::parse(&shown.to_uppercase()).unwrap();
        assert_eq!(typed.hash(), recovery.hash());
        assert!(matches!(Code::parse(&shown), Some(Code::Recovery(_))));
        assert!(Code::parse("").is_none());
        assert!(Code::parse("ééééééééééééééééé").is_none());
    }

    #[test]
    fn secrets_seal_and_open_across_a_rotation() {
        let old = SecretKey::generate();
        let new = SecretKey::generate();
        let secret = TotpSecret::generate();
        let sealed = Sealer::new(&old, None).seal(&secret);
        let (opened, stale) = Sealer::new(&new, Some(&old)).open(&sealed).unwrap();
        assert!(stale);
        assert_eq!(opened.0, secret.0);
        assert!(Sealer::new(&new, None).open(&sealed).is_none());
        assert!(Sealer::new(&new, None).open("not base64!").is_none());
    }

    #[test]
    fn the_otpauth_url_names_the_issuer_and_account() {
        let url = TotpSecret::generate().otpauth_url("alice smith");
        assert!(
            url.starts_with("otpauth://totp/latchkey:alice%20smith?secret="),
            "{url}"
        );
        assert!(qr_svg(&url).unwrap().starts_with("<?xml"));
    }
}
