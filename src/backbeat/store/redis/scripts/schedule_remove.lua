-- schedule_remove.lua: delete a schedule (Store.schedule_remove). Its run in flight goes
-- on; the end of that job finds no schedule waiting for it and changes nothing. Its
-- decisions and breaches stay until history_prune.
--
-- Keys (P = "{prefix}"; KEYS[1] = P:meta): P:schedule:<key> and its indexes.
-- ARGV: key. Returns 1 if it existed, else 0.

if redis.call('EXISTS', schedule_key(ARGV[1])) == 0 then return 0 end
sched_delete(ARGV[1])
return 1
