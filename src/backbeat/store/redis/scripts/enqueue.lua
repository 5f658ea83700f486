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
-- ARGV: now, then a JSON array with one enqueue item per job (lib.lua: insert_job). One
--   JSON argument instead of ~25 per job is cheaper for the client to send.
-- Returns, per job, 1 if written, else {id, HGETALL} of the live job holding its dedup key.
-- Fails with "BB_DUPLICATE <id>" (nothing written) if a job id already exists.

local now = ARGV[1]
local items = cjson.decode(ARGV[2])
local refused = refuse_taken(items)
if refused then return refused end

local out = {}
local created = false
for k, a in ipairs(items) do
  local holder = insert_job(a, now)
  if holder then
    out[k] = record(holder)
  else
    out[k] = 1
    created = true
  end
end
if created then wake() end
return finish(out)
