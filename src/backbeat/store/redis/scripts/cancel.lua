-- cancel.lua: cancel one job (Store.job_cancel).
--
-- Keys (P = "{prefix}"; KEYS[1] = P:meta):
--   P:job:<id>                  hash   the job
--   P:sched:<queue> or P:ready:<queue>,<prio>,<task> + P:lanes:<queue> + P:queued:<queue>
--                               left if pending
--   P:done:cancelled            zset   finished jobs by finished_at
--   P:ids:<state>, P:counts, P:dedup
--   P:schedule:<key> (+ its indexes, breaches)   a job cancelled at once ends its run
-- ARGV: id, now.
-- Returns {id, HGETALL} after the change, or nil if there is no such job.
-- A pending job is cancelled at once; a running one gets cancel_requested (its worker
-- learns at its next heartbeat); a finished one is left as it is.

local id, now = ARGV[1], ARGV[2]
local j = load(id)
if not j then return nil end
if j.state == 'queued' or j.state == 'scheduled' then
  move(j, 'cancelled', now, {'finished_at', now})
  end_run(j, now, nil)
elseif j.state == 'running' then
  redis.call('HSET', job_key(id), 'cancel_requested', '1')
end
return finish(record(id))
