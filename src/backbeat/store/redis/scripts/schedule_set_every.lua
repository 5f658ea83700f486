-- schedule_set_every.lua: set every-schedules' effective intervals, each a compare-and-set
-- on the interval the caller saw (Store.schedule_set_every; lib_schedules.lua: set_every).
--
-- Keys (P = "{prefix}"; KEYS[1] = P:meta): P:schedule:<key> and its indexes.
-- ARGV: a JSON array with one array per change: key, every, expected (null = None), reason.
-- Returns 1 where applied, 0 where not (gone, not an every-schedule, or moved on).

local NULL = cjson.null
local out = {}
for k, c in ipairs(cjson.decode(ARGV[1])) do
  local every = c[2] ~= NULL and c[2] or nil
  local expected = c[3] ~= NULL and c[3] or nil
  out[k] = set_every(sched_load(c[1]), every, expected, c[4]) and 1 or 0
end
return out
