-- Login tries are recorded before the password check (so racing tries cannot
-- exceed the limits); `device` names the device cookie a try came with, which
-- exempts it from the per-account ceiling (OWASP's device-cookie defence).
ALTER TABLE login_failures ADD COLUMN device VARCHAR(64);
CREATE INDEX login_failures_user_idx ON login_failures (username, at);
CREATE INDEX login_failures_device_idx ON login_failures (device, at);
