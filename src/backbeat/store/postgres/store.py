"""The PostgreSQL store (``postgresql://``): psycopg 3 with an asyncio connection pool.

The schema is ``migrations/0001_initial.sql`` (its opening comment has the layout); the
methods are grouped by entity, as in the other stores: ``jobs.py`` (jobs, queues,
workers, the task registry, published state), ``schedules.py`` (schedules, SLA, the
decision log), ``events.py`` (events, rate-limit buckets); ``rows.py`` decodes and
inserts jobs; ``connection.py`` holds the pool, the wake-up listener and migrations.

Invariants the statements rely on:
* A job is ``running`` only with a lease token; heartbeat and ack match on state and
  token, so a stale token changes nothing.
* Claims lock with ``FOR UPDATE SKIP LOCKED``: no job is handed to two claimers, and
  claimers never wait on each other.
* A schedule's run ends in the transaction that makes its job final (ack, rescue,
  cancel), through ``store/rules.py``; a fire is a compare-and-set on ``next_at`` plus
  the unique index on (schedule_key, fire_at).
* Times come from the caller (``now``); the server's clock is never read.
* Writes that make work appear ``pg_notify`` the schema's channel in their transaction,
  so listeners wake when, and only if, the write commits.
"""

from __future__ import annotations

from backbeat.store.postgres.events import EventMethods
from backbeat.store.postgres.jobs import JobMethods
from backbeat.store.postgres.schedules import ScheduleMethods


class PostgresStore(JobMethods, ScheduleMethods, EventMethods):
    """The store in one PostgreSQL database, under one schema."""
