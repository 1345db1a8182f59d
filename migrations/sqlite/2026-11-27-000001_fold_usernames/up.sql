-- Usernames are compared in a folded form (Unicode NFKC and case folding,
-- computed by latchkey): `Alice`, `alice` and `ａｌｉｃｅ` are one account.
-- Nullable, so that an admin's seed migration (INSERT INTO users (username,
-- password_hash)) keeps working: latchkey folds such rows itself, at start-up
-- and when a login finds no one. (SQLite enforces no VARCHAR length, so
-- login_failures.username holds a folded name as it is.)
ALTER TABLE users ADD COLUMN username_folded TEXT;
CREATE UNIQUE INDEX users_username_folded_idx ON users (username_folded);
