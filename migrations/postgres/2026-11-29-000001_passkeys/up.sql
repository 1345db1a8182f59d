-- Passkeys and security keys live in `second_factors` (kind 'passkey'; the
-- `secret` column holds webauthn-rs's credential record as JSON: a public key
-- and a signature counter, nothing secret). `credential_id` (base64url) lets a
-- sign-in without a username find its factor, and is unique: one
-- authenticator credential belongs to one account.
ALTER TABLE second_factors ADD COLUMN credential_id TEXT;
CREATE UNIQUE INDEX second_factors_credential_id_idx ON second_factors (credential_id);

-- Challenges of passkey assertions already accepted (SHA-256 of the
-- challenge): each is answered once, even by requests racing on one session
-- or a copy of it. Swept once their ceremony's lifetime is over.
CREATE TABLE used_challenges (
    challenge_hash VARCHAR(64) PRIMARY KEY,
    used_at TIMESTAMP NOT NULL
);
CREATE INDEX used_challenges_used_at_idx ON used_challenges (used_at);
