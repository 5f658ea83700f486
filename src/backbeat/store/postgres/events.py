"""The PostgreSQL store: events (``backbeat_events``) and rate-limit buckets
(``backbeat_buckets``, ``backbeat_bucket_starts``, and ``backbeat_jobs.bucket``).

Invariants:
* An event's id is its primary key, so a redelivered event is recognised whatever its
  source. Settling locks the row (``FOR UPDATE``) and moves it from ``pending`` (or from
  nothing) to a final state in the same transaction as its jobs' inserts; a second
  settler waits on the lock, then finds it settled. A savepoint per event keeps a
  batch's settlements independent.
* A bucket's decisions are serialised by its row lock: a batch first creates and locks
  every bucket it names, in name order (so two batches never deadlock), then decides
  its requests in order, so two workers never both take the last start or slot.

Internal module.
"""

from __future__ import annotations

from collections.abc import Sequence

from backbeat.errors import EventError, EventNotFound, InvalidTransition
from backbeat.store.postgres.connection import PostgresBase, Row, Tx
from backbeat.store.postgres.rows import insert_jobs
from backbeat.types import BucketRequest, BucketState, EventFilter, EventRecord, EventSettlement, EventState, NewEvent

COLUMNS = "id, name, key, occurred_at, received_at, payload, source, state, reason, jobs, settled_at"
CONCURRENCY_RETRY = 1.0
"""Seconds a job denied by a concurrency limit waits before asking again."""


def record(row: Row) -> EventRecord:
    return EventRecord(
        id=row[0],
        name=row[1],
        key=row[2],
        occurred_at=row[3],
        received_at=row[4],
        payload=row[5],
        source=row[6],
        state=EventState(row[7]),
        reason=row[8],
        jobs=row[9],
        settled_at=row[10],
    )


async def append_events(db: Tx, events: Sequence[NewEvent], now: float) -> list[bool]:
    """Insert pending events in the transaction ``db`` has open (maybe the caller's)."""
    if not events:
        return []
    rows = await db.rows(
        "INSERT INTO backbeat_events (id, name, key, occurred_at, received_at, payload, source, state) "
        "SELECT e.id, e.name, e.key, e.occurred_at, %s, e.payload, e.source, 'pending' FROM unnest("
        "%s::text[], %s::text[], %s::text[], %s::float8[], %s::text[], %s::text[]) WITH ORDINALITY "
        "AS e(id, name, key, occurred_at, payload, source, n) ORDER BY e.n ON CONFLICT (id) DO NOTHING RETURNING id",
        (
            now,
            [e.id for e in events],
            [e.name for e in events],
            [e.key for e in events],
            [e.occurred_at for e in events],
            [e.payload for e in events],
            [e.source for e in events],
        ),
    )
    added = {r[0] for r in rows}
    if added:
        await db.notify()
    seen: set[str] = set()
    out = []
    for e in events:  # a repeated id within the batch: only its first is new
        out.append(e.id in added and e.id not in seen)
        seen.add(e.id)
    return out


async def _settle_one(db: Tx, s: EventSettlement, now: float) -> bool:
    await db.run(
        "INSERT INTO backbeat_events (id, name, key, occurred_at, received_at, payload, source, state) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, 'pending') ON CONFLICT (id) DO NOTHING",
        (s.event.id, s.event.name, s.event.key, s.event.occurred_at, now, s.event.payload, s.event.source),
    )
    row = await db.row("SELECT state FROM backbeat_events WHERE id = %s FOR UPDATE", (s.event.id,))
    if row is None or row[0] != EventState.PENDING.value:
        return False
    await db.run(
        "UPDATE backbeat_events SET state = %s, reason = %s, jobs = %s, settled_at = %s, payload = %s WHERE id = %s",
        (s.state.value, s.reason, len(s.jobs), now, s.event.payload, s.event.id),
    )
    if s.jobs:
        await insert_jobs(db, s.jobs, now)
    return True


async def prune_events(db: Tx, before: float, limit: int) -> int:
    return await db.run(
        "DELETE FROM backbeat_events WHERE id IN (SELECT id FROM backbeat_events WHERE state <> 'pending' "
        "AND received_at < %s LIMIT %s)",
        (before, limit),
    )


async def _acquire(db: Tx, r: BucketRequest, now: float) -> float | None:
    row = await db.row("SELECT blocked_until FROM backbeat_buckets WHERE bucket = %s", (r.bucket,))
    if row is not None and row[0] is not None and row[0] > now:
        return float(row[0])
    if r.limit is not None and r.per is not None:
        await db.run("DELETE FROM backbeat_bucket_starts WHERE bucket = %s AND at <= %s", (r.bucket, now - r.per))
        counted = await db.row("SELECT COUNT(*), MIN(at) FROM backbeat_bucket_starts WHERE bucket = %s", (r.bucket,))
        assert counted is not None
        if counted[0] >= r.limit:
            return float(counted[1]) + r.per
    if r.concurrency is not None:
        running = await db.row(
            "SELECT COUNT(*) FROM backbeat_jobs WHERE bucket = %s AND state = 'running'", (r.bucket,)
        )
        assert running is not None
        if running[0] >= r.concurrency:
            return now + CONCURRENCY_RETRY
    if r.limit is not None:
        await db.run("INSERT INTO backbeat_bucket_starts (bucket, at) VALUES (%s, %s)", (r.bucket, now))
    await db.run("UPDATE backbeat_jobs SET bucket = %s WHERE id = %s", (r.bucket, r.job_id))
    return None


