-- Usernames are compared in a folded form (Unicode NFKC and case folding,
-- computed by latchkey): `Alice`, `alice` and `ａｌｉｃｅ` are one account.
-- Nullable, so that an admin's seed migration (INSERT INTO users (username,
-- password_hash)) keeps working: latchkey folds such rows itself, at start-up
-- and when a login finds no one. TEXT: a folded name may be longer than the
-- 50 characters it was typed with (`ß` becomes `ss`).
ALTER TABLE users ADD COLUMN username_folded TEXT;
CREATE UNIQUE INDEX users_username_folded_idx ON users (username_folded);

-- Throttling counts failures by the folded name, for the same reasons.
ALTER TABLE login_failures ALTER COLUMN username TYPE TEXT;
