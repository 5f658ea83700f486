-- event_replay.lua: send a dead or unhandled event back to pending (Store.event_replay).
--
-- Keys (P = "{prefix}"; KEYS[1] = P:meta): P:event:<id> and its indexes; P:wake.
-- ARGV: id.
-- Returns {"ok", {id, HGETALL}}, {"missing"} or {"state", state}.

local id = ARGV[1]
local e = redis.call('HMGET', event_key(id), 'state', 'received_at')
if not e[1] then return {'missing'} end
if e[1] ~= 'dead' and e[1] ~= 'unhandled' then return {'state', e[1]} end
ev_move(id, e[2], e[1], 'pending')
redis.call('HSET', event_key(id), 'state', 'pending')
redis.call('HDEL', event_key(id), 'reason', 'settled_at')
wake()
return {'ok', ev_record(id)}
