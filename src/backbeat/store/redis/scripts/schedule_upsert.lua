-- schedule_upsert.lua: add a schedule or replace its definition (Store.schedule_upsert).
--
-- Keys (P = "{prefix}"; KEYS[1] = P:meta): P:schedule:<key> and its indexes
-- (lib_schedules.lua); P:breach-open, P:breach:<id> (an open breach the new SLA no longer
-- supports ends).
-- ARGV: now, next_tick, next_at ("" = None), then the definition as a JSON object of every
--   ScheduleSpec field: its string, or null for None (codec.spec_fields).
-- Returns {"added" | "changed" | "unchanged", {key, HGETALL}}.
--
-- "Identical" compares the stored definition field by field with the given one: both are
-- strings Python encoded (scripts never write definition fields), so equal definitions
-- are equal strings.

local now = ARGV[1]
local next_tick = ARGV[2] ~= '' and ARGV[2] or nil
local next_at = ARGV[3] ~= '' and ARGV[3] or nil
local spec = cjson.decode(ARGV[4])
local key = spec.key
local function value(field) return spec[field] ~= cjson.null and spec[field] or nil end

local rec = sched_load(key)
if not rec then
  rec = {_key = key, _set = {}}
  for field in pairs(spec) do set(rec, field, value(field)) end
  set(rec, 'created_at', now)
  set(rec, 'updated_at', now)
  set(rec, 'next_tick', next_tick)
  set(rec, 'next_at', next_at)
  set(rec, 'pending_jitter', '0.0')
  set(rec, 'deadline_at', rec.sla and fmt(tonumber(now) + tonumber(rec.sla)) or nil)
  sched_save(rec)
  return {'added', sched_record(key)}
end

local same = true
for field in pairs(spec) do
  if rec[field] ~= value(field) then same = false end
end
if same then return {'unchanged', sched_record(key)} end

local waiting = rec.in_flight ~= nil and value('kind') == 'every' and value('mode') == 'delay'
local deadline, ends = changed_deadline(rec, value('sla'), now)
if ends then breach_end(key, now) end
for field in pairs(spec) do set(rec, field, value(field)) end
set(rec, 'updated_at', now)
set(rec, 'next_tick', not waiting and next_tick or nil)
set(rec, 'next_at', not waiting and next_at or nil)
set(rec, 'deadline_at', deadline)
if ends then set(rec, 'breach_since', nil) end
set(rec, 'every_now', nil)
set(rec, 'every_reason', nil)
sched_save(rec)
return {'changed', sched_record(key)}
