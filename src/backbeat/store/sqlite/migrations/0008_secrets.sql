-- Version 8: secrets in the task registry, so clients, the CLI and schedules seal what a
-- task (or an event handler) declares secret without its code.

ALTER TABLE backbeat_tasks ADD COLUMN secret TEXT NOT NULL DEFAULT '[]';  -- JSON array of names
ALTER TABLE backbeat_tasks ADD COLUMN handles TEXT;                       -- an event handler's pattern
