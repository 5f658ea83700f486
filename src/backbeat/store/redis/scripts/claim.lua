-- claim.lua: promote due scheduled jobs, then take up to `limit` queued jobs in dispatch
-- order and start them under a lease (Store.job_claim).
--
-- Keys (P = "{prefix}"; KEYS[1] = P:meta):
--   P:paused                    hash      paused queue -> paused_at (skipped)
--   P:sched:<queue>             zset      scheduled jobs by run_at (due ones promoted)
--   P:lanes:<queue>             zset      "<prio>,<task>" of non-empty lanes, by -prio
--   P:ready:<queue>,<prio>,<task>  zset   queued jobs of one lane, by order_at then id
--   P:queued:<queue>            zset      queued jobs by run_at (promoted ones enter, claimed leave)
--   P:job:<id>                  hash      the job (state, attempts, lease fields)
--   P:running                   zset      running jobs by lease expiry
--   P:ids:<state>, P:counts     the state index and counters
--   P:wake                      stream    read only: the newest entry is returned
--   P:inbox:<worker>            stream    jobs enqueue.lua leased to this worker (received ones deleted)
--   P:park:<worker>             hash      the worker's parking (written or ended here)
--   P:parked:<queue>            zset      parked workers of a queue, by parked-until
-- ARGV: now, limit, worker_id, token prefix, lease expiry, promote cap, parked-until ("" =
--   do not park), lease seconds, inbox cursor (stream id), nqueues, queues..., tasks...
-- Returns {newest wake id, {inbox entries after the cursor}, {id, HGETALL before the
-- claim}...}, the claimed jobs in dispatch order.
--
-- Dispatch order is priority DESC, order_at ASC, id ASC. A lane holds the queued jobs of
-- one (queue, priority, task): its zset order (score order_at, ties by member id, which
-- Redis compares bytewise) is the dispatch order within the lane, so one lane is read
-- with one ZRANGE. Lanes are per task so that a claim never reads past jobs of tasks it
-- does not know (a worker with a subset of the tasks on a shared queue). A claim walks
-- the priorities present, highest first, and merges the lanes of each priority (across
-- queues and tasks) by (order_at, id).
--
-- Promotion moves at most `cap` due jobs per queue per claim (earliest run_at first) so
-- that one claim never blocks the server for long; the next claim takes the rest.

local now, limit = ARGV[1], tonumber(ARGV[2])
local worker, token, expires, cap = ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6])
local park_until, lease, cursor = ARGV[7], ARGV[8], ARGV[9]
local nqueues = tonumber(ARGV[10])
local first = 11
local wanted = {}
for k = first + nqueues, #ARGV do wanted[ARGV[k]] = true end

local function promote(queue)
  local due = redis.call('ZRANGEBYSCORE', sched_key(queue), '-inf', now, 'LIMIT', 0, cap)
  for _, id in ipairs(due) do
    local j = load(id)
    move(j, 'queued', j.order_at)
  end
end

