-- bucket_acquire.lua: decide, in order, whether each job may start under its rate-limit
-- bucket (Store.bucket_acquire); a batch's grants count against its later requests.
--
-- Keys (P = "{prefix}"; KEYS[1] = P:meta):
--   P:blocked             hash   bucket -> blocked until (an upstream said 429)
--   P:starts:<bucket>     zset   grants in the window: member a unique number, score the time
--   P:seq                 string the last such number
--   P:holders:<bucket>    set    running jobs holding the bucket (left as they leave
--                                running: lib.lua unindex)
--   P:job:<id>            hash   bucket: the bucket the job holds
-- ARGV: now, then a JSON array of requests: bucket, job id, limit, per, concurrency (null =
--   no such limit).
-- Returns per request {"ok"}, {"blocked", until}, {"window", the oldest start in the
-- window} or {"busy"}; Python turns them into the time to ask again (times stay strings
-- here, so none is rounded).
--
-- A window's starts older than `per` are deleted as a request looks at them, so a bucket
-- keeps at most `limit` of them.

local now = ARGV[1]
local NULL = cjson.null
local out = {}
for k, r in ipairs(cjson.decode(ARGV[2])) do
  local bucket, id, limit, per, concurrency = r[1], r[2], r[3], r[4], r[5]
  local starts, holders = P .. ':starts:' .. bucket, holders_key(bucket)
  local blocked = redis.call('HGET', P .. ':blocked', bucket)
  local windowed = limit ~= NULL and per ~= NULL
  if windowed then redis.call('ZREMRANGEBYSCORE', starts, '-inf', fmt(tonumber(now) - tonumber(per))) end
  if blocked and tonumber(blocked) > tonumber(now) then
    out[k] = {'blocked', blocked}
  elseif windowed and redis.call('ZCARD', starts) >= tonumber(limit) then
    out[k] = {'window', redis.call('ZRANGE', starts, 0, 0, 'WITHSCORES')[2]}
  elseif concurrency ~= NULL and redis.call('SCARD', holders) >= tonumber(concurrency) then
    out[k] = {'busy'}
  else
    if limit ~= NULL then redis.call('ZADD', starts, now, redis.call('INCR', P .. ':seq')) end
    local job = redis.call('HMGET', job_key(id), 'state', 'bucket')
    if job[1] == 'running' then
      if job[2] and job[2] ~= bucket then redis.call('SREM', holders_key(job[2]), id) end
      redis.call('SADD', holders, id)
      redis.call('HSET', job_key(id), 'bucket', bucket)
    end
    out[k] = {'ok'}
  end
end
return out
