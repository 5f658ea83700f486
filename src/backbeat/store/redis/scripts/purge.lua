-- purge.lua: delete every queued and scheduled job of one queue (Store.queue_purge).
--
-- Keys (P = "{prefix}"; KEYS[1] = P:meta):
--   P:sched:<queue>             zset   scheduled jobs (emptied)
--   P:lanes:<queue>             zset   the queue's lanes (emptied, with each lane)
--   P:ready:<queue>,<prio>,<task>  zset  queued jobs of a lane
--   P:job:<id>                  hash   deleted
--   P:queued:<queue>            zset   queued jobs by run_at
--   P:ids:<state>, P:counts, P:dedup, P:fired
-- ARGV: queue.
-- Returns how many jobs were deleted. One script, so atomic; it holds the server for
-- the time it takes to delete the queue's pending jobs (about a microsecond each).

local queue = ARGV[1]
local doomed = redis.call('ZRANGE', sched_key(queue), 0, -1)
for _, member in ipairs(redis.call('ZRANGE', lanes_key(queue), 0, -1)) do
  for _, id in ipairs(redis.call('ZRANGE', lane_key(queue, member), 0, -1)) do
    doomed[#doomed + 1] = id
  end
end
for _, id in ipairs(doomed) do
  delete_job(load(id))
end
return finish(#doomed)
