-- Version 10: the counts of finished jobs are kept, not recounted.
-- job_counts (the dashboard's overview and queues, /metrics, `backbeat status`) was a
-- GROUP BY over every job row, and finished jobs are kept a day by default (28.8M rows
-- for 100,000 schedules every 5 minutes). Live jobs (scheduled, queued, running: the
-- backlog) are still counted from their rows, so enqueues and claims pay nothing; finished
-- ones (succeeded, dead, cancelled) are counted by triggers, one counter per (queue, task,
-- state), in the same transaction as the change (SQLite has one writer at a time, so a
-- counter row costs no waiting). A counter at 0 stays (job_counts skips it). The store
-- inserts jobs live (store/rules.py new_record): its enqueues never run the insert trigger.
CREATE TABLE backbeat_job_counts (
    queue TEXT NOT NULL,
    task  TEXT NOT NULL,
    state TEXT NOT NULL,
    n     INTEGER NOT NULL,
    PRIMARY KEY (queue, task, state)
) WITHOUT ROWID;

CREATE TRIGGER backbeat_jobs_counted_insert AFTER INSERT ON backbeat_jobs
WHEN NEW.state IN ('succeeded', 'dead', 'cancelled')
BEGIN
    INSERT INTO backbeat_job_counts (queue, task, state, n) VALUES (NEW.queue, NEW.task, NEW.state, 1)
    ON CONFLICT (queue, task, state) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER backbeat_jobs_counted_finish AFTER UPDATE OF state ON backbeat_jobs
WHEN NEW.state IN ('succeeded', 'dead', 'cancelled') AND OLD.state IS NOT NEW.state
BEGIN
    INSERT INTO backbeat_job_counts (queue, task, state, n) VALUES (NEW.queue, NEW.task, NEW.state, 1)
    ON CONFLICT (queue, task, state) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER backbeat_jobs_counted_unfinish AFTER UPDATE OF state ON backbeat_jobs
WHEN OLD.state IN ('succeeded', 'dead', 'cancelled') AND OLD.state IS NOT NEW.state
BEGIN
    UPDATE backbeat_job_counts SET n = n - 1
    WHERE queue = OLD.queue AND task = OLD.task AND state = OLD.state;
END;

CREATE TRIGGER backbeat_jobs_counted_delete AFTER DELETE ON backbeat_jobs
WHEN OLD.state IN ('succeeded', 'dead', 'cancelled')
BEGIN
    UPDATE backbeat_job_counts SET n = n - 1
    WHERE queue = OLD.queue AND task = OLD.task AND state = OLD.state;
END;

-- The finished jobs already there (the migration holds the write lock: no write is missed).
INSERT INTO backbeat_job_counts (queue, task, state, n)
SELECT queue, task, state, count(*) FROM backbeat_jobs
WHERE state IN ('succeeded', 'dead', 'cancelled') GROUP BY 1, 2, 3;
