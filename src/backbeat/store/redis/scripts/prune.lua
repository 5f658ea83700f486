-- prune.lua: delete finished jobs past their retention (Store.job_prune).
--
-- Keys (P = "{prefix}"; KEYS[1] = P:meta):
--   P:done:<state>              zset   finished jobs by finished_at (read, then left)
--   P:job:<id>                  hash   deleted
--   P:ids:<state>, P:counts     the state index and counters
-- ARGV: limit, then (state, cutoff) pairs.
-- Returns how many jobs were deleted.

local limit = tonumber(ARGV[1])
local deleted = 0
for k = 2, #ARGV, 2 do
  local state, cutoff = ARGV[k], ARGV[k + 1]
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', done_key(state), '-inf', '(' .. cutoff, 'LIMIT', 0, limit)) do
    local j = load(id)
    if j then
      unindex(j)
      redis.call('DEL', job_key(id))
    else
      redis.call('ZREM', done_key(state), id)
    end
    deleted = deleted + 1
  end
end
return finish(deleted)
