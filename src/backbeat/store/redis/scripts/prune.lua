-- prune.lua: delete finished jobs past their retention (Store.job_prune).
--
-- Keys (P = "{prefix}"; KEYS[1] = P:meta):
--   P:done:<state>              zset   finished jobs by finished_at (read, then left)
--   P:job:<id>                  hash   deleted
--   P:ids:<state>, P:counts     the state index and counters
--   P:fired                     hash   the job's (fire_at, schedule) entry
-- ARGV: state, cutoff, limit.
-- Returns how many jobs were deleted (Python calls it again until fewer than `limit`).

local state, cutoff, limit = ARGV[1], ARGV[2], tonumber(ARGV[3])
local ids = redis.call('ZRANGEBYSCORE', done_key(state), '-inf', '(' .. cutoff, 'LIMIT', 0, limit)
for _, id in ipairs(ids) do
  local j = load(id)
  if j then
    delete_job(j)
  else
    redis.call('ZREM', done_key(state), id)
  end
end
return finish(#ids)
