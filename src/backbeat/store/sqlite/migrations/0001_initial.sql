-- backbeat SQLite schema, version 1.
-- Times are REAL seconds since the Unix epoch (UTC). Every table is prefixed backbeat_,
-- so the store can share a file with an application's own tables.

CREATE TABLE backbeat_jobs (
    id               TEXT PRIMARY KEY,      -- UUIDv7: sorts by creation time
    task             TEXT NOT NULL,
    queue            TEXT NOT NULL,
    state            TEXT NOT NULL,         -- JobState
    payload          TEXT NOT NULL,         -- JSON {"args": [...], "kwargs": {...}}
    priority         INTEGER NOT NULL DEFAULT 0,
    run_at           REAL NOT NULL,         -- due time
    order_at         REAL NOT NULL,         -- dispatch key: SLA deadline, else run_at
    attempts         INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL,
    created_at       REAL NOT NULL,
    timeout          REAL,
    dedup_key        TEXT,
    started_at       REAL,
    finished_at      REAL,
    worker_id        TEXT,
    lease_token      TEXT,                  -- fresh per attempt; NULL unless running
    lease_expires_at REAL,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    result           TEXT,                  -- JSON
    error            TEXT,
    traceback        TEXT,
    schedule_key     TEXT,
    fire_at          REAL
);

-- claim: a range scan in dispatch order over the due jobs of one queue
CREATE INDEX backbeat_jobs_claim ON backbeat_jobs (queue, priority DESC, order_at, id)
    WHERE state = 'queued';
-- promotion of due delayed jobs, and the timer for the next one
CREATE INDEX backbeat_jobs_due ON backbeat_jobs (queue, run_at)
    WHERE state = 'scheduled';
-- rescue of expired leases
CREATE INDEX backbeat_jobs_lease ON backbeat_jobs (lease_expires_at)
    WHERE state = 'running';
-- at most one live job per dedup key
CREATE UNIQUE INDEX backbeat_jobs_dedup ON backbeat_jobs (dedup_key)
    WHERE dedup_key IS NOT NULL AND state IN ('scheduled', 'queued', 'running');
-- pruning and throughput
CREATE INDEX backbeat_jobs_finished ON backbeat_jobs (state, finished_at)
    WHERE finished_at IS NOT NULL;
-- listing by state, newest first
CREATE INDEX backbeat_jobs_state ON backbeat_jobs (state, id);

CREATE TABLE backbeat_workers (
    id           TEXT PRIMARY KEY,
    host         TEXT NOT NULL,
    pid          INTEGER NOT NULL,
    queues       TEXT NOT NULL,             -- JSON array
    concurrency  INTEGER NOT NULL,
    tasks        TEXT NOT NULL,             -- JSON array of task names
    started_at   REAL NOT NULL,
    heartbeat_at REAL NOT NULL,
    in_flight    INTEGER NOT NULL DEFAULT 0,
    version      TEXT NOT NULL DEFAULT ''
);

-- the task registry: what workers have declared, so clients can check names without code
CREATE TABLE backbeat_tasks (
    name         TEXT PRIMARY KEY,
    queue        TEXT NOT NULL,
    max_attempts INTEGER NOT NULL,
    timeout      REAL,
    priority     INTEGER NOT NULL DEFAULT 0
);
