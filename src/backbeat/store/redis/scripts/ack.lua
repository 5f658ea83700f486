-- ack.lua: record how attempts ended, for a batch of outcomes (Store.job_ack).
--
-- Keys (P = "{prefix}"; KEYS[1] = P:meta):
--   P:job:<id>                  hash   the job: state, result/error/traceback, run_at...
--   P:running                   zset   running jobs by lease expiry (left)
--   P:sched:<queue>             zset   retried and snoozed jobs, by retry time
--   P:ready:<queue>,<prio>,<task>, P:lanes:<queue>   released jobs (queued again)
--   P:done:<state>              zset   finished jobs by finished_at (retention, throughput)
--   P:ids:<state>, P:counts     the state index and counters
--   P:dedup                     hash   a finished job frees its key
--   P:wake                      stream a job queued or scheduled again wakes waiters
-- ARGV: now, then per outcome 8 values: id, token, kind (succeeded|failed|snoozed|
--   released|cancelled), presence mask (4 chars "0"/"1" for result, error, traceback,
--   retry_at), result, error, traceback, retry_at.
-- Returns the ids whose lease was not held (refused; nothing changed for them).

local now = ARGV[1]
local refused = {}
local requeued = false

-- set the field to the value if present in the mask, else delete it (None)
local function put(id, field, present, value)
  if present == '1' then
    redis.call('HSET', job_key(id), field, value)
  else
    redis.call('HDEL', job_key(id), field)
  end
end

for k = 2, #ARGV, 8 do
  local id, token, kind, mask = ARGV[k], ARGV[k + 1], ARGV[k + 2], ARGV[k + 3]
  local result, err, tb, retry_at = ARGV[k + 4], ARGV[k + 5], ARGV[k + 6], ARGV[k + 7]
  local j = load(id)
  if not j or j.state ~= 'running' or j.lease_token ~= token then
    refused[#refused + 1] = id
  else
    redis.call('HDEL', job_key(id), 'lease_token', 'lease_expires_at')
    if kind == 'succeeded' then
      put(id, 'result', string.sub(mask, 1, 1), result)
      move(j, 'succeeded', now, {'finished_at', now})
    elseif kind == 'failed' then
      put(id, 'error', string.sub(mask, 2, 2), err)
      put(id, 'traceback', string.sub(mask, 3, 3), tb)
      if string.sub(mask, 4, 4) == '1' then
        move(j, 'scheduled', retry_at, {'run_at', retry_at, 'order_at', retry_at})
        requeued = true
      else
        move(j, 'dead', now, {'finished_at', now})
      end
    elseif kind == 'snoozed' then
      if string.sub(mask, 4, 4) ~= '1' then retry_at = now end
      redis.call('HINCRBY', job_key(id), 'attempts', -1)
      move(j, 'scheduled', retry_at, {'run_at', retry_at, 'order_at', retry_at})
      requeued = true
    elseif kind == 'released' then
      redis.call('HINCRBY', job_key(id), 'attempts', -1)
      move(j, 'queued', j.order_at)
      requeued = true
    elseif kind == 'cancelled' then
      move(j, 'cancelled', now, {'finished_at', now})
    else
      return redis.error_reply('BB_BAD_OUTCOME ' .. kind)
    end
  end
end
if requeued then wake() end
return refused
