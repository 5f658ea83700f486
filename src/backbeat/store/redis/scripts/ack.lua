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
local KINDS = {succeeded = true, failed = true, snoozed = true, released = true, cancelled = true}
for k = 2, #ARGV, 8 do
  if not KINDS[ARGV[k + 2]] then return redis.error_reply('BB_BAD_OUTCOME ' .. ARGV[k + 2]) end
end

for k = 2, #ARGV, 8 do
  local id, token, kind, mask = ARGV[k], ARGV[k + 1], ARGV[k + 2], ARGV[k + 3]
  local j = load(id)
  if not j or j.state ~= 'running' or j.lease_token ~= token then
    refused[#refused + 1] = id
  else
    -- result, error, traceback: set when present in the mask, else deleted (None)
    local sets, dels = {}, {'lease_token', 'lease_expires_at'}
    local function put(field, at, value)
      if string.sub(mask, at, at) == '1' then
        sets[#sets + 1] = field
        sets[#sets + 1] = value
      else
        dels[#dels + 1] = field
      end
    end
    local retry_at = string.sub(mask, 4, 4) == '1' and ARGV[k + 7]
    local back = tostring(tonumber(j.attempts) - 1)
    if kind == 'succeeded' then
      put('result', 1, ARGV[k + 4])
    elseif kind == 'failed' then
      put('error', 2, ARGV[k + 5])
      put('traceback', 3, ARGV[k + 6])
    end
    redis.call('HDEL', job_key(id), unpack(dels))
    if kind == 'succeeded' or kind == 'cancelled' or (kind == 'failed' and not retry_at) then
      sets[#sets + 1] = 'finished_at'
      sets[#sets + 1] = now
      move(j, kind == 'failed' and 'dead' or kind, now, sets)
    elseif kind == 'failed' or kind == 'snoozed' then
      retry_at = retry_at or now
      for _, v in ipairs({'run_at', retry_at, 'order_at', retry_at}) do sets[#sets + 1] = v end
      if kind == 'snoozed' then
        sets[#sets + 1] = 'attempts'
        sets[#sets + 1] = back
      end
      move(j, 'scheduled', retry_at, sets)
      requeued = true
    else -- released
      move(j, 'queued', j.order_at, {'attempts', back})
      requeued = true
    end
  end
end
if requeued then wake() end
return finish(refused)
