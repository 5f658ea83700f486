-- enqueue.lua: write a batch of new jobs, all or none (Store.job_enqueue).
--
-- Keys (P = "{prefix}"; KEYS[1] = P:meta):
--   P:job:<id>                  hash      the job (created)
--   P:dedup                     hash      dedup key -> id of the live job holding it
--   P:ready:<queue>,<prio>,<task>  zset   queued jobs of one lane, by order_at then id
--   P:lanes:<queue>             zset      "<prio>,<task>" of the queue's non-empty lanes
--   P:sched:<queue>             zset      scheduled jobs by run_at
--   P:ids:<state>               zset      ids of jobs in a state (lexicographic, score 0)
--   P:counts                    hash      "<state>,<queue>,<task>" -> count
--   P:queues                    set       every queue that ever had a job
--   P:wake                      stream    wake-ups for waiting workers
-- ARGV: now, then a JSON array with one array per job: id, queue, task, priority,
--   run_at, order_at, dedup key ("" = none), and the hash fields Python encoded as a
--   flat [field, value, ...] array (all strings). One JSON argument instead of ~25 per
--   job is cheaper for the client to send.
-- Returns, per job, 1 if written, else {id, HGETALL} of the live job holding its dedup key.
-- Fails with "BB_DUPLICATE <id>" (nothing written) if a job id already exists.

local now = ARGV[1]
local jobs = {}
for k, a in ipairs(cjson.decode(ARGV[2])) do
  local j = {id = a[1], queue = a[2], task = a[3], priority = a[4], run_at = a[5], order_at = a[6],
             dedup_key = a[7], fields = a[8]}
  if redis.call('EXISTS', job_key(j.id)) == 1 then
    return redis.error_reply('BB_DUPLICATE job id already exists: ' .. j.id)
  end
  jobs[k] = j
end

local out = {}
local queues, created = {}, false
for k, j in ipairs(jobs) do
  if not queues[j.queue] then  -- a queue is listed once it had a job enqueued, written or not
    queues[j.queue] = true
    redis.call('SADD', QUEUES, j.queue)
  end
  local holder = j.dedup_key ~= '' and redis.call('HGET', DEDUP, j.dedup_key)
  if holder then
    out[k] = record(holder)
  else
    local fields = {'created_at', now, 'attempts', '0'}
    for _, v in ipairs(j.fields) do fields[#fields + 1] = v end
    if tonumber(j.run_at) <= tonumber(now) then
      index(j, 'queued', j.order_at, fields)
    else
      index(j, 'scheduled', j.run_at, fields)
    end
    if j.dedup_key ~= '' then redis.call('HSET', DEDUP, j.dedup_key, j.id) end
    out[k] = 1
    created = true
  end
end
if created then wake() end
return finish(out)
