-- Version 3: schedules are rows. A row holds the definition (what the user declared) and
-- the state of its runs. Firing an occurrence inserts its job under the uniqueness of
-- (schedule_key, fire_at) and advances the row only if next_at is unchanged; at most one
-- run is in flight (in_flight = its job id), finished when that job reaches a final state.

CREATE TABLE backbeat_schedules (
    key              TEXT PRIMARY KEY,
    task             TEXT NOT NULL,
    queue            TEXT NOT NULL,
    payload          TEXT NOT NULL,
    kind             TEXT NOT NULL,          -- every | cron
    every            REAL,
    cron             TEXT,
    tz               TEXT NOT NULL,
    mode             TEXT NOT NULL,          -- delay | rate
    jitter           REAL NOT NULL,
    sla              REAL,
    misfire          TEXT NOT NULL,          -- skip | catch_up
    catch_up_limit   INTEGER NOT NULL,
    priority         INTEGER NOT NULL,
    max_attempts     INTEGER NOT NULL,
    timeout          REAL,
    description      TEXT NOT NULL,
    origin           TEXT NOT NULL,          -- code | runtime | file
    created_at       REAL NOT NULL,
    updated_at       REAL NOT NULL,
    next_tick        REAL,                   -- next occurrence before jitter; NULL while a delay run is in flight
    next_at          REAL,                   -- when it is due
    paused           INTEGER NOT NULL DEFAULT 0,
    paused_at        REAL,
    pending_jitter   REAL NOT NULL DEFAULT 0,
    in_flight        TEXT,                   -- job id of the run in flight
    last_fire_at     REAL,
    last_job_id      TEXT,
    last_finished_at REAL,
    last_state       TEXT,
    last_success_at  REAL
);

-- finding due schedules: a range scan over the ones that can fire
CREATE INDEX backbeat_schedules_due ON backbeat_schedules (next_at, key)
    WHERE paused = 0 AND in_flight IS NULL AND next_at IS NOT NULL;
-- repair: the rows with a run in flight
CREATE INDEX backbeat_schedules_flight ON backbeat_schedules (in_flight) WHERE in_flight IS NOT NULL;
-- each occurrence fires once
CREATE UNIQUE INDEX backbeat_jobs_fire ON backbeat_jobs (schedule_key, fire_at) WHERE schedule_key IS NOT NULL;
