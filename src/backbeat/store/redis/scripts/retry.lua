-- retry.lua: queue a dead or cancelled job again (Store.job_retry).
--
-- Keys (P = "{prefix}"; KEYS[1] = P:meta):
--   P:job:<id>                  hash   the job: queued, run_at = order_at = now, attempts 0
--   P:done:<state>              zset   left
--   P:ready:<queue>,<prio>,<task>, P:lanes:<queue>, P:queued:<queue>   entered
--   P:dedup                     hash   the job takes its key back (refused if taken)
--   P:ids:<state>, P:counts, P:wake
-- ARGV: id, now.
-- Returns {"ok", {id, HGETALL}}, {"missing"}, {"state", state} or {"dedup", holder id}.

local id, now = ARGV[1], ARGV[2]
local j = load(id)
if not j then return {'missing'} end
if j.state ~= 'dead' and j.state ~= 'cancelled' then return {'state', j.state} end
if j.dedup_key and j.dedup_key ~= '' then
  local holder = redis.call('HGET', DEDUP, j.dedup_key)
  if holder then return {'dedup', holder} end
end
redis.call('HDEL', job_key(id), 'finished_at', 'cancel_requested')
j.order_at, j.run_at = now, now
move(j, 'queued', now, {'run_at', now, 'order_at', now, 'attempts', '0'})
if j.dedup_key and j.dedup_key ~= '' then redis.call('HSET', DEDUP, j.dedup_key, id) end
wake()
return finish({'ok', record(id)})
