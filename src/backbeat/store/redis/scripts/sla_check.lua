-- sla_check.lua: open a breach for schedules past their deadline (Store.sla_check).
--
-- Keys (P = "{prefix}"; KEYS[1] = P:meta): P:sla-watch (read: with an SLA, not paused, not
-- in breach, by deadline_at), P:schedule:<key> and its indexes, the breach keys.
-- ARGV: now, limit.
-- Returns {id, HGETALL} of each breach opened, by (deadline_at, key). Each schedule leaves
-- P:sla-watch as its breach opens, so each breach is returned to exactly one caller.

local now, limit = ARGV[1], tonumber(ARGV[2])
local out = {}
for _, key in ipairs(redis.call('ZRANGEBYSCORE', SLA_WATCH, '-inf', '(' .. now, 'LIMIT', 0, limit)) do
  local rec = sched_load(key)
  local base = fmt(tonumber(rec.deadline_at) - tonumber(rec.sla))
  out[#out + 1] = breach_record(breach_add(key, rec.sla, base, rec.deadline_at, nil))
  set(rec, 'breach_since', rec.deadline_at)
  sched_save(rec)
end
return out
