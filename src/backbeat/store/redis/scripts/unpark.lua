-- unpark.lua: end a worker's parking and return what was handed to it that it has not
-- received (Store.job_unpark, at shutdown: the worker hands those jobs back).
--
-- Keys (P = "{prefix}"; KEYS[1] = P:meta):
--   P:park:<worker>     hash     the worker's parking (deleted)
--   P:parked:<queue>    zset     parked workers of a queue (the worker leaves each)
--   P:inbox:<worker>    stream   the entries after the cursor are read, those up to it deleted
-- ARGV: worker id, inbox cursor (the newest stream id the worker received).
-- Returns the inbox entries after the cursor: {stream id, {"@id", id, field, value...}}.
-- They stay until the next call with a newer cursor (or worker_remove.lua), so a call
-- that redis-py re-sends after a lost reply returns them again.

unpark(ARGV[1])
return inbox_after(ARGV[1], ARGV[2])
