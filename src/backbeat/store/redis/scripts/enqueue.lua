-- enqueue.lua: write a batch of new jobs, all or none (Store.job_enqueue).
--
-- Keys (P = "{prefix}"; KEYS[1] = P:meta):
--   P:job:<id>                  hash      the job (created)
--   P:dedup                     hash      dedup key -> id of the live job holding it
--   P:ready:<queue>,<prio>,<task>  zset   queued jobs of one lane, by order_at then id
--   P:lanes:<queue>             zset      "<prio>,<task>" of the queue's non-empty lanes
--   P:queued:<queue>            zset      queued jobs by run_at (the backlog)
--   P:sched:<queue>             zset      scheduled jobs by run_at
--   P:ids:<state>               zset      ids of jobs in a state (lexicographic, score 0)
--   P:counts                    hash      "<state>,<queue>,<task>" -> count
--   P:queues                    set       every queue that ever had a job
--   P:fired                     hash      "<fire_at>|<schedule key>" -> job id
--   P:wake                      stream    wake-ups for waiting workers
--   P:parked:<queue>            zset      parked workers of a queue, by parked-until
--   P:park:<worker>             hash      a parked worker: until, lease, token, queues, t:<task>
--   P:running                   zset      a job leased to a parked worker
--   P:inbox:<worker>            stream    that job, for the worker: "@id", id, then its hash
-- ARGV: now, then a JSON array with one enqueue item per job (lib.lua: insert_job). One
--   JSON argument instead of ~25 per job is cheaper for the client to send.
-- Returns, per job, 1 if written, else {id, HGETALL} of the live job holding its dedup key.
-- Fails with "BB_DUPLICATE <id>" (nothing written) if a job id already exists.
--
-- Hand-off: a job due now, enqueued alone, goes straight to a worker parked on its queue
-- (claim.lua parked it when a claim found too little) that knows its task, leased as
-- claim.lua would lease it, if nothing else is claimable for that worker (so dispatch
-- order holds; in a batch a later job could come first, so batches are never handed
-- over): one round trip and one wake-up fewer than a wake-up and a claim. The hand-off
-- ends the parking; the worker's next claim may park it again.

local now = ARGV[1]
local items = cjson.decode(ARGV[2])
local refused = refuse_taken(items)
if refused then return refused end

-- Could the parked worker (its park hash key, its queues) claim anything now? `open`: a
-- queue known not to be paused.
local function claimable(key, queues, open)
  for queue in string.gmatch(queues, '[^,]+') do
    if queue == open or redis.call('HEXISTS', PAUSED, queue) == 0 then
      if redis.call('ZRANGEBYSCORE', sched_key(queue), '-inf', now, 'LIMIT', 0, 1)[1] then return true end
      for _, member in ipairs(redis.call('ZRANGE', lanes_key(queue), 0, -1)) do
        local task = string.sub(member, string.find(member, ',', 1, true) + 1)
        if redis.call('HEXISTS', key, 't:' .. task) == 1 then return true end
      end
    end
  end
  return false
end

-- The lease for item `a` if a worker is parked for it: {worker, token prefix, expiry, queues}.
local function parked_for(a)
  local queue, task = a[2], a[3]
  if tonumber(a[5]) > tonumber(now) then return nil end
  local parked = redis.call('ZRANGEBYSCORE', parked_key(queue), now, '+inf')
  if not parked[1] or redis.call('HEXISTS', PAUSED, queue) == 1 then return nil end
  for _, worker in ipairs(parked) do
    local key = park_key(worker)
    local v = redis.call('HMGET', key, 'lease', 'token', 'queues', 't:' .. task)
    if v[1] and v[4] and not claimable(key, v[3], queue) then
      return {worker = worker, token = v[2], expires = fmt(tonumber(now) + tonumber(v[1])), queues = v[3]}
    end
  end
  return nil
end

local out = {}
local created = false
for k, a in ipairs(items) do
  local lease = #items == 1 and parked_for(a) or nil
  local holder, written = insert_job(a, now, lease)
  if holder then
    out[k] = record(holder)
  else
    out[k] = 1
    if lease then
      unpark(lease.worker, lease.queues)
      redis.call('XADD', inbox_key(lease.worker), 'MAXLEN', '~', 100, '*', '@id', a[1], 'state', 'running',
                 unpack(written))
    else
      created = true
    end
  end
end
if created then wake() end
return finish(out)
