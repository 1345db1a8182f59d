DROP TABLE event_acks;
DROP TABLE instances;
