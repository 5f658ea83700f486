-- worker_remove.lua: remove one worker, or every worker whose last heartbeat is older
-- than a cutoff (Store.worker_unregister, Store.worker_prune).
--
-- Keys (P = "{prefix}"; KEYS[1] = P:meta):
--   P:worker:<id>   hash   deleted
--   P:workers       zset   worker ids by last heartbeat
--   P:park:<id>, P:parked:<queue>, P:inbox:<id>   its parking and inbox (claim.lua, enqueue.lua)
-- ARGV: "id", worker id  |  "before", cutoff.
-- Returns the ids removed.

local ids
if ARGV[1] == 'id' then
  ids = {ARGV[2]}
else
  ids = redis.call('ZRANGEBYSCORE', P .. ':workers', '-inf', '(' .. ARGV[2])
end
local removed = {}
for _, id in ipairs(ids) do
  if redis.call('ZREM', P .. ':workers', id) == 1 then removed[#removed + 1] = id end
  redis.call('DEL', P .. ':worker:' .. id)
  unpark(id)
  redis.call('DEL', inbox_key(id))
end
return removed
