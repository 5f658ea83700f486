-- Version 5: rate-limit buckets shared by every worker.

-- the bucket a running job holds (concurrency limits count these); cleared when it stops running
ALTER TABLE backbeat_jobs ADD COLUMN bucket TEXT;
CREATE INDEX backbeat_jobs_bucket ON backbeat_jobs (bucket) WHERE bucket IS NOT NULL AND state = 'running';

CREATE TABLE backbeat_buckets (
    bucket        TEXT PRIMARY KEY,
    blocked_until REAL
);

-- one row per granted start, pruned as it leaves its window
CREATE TABLE backbeat_bucket_starts (
    bucket TEXT NOT NULL,
    at     REAL NOT NULL
);
CREATE INDEX backbeat_bucket_starts_at ON backbeat_bucket_starts (bucket, at);
