-- lib_schedules.lua: schedules, their indexes, SLA breaches, and the rules for the end of a
-- run. scripts.py loads it after lib.lua into the function library.
--
-- Keys (P = "{prefix}"):
--   P:schedule:<key>     hash   one schedule: the ScheduleSpec and ScheduleRecord fields that
--                               are not None (codec.py; paused "1")
--   P:schedules          zset   every schedule key, score 0 (listing by key)
--   P:schedules-due      zset   key -> next_at, for schedules that may fire: not paused, no
--                               run in flight, next_at set (schedule_due, schedule_next_due)
--   P:schedules-runs     hash   key -> the job id of its run in flight (schedule_repair)
--   P:sla-active         zset   key -> deadline_at, schedules with an SLA, not paused
--   P:sla-paused         zset   key -> deadline_at, schedules with an SLA, paused
--                               (sla_list reads active, then paused)
--   P:sla-watch          zset   key -> deadline_at, with an SLA, not paused, not in breach
--                               (sla_check: an index range scan)
--   P:breach:<id>        hash   one breach: key, sla, base_at, started_at, ended_at
--   P:breach-seq         string the last breach id (ids are zero-padded: they sort as numbers)
--   P:breach-open        hash   key -> ids of its open breaches, space-separated: one,
--                               mirrored by breach_since, and any a removed schedule of
--                               the same key left open (ended with the next one, as the
--                               reference store ends every open breach of a key)
--   P:breach-ended       zset   id -> ended_at, closed breaches (sla_stats, history_prune)
--   P:breach-new         zset   id -> ended_at, closed and not yet returned by sla_ended
--   P:blog:<key>         zset   id -> started_at, the schedule's breaches (sla_breaches)
--
-- Every write to a schedule goes through sched_save(), which writes the changed fields and
-- puts the schedule in exactly the indexes its state says.
--
-- The rules: these functions are store/rules.py said in Lua (the memory and SQLite stores
-- call rules.py itself). Each must compute what its Python twin computes, double for double:
--   end_run / finish_run  <->  rules.finish_run      rearm          <->  rules.rearm
--   changed_deadline      <->  rules.changed_deadline set_every    <->  rules.set_every
--   staleness_base        <->  ScheduleRecord.staleness_base
-- The arithmetic is the same IEEE operations in the same order (Lua numbers are doubles),
-- and results are written with fmt(), so a record reads back in Python exactly as the
-- reference store would hold it (tests/redis_store/test_redis_schedule_model.py checks).

-- Set per call, after lib.lua's keys (schedules_keys, below).
local SCHEDULES, SCHEDULES_DUE, SCHEDULES_RUNS, SLA_ACTIVE, SLA_PAUSED, SLA_WATCH
local BREACH_SEQ, BREACH_OPEN, BREACH_ENDED, BREACH_NEW
local RUN_TIME_WEIGHT = 0.2

local function schedule_key(key) return P .. ':schedule:' .. key end
local function breach_key(id) return P .. ':breach:' .. id end
local function blog_key(key) return P .. ':blog:' .. key end

local function hash_table(flat)
  local t = {}
  for i = 1, #flat, 2 do t[flat[i]] = flat[i + 1] end
  return t
end

-- A schedule as a table of its hash fields (strings; absent fields are nil), or nil.
-- `key` is kept as rec._key; changes made with set() are written by sched_save().
local function sched_load(key)
  local flat = redis.call('HGETALL', schedule_key(key))
  if #flat == 0 then return nil end
  local rec = hash_table(flat)
  rec._key, rec._set = key, {}
  return rec
end

local function set(rec, field, value)
  rec[field] = value
  rec._set[field] = true
end

