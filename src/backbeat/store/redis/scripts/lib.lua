-- lib.lua: helpers every script shares. scripts.py loads it, the other libraries and
-- every script into one Redis function library: its top level runs once, when the library
-- is loaded; each script is a function of it, which calls begin() first.
--
-- Conventions (keys.py has the whole layout):
--   KEYS[1]  "{prefix}:meta", the store's anchor key. Every other key is derived from the
--            prefix P = "{prefix}" and so hashes to the same Cluster slot as KEYS[1];
--            Redis refuses, at run time, a function's access to any key outside that slot.
--   Floats   (times, zset scores) arrive as strings Python made with repr() and are
--            written back as those same strings. Lua would print a number with 14
--            significant digits and lose precision, so it never formats a float
--            (integers, e.g. priorities and counters, print exactly).
--   Strings  are ordered bytewise with lt(); Lua's "<" uses strcoll, which depends on
--            the server's locale.
--   Errors   A script that fails after a write leaves that write in place (scripts are
--            atomic, not transactional), so every check that can fail runs before the
--            first write.
--   finish   Every script that moves jobs returns through finish(), which applies the
--            gathered writes (below).
--   Arith.   Where a script computes a time (lib_schedules.lua: the end of a run, SLA
--            deadlines) it formats the double with fmt() ("%.17g"), which reads back as the
--            same double; times are compared as numbers (tonumber), never as strings.

-- The prefix and the keys named after it: set per call from KEYS[1] (lib_keys, below),
-- since one library serves every prefix.
local P, RUNNING, COUNTS, DEDUP, QUEUES, PAUSED, WAKE, FIRED
local FINAL = {succeeded = true, dead = true, cancelled = true}

local function job_key(id) return P .. ':job:' .. id end
local function lanes_key(queue) return P .. ':lanes:' .. queue end
local function lane_key(queue, member) return P .. ':ready:' .. queue .. ',' .. member end
local function sched_key(queue) return P .. ':sched:' .. queue end
local function ids_key(state) return P .. ':ids:' .. state end
local function done_key(state) return P .. ':done:' .. state end
local function queued_key(queue) return P .. ':queued:' .. queue end
local function holders_key(bucket) return P .. ':holders:' .. bucket end
local function park_key(worker) return P .. ':park:' .. worker end
local function parked_key(queue) return P .. ':parked:' .. queue end
local function inbox_key(worker) return P .. ':inbox:' .. worker end

