"""The Redis store (``redis://``, ``rediss://``): redis-py's asyncio client with hiredis.

The key layout is in ``keys.py``; every multi-key step is one Lua script in
``scripts/`` (atomic: no other command runs while a script does). The methods are
grouped by entity, as in the other stores: ``jobs.py`` (jobs, queues, wake-ups,
workers), ``schedules.py`` (schedules, SLA, the decision log), ``events.py`` (events,
rate-limit buckets); ``connection.py`` holds what they share.

Invariants the scripts rely on (``scripts/lib.lua`` has the conventions):
* A job is ``running`` only with a lease token; heartbeat and ack match on state and
  token inside the script, so a stale token changes nothing.
* Every transition moves a job between the structures of its old and new state in one
  script, so each job is always in exactly one state structure, its id index and one
  counter, and its dedup key is held exactly while it is live.
* A schedule's run ends in the script that makes its job final (ack, rescue, cancel),
  and a fire is a compare-and-set on ``next_at`` plus the uniqueness of (key, fire_at)
  in ``P:fired`` (``scripts/lib_schedules.lua``).
* An event is settled in one script with its handlers' jobs, only if it was pending or
  unknown; bucket grants are decided in one script per batch.
* Times come from the caller (``now``); Redis's own clock is never read.
"""

from __future__ import annotations

from backbeat.store.redis.events import EventMethods
from backbeat.store.redis.jobs import JobMethods
from backbeat.store.redis.schedules import ScheduleMethods


class RedisStore(JobMethods, ScheduleMethods, EventMethods):
    """The store on one Redis server, under one key prefix."""
