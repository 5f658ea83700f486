-- worker_register.lua: insert or replace a worker and record its tasks
-- (Store.worker_register).
--
-- Keys (P = "{prefix}"; KEYS[1] = P:meta):
--   P:worker:<id>   hash   the worker's fields (replaced whole)
--   P:workers       zset   worker ids by last heartbeat
--   P:tasks         hash   task name -> JSON TaskInfo (the last registration wins)
-- ARGV: id, heartbeat_at, nfields, (field, value) pairs, then (task name, JSON) pairs.

local id, beat, nfields = ARGV[1], ARGV[2], tonumber(ARGV[3])
local fields = {}
for k = 4, 3 + 2 * nfields do fields[#fields + 1] = ARGV[k] end
local wkey = P .. ':worker:' .. id
redis.call('DEL', wkey)
redis.call('HSET', wkey, unpack(fields))
redis.call('ZADD', P .. ':workers', beat, id)
for k = 4 + 2 * nfields, #ARGV, 2 do
  redis.call('HSET', P .. ':tasks', ARGV[k], ARGV[k + 1])
end
return 1
