//! Passkeys and security keys (WebAuthn, through webauthn-rs). Domain code: no HTTP.
//!
//! - The relying party is `LATCHKEY_PUBLIC_URL`: its host is the RP id and
//!   its origin the only one accepted. WebAuthn refuses an IP address as RP
//!   id, so on such a URL passkeys are off ([`RelyingParty::new`] is `None`).
//! - User verification is always required: a passkey alone is two factors
//!   (something held, and a PIN or biometric), so it signs in without a
//!   password and satisfies `LATCHKEY_REQUIRE_SECOND_FACTOR`.
//! - Registration asks for a discoverable credential ("preferred": a security
//!   key without room for one still registers, as a second factor only).
//! - The user handle is the user's id as a 16-byte UUID; a sign-in without a
//!   username trusts it only together with a stored credential of that user.
//! - Ceremony state (the challenge) is kept by the caller server-side and
//!   taken out when answered; an accepted answer's challenge is also claimed
//!   in the database (`queries::claim_challenge`), so it is accepted once.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use sha2::{Digest as _, Sha256};
use webauthn_rs::prelude::{
    AuthenticationResult, CreationChallengeResponse, CredentialID, DiscoverableAuthentication,
    Passkey, PasskeyAuthentication, PasskeyRegistration, PublicKeyCredential,
    RegisterPublicKeyCredential, RequestChallengeResponse, Url, Uuid, WebauthnError,
};
use webauthn_rs::{Webauthn, WebauthnBuilder};
use webauthn_rs_proto::ResidentKeyRequirement;

use crate::users::UserId;

/// What authenticators show as the site's name.
const RP_NAME: &str = "latchkey";

/// The site's WebAuthn identity, and the ceremonies run against it.
#[derive(Debug)]
pub struct RelyingParty {
    webauthn: Webauthn,
}

/// The user handle of `user_id`: its id as a UUID (no name, nothing personal).
fn user_handle(user_id: UserId) -> Uuid {
    Uuid::from_u128(u128::from(user_id.0.unsigned_abs()))
}

/// The user a handle names, when it is one of ours.
fn user_of(handle: Uuid) -> Option<UserId> {
    i32::try_from(handle.as_u128())
        .ok()
        .filter(|id| *id > 0)
        .map(UserId)
}

/// How a credential id is stored and looked up: base64url, no padding.
pub fn credential_key(id: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(id)
}

/// A credential's stored form (the `secret` column): webauthn-rs's record as JSON.
pub fn store(passkey: &Passkey) -> String {
    serde_json::to_string(passkey).expect("a passkey serialises")
}

pub fn load(stored: &str) -> Option<Passkey> {
    serde_json::from_str(stored).ok()
}

/// The challenge an assertion answers (SHA-256 of it, hex), from its client
/// data: what makes it usable once (see `queries::claim_challenge`).
pub fn challenge_hash(credential: &PublicKeyCredential) -> Option<String> {
    let client_data: serde_json::Value =
        serde_json::from_slice(&credential.response.client_data_json).ok()?;
    let challenge = client_data.get("challenge")?.as_str()?;
    Some(hex::encode(Sha256::digest(challenge.as_bytes())))
}

/// The stored signature counter of a credential. webauthn-rs shows it only
/// with its `danger-credential-internals` feature, so it is read from the
/// record's serialised form (`{"cred": {"counter": N, ...}}`); a record of
/// another shape reads as 0, and the check below then relies on webauthn-rs's
/// own comparison with the challenge's copy.
fn stored_counter(stored: &Passkey) -> u64 {
    serde_json::to_value(stored)
        .ok()
        .and_then(|record| record["cred"]["counter"].as_u64())
        .unwrap_or(0)
}

/// An assertion's signature counter must move past the one stored now, not
/// only past the copy its challenge was made with: a count seen already is a
/// cloned authenticator (authenticators without a counter always say 0).
fn counter_moves_on(stored: &Passkey, result: &AuthenticationResult) -> Result<(), Refused> {
    let (counter, stored) = (u64::from(result.counter()), stored_counter(stored));
    if (counter > 0 || stored > 0) && counter <= stored {
        return Err(WebauthnError::CredentialPossibleCompromise.into());
    }
    Ok(())
}

