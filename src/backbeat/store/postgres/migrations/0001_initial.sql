-- backbeat PostgreSQL schema, version 1.
--
-- Runs with search_path set to the store's schema (?schema=, default public) inside one
-- transaction that holds the store's advisory lock, so ten processes starting at once
-- apply it once. Versions applied are rows of backbeat_migrations.
--
-- Layout (every table is prefixed backbeat_, so the schema can be an application's own):
--   backbeat_jobs          one row per job, whatever its state; the claim, the due timer,
--                          rescue, dedup and firing each read a partial index of their own
--   backbeat_queues        a row per queue ever used or paused (job_claim skips paused ones)
--   backbeat_workers       live workers and their heartbeats (backbeat status lists them)
--   backbeat_tasks         the task registry: what workers declared, for clients without code
--   backbeat_schedules     schedules are rows: the definition and the state of their runs
--   backbeat_breaches      SLA breaches (open while ended_at IS NULL, one per schedule)
--   backbeat_decisions     each schedule's decision log (backbeat explain)
--   backbeat_buckets       rate-limit blocks; backbeat_bucket_starts the granted starts
--   backbeat_events        events by id: pending, then settled once with their jobs
--   backbeat_state         small published JSON values (the autopilot's desired workers)
--
-- Times are double precision seconds since the Unix epoch (UTC), exactly the floats the
-- callers pass as `now` (the store never reads the server's clock). Payloads and results
-- are JSON *text*, stored byte for byte as the codec wrote them (jsonb would reorder keys).

CREATE TABLE backbeat_jobs (
    id               text PRIMARY KEY,            -- UUIDv7: sorts by creation time
    task             text NOT NULL,
    queue            text NOT NULL,
    state            text NOT NULL,               -- JobState
    payload          text NOT NULL,               -- JSON {"args": [...], "kwargs": {...}}
    priority         integer NOT NULL DEFAULT 0,
    run_at           double precision NOT NULL,   -- due time
    order_at         double precision NOT NULL,   -- dispatch key: SLA deadline, else run_at
    attempts         integer NOT NULL DEFAULT 0,
    max_attempts     integer NOT NULL,
    created_at       double precision NOT NULL,
    timeout          double precision,
    dedup_key        bytea,                       -- UTF-8 of the key (text cannot hold NUL)
    started_at       double precision,
    finished_at      double precision,
    worker_id        text,
    lease_token      text,                        -- fresh per attempt; NULL unless running
    lease_expires_at double precision,
    cancel_requested boolean NOT NULL DEFAULT false,
    result           text,                        -- JSON
    error            text,
    traceback        text,
    schedule_key     text,
    fire_at          double precision,
    deadline         double precision,            -- SLA deadline of a schedule's job
    bucket           text                         -- rate-limit bucket a running job holds
) WITH (fillfactor = 85);                         -- room for the updates a job goes through

-- claim: a range scan in dispatch order over the due jobs of one queue
CREATE INDEX backbeat_jobs_claim ON backbeat_jobs (queue, priority DESC, order_at, id) WHERE state = 'queued';
-- promotion of due delayed jobs, and the timer for the next one
CREATE INDEX backbeat_jobs_due ON backbeat_jobs (queue, run_at) WHERE state = 'scheduled';
-- rescue of expired leases
CREATE INDEX backbeat_jobs_lease ON backbeat_jobs (lease_expires_at) WHERE state = 'running';
-- at most one live job per dedup key
CREATE UNIQUE INDEX backbeat_jobs_dedup ON backbeat_jobs (dedup_key)
    WHERE dedup_key IS NOT NULL AND state IN ('scheduled', 'queued', 'running');
-- pruning and throughput
CREATE INDEX backbeat_jobs_finished ON backbeat_jobs (state, finished_at) WHERE finished_at IS NOT NULL;
-- listing by state, newest first
CREATE INDEX backbeat_jobs_state ON backbeat_jobs (state, id);
-- each occurrence of a schedule fires once
CREATE UNIQUE INDEX backbeat_jobs_fire ON backbeat_jobs (schedule_key, fire_at) WHERE schedule_key IS NOT NULL;
-- concurrency limits count the running jobs holding a bucket
CREATE INDEX backbeat_jobs_bucket ON backbeat_jobs (bucket) WHERE bucket IS NOT NULL AND state = 'running';

CREATE TABLE backbeat_queues (
    name      text PRIMARY KEY,
    paused    boolean NOT NULL DEFAULT false,
    paused_at double precision
);

CREATE TABLE backbeat_workers (
    id           text PRIMARY KEY,
    host         text NOT NULL,
    pid          integer NOT NULL,
    queues       text NOT NULL,                   -- JSON array
    concurrency  integer NOT NULL,
    tasks        text NOT NULL,                   -- JSON array of task names
    started_at   double precision NOT NULL,
    heartbeat_at double precision NOT NULL,
    in_flight    integer NOT NULL DEFAULT 0,
    version      text NOT NULL DEFAULT ''
);

CREATE TABLE backbeat_tasks (
    name         text PRIMARY KEY,
    queue        text NOT NULL,
    max_attempts integer NOT NULL,
    timeout      double precision,
    priority     integer NOT NULL DEFAULT 0,
    secret       text NOT NULL DEFAULT '[]',      -- JSON array of secret argument names
    handles      text                             -- an event handler's pattern
);

CREATE TABLE backbeat_schedules (
    key              text PRIMARY KEY,
    task             text NOT NULL,
    queue            text NOT NULL,
    payload          text NOT NULL,
    kind             text NOT NULL,               -- every | cron
    every            double precision,
    cron             text,
    tz               text NOT NULL,
    mode             text NOT NULL,               -- delay | rate
    jitter           double precision NOT NULL,
    sla              double precision,
    max_every        double precision,            -- the range an every-schedule may stretch to
    misfire          text NOT NULL,               -- skip | catch_up
    catch_up_limit   integer NOT NULL,
    priority         integer NOT NULL,
    max_attempts     integer NOT NULL,
    timeout          double precision,
    description      text NOT NULL,
    origin           text NOT NULL,               -- code | runtime | file
    created_at       double precision NOT NULL,
    updated_at       double precision NOT NULL,
    next_tick        double precision,            -- next occurrence before jitter; NULL while a delay run is in flight
    next_at          double precision,            -- when it is due
    paused           boolean NOT NULL DEFAULT false,
    paused_at        double precision,
    pending_jitter   double precision NOT NULL DEFAULT 0,
    in_flight        text,                        -- job id of the run in flight
    last_fire_at     double precision,
    last_job_id      text,
    last_finished_at double precision,
    last_state       text,
    last_success_at  double precision,
    resumed_at       double precision,
    deadline_at      double precision,            -- staleness base + sla
    breach_since     double precision,            -- NULL within SLA
    run_time         double precision,            -- moving average of run durations
    every_now        double precision,            -- the autopilot's interval (NULL: every)
    every_reason     text
);

-- finding due schedules: a range scan over the ones that can fire
CREATE INDEX backbeat_schedules_due ON backbeat_schedules (next_at, key)
    WHERE NOT paused AND in_flight IS NULL AND next_at IS NOT NULL;
-- repair: the rows with a run in flight
CREATE INDEX backbeat_schedules_flight ON backbeat_schedules (in_flight) WHERE in_flight IS NOT NULL;
-- sla_check: the schedules that can start a breach, by deadline
CREATE INDEX backbeat_schedules_deadline ON backbeat_schedules (deadline_at, key)
    WHERE sla IS NOT NULL AND NOT paused AND breach_since IS NULL;
-- sla_list: worst first
CREATE INDEX backbeat_schedules_sla ON backbeat_schedules (paused, deadline_at, key) WHERE sla IS NOT NULL;
-- the autopilot's list of schedules with a range
CREATE INDEX backbeat_schedules_adaptive ON backbeat_schedules (key) WHERE max_every IS NOT NULL;

CREATE TABLE backbeat_breaches (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key        text NOT NULL,
    sla        double precision NOT NULL,
    base_at    double precision NOT NULL,
    started_at double precision NOT NULL,
    ended_at   double precision,                  -- NULL while open
    announced  boolean NOT NULL DEFAULT false
);
CREATE INDEX backbeat_breaches_key ON backbeat_breaches (key, started_at);
CREATE INDEX backbeat_breaches_open ON backbeat_breaches (key) WHERE ended_at IS NULL;
CREATE INDEX backbeat_breaches_ended ON backbeat_breaches (ended_at) WHERE ended_at IS NOT NULL;
CREATE INDEX backbeat_breaches_unannounced ON backbeat_breaches (ended_at, id) WHERE ended_at IS NOT NULL AND NOT announced;

CREATE TABLE backbeat_decisions (
    id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key    text NOT NULL,
    at     double precision NOT NULL,
    kind   text NOT NULL,
    detail text NOT NULL,
    job_id text
);
CREATE INDEX backbeat_decisions_key ON backbeat_decisions (key, at, id);
CREATE INDEX backbeat_decisions_at ON backbeat_decisions (at);
CREATE INDEX backbeat_decisions_kind ON backbeat_decisions (kind, at);

CREATE TABLE backbeat_buckets (
    bucket        text PRIMARY KEY,
    blocked_until double precision
);

-- one row per granted start, pruned as it leaves its window
CREATE TABLE backbeat_bucket_starts (
    bucket text NOT NULL,
    at     double precision NOT NULL
);
CREATE INDEX backbeat_bucket_starts_at ON backbeat_bucket_starts (bucket, at);

CREATE TABLE backbeat_events (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    key         text,
    occurred_at double precision NOT NULL,
    received_at double precision NOT NULL,
    payload     text NOT NULL,
    source      text NOT NULL,
    state       text NOT NULL,                    -- EventState
    reason      text,
    jobs        integer NOT NULL DEFAULT 0,
    settled_at  double precision
);
-- consumers of the store source: pending events, oldest first
CREATE INDEX backbeat_events_pending ON backbeat_events (received_at, id) WHERE state = 'pending';
-- listing by state (dead letters), newest first
CREATE INDEX backbeat_events_state ON backbeat_events (state, id);
-- retention
CREATE INDEX backbeat_events_received ON backbeat_events (received_at) WHERE state <> 'pending';

CREATE TABLE backbeat_state (
    name       text PRIMARY KEY,
    value      text NOT NULL,
    updated_at double precision NOT NULL
);
