-- sla_ended.lua: closed breaches not returned before, oldest end first (Store.sla_ended).
--
-- Keys (P = "{prefix}"; KEYS[1] = P:meta): P:breach-new (read and left), P:breach:<id>.
-- ARGV: limit. Returns {id, HGETALL} of each; each is returned to exactly one caller.

local ids = redis.call('ZRANGE', BREACH_NEW, 0, tonumber(ARGV[1]) - 1)
local out = {}
for k, id in ipairs(ids) do out[k] = breach_record(id) end
if #ids > 0 then redis.call('ZREM', BREACH_NEW, unpack(ids)) end
return out
