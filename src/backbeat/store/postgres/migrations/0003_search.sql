-- Version 3: schedule search (a substring of key or task) answered from a trigram index,
-- so a rare match among a million schedules is a bitmap scan, not a walk of every row.
-- pg_trgm ships with PostgreSQL and is a trusted extension (PostgreSQL 13+: anyone with
-- CREATE on the database may install it). It goes into the schema that already holds it,
-- else into public (never into backbeat's schema: dropping that would drop it for every
-- other user of the database). Where it cannot be installed, the migration goes on without
-- the index (search stays correct and scans) and says so in a warning.
DO $$
DECLARE
    home text;
BEGIN
    SELECT n.nspname INTO home
    FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
    WHERE e.extname = 'pg_trgm';
    IF home IS NULL THEN
        BEGIN
            CREATE EXTENSION pg_trgm SCHEMA public;
            home := 'public';
        EXCEPTION WHEN OTHERS THEN
            RAISE WARNING 'backbeat: cannot install pg_trgm (%); schedule search will scan every schedule', SQLERRM;
            RETURN;
        END;
    END IF;
    EXECUTE format(
        'CREATE INDEX backbeat_schedules_search ON backbeat_schedules '
        'USING gin (key %1$I.gin_trgm_ops, task %1$I.gin_trgm_ops)',
        home
    );
END
$$;
