DROP TABLE used_challenges;
DELETE FROM second_factors WHERE kind = 'passkey';
DROP INDEX second_factors_credential_id_idx;
ALTER TABLE second_factors DROP COLUMN credential_id;