-- A double as a string that reads back as the same double (Lua's tostring keeps 14 digits).
local function fmt(x) return string.format('%.17g', x) end

local function lt(a, b)
  local n = math.min(#a, #b)
  for i = 1, n do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end

-- The fields the index functions need, read with one HMGET. Missing fields are false.
local FIELDS = {'state', 'queue', 'task', 'priority', 'run_at', 'order_at', 'dedup_key', 'lease_token',
                'attempts', 'max_attempts', 'cancel_requested', 'schedule_key', 'fire_at', 'started_at',
                'deadline', 'bucket', 'handed'}

local function load(id)
  local v = redis.call('HMGET', job_key(id), unpack(FIELDS))
  if not v[1] then return nil end
  local j = {id = id}
  for i, f in ipairs(FIELDS) do j[f] = v[i] end
  return j
end

-- Writes that no script reads after making them (counters, the per-state id indexes,
-- the running and done sets; rescue and prune read P:running and P:done:<state> before
-- writing) are gathered in tables and applied once per key by finish(), one variadic
-- call per key: a batch of 64 claims is then one ZADD to P:running, not 64. The last
-- change to a (key, member) wins. Lanes and schedules are written at once: claims read
-- them (promotion, then the merge).
local counts, zsets

-- job_counts: one counter per (state, queue, task); a counter that reaches 0 is deleted.
local function count(state, j, delta)
  local field = state .. ',' .. j.queue .. ',' .. j.task
  counts[field] = (counts[field] or 0) + delta
end

local function zset_put(key, member, score)
  local t = zsets[key]
  if not t then t = {}; zsets[key] = t end
  t[member] = score
end

local function variadic(command, key, args)
  for i = 1, #args, 4000 do
    redis.call(command, key, unpack(args, i, math.min(i + 3999, #args)))
  end
end

-- Apply the gathered writes, then return `value` (every writing script ends with it).
local function finish(value)
  for field, delta in pairs(counts) do
    if delta ~= 0 and redis.call('HINCRBY', COUNTS, field, delta) <= 0 then redis.call('HDEL', COUNTS, field) end
  end
  for key, members in pairs(zsets) do
    local add, rem = {}, {}
    for member, score in pairs(members) do
      if score then
        add[#add + 1] = score
        add[#add + 1] = member
      else
        rem[#rem + 1] = member
      end
    end
    if #rem > 0 then variadic('ZREM', key, rem) end
    if #add > 0 then variadic('ZADD', key, add) end
  end
  counts, zsets = {}, {}
  return value
end

local function release_dedup(j)
  if j.dedup_key and j.dedup_key ~= '' and redis.call('HGET', DEDUP, j.dedup_key) == j.id then
    redis.call('HDEL', DEDUP, j.dedup_key)
  end
end

-- Lanes whose P:lanes:<queue> entry this script has written (written once per script).
local lanes_listed

-- Take queued job j out of its lane; drop the lane from the queue's list once empty.
local function leave_lane(j)
  local member = j.priority .. ',' .. j.task
  local lane = lane_key(j.queue, member)
  redis.call('ZREM', lane, j.id)
  if redis.call('EXISTS', lane) == 0 then
    redis.call('ZREM', lanes_key(j.queue), member)
    lanes_listed[lane] = nil
  end
end

-- Take job j out of the structure of its current state (lane, schedule, running, done),
-- its state's id index and its counter. The hash itself is left to the caller. With
-- `lane_done`, a queued job's lane entry was already removed by the caller. A job leaving
-- `running` stops holding its rate-limit bucket (buckets.lua), so a slot never leaks.
local function unindex(j, lane_done)
  local s = j.state
  if s == 'queued' then
    if not lane_done then leave_lane(j) end
    zset_put(queued_key(j.queue), j.id, false)
  elseif s == 'scheduled' then
    redis.call('ZREM', sched_key(j.queue), j.id)
  elseif s == 'running' then
    zset_put(RUNNING, j.id, false)
    if j.handed then
      redis.call('HDEL', job_key(j.id), 'handed')
      j.handed = nil
    end
    if j.bucket then
      redis.call('SREM', holders_key(j.bucket), j.id)
      redis.call('HDEL', job_key(j.id), 'bucket')
      j.bucket = nil
    end
  else
    zset_put(done_key(s), j.id, false)
  end
  zset_put(ids_key(s), j.id, false)
  count(s, j, -1)
end

-- Put job j into `state`, scored by `score` (a string: order_at for queued, run_at for
-- scheduled, lease expiry for running, finished_at for final states), and write the
-- state with the extra hash fields given as {field, value, ...} in one HSET. A final
-- state frees the job's dedup key. A queued job is also indexed by j.run_at (backlog).
local function index(j, state, score, fields)
  if state == 'queued' then
    local member = j.priority .. ',' .. j.task
    local lane = lane_key(j.queue, member)
    redis.call('ZADD', lane, score, j.id)
    if not lanes_listed[lane] then
      redis.call('ZADD', lanes_key(j.queue), -tonumber(j.priority), member)
      lanes_listed[lane] = true
    end
    zset_put(queued_key(j.queue), j.id, j.run_at)
  elseif state == 'scheduled' then
    redis.call('ZADD', sched_key(j.queue), score, j.id)
  elseif state == 'running' then
    zset_put(RUNNING, j.id, score)
  else
    zset_put(done_key(state), j.id, score)
  end
  zset_put(ids_key(state), j.id, '0')
  count(state, j, 1)
  j.state = state
  redis.call('HSET', job_key(j.id), 'state', state, unpack(fields or {}))
  if FINAL[state] then release_dedup(j) end
end

-- Move job j from its state to another.
local function move(j, state, score, fields, lane_done)
  unindex(j, lane_done)
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

-- End a worker's parking (claim.lua writes it): its entry and its place in each queue's
-- list of parked workers. Its inbox stays (worker_remove.lua deletes it). `queues`: its
-- park entry's queues, if the caller has read them.
local function unpark(worker, queues)
  local key = park_key(worker)
  queues = queues or redis.call('HGET', key, 'queues')
  if not queues then return end
  for queue in string.gmatch(queues, '[^,]+') do redis.call('ZREM', parked_key(queue), worker) end
  redis.call('DEL', key)
end

-- The entries of a worker's inbox after stream id `after` (the newest it received), which
-- the caller delivers to it: {stream id, {"@id", id, field, value...}}. Every entry has
-- then reached the worker, so its job loses its `handed` mark (enqueue.lua), and those up
-- to `after` are deleted (each holds a copy of a job).
local function inbox_after(worker, after)
  local key = inbox_key(worker)
  local fresh = redis.call('XRANGE', key, '(' .. after, '+')
  local ms, seq = string.match(after, '^(%d+)-(%d+)$')
  local received = (ms and after ~= '0-0') and redis.call('XRANGE', key, '-', after) or {}
  for _, entries in ipairs({fresh, received}) do
    for _, e in ipairs(entries) do redis.call('HDEL', job_key(e[2][2]), 'handed') end
  end
  if #received > 0 then redis.call('XTRIM', key, 'MINID', ms .. '-' .. (tonumber(seq) + 1)) end
  return fresh
end

-- {id, HGETALL} of a job, the shape Python decodes.
local function record(id)
  return {id, redis.call('HGETALL', job_key(id))}
end

-- Refuse a batch that would write a job id twice or over an existing job, before any write:
-- `items` are enqueue items (id first). Returns an error reply, or nil when all are new.
local function refuse_taken(items, seen)
  seen = seen or {}
  for _, a in ipairs(items) do
    if seen[a[1]] or redis.call('EXISTS', job_key(a[1])) == 1 then
      return redis.error_reply('BB_DUPLICATE job id already exists: ' .. a[1])
    end
    seen[a[1]] = true
  end
  return nil
end

-- Write one new job (Store.job_enqueue), from an item codec.enqueue_item made: id, queue,
-- task, priority, run_at, order_at, dedup key, schedule key, fire_at ("" = none), then the
-- hash fields as a flat [field, value, ...] array. Returns nil if written, else the id of
-- the live job holding its dedup key (nothing written). The queue is listed either way.
-- A job of a schedule's occurrence is recorded in P:fired, the (fire_at, key) uniqueness.
-- With `lease` ({worker, token prefix, expiry}: enqueue.lua's hand-off) the job is written
-- running under that lease, as a claim would start it. The second value returned, when
-- written, is the new hash's fields besides `state`, as a flat [field, value, ...] list.
local function insert_job(a, now, lease)
  local j = {id = a[1], queue = a[2], task = a[3], priority = a[4], run_at = a[5], order_at = a[6],
             dedup_key = a[7]}
  redis.call('SADD', QUEUES, j.queue)
  local holder = j.dedup_key ~= '' and redis.call('HGET', DEDUP, j.dedup_key)
  if holder then return holder end
  local fields = {'created_at', now, 'attempts', '0'}
  for _, v in ipairs(a[10]) do fields[#fields + 1] = v end
  if lease then
    fields[4] = '1'
    for _, v in ipairs({'started_at', now, 'worker_id', lease.worker, 'lease_token', lease.token .. j.id,
                        'lease_expires_at', lease.expires, 'handed', '1'}) do
      fields[#fields + 1] = v
    end
    index(j, 'running', lease.expires, fields)
  elseif tonumber(j.run_at) <= tonumber(now) then
    index(j, 'queued', j.order_at, fields)
  else
    index(j, 'scheduled', j.run_at, fields)
  end
  if j.dedup_key ~= '' then redis.call('HSET', DEDUP, j.dedup_key, j.id) end
  if a[8] ~= '' and a[9] ~= '' then redis.call('HSET', FIRED, a[9] .. '|' .. a[8], j.id) end
  return nil, fields
end

-- Delete job j (loaded) and every entry that names it.
local function delete_job(j)
  unindex(j)
  release_dedup(j)
  local fired = j.schedule_key and j.fire_at and j.fire_at .. '|' .. j.schedule_key
  if fired and redis.call('HGET', FIRED, fired) == j.id then redis.call('HDEL', FIRED, fired) end
  redis.call('DEL', job_key(j.id))
end

-- The keys of the prefix of `anchor` (KEYS[1], "{prefix}:meta"), for the calls that follow.
local function lib_keys(anchor)
  P = string.sub(anchor, 1, -6)
  RUNNING = P .. ':running'
  COUNTS = P .. ':counts'
  DEDUP = P .. ':dedup'
  QUEUES = P .. ':queues'
  PAUSED = P .. ':paused'
  WAKE = P .. ':wake'
  FIRED = P .. ':fired'
end

-- A call starts with nothing gathered (a call that failed half way may have left some).
local function lib_reset()
  counts, zsets, lanes_listed = {}, {}, {}
end
