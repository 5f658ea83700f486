-- schedule_pause.lua: stop or restart firing a schedule (Store.schedule_pause,
-- Store.schedule_resume).
--
-- Keys (P = "{prefix}"; KEYS[1] = P:meta): P:schedule:<key> and its indexes; its open
-- breach (a pause ends it); P:wake (a resumed schedule may be due).
-- ARGV: "pause" | "resume", key, now.
-- Returns {key, HGETALL} after the change, or nil if there is no such schedule.
--
-- Pausing suspends the SLA (an open breach ends now); resuming restarts its count
-- (deadline_at = now + sla). A pause of a paused schedule, or a resume of a running one,
-- changes nothing.

local action, key, now = ARGV[1], ARGV[2], ARGV[3]
local rec = sched_load(key)
if not rec then return nil end
if action == 'pause' and not rec.paused then
  if rec.breach_since then breach_end(key, now) end
  set(rec, 'paused', '1')
  set(rec, 'paused_at', now)
  set(rec, 'breach_since', nil)
  sched_save(rec)
elseif action == 'resume' and rec.paused then
  set(rec, 'paused', nil)
  set(rec, 'paused_at', nil)
  set(rec, 'resumed_at', now)
  set(rec, 'deadline_at', rec.sla and fmt(tonumber(now) + tonumber(rec.sla)) or nil)
  sched_save(rec)
  wake()
end
return sched_record(key)
