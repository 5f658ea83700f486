-- Version 2: queues as things you operate. A row per queue that ever had a job enqueued or
-- was paused; job_claim skips paused queues.

CREATE TABLE backbeat_queues (
    name      TEXT PRIMARY KEY,
    paused    INTEGER NOT NULL DEFAULT 0,
    paused_at REAL
);

INSERT OR IGNORE INTO backbeat_queues (name) SELECT DISTINCT queue FROM backbeat_jobs;
