-- worker_heartbeat.lua: a worker's heartbeat (Store.worker_heartbeat).
--
-- Keys (P = "{prefix}"; KEYS[1] = P:meta):
--   P:worker:<id>   hash   heartbeat_at, in_flight
--   P:workers       zset   worker ids by last heartbeat
-- ARGV: id, now, in_flight.
-- Returns 1, or 0 if the worker is not registered (pruned: it should register again).

local id, now, in_flight = ARGV[1], ARGV[2], ARGV[3]
local wkey = P .. ':worker:' .. id
if redis.call('EXISTS', wkey) == 0 then return 0 end
redis.call('HSET', wkey, 'heartbeat_at', now, 'in_flight', in_flight)
redis.call('ZADD', P .. ':workers', now, id)
return 1