-- Write rec's changed fields (HSET, or HDEL for nil) and put the schedule in the indexes
-- its state says.
local function sched_save(rec)
  local key, hkey = rec._key, schedule_key(rec._key)
  local sets, dels = {}, {}
  for field in pairs(rec._set) do
    if rec[field] == nil then
      dels[#dels + 1] = field
    else
      sets[#sets + 1] = field
      sets[#sets + 1] = rec[field]
    end
  end
  rec._set = {}
  if #dels > 0 then redis.call('HDEL', hkey, unpack(dels)) end
  if #sets > 0 then redis.call('HSET', hkey, unpack(sets)) end
  redis.call('ZADD', SCHEDULES, 0, key)
  if not rec.paused and not rec.in_flight and rec.next_at then
    redis.call('ZADD', SCHEDULES_DUE, rec.next_at, key)
  else
    redis.call('ZREM', SCHEDULES_DUE, key)
  end
  if rec.in_flight then
    redis.call('HSET', SCHEDULES_RUNS, key, rec.in_flight)
  else
    redis.call('HDEL', SCHEDULES_RUNS, key)
  end
  local deadline = rec.deadline_at or '+inf'
  if not rec.sla then
    redis.call('ZREM', SLA_ACTIVE, key)
    redis.call('ZREM', SLA_PAUSED, key)
    redis.call('ZREM', SLA_WATCH, key)
  elseif rec.paused then
    redis.call('ZREM', SLA_ACTIVE, key)
    redis.call('ZADD', SLA_PAUSED, deadline, key)
    redis.call('ZREM', SLA_WATCH, key)
  else
    redis.call('ZADD', SLA_ACTIVE, deadline, key)
    redis.call('ZREM', SLA_PAUSED, key)
    if rec.breach_since then
      redis.call('ZREM', SLA_WATCH, key)
    else
      redis.call('ZADD', SLA_WATCH, deadline, key)
    end
  end
end

local function sched_delete(key)
  redis.call('DEL', schedule_key(key))
  for _, index in ipairs({SCHEDULES, SCHEDULES_DUE, SLA_ACTIVE, SLA_PAUSED, SLA_WATCH}) do
    redis.call('ZREM', index, key)
  end
  redis.call('HDEL', SCHEDULES_RUNS, key)
end

-- {key, HGETALL}, the shape Python decodes.
local function sched_record(key)
  return {key, redis.call('HGETALL', schedule_key(key))}
end

-- -- breaches ------------------------------------------------------------------------

local function breach_add(key, sla, base_at, started_at, ended_at)
  local id = string.format('%016d', redis.call('INCR', BREACH_SEQ))
  local fields = {'key', key, 'sla', sla, 'base_at', base_at, 'started_at', started_at}
  if ended_at then
    fields[#fields + 1] = 'ended_at'
    fields[#fields + 1] = ended_at
    redis.call('ZADD', BREACH_ENDED, ended_at, id)
    redis.call('ZADD', BREACH_NEW, ended_at, id)
  else
    local open = redis.call('HGET', BREACH_OPEN, key)
    redis.call('HSET', BREACH_OPEN, key, open and open .. ' ' .. id or id)
  end
  redis.call('HSET', breach_key(id), unpack(fields))
  redis.call('ZADD', blog_key(key), started_at, id)
  return id
end

-- End the open breaches of `key`.
local function breach_end(key, now)
  local open = redis.call('HGET', BREACH_OPEN, key)
  if not open then return end
  redis.call('HDEL', BREACH_OPEN, key)
  for id in string.gmatch(open, '%S+') do
    redis.call('HSET', breach_key(id), 'ended_at', now)
    redis.call('ZADD', BREACH_ENDED, now, id)
    redis.call('ZADD', BREACH_NEW, now, id)
  end
end

-- {id, HGETALL} of a breach, the shape Python decodes.
local function breach_record(id)
  return {id, redis.call('HGETALL', breach_key(id))}
end

-- -- the rules (store/rules.py) --------------------------------------------------------

local function num(s) return s and tonumber(s) end

-- ScheduleRecord.staleness_base
local function staleness_base(rec)
  local base = num(rec.last_success_at) or num(rec.created_at)
  local resumed = num(rec.resumed_at) or base
  return math.max(base, resumed)
end

-- rules.changed_deadline: (deadline_at string or nil, end the open breach?) when the
-- schedule's SLA becomes `sla` (a string or nil) at `now`.
local function changed_deadline(rec, sla, now)
  local deadline = sla and staleness_base(rec) + tonumber(sla)
  local ends = rec.breach_since ~= nil and (deadline == nil or tonumber(now) <= deadline)
  return deadline and fmt(deadline), ends
end

-- rules.rearm (on rec, which already carries the run's end)
local function rearm(rec, pending_jitter, now, next_in)
  local every = rec.every_now or rec.every
  if rec.kind == 'every' and rec.mode == 'delay' then
    local tick = tonumber(now) + tonumber(next_in or every)
    set(rec, 'next_tick', fmt(tick))
    set(rec, 'next_at', fmt(tick + tonumber(pending_jitter)))
  elseif next_in then
    local at = fmt(tonumber(now) + tonumber(next_in))
    set(rec, 'next_tick', at)
    set(rec, 'next_at', at)
  end
end

-- rules.finish_run, applied: the schedule's run in flight ended in `state` at `now`;
-- `started_at` is when its job last started (nil if it never did).
local function finish_run(rec, state, started_at, now, next_in)
  local key, pending = rec._key, rec.pending_jitter or '0.0'
  if started_at then
    local took = math.max(0.0, tonumber(now) - tonumber(started_at))
    local run_time = num(rec.run_time)
    if run_time == nil then run_time = took else run_time = run_time + RUN_TIME_WEIGHT * (took - run_time) end
    set(rec, 'run_time', fmt(run_time))
  end
  set(rec, 'in_flight', nil)
  set(rec, 'last_finished_at', now)
  set(rec, 'last_state', state)
  if state == 'succeeded' then
    if rec.sla then
      if rec.breach_since then
        breach_end(key, now)
      elseif rec.deadline_at and tonumber(now) > tonumber(rec.deadline_at) then
        local base = fmt(tonumber(rec.deadline_at) - tonumber(rec.sla))
        breach_add(key, rec.sla, base, rec.deadline_at, now)
      end
    end
    set(rec, 'last_success_at', now)
    set(rec, 'deadline_at', rec.sla and fmt(tonumber(now) + tonumber(rec.sla)) or nil)
    set(rec, 'breach_since', nil)
  end
  rearm(rec, pending, now, next_in)
  sched_save(rec)
end

-- The end of job j's run, if j (just moved to a final state) is its schedule's run in
-- flight: a run ends once, and only the run the schedule waits for (a removed and
-- re-added schedule ignores an old job).
local function end_run(j, now, next_in)
  if not j.schedule_key then return end
  local rec = sched_load(j.schedule_key)
  if rec and rec.in_flight == j.id then finish_run(rec, j.state, j.started_at, now, next_in) end
end

-- rules.set_every: apply {key, every, expected, reason} (every/expected strings or nil);
-- false if it does not apply.
local function set_every(rec, every, expected, reason)
  if not rec or rec.kind ~= 'every' or num(rec.every_now) ~= num(expected) then return false end
  local before = tonumber(rec.every_now or rec.every)
  local after = tonumber(every or rec.every)
  set(rec, 'every_now', every)
  set(rec, 'every_reason', reason)
  if not rec.in_flight and rec.next_tick and rec.next_at then
    local shift = after - before
    set(rec, 'next_tick', fmt(tonumber(rec.next_tick) + shift))
    set(rec, 'next_at', fmt(tonumber(rec.next_at) + shift))
  end
  sched_save(rec)
  return true
end

-- The keys above, for the prefix lib_keys() set.
local function schedules_keys()
  SCHEDULES = P .. ':schedules'
  SCHEDULES_DUE = P .. ':schedules-due'
  SCHEDULES_RUNS = P .. ':schedules-runs'
  SLA_ACTIVE = P .. ':sla-active'
  SLA_PAUSED = P .. ':sla-paused'
  SLA_WATCH = P .. ':sla-watch'
  BREACH_SEQ = P .. ':breach-seq'
  BREACH_OPEN = P .. ':breach-open'
  BREACH_ENDED = P .. ':breach-ended'
  BREACH_NEW = P .. ':breach-new'
end
