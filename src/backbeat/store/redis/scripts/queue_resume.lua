-- queue_resume.lua: let claims take jobs of a queue again (Store.queue_resume).
--
-- Keys (P = "{prefix}"; KEYS[1] = P:meta):
--   P:paused   hash     the queue's entry is removed
--   P:wake     stream   its jobs may be claimable now: wake waiters
-- ARGV: queue.

if redis.call('HDEL', PAUSED, ARGV[1]) == 1 then wake() end
return 1
