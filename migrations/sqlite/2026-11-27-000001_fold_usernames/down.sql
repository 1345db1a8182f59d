DROP INDEX users_username_folded_idx;
ALTER TABLE users DROP COLUMN username_folded;
