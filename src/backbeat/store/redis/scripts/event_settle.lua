-- event_settle.lua: settle events, each once and together with its handlers' jobs
-- (Store.event_settle).
--
-- Keys (P = "{prefix}"; KEYS[1] = P:meta): P:event:<id> and its indexes; the jobs' keys as
-- in enqueue.lua; P:wake.
-- ARGV: now, then a JSON array with one array per settlement: the event item
--   (codec.event_item), state, reason (or null), and the jobs' enqueue items.
-- Returns 1 where settled now, 0 where the event was settled before (a duplicate:
-- nothing changes, its jobs are not written).
-- Fails with "BB_DUPLICATE <id>" before writing anything if a job id exists already or
-- repeats in the batch (the whole batch is refused: a failed settlement leaves nothing).

local now = ARGV[1]
local settlements = cjson.decode(ARGV[2])
local seen = {}
for _, s in ipairs(settlements) do
  local refused = refuse_taken(s[4], seen)
  if refused then return refused end
end

local out = {}
local created = false
for k, s in ipairs(settlements) do
  local e, state, reason = s[1], s[2], s[3]
  local current = redis.call('HGET', event_key(e[1]), 'state')
  if current and current ~= 'pending' then
    out[k] = 0
  else
    if current then
      local received = redis.call('HGET', event_key(e[1]), 'received_at')
      ev_move(e[1], received, 'pending', state)
      -- the payload as settled (secret fields sealed by the consumer that dispatched it)
      redis.call('HSET', event_key(e[1]), 'state', state, 'payload', e[5])
    else
      ev_insert(e, state, now)
    end
    redis.call('HSET', event_key(e[1]), 'jobs', tostring(#s[4]), 'settled_at', now)
    if reason ~= cjson.null then
      redis.call('HSET', event_key(e[1]), 'reason', reason)
    else
      redis.call('HDEL', event_key(e[1]), 'reason')
    end
    for _, job in ipairs(s[4]) do
      if not insert_job(job, now) then created = true end
    end
    out[k] = 1
  end
end
if created then wake() end
return finish(out)
