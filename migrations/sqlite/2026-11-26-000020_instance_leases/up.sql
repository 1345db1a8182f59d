-- Revocation in force everywhere before it is acknowledged: each instance
-- whose cache may serve holds a lease here and acknowledges every session
-- event it has applied; a revoker answers once every instance with a fresh
-- lease has acknowledged its events (or its lease has run out).
CREATE TABLE instances (
    id VARCHAR(32) PRIMARY KEY NOT NULL,
    lease_until TIMESTAMP NOT NULL
);
CREATE TABLE event_acks (
    event_id BIGINT NOT NULL,
    instance_id VARCHAR(32) NOT NULL,
    PRIMARY KEY (event_id, instance_id)
);
CREATE INDEX event_acks_instance_idx ON event_acks (instance_id, event_id);
