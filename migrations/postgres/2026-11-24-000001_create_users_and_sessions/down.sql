DROP TABLE session_events;
DROP TABLE login_failures;
DROP TABLE audit_events;
DROP TABLE sessions;
DROP TABLE users;
