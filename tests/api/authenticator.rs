//! A software passkey: what a browser and an authenticator do together in a
//! WebAuthn ceremony, for the API tests. Real P-256 keys and real signatures
//! over the server's challenges; attestation "none"; user verification and
//! presence always claimed; every credential discoverable (it keeps the user
//! handle it was registered with). webauthn-authenticator-rs's soft passkey
//! has no discoverable credentials, hence this one.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use serde_cbor_2::Value as Cbor;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

/// Flags of the authenticator data: user present, user verified, attested data.
const UP: u8 = 0x01;
const UV: u8 = 0x04;
const AT: u8 = 0x40;

#[derive(Clone)]
pub struct Credential {
    pub id: Vec<u8>,
    pub rp_id: String,
    pub user_handle: Vec<u8>,
    key: SigningKey,
    counter: u32,
}

impl Credential {
    /// Back to a signature counter of zero: the next use repeats a count the
    /// server has seen (what a cloned authenticator does).
    pub fn rewind_counter(&mut self) {
        self.counter = 0;
    }

    /// Far past any count the server has seen.
    pub fn fast_forward_counter(&mut self) {
        self.counter += 1000;
    }
}

/// One authenticator holding any number of credentials, answering as a
/// browser at `origin` would.
pub struct SoftAuthenticator {
    pub origin: String,
    pub credentials: Vec<Credential>,
    /// Signature counter step per use (0: a synced passkey's constant 0).
    pub counter_step: u32,
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn unb64(text: &Value) -> Vec<u8> {
    URL_SAFE_NO_PAD
        .decode(text.as_str().expect("a base64url string"))
        .expect("base64url")
}

fn new_key() -> SigningKey {
    loop {
        if let Ok(key) = SigningKey::from_slice(&rand::random::<[u8; 32]>()) {
            return key;
        }
    }
}

fn cbor_map(entries: Vec<(Cbor, Cbor)>) -> Cbor {
    Cbor::Map(entries.into_iter().collect())
}

fn client_data(kind: &str, challenge: &Value, origin: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "type": kind,
        "challenge": challenge.as_str().expect("a challenge"),
        "origin": origin,
        "crossOrigin": false,
    }))
    .unwrap()
}

impl SoftAuthenticator {
    /// For the server at `origin` (its `LATCHKEY_PUBLIC_URL`).
    pub fn new(origin: &str) -> Self {
        Self {
            origin: origin.trim_end_matches('/').to_owned(),
            credentials: Vec::new(),
            counter_step: 1,
        }
    }

    /// `navigator.credentials.create(options)`: a new credential, and the
    /// `PublicKeyCredential` JSON to send back.
    pub fn register(&mut self, options: &Value) -> Value {
        let public_key = &options["publicKey"];
        let credential = Credential {
            id: rand::random::<[u8; 32]>().to_vec(),
            rp_id: public_key["rp"]["id"].as_str().expect("rp.id").to_owned(),
            user_handle: unb64(&public_key["user"]["id"]),
            key: new_key(),
            counter: 0,
        };
        let answer = self.attest(&credential, options);
        self.credentials.push(credential);
        answer
    }

    /// Registers the credential at `index` again (as a second authenticator
    /// cloned from this one would): a test of duplicate registrations.
    pub fn register_again(&mut self, index: usize, options: &Value) -> Value {
        let credential = self.credentials[index].clone();
        self.attest(&credential, options)
    }

    fn attest(&self, credential: &Credential, options: &Value) -> Value {
        let public_key = &options["publicKey"];
        let (id, key, rp_id) = (&credential.id, &credential.key, &credential.rp_id);
        let point = key.verifying_key().to_sec1_bytes();
        assert_eq!(point.len(), 65, "an uncompressed P-256 point");
        let cose = cbor_map(vec![
            (Cbor::Integer(1), Cbor::Integer(2)),
            (Cbor::Integer(3), Cbor::Integer(-7)),
            (Cbor::Integer(-1), Cbor::Integer(1)),
            (Cbor::Integer(-2), Cbor::Bytes(point[1..33].to_vec())),
            (Cbor::Integer(-3), Cbor::Bytes(point[33..].to_vec())),
        ]);
        let mut auth_data = Sha256::digest(rp_id.as_bytes()).to_vec();
        auth_data.push(UP | UV | AT);
        auth_data.extend_from_slice(&0u32.to_be_bytes());
        auth_data.extend_from_slice(&[0u8; 16]);
        auth_data.extend_from_slice(&u16::try_from(id.len()).unwrap().to_be_bytes());
        auth_data.extend_from_slice(id);
        auth_data.extend(serde_cbor_2::to_vec(&cose).unwrap());
        let attestation = cbor_map(vec![
            (Cbor::Text("fmt".into()), Cbor::Text("none".into())),
            (Cbor::Text("attStmt".into()), cbor_map(vec![])),
            (Cbor::Text("authData".into()), Cbor::Bytes(auth_data)),
        ]);
        let client_data = client_data("webauthn.create", &public_key["challenge"], &self.origin);
        json!({
            "id": b64(id),
            "rawId": b64(id),
            "type": "public-key",
            "response": {
                "attestationObject": b64(&serde_cbor_2::to_vec(&attestation).unwrap()),
                "clientDataJSON": b64(&client_data),
            },
            "extensions": {},
        })
    }

    /// `navigator.credentials.get(options)` with the credential at `index`
    /// (whether or not the options allow it: a test may want a refusal).
    pub fn assert_with(&mut self, index: usize, options: &Value) -> Value {
        let origin = self.origin.clone();
        let step = self.counter_step;
        let public_key = &options["publicKey"];
        let credential = &mut self.credentials[index];
        credential.counter += step;
        let mut auth_data = Sha256::digest(credential.rp_id.as_bytes()).to_vec();
        auth_data.push(UP | UV);
        auth_data.extend_from_slice(&credential.counter.to_be_bytes());
        let client_data = client_data("webauthn.get", &public_key["challenge"], &origin);
        let mut signed = auth_data.clone();
        signed.extend_from_slice(&Sha256::digest(&client_data));
        let signature: Signature = credential.key.sign(&signed);
        json!({
            "id": b64(&credential.id),
            "rawId": b64(&credential.id),
            "type": "public-key",
            "response": {
                "authenticatorData": b64(&auth_data),
                "clientDataJSON": b64(&client_data),
                "signature": b64(signature.to_der().as_bytes()),
                "userHandle": b64(&credential.user_handle),
            },
            "extensions": {},
        })
    }

    /// `navigator.credentials.get(options)`: the first credential the options
    /// allow (any, when they list none: a discoverable sign-in).
    pub fn assert(&mut self, options: &Value) -> Value {
        let allowed: Vec<Vec<u8>> = options["publicKey"]["allowCredentials"]
            .as_array()
            .map(|list| list.iter().map(|c| unb64(&c["id"])).collect())
            .unwrap_or_default();
        let index = self
            .credentials
            .iter()
            .position(|c| allowed.is_empty() || allowed.contains(&c.id))
            .expect("a credential the options allow");
        self.assert_with(index, options)
    }
}
