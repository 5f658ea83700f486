-- lib.lua: helpers every script shares; scripts.py prepends it (after the "#!lua" line)
-- to each script before loading it, so each loaded script is self-contained.
--
-- Conventions (keys.py has the whole layout):
--   KEYS[1]  "{prefix}:meta", the store's anchor key. Every other key is derived from the
--            prefix P = "{prefix}" and so hashes to the same Cluster slot as KEYS[1];
--            "#!lua" scripts make Redis refuse, at run time, any key outside that slot.
--   Floats   (times, zset scores) arrive as strings Python made with repr() and are
--            written back as those same strings. Lua would print a number with 14
--            significant digits and lose precision, so it never formats a float
--            (integers, e.g. priorities and counters, print exactly).
--   Strings  are ordered bytewise with lt(); Lua's "<" uses strcoll, which depends on
--            the server's locale.
--   Errors   A script that fails after a write leaves that write in place (scripts are
--            atomic, not transactional), so every check that can fail runs before the
--            first write.

local P = string.sub(KEYS[1], 1, -6)
local RUNNING = P .. ':running'
local COUNTS = P .. ':counts'
local DEDUP = P .. ':dedup'
local QUEUES = P .. ':queues'
local PAUSED = P .. ':paused'
local WAKE = P .. ':wake'
local FINAL = {succeeded = true, dead = true, cancelled = true}

local function job_key(id) return P .. ':job:' .. id end
local function lanes_key(queue) return P .. ':lanes:' .. queue end
local function lane_key(queue, member) return P .. ':ready:' .. queue .. ',' .. member end
local function sched_key(queue) return P .. ':sched:' .. queue end
local function ids_key(state) return P .. ':ids:' .. state end
local function done_key(state) return P .. ':done:' .. state end

local function lt(a, b)
  local n = math.min(#a, #b)
  for i = 1, n do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end

-- The fields the index functions need, read with one HMGET. Missing fields are false.
local FIELDS = {'state', 'queue', 'task', 'priority', 'order_at', 'dedup_key', 'lease_token',
                'attempts', 'max_attempts', 'cancel_requested'}

local function load(id)
  local v = redis.call('HMGET', job_key(id), unpack(FIELDS))
  if not v[1] then return nil end
  local j = {id = id}
  for i, f in ipairs(FIELDS) do j[f] = v[i] end
  return j
end

-- job_counts: one counter per (state, queue, task); a counter that reaches 0 is deleted.
local function count(state, j, delta)
  local field = state .. ',' .. j.queue .. ',' .. j.task
  if redis.call('HINCRBY', COUNTS, field, delta) <= 0 then redis.call('HDEL', COUNTS, field) end
end

local function release_dedup(j)
  if j.dedup_key and j.dedup_key ~= '' and redis.call('HGET', DEDUP, j.dedup_key) == j.id then
    redis.call('HDEL', DEDUP, j.dedup_key)
  end
end

-- Take job j out of the structure of its current state (lane, schedule, running, done),
-- its state's id index and its counter. The hash itself is left to the caller.
local function unindex(j)
  local s = j.state
  if s == 'queued' then
    local member = j.priority .. ',' .. j.task
    local lane = lane_key(j.queue, member)
    redis.call('ZREM', lane, j.id)
    if redis.call('EXISTS', lane) == 0 then redis.call('ZREM', lanes_key(j.queue), member) end
  elseif s == 'scheduled' then
    redis.call('ZREM', sched_key(j.queue), j.id)
  elseif s == 'running' then
    redis.call('ZREM', RUNNING, j.id)
  else
    redis.call('ZREM', done_key(s), j.id)
  end
  redis.call('ZREM', ids_key(s), j.id)
  count(s, j, -1)
end

-- Put job j into `state`, scored by `score` (a string: order_at for queued, run_at for
-- scheduled, lease expiry for running, finished_at for final states), and write the
-- state with the extra hash fields given as {field, value, ...}. A final state frees the
-- job's dedup key.
local function index(j, state, score, fields)
  if state == 'queued' then
    local member = j.priority .. ',' .. j.task
    redis.call('ZADD', lane_key(j.queue, member), score, j.id)
    redis.call('ZADD', lanes_key(j.queue), -tonumber(j.priority), member)
  elseif state == 'scheduled' then
    redis.call('ZADD', sched_key(j.queue), score, j.id)
  elseif state == 'running' then
    redis.call('ZADD', RUNNING, score, j.id)
  else
    redis.call('ZADD', done_key(state), score, j.id)
  end
  redis.call('ZADD', ids_key(state), 0, j.id)
  count(state, j, 1)
  j.state = state
  redis.call('HSET', job_key(j.id), 'state', state, unpack(fields or {}))
  if FINAL[state] then release_dedup(j) end
end

-- Move job j from its state to another.
local function move(j, state, score, fields)
  unindex(j)
  index(j, state, score, fields)
end

-- Tell waiting workers that work may have arrived: an entry on the wake stream (XREAD
-- BLOCK wakes every waiter; the stream keeps about its last hundred entries).
local function wake()
  redis.call('XADD', WAKE, 'MAXLEN', '~', 100, '*', 'w', '1')
end

-- The id of the newest wake entry ("0-0" if none): a waiter that saw it needs no wake-up
-- for anything written before.
local function wake_seen()
  local last = redis.call('XREVRANGE', WAKE, '+', '-', 'COUNT', 1)
  if last[1] then return last[1][1] end
  return '0-0'
end

-- {id, HGETALL} of a job, the shape Python decodes.
local function record(id)
  return {id, redis.call('HGETALL', job_key(id))}
end
