-- Version 6: events, deduplicated by id and settled once with their handlers' jobs.

CREATE TABLE backbeat_events (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    key         TEXT,
    occurred_at REAL NOT NULL,
    received_at REAL NOT NULL,
    payload     TEXT NOT NULL,
    source      TEXT NOT NULL,
    state       TEXT NOT NULL,        -- EventState
    reason      TEXT,
    jobs        INTEGER NOT NULL DEFAULT 0,
    settled_at  REAL
);
-- consumers of the store source: pending events, oldest first
CREATE INDEX backbeat_events_pending ON backbeat_events (received_at, id) WHERE state = 'pending';
-- listing by state (dead letters), newest first
CREATE INDEX backbeat_events_state ON backbeat_events (state, id);
-- retention
CREATE INDEX backbeat_events_received ON backbeat_events (received_at) WHERE state <> 'pending';
