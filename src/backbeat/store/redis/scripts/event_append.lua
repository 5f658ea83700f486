-- event_append.lua: accept events as pending, atomically together (Store.event_append).
--
-- Keys (P = "{prefix}"; KEYS[1] = P:meta): P:event:<id> and its indexes (lib_events.lua);
-- P:wake (the consumers wait on it).
-- ARGV: now, then a JSON array of event items (codec.event_item).
-- Returns 1 per event accepted, 0 for an id already recorded (nothing changes for it).

local now = ARGV[1]
local out = {}
for k, e in ipairs(cjson.decode(ARGV[2])) do
  if redis.call('EXISTS', event_key(e[1])) == 1 then
    out[k] = 0
  else
    ev_insert(e, 'pending', now)
    out[k] = 1
  end
end
wake()
return out
