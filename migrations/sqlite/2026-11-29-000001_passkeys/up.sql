-- Passkeys and security keys live in `second_factors` (kind 'passkey'; the
-- `secret` column holds webauthn-rs's credential record as JSON: a public key
-- and a signature counter, nothing secret). `credential_id` (base64url) lets a
-- sign-in without a username find its factor, and is unique: one
-- authenticator credential belongs to one account.
ALTER TABLE second_factors ADD COLUMN credential_id TEXT;
CREATE UNIQUE INDEX second_factors_credential_id_idx ON second_factors (credential_id);
