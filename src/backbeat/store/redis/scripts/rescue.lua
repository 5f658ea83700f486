-- rescue.lua: take back running jobs whose lease expired (Store.job_rescue).
--
-- Keys (P = "{prefix}"; KEYS[1] = P:meta):
--   P:running                   zset   running jobs by lease expiry (expired ones leave)
--   P:job:<id>                  hash   the job: state, error, lease fields cleared
--   P:ready:<queue>,<prio>,<task>, P:lanes:<queue>, P:queued:<queue>   back to queued
--   P:done:<state>              zset   dead (out of attempts) or cancelled (cancel pending)
--   P:ids:<state>, P:counts, P:dedup, P:holders:<bucket>, P:wake
--   P:schedule:<key> (+ its indexes, breaches)   a job that became final ends its run
-- ARGV: now, limit, the error to record.
-- Returns {id, HGETALL} of each rescued job, as it is after the rescue.

local now, limit, message = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local out = {}
local requeued = false
for _, id in ipairs(redis.call('ZRANGEBYSCORE', RUNNING, '-inf', '(' .. now, 'LIMIT', 0, limit)) do
  local j = load(id)
  redis.call('HDEL', job_key(id), 'lease_token', 'lease_expires_at', 'traceback')
  if j.handed then
    -- handed to a worker that never received it (enqueue.lua; lib.lua inbox_after): that
    -- attempt never began, so it does not count. A rescued job is never handed over again.
    j.attempts = tostring(tonumber(j.attempts) - 1)
    redis.call('HSET', job_key(id), 'attempts', j.attempts)
  end
  if j.cancel_requested == '1' then
    move(j, 'cancelled', now, {'error', message, 'finished_at', now})
    end_run(j, now, nil)
  elseif tonumber(j.attempts) >= tonumber(j.max_attempts) then
    move(j, 'dead', now, {'error', message, 'finished_at', now})
    end_run(j, now, nil)
  else
    move(j, 'queued', j.order_at, {'error', message})
    requeued = true
  end
  out[#out + 1] = record(id)
end
if requeued then wake() end
return finish(out)
