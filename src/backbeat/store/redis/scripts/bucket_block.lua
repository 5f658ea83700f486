-- bucket_block.lua: grant nothing under a bucket before `until`; a later block extends it,
-- an earlier one does not shorten it (Store.bucket_block).
--
-- Keys (P = "{prefix}"; KEYS[1] = P:meta): P:blocked (bucket -> until).
-- ARGV: bucket, until.

local current = redis.call('HGET', P .. ':blocked', ARGV[1])
if not current or tonumber(ARGV[2]) > tonumber(current) then redis.call('HSET', P .. ':blocked', ARGV[1], ARGV[2]) end
return 1
