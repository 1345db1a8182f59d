-- Second factors. A TOTP secret is stored sealed (ChaCha20-Poly1305 under a
-- key derived from the secret key), never in the clear; `last_step` is the
-- last time step accepted, so no code is ever accepted twice.
CREATE TABLE second_factors (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind VARCHAR(16) NOT NULL,
    name VARCHAR(100) NOT NULL,
    secret TEXT NOT NULL,
    last_step BIGINT,
    created_at TIMESTAMP NOT NULL,
    last_used_at TIMESTAMP
);
CREATE INDEX second_factors_user_id_idx ON second_factors (user_id);

-- Recovery codes: only the SHA-256 of each (high-entropy) code; `used_at` set once.
CREATE TABLE recovery_codes (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash VARCHAR(64) NOT NULL,
    created_at TIMESTAMP NOT NULL,
    used_at TIMESTAMP
);
CREATE INDEX recovery_codes_user_id_idx ON recovery_codes (user_id);

-- One-time links (invitations, password resets): only the SHA-256 of the token.
CREATE TABLE welcome_links (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash VARCHAR(64) NOT NULL UNIQUE,
    purpose VARCHAR(16) NOT NULL,
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    used_at TIMESTAMP
);
CREATE INDEX welcome_links_user_id_idx ON welcome_links (user_id);
