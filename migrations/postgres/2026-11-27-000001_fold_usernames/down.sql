ALTER TABLE login_failures ALTER COLUMN username TYPE VARCHAR(50) USING left(username, 50);
DROP INDEX users_username_folded_idx;
ALTER TABLE users DROP COLUMN username_folded;
