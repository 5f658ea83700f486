-- heartbeat.lua: extend the leases still held (Store.job_heartbeat).
--
-- Keys (P = "{prefix}"; KEYS[1] = P:meta):
--   P:job:<id>     hash   state, lease_token, cancel_requested read; lease_expires_at set,
--                         the hand-off's "handed" mark cleared (the worker has the job)
--   P:running      zset   running jobs by lease expiry (rescore)
-- ARGV: lease expiry, then (id, token) pairs.
-- Returns {lost ids, ids held but asked to cancel}.
--
-- A lease is held while the job is running under the same token: a rescued or finished
-- job, or one claimed again by someone else, has another token (or none).

local expires = ARGV[1]
local lost, cancel = {}, {}
for k = 2, #ARGV, 2 do
  local id, token = ARGV[k], ARGV[k + 1]
  local v = redis.call('HMGET', job_key(id), 'state', 'lease_token', 'cancel_requested', 'handed')
  if v[1] == 'running' and v[2] == token then
    redis.call('HSET', job_key(id), 'lease_expires_at', expires)
    if v[4] then redis.call('HDEL', job_key(id), 'handed') end
    redis.call('ZADD', RUNNING, 'XX', expires, id)
    if v[3] == '1' then cancel[#cancel + 1] = id end
  else
    lost[#lost + 1] = id
  end
end
return {lost, cancel}
