-- queue_pause.lua: stop claims from a queue (Store.queue_pause).
--
-- Keys (P = "{prefix}"; KEYS[1] = P:meta):
--   P:paused   hash   queue -> paused_at (kept from the first pause)
--   P:queues   set    every queue that ever had a job or was paused
-- ARGV: queue, now.

redis.call('HSETNX', PAUSED, ARGV[1], ARGV[2])
redis.call('SADD', QUEUES, ARGV[1])
return 1