/// A registration or assertion that did not verify.
#[derive(Debug, thiserror::Error)]
#[error("the passkey did not verify: {0}")]
pub struct Refused(#[from] WebauthnError);

impl RelyingParty {
    /// The relying party of `public_url`, whose challenges last `lifetime`
    /// (what browsers are told); `None` when its host is no domain name (an
    /// IP address, as WebAuthn forbids) or webauthn-rs refuses it.
    pub fn new(public_url: &Url, lifetime: std::time::Duration) -> Option<Self> {
        let host = match public_url.host()? {
            url::Host::Domain(host) => host.to_owned(),
            url::Host::Ipv4(_) | url::Host::Ipv6(_) => return None,
        };
        let webauthn = WebauthnBuilder::new(&host, public_url)
            .ok()?
            .rp_name(RP_NAME)
            .timeout(lifetime)
            .build()
            .ok()?;
        Some(Self { webauthn })
    }

    /// Options to register a new credential for the user, excluding the ones
    /// they have (an authenticator registers once).
    pub fn start_registration(
        &self,
        user_id: UserId,
        username: &str,
        existing: Vec<CredentialID>,
    ) -> Result<(CreationChallengeResponse, PasskeyRegistration), Refused> {
        let exclude = (!existing.is_empty()).then_some(existing);
        let (mut options, state) = self.webauthn.start_passkey_registration(
            user_handle(user_id),
            username,
            username,
            exclude,
        )?;
        if let Some(selection) = options.public_key.authenticator_selection.as_mut() {
            selection.resident_key = Some(ResidentKeyRequirement::Preferred);
        }
        Ok((options, state))
    }

    pub fn finish_registration(
        &self,
        credential: &RegisterPublicKeyCredential,
        state: &PasskeyRegistration,
    ) -> Result<Passkey, Refused> {
        Ok(self
            .webauthn
            .finish_passkey_registration(credential, state)?)
    }

    /// Options to prove one of `passkeys` (a second factor, a confirmation).
    pub fn start_authentication(
        &self,
        passkeys: &[Passkey],
    ) -> Result<(RequestChallengeResponse, PasskeyAuthentication), Refused> {
        Ok(self.webauthn.start_passkey_authentication(passkeys)?)
    }

    /// Checks an assertion against the state it answers; on success, the
    /// credential it was made with (updated: counter, backup state).
    pub fn finish_authentication(
        &self,
        credential: &PublicKeyCredential,
        state: &PasskeyAuthentication,
        stored: &Passkey,
    ) -> Result<Passkey, Refused> {
        let result = self
            .webauthn
            .finish_passkey_authentication(credential, state)?;
        if result.cred_id() != stored.cred_id() {
            return Err(WebauthnError::CredentialNotFound.into());
        }
        counter_moves_on(stored, &result)?;
        let mut updated = stored.clone();
        updated.update_credential(&result);
        Ok(updated)
    }

    /// Options to sign in with whichever passkey the user picks (no username).
    pub fn start_discoverable(
        &self,
    ) -> Result<(RequestChallengeResponse, DiscoverableAuthentication), Refused> {
        Ok(self.webauthn.start_discoverable_authentication()?)
    }

    /// Which user and credential a sign-in without a username claims to be.
    pub fn identify(&self, credential: &PublicKeyCredential) -> Option<(UserId, String)> {
        let (handle, id) = self
            .webauthn
            .identify_discoverable_authentication(credential)
            .ok()?;
        Some((user_of(handle)?, credential_key(id)))
    }

    /// Checks a sign-in without a username against the stored credential it names.
    pub fn finish_discoverable(
        &self,
        credential: &PublicKeyCredential,
        state: DiscoverableAuthentication,
        stored: &Passkey,
    ) -> Result<Passkey, Refused> {
        let result = self
            .webauthn
            .finish_discoverable_authentication_v2(credential, state, stored)?;
        counter_moves_on(stored, &result)?;
        let mut updated = stored.clone();
        updated.update_credential(&result);
        Ok(updated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_user_handle_round_trips_and_refuses_what_is_not_a_user() {
        for id in [1, 42, i32::MAX].map(UserId) {
            assert_eq!(user_of(user_handle(id)), Some(id));
        }
        assert_eq!(user_of(Uuid::nil()), None);
        assert_eq!(user_of(Uuid::from_u128(u128::MAX)), None);
    }

    impl RelyingParty {
        fn new_for_test(url: &Url) -> Option<Self> {
            Self::new(url, std::time::Duration::from_secs(300))
        }
    }

    #[test]
    fn passkeys_need_a_domain_name() {
        let url = |s: &str| Url::parse(s).unwrap();
        assert!(RelyingParty::new_for_test(&url("http://localhost:8080")).is_some());
        assert!(RelyingParty::new_for_test(&url("https://login.example.com")).is_some());
        assert!(RelyingParty::new_for_test(&url("http://127.0.0.1:8080")).is_none());
        assert!(RelyingParty::new_for_test(&url("http://[::1]:8080")).is_none());
    }
}
