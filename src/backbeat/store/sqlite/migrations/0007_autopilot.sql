-- Version 7: the autopilot: interval ranges, effective intervals, published state.

ALTER TABLE backbeat_schedules ADD COLUMN max_every REAL;     -- the range an every-schedule may stretch to
ALTER TABLE backbeat_schedules ADD COLUMN every_now REAL;     -- the autopilot's interval (NULL: every)
ALTER TABLE backbeat_schedules ADD COLUMN every_reason TEXT;  -- why

-- decision_since: the rate-limit waits of the last window, across schedules
CREATE INDEX backbeat_decisions_kind ON backbeat_decisions (kind, at);

CREATE TABLE backbeat_state (
    name       TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at REAL NOT NULL
);

-- the autopilot's list of schedules with a range
CREATE INDEX backbeat_schedules_adaptive ON backbeat_schedules (key) WHERE max_every IS NOT NULL;
