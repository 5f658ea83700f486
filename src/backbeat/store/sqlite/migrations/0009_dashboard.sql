-- Version 9: the dashboard's worst-first schedule pages (schedule_worst). Schedules with an
-- SLA are ranked by backbeat_schedules_sla (paused, deadline_at, key); those without one
-- come last, by key, read from this index so a store of SLA schedules is not scanned.

CREATE INDEX backbeat_schedules_nosla ON backbeat_schedules (key) WHERE sla IS NULL;
