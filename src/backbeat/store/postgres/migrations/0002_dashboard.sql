-- Version 2: the dashboard's worst-first schedule pages (schedule_worst), searchable.
-- Ranked by the SLA index (paused, deadline_at, key) for schedules with an SLA and by a new
-- index on key for those without one; both carry task, so a search (a substring of key or
-- task) is judged on index entries (an index-only scan once the table is vacuumed).

DROP INDEX backbeat_schedules_sla;
CREATE INDEX backbeat_schedules_sla ON backbeat_schedules (paused, deadline_at, key, task) WHERE sla IS NOT NULL;
CREATE INDEX backbeat_schedules_nosla ON backbeat_schedules (key, task) WHERE sla IS NULL;