class EventMethods(PostgresBase):
    # -- events ------------------------------------------------------------------------

    async def event_append(self, events: Sequence[NewEvent], *, now: float) -> list[bool]:
        async with self.tx() as db:
            return await append_events(db, events, now)

    async def event_append_on(self, connection: object, events: Sequence[NewEvent], *, now: float) -> list[bool]:
        db = self.caller_tx(connection)
        if db is None:
            return await super().event_append_on(connection, events, now=now)
        await self._check_caller(db, EventError)
        return await append_events(db, events, now)

    async def event_settle(self, settlements: Sequence[EventSettlement], *, now: float) -> list[bool]:
        out = []
        async with self.tx() as db:
            for s in settlements:
                async with db.transaction():  # a savepoint
                    out.append(await _settle_one(db, s, now))
        return out

    async def event_pending(self, *, limit: int) -> list[EventRecord]:
        rows = await self.rows(
            f"SELECT {COLUMNS} FROM backbeat_events WHERE state = 'pending' ORDER BY received_at, id LIMIT %s", (limit,)
        )
        return [record(r) for r in rows]

    async def event_get(self, event_id: str) -> EventRecord:
        row = await self.row(f"SELECT {COLUMNS} FROM backbeat_events WHERE id = %s", (event_id,))
        if row is None:
            raise EventNotFound(f"no event {event_id!r}")
        return record(row)

    async def event_list(self, filter: EventFilter) -> list[EventRecord]:
        clauses, params = [], []
        for column, value in (("state", filter.state), ("name", filter.name)):
            if value is not None:
                clauses.append(f"{column} = %s")
                params.append(str(value))
        if filter.before is not None:
            clauses.append("id < %s")
            params.append(filter.before)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = await self.rows(
            f"SELECT {COLUMNS} FROM backbeat_events {where} ORDER BY id DESC LIMIT %s", (*params, filter.limit)
        )
        return [record(r) for r in rows]

    async def event_replay(self, event_id: str) -> EventRecord:
        async with self.tx() as db:
            row = await db.row(f"SELECT {COLUMNS} FROM backbeat_events WHERE id = %s FOR UPDATE", (event_id,))
            if row is None:
                raise EventNotFound(f"no event {event_id!r}")
            event = record(row)
            if event.state not in (EventState.DEAD, EventState.UNHANDLED):
                raise InvalidTransition(f"event {event_id} is {event.state}; only dead or unhandled events replay")
            row = await db.row(
                "UPDATE backbeat_events SET state = 'pending', reason = NULL, settled_at = NULL WHERE id = %s "
                f"RETURNING {COLUMNS}",
                (event_id,),
            )
            await db.notify()
        assert row is not None
        return record(row)

    # -- rate-limit buckets -----------------------------------------------------------

    async def bucket_acquire(self, requests: Sequence[BucketRequest], *, now: float) -> list[float | None]:
        if not requests:
            return []
        names = sorted({r.bucket for r in requests})
        async with self.tx() as db:
            await db.run(
                "INSERT INTO backbeat_buckets (bucket) SELECT unnest(%s::text[]) ORDER BY 1 ON CONFLICT DO NOTHING",
                (names,),
            )
            await db.run("SELECT 1 FROM backbeat_buckets WHERE bucket = ANY(%s) ORDER BY bucket FOR UPDATE", (names,))
            return [await _acquire(db, r, now) for r in requests]

    async def bucket_block(self, bucket: str, *, until: float) -> None:
        await self.run(
            "INSERT INTO backbeat_buckets (bucket, blocked_until) VALUES (%s, %s) ON CONFLICT (bucket) DO UPDATE SET "
            "blocked_until = GREATEST(COALESCE(backbeat_buckets.blocked_until, EXCLUDED.blocked_until), "
            "EXCLUDED.blocked_until)",
            (bucket, until),
        )

    async def bucket_state(self, bucket: str, *, now: float, per: float | None) -> BucketState:
        since = float("-inf") if per is None else now - per
        async with self.connection() as db:
            row = await db.row("SELECT blocked_until FROM backbeat_buckets WHERE bucket = %s", (bucket,))
            starts = await db.row(
                "SELECT COUNT(*) FROM backbeat_bucket_starts WHERE bucket = %s AND at > %s", (bucket, since)
            )
            running = await db.row(
                "SELECT COUNT(*) FROM backbeat_jobs WHERE bucket = %s AND state = 'running'", (bucket,)
            )
        assert starts is not None and running is not None
        return BucketState(
            bucket=bucket, blocked_until=None if row is None else row[0], starts=starts[0], running=running[0]
        )
