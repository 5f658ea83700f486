-- Version 2: the dashboard's worst-first schedule pages (schedule_worst), searchable.
-- Ranked by the SLA index (paused, deadline_at, key) for schedules with an SLA and by a new
-- index on key for those without one, as on SQLite. A search (a substring of key or task)
-- filters the ranked rows: fast when matches are common, a walk of every row when they are
-- rare (PostgreSQL 15 checks such a filter on index entries only in an index-only scan).

DROP INDEX backbeat_schedules_sla;
CREATE INDEX backbeat_schedules_sla ON backbeat_schedules (paused, deadline_at, key, task) WHERE sla IS NOT NULL;
CREATE INDEX backbeat_schedules_nosla ON backbeat_schedules (key, task) WHERE sla IS NULL;
