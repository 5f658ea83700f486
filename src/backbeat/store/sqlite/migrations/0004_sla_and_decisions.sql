-- Version 4: SLA accounting, deadline dispatch and the decision log.

ALTER TABLE backbeat_jobs ADD COLUMN deadline REAL;          -- SLA deadline of a schedule's job
ALTER TABLE backbeat_schedules ADD COLUMN resumed_at REAL;
ALTER TABLE backbeat_schedules ADD COLUMN deadline_at REAL;  -- staleness base + sla
ALTER TABLE backbeat_schedules ADD COLUMN breach_since REAL; -- NULL within SLA
ALTER TABLE backbeat_schedules ADD COLUMN run_time REAL;     -- moving average of run durations

UPDATE backbeat_schedules SET deadline_at = COALESCE(last_success_at, created_at) + sla WHERE sla IS NOT NULL;

-- sla_check: the schedules that can start a breach, by deadline
CREATE INDEX backbeat_schedules_deadline ON backbeat_schedules (deadline_at, key)
    WHERE sla IS NOT NULL AND paused = 0 AND breach_since IS NULL;
-- sla_list: worst first
CREATE INDEX backbeat_schedules_sla ON backbeat_schedules (paused, deadline_at, key) WHERE sla IS NOT NULL;

CREATE TABLE backbeat_breaches (
    id         INTEGER PRIMARY KEY,
    key        TEXT NOT NULL,
    sla        REAL NOT NULL,
    base_at    REAL NOT NULL,
    started_at REAL NOT NULL,
    ended_at   REAL,                  -- NULL while open
    announced  INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX backbeat_breaches_key ON backbeat_breaches (key, started_at);
CREATE INDEX backbeat_breaches_open ON backbeat_breaches (key) WHERE ended_at IS NULL;
CREATE INDEX backbeat_breaches_ended ON backbeat_breaches (ended_at) WHERE ended_at IS NOT NULL;
CREATE INDEX backbeat_breaches_unannounced ON backbeat_breaches (ended_at) WHERE ended_at IS NOT NULL AND announced = 0;

CREATE TABLE backbeat_decisions (
    id     INTEGER PRIMARY KEY,
    key    TEXT NOT NULL,
    at     REAL NOT NULL,
    kind   TEXT NOT NULL,
    detail TEXT NOT NULL,
    job_id TEXT
);
CREATE INDEX backbeat_decisions_key ON backbeat_decisions (key, at);
CREATE INDEX backbeat_decisions_at ON backbeat_decisions (at);
