-- decision_append.lua: add entries to schedules' decision logs (Store.decision_append).
--
-- Keys (P = "{prefix}"; KEYS[1] = P:meta):
--   P:decision-seq     string  the last entry's number (zero-padded: members sort by it)
--   P:decisions        hash    number -> the entry, JSON [key, at, kind, detail, job_id]
--   P:dlog:<key>       zset    number -> at: one schedule's log (decision_list)
--   P:dkind:<kind>     zset    number -> at: one kind across schedules (decision_since)
--   P:decisions-at     zset    number -> at: every entry (history_prune)
-- ARGV: a JSON array of entries, each [key, at, kind, detail, job_id or null].
--
-- Entries at the same time order by their number, so "newest first" lists the last
-- appended first.

for _, d in ipairs(cjson.decode(ARGV[1])) do
  local id = string.format('%016d', redis.call('INCR', P .. ':decision-seq'))
  redis.call('HSET', P .. ':decisions', id, cjson.encode(d))
  redis.call('ZADD', P .. ':dlog:' .. d[1], d[2], id)
  redis.call('ZADD', P .. ':dkind:' .. d[3], d[2], id)
  redis.call('ZADD', P .. ':decisions-at', d[2], id)
end
return 1
