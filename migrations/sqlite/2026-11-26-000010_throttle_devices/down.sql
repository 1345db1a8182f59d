DROP INDEX login_failures_device_idx;
DROP INDEX login_failures_user_idx;
ALTER TABLE login_failures DROP COLUMN device;
