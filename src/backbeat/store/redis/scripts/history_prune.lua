-- history_prune.lua: delete up to `limit` decisions, closed breaches or settled events
-- older than a cutoff (Store.history_prune; Python calls it per kind, in chunks).
--
-- Keys (P = "{prefix}"; KEYS[1] = P:meta):
--   decisions: P:decisions-at (read), P:decisions, P:dlog:<key>, P:dkind:<kind>
--   breaches:  P:breach-ended (read), P:breach:<id>, P:breach-new, P:blog:<key>
--   events:    P:events-settled (read, by received_at), P:event:<id>, P:evids:<state>
-- ARGV: "decisions" | "breaches" | "events", cutoff, limit.
-- Returns how many were deleted.

local kind, before, limit = ARGV[1], ARGV[2], tonumber(ARGV[3])
local function older(index)
  return redis.call('ZRANGEBYSCORE', index, '-inf', '(' .. before, 'LIMIT', 0, limit)
end

local ids
if kind == 'decisions' then
  ids = older(P .. ':decisions-at')
  for _, id in ipairs(ids) do
    local d = cjson.decode(redis.call('HGET', P .. ':decisions', id))
    redis.call('ZREM', P .. ':dlog:' .. d[1], id)
    redis.call('ZREM', P .. ':dkind:' .. d[3], id)
    redis.call('ZREM', P .. ':decisions-at', id)
    redis.call('HDEL', P .. ':decisions', id)
  end
elseif kind == 'breaches' then
  ids = older(BREACH_ENDED)
  for _, id in ipairs(ids) do
    redis.call('ZREM', blog_key(redis.call('HGET', breach_key(id), 'key')), id)
    redis.call('ZREM', BREACH_ENDED, id)
    redis.call('ZREM', BREACH_NEW, id)
    redis.call('DEL', breach_key(id))
  end
else
  ids = older(EVENTS_SETTLED)
  for _, id in ipairs(ids) do
    ev_move(id, nil, redis.call('HGET', event_key(id), 'state'), nil)
    redis.call('DEL', event_key(id))
  end
end
return #ids
