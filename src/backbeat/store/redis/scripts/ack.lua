-- ack.lua: record how attempts ended, for a batch of outcomes (Store.job_ack).
--
-- Keys (P = "{prefix}"; KEYS[1] = P:meta):
--   P:job:<id>                  hash   the job: state, result/error/traceback, run_at...
--   P:running                   zset   running jobs by lease expiry (left)
--   P:sched:<queue>             zset   retried and snoozed jobs, by retry time
--   P:ready:<queue>,<prio>,<task>, P:lanes:<queue>, P:queued:<queue>   released jobs
--   P:done:<state>              zset   finished jobs by finished_at (retention, throughput)
--   P:ids:<state>, P:counts     the state index and counters
--   P:dedup                     hash   a finished job frees its key
--   P:holders:<bucket>          set    a job leaving running stops holding its bucket
--   P:schedule:<key> (+ its indexes, breaches)   a final state ends the schedule's run
--   P:wake                      stream a job queued or scheduled again wakes waiters
-- ARGV: now, then a JSON array with one array per outcome: id, token, kind (succeeded|
--   failed|snoozed|released|cancelled), result, error, traceback, retry_at, next_in
--   (strings, or null where Python has None).
-- Returns the ids whose lease was not held (refused; nothing changed for them).
--
-- A job that reaches a final state ends its schedule's run in this same script
-- (lib_schedules.lua: end_run), as SQLite does in the ack's transaction: a run ends exactly
-- when its job does, and a delay-mode schedule is re-armed then.

local now = ARGV[1]
local NULL = cjson.null
local outcomes = cjson.decode(ARGV[2])
local refused = {}
local requeued = false
local KINDS = {succeeded = true, failed = true, snoozed = true, released = true, cancelled = true}
for _, o in ipairs(outcomes) do
  if not KINDS[o[3]] then return redis.error_reply('BB_BAD_OUTCOME ' .. tostring(o[3])) end
end

for _, o in ipairs(outcomes) do
  local id, token, kind = o[1], o[2], o[3]
  local j = load(id)
  if not j or j.state ~= 'running' or j.lease_token ~= token then
    refused[#refused + 1] = id
  else
    -- result, error, traceback: set when given, else deleted (None)
    local sets, dels = {}, {'lease_token', 'lease_expires_at'}
    local function put(field, value)
      if value ~= NULL then
        sets[#sets + 1] = field
        sets[#sets + 1] = value
      else
        dels[#dels + 1] = field
      end
    end
    local retry_at = o[7] ~= NULL and o[7]
    local back = tostring(tonumber(j.attempts) - 1)
    if kind == 'succeeded' then
      put('result', o[4])
    elseif kind == 'failed' then
      put('error', o[5])
      put('traceback', o[6])
    end
    redis.call('HDEL', job_key(id), unpack(dels))
    if kind == 'succeeded' or kind == 'cancelled' or (kind == 'failed' and not retry_at) then
      sets[#sets + 1] = 'finished_at'
      sets[#sets + 1] = now
      move(j, kind == 'failed' and 'dead' or kind, now, sets)
      end_run(j, now, o[8] ~= NULL and o[8] or nil)
    elseif kind == 'failed' or kind == 'snoozed' then
      retry_at = retry_at or now
      -- a job with an SLA deadline keeps its place in dispatch order
      local order_at = j.deadline and j.order_at or retry_at
      for _, v in ipairs({'run_at', retry_at, 'order_at', order_at}) do sets[#sets + 1] = v end
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
