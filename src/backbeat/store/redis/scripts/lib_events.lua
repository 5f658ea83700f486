-- lib_events.lua: events and their indexes. scripts.py loads it after lib.lua into the
-- function library.
--
-- Keys (P = "{prefix}"):
--   P:event:<id>       hash   one event: the EventRecord fields that are not None
--   P:evids:<state>    zset   ids of events in a state, score 0 (event_list, by id)
--   P:events-pending   zset   pending ids by received_at (event_pending, oldest first)
--   P:events-settled   zset   settled ids by received_at (history_prune)
--
-- An event is in exactly one P:evids:<state>, and in P:events-pending or
-- P:events-settled as its state says; ev_move() keeps it so.

-- Set per call, after lib.lua's keys (events_keys, below).
local EVENTS_PENDING, EVENTS_SETTLED

local function event_key(id) return P .. ':event:' .. id end
local function evids_key(state) return P .. ':evids:' .. state end

-- Move event `id` (received at `received_at`) from state `old` (nil: new) to `new`.
local function ev_move(id, received_at, old, new)
  if old then
    redis.call('ZREM', evids_key(old), id)
    redis.call('ZREM', old == 'pending' and EVENTS_PENDING or EVENTS_SETTLED, id)
  end
  if new then
    redis.call('ZADD', evids_key(new), 0, id)
    redis.call('ZADD', new == 'pending' and EVENTS_PENDING or EVENTS_SETTLED, received_at, id)
  end
end

-- Record a new event (from codec.event_item: id, name, key, occurred_at, payload, source)
-- in `state`, received at `now`.
local function ev_insert(e, state, now)
  local fields = {'name', e[2], 'occurred_at', e[4], 'payload', e[5], 'source', e[6], 'received_at', now,
                  'state', state, 'jobs', '0'}
  if e[3] ~= cjson.null then
    fields[#fields + 1] = 'key'
    fields[#fields + 1] = e[3]
  end
  redis.call('HSET', event_key(e[1]), unpack(fields))
  ev_move(e[1], now, nil, state)
end

-- {id, HGETALL}, the shape Python decodes.
local function ev_record(id)
  return {id, redis.call('HGETALL', event_key(id))}
end

-- The keys above, for the prefix lib_keys() set.
local function events_keys()
  EVENTS_PENDING = P .. ':events-pending'
  EVENTS_SETTLED = P .. ':events-settled'
end