-- priority -> lanes ({key, pos, buf, more}) of that priority whose task is wanted
local levels, prios = {}, {}
for k = first, first + nqueues - 1 do
  local queue = ARGV[k]
  if redis.call('HEXISTS', PAUSED, queue) == 0 then
    promote(queue)
    for _, member in ipairs(redis.call('ZRANGE', lanes_key(queue), 0, -1)) do
      local comma = string.find(member, ',', 1, true)
      if wanted[string.sub(member, comma + 1)] then
        local prio = tonumber(string.sub(member, 1, comma - 1))
        if not levels[prio] then
          levels[prio] = {}
          prios[#prios + 1] = prio
        end
        table.insert(levels[prio], {key = lane_key(queue, member), queue = queue, member = member,
                                    prio = string.sub(member, 1, comma - 1), task = string.sub(member, comma + 1),
                                    pos = 0, buf = {}, at = 1, more = true, taken = {}})
      end
    end
  end
end
table.sort(prios, function(a, b) return a > b end)

-- The next (score, id) of a lane, fetching `chunk` more when its buffer ran out.
local function head(lane, chunk)
  if lane.at > #lane.buf and lane.more then
    lane.buf = redis.call('ZRANGE', lane.key, lane.pos, lane.pos + chunk - 1, 'WITHSCORES')
    lane.pos, lane.at = lane.pos + chunk, 1
    lane.more = #lane.buf == 2 * chunk
  end
  if lane.at > #lane.buf then return nil end
  return tonumber(lane.buf[lane.at + 1]), lane.buf[lane.at]
end

-- Append to `out` up to `need` {lane, id} from `lanes`, merged by (order_at, id).
local function merge(lanes, need, out)
  local chunk = math.max(4, math.ceil(need / #lanes))
  if #lanes == 1 then chunk = need end
  while need > 0 do
    local best, best_score, best_id = nil, nil, nil
    for _, lane in ipairs(lanes) do
      local score, id = head(lane, chunk)
      if id and (not best or score < best_score or (score == best_score and lt(id, best_id))) then
        best, best_score, best_id = lane, score, id
      end
    end
    if not best then return end
    out[#out + 1] = {best, best_id}
    best.at = best.at + 2
    need = need - 1
  end
end

-- Jobs handed to this worker that it has not received take room in this claim: a worker
-- must not be parked again, and handed more, while it holds them.
local inbox = inbox_after(worker, cursor)
local room = limit - #inbox
local picked = {}
for _, prio in ipairs(prios) do
  if #picked >= room then break end
  merge(levels[prio], room - #picked, picked)
end

-- Leave the lanes: one ZREM per lane, then drop the lanes that emptied.
local touched = {}
for _, pick in ipairs(picked) do
  local lane = pick[1]
  if #lane.taken == 0 then touched[#touched + 1] = lane end
  lane.taken[#lane.taken + 1] = pick[2]
end
for _, lane in ipairs(touched) do
  variadic('ZREM', lane.key, lane.taken)
  if redis.call('EXISTS', lane.key) == 0 then
    redis.call('ZREM', lanes_key(lane.queue), lane.member)
    lanes_listed[lane.key] = nil
  end
end

-- A claim that found less than it asked for parks the worker (enqueue.lua may then lease
-- the next job to it); any claim ends the parking before.
unpark(worker)
if park_until ~= '' and #picked < room then
  local queues, fields = {}, {'until', park_until, 'lease', lease, 'token', token}
  for k = first, first + nqueues - 1 do
    queues[#queues + 1] = ARGV[k]
    redis.call('ZREMRANGEBYSCORE', parked_key(ARGV[k]), '-inf', '(' .. now)  -- dead workers' parkings
    redis.call('ZADD', parked_key(ARGV[k]), park_until, worker)
  end
  fields[#fields + 1] = 'queues'
  fields[#fields + 1] = table.concat(queues, ',')
  for task in pairs(wanted) do
    fields[#fields + 1] = 't:' .. task
    fields[#fields + 1] = '1'
  end
  variadic('HSET', park_key(worker), fields)
end

-- Start each job. The reply carries each job's hash as it was before the claim: Python
-- applies the claim's own changes (it chose them), which saves a second read per job.
local out = {wake_seen(), inbox}
for _, pick in ipairs(picked) do
  local lane, id = pick[1], pick[2]
  local before = redis.call('HGETALL', job_key(id))
  local attempts = 0
  for i = 1, #before, 2 do
    if before[i] == 'attempts' then attempts = tonumber(before[i + 1]) end
  end
  local j = {id = id, state = 'queued', queue = lane.queue, task = lane.task, priority = lane.prio}
  move(j, 'running', expires,
       {'started_at', now, 'worker_id', worker, 'lease_token', token .. id, 'lease_expires_at', expires,
        'attempts', tostring(attempts + 1)}, true)
  out[#out + 1] = {id, before}
end
return finish(out)
