-- Users. Every column but username and password_hash has a default, so an
-- admin's own seed migration can INSERT INTO users (username, password_hash).
CREATE TABLE users (
    id SERIAL PRIMARY KEY,
    username VARCHAR(50) NOT NULL UNIQUE CHECK (char_length(username) >= 1),
    password_hash TEXT NOT NULL,
    is_active BOOLEAN NOT NULL DEFAULT TRUE,
    created_at TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'utc'),
    last_login_at TIMESTAMP
);

-- Server-side sessions. The cookie holds a random key; only its SHA-256 is stored.
CREATE TABLE sessions (
    key_hash VARCHAR(64) PRIMARY KEY,
    public_id VARCHAR(32) NOT NULL UNIQUE,
    user_id INTEGER REFERENCES users (id) ON DELETE CASCADE,
    state TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    last_seen_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    absolute_expires_at TIMESTAMP NOT NULL,
    ttl_seconds BIGINT NOT NULL,
    client_ip TEXT,
    user_agent TEXT
);
CREATE INDEX sessions_user_id_idx ON sessions (user_id);
CREATE INDEX sessions_expires_at_idx ON sessions (expires_at);

-- Authentication events. Nothing secret: no password, hash, cookie or key.
CREATE TABLE audit_events (
    id BIGSERIAL PRIMARY KEY,
    at TIMESTAMP NOT NULL,
    event VARCHAR(32) NOT NULL,
    user_id INTEGER REFERENCES users (id) ON DELETE SET NULL,
    username VARCHAR(50),
    client_ip TEXT,
    user_agent TEXT,
    detail TEXT
);
CREATE INDEX audit_events_at_idx ON audit_events (at);
CREATE INDEX audit_events_username_idx ON audit_events (username);

-- Failed logins, for throttling shared by every instance. One row per failure:
-- inserts never lose a count when instances race. Old rows are swept.
CREATE TABLE login_failures (
    id BIGSERIAL PRIMARY KEY,
    at TIMESTAMP NOT NULL,
    username VARCHAR(50) NOT NULL,
    client_ip TEXT NOT NULL
);
CREATE INDEX login_failures_user_client_idx ON login_failures (username, client_ip, at);
CREATE INDEX login_failures_client_idx ON login_failures (client_ip, at);
CREATE INDEX login_failures_at_idx ON login_failures (at);

-- Sessions ended and users changed, for the in-process caches of every
-- instance (polled a few times a second, swept after a minute).
CREATE TABLE session_events (
    id BIGSERIAL PRIMARY KEY,
    at TIMESTAMP NOT NULL,
    key_hash VARCHAR(64),
    user_id INTEGER
);
CREATE INDEX session_events_at_idx ON session_events (at);
