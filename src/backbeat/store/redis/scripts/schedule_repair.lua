-- schedule_repair.lua: end the runs whose job vanished or is already final, as if they
-- ended now (Store.schedule_repair). Python finds the suspects (P:schedules-runs against
-- the jobs); this script checks each again, atomically, before ending its run.
--
-- Keys (P = "{prefix}"; KEYS[1] = P:meta): P:schedule:<key> and its indexes, breaches;
-- P:job:<id> (read).
-- ARGV: now, then (key, job id) pairs.
-- Returns the keys whose run was ended.

local now = ARGV[1]
local out = {}
for k = 2, #ARGV, 2 do
  local key, id = ARGV[k], ARGV[k + 1]
  local rec = sched_load(key)
  if rec and rec.in_flight == id then
    local job = redis.call('HMGET', job_key(id), 'state', 'started_at')
    if not job[1] or FINAL[job[1]] then
      finish_run(rec, job[1] or 'cancelled', job[1] and job[2] or nil, now, nil)
      out[#out + 1] = key
    end
  end
end
return out
