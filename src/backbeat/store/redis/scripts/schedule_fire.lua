-- schedule_fire.lua: fire planned occurrences, each atomically on its own
-- (Store.schedule_fire).
--
-- Keys (P = "{prefix}"; KEYS[1] = P:meta): P:schedule:<key> and its indexes; P:fired
-- ("<fire_at>|<key>" -> job id: the uniqueness of an occurrence); the job's keys as in
-- enqueue.lua; P:wake.
-- ARGV: now, then a JSON array with one array per fire: key, expected next_at, the job's
--   enqueue item (lib.lua: insert_job), next_tick, next_at (null = None), pending_jitter.
-- Returns 1 where the occurrence fired, 0 where it did not (nothing changed for it).
--
-- A fire is a compare-and-set: the schedule exists, is not paused, has no run in flight,
-- its next_at is still the one the plan saw, and no job exists for (key, fire_at) nor
-- with the job's id. Any number of schedulers may send the same fire; one wins.

local now = ARGV[1]
local NULL = cjson.null
local out = {}
local fired = false
for k, f in ipairs(cjson.decode(ARGV[2])) do
  local key, expected, job = f[1], f[2], f[3]
  local rec = sched_load(key)
  local ok = rec ~= nil and not rec.paused and not rec.in_flight and rec.next_at ~= nil
    and tonumber(rec.next_at) == tonumber(expected)
    and redis.call('HEXISTS', FIRED, job[9] .. '|' .. key) == 0
    and redis.call('EXISTS', job_key(job[1])) == 0
  if ok then
    insert_job(job, now)
    set(rec, 'in_flight', job[1])
    set(rec, 'last_fire_at', job[9])
    set(rec, 'last_job_id', job[1])
    set(rec, 'next_tick', f[4] ~= NULL and f[4] or nil)
    set(rec, 'next_at', f[5] ~= NULL and f[5] or nil)
    set(rec, 'pending_jitter', f[6])
    sched_save(rec)
    fired = true
  end
  out[k] = ok and 1 or 0
end
if fired then wake() end
return finish(out)
