"""The PostgreSQL store's job rows: decoding them, and inserting new jobs (``job_enqueue``,
fired schedules, settled events and callers' own transactions all insert through
``insert_jobs``: one statement per batch, dedup by the partial unique index).

Internal module.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from backbeat.errors import StoreError
from backbeat.store.postgres.connection import Row, Tx
from backbeat.store.rules import new_record
from backbeat.types import Enqueued, JobRecord, JobState, NewJob

COLUMNS = (
    "id, task, queue, state, payload, priority, run_at, order_at, attempts, max_attempts, created_at, "
    "timeout, dedup_key, started_at, finished_at, worker_id, lease_token, lease_expires_at, "
    "cancel_requested, result, error, traceback, schedule_key, fire_at, deadline"
)
LIVE = "('scheduled', 'queued', 'running')"
STATES = {s.value: s for s in JobState}


def key_bytes(key: str | None) -> bytes | None:
    """A dedup key as stored: bytea, since PostgreSQL text cannot hold a NUL character."""
    return None if key is None else key.encode("utf-8", "surrogatepass")


def key_text(stored: bytes | None) -> str | None:
    return None if stored is None else bytes(stored).decode("utf-8", "surrogatepass")


def job_record(row: Row) -> JobRecord:
    return JobRecord(
        id=row[0],
        task=row[1],
        queue=row[2],
        state=STATES[row[3]],
        payload=row[4],
        priority=row[5],
        run_at=row[6],
        order_at=row[7],
        attempts=row[8],
        max_attempts=row[9],
        created_at=row[10],
        timeout=row[11],
        dedup_key=key_text(row[12]),
        started_at=row[13],
        finished_at=row[14],
        worker_id=row[15],
        lease_token=row[16],
        lease_expires_at=row[17],
        cancel_requested=bool(row[18]),
        result=row[19],
        error=row[20],
        traceback=row[21],
        schedule_key=row[22],
        fire_at=row[23],
        deadline=row[24],
    )


# -- enqueue -------------------------------------------------------------------------

INSERT_SELECT = (
    "INSERT INTO backbeat_jobs (id, task, queue, state, payload, priority, run_at, order_at, max_attempts, "
    "created_at, timeout, dedup_key, schedule_key, fire_at, deadline) "
    "SELECT u.id, u.task, u.queue, u.state, u.payload, u.priority, u.run_at, u.order_at, u.max_attempts, %s, "
    "u.timeout, u.dedup_key, u.schedule_key, u.fire_at, u.deadline FROM unnest("
    "%s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::int[], %s::float8[], %s::float8[], "
    "%s::int[], %s::float8[], %s::bytea[], %s::text[], %s::float8[], %s::float8[]) WITH ORDINALITY AS "
    "u(id, task, queue, state, payload, priority, run_at, order_at, max_attempts, timeout, dedup_key, "
    "schedule_key, fire_at, deadline, n)"
)
"""Jobs inserted from arrays, one per column (parameters: ``now``, then ``_columns``)."""
DEDUP = f"ON CONFLICT (dedup_key) WHERE dedup_key IS NOT NULL AND state IN {LIVE} DO NOTHING"
_INSERT = (
    "WITH queues AS (INSERT INTO backbeat_queues (name) SELECT unnest(%s::text[]) ON CONFLICT DO NOTHING) "
    f"{INSERT_SELECT} ORDER BY u.n {DEDUP} RETURNING id, pg_notify(%s, '')"
)
"""One statement for a batch: the queues registered, the jobs inserted in order (a dedup
key a live job holds, or an earlier job of the batch, skips the row), and the store's
listeners notified when the transaction commits (in autocommit: at once)."""
_INSERT_ONE = (
    "WITH queues AS (INSERT INTO backbeat_queues (name) VALUES (%s) ON CONFLICT DO NOTHING) "
    "INSERT INTO backbeat_jobs (id, task, queue, state, payload, priority, run_at, order_at, max_attempts, "
    "timeout, dedup_key, schedule_key, fire_at, deadline, created_at) "
    f"VALUES ({', '.join(['%s'] * 15)}) {DEDUP} RETURNING id, pg_notify(%s, '')"
)
"""``_INSERT`` for the most common batch, one job: plain values instead of one-element
arrays (measured 0.13 ms less per enqueue back to back, 0.3 ms after an idle gap)."""


def columns(records: Sequence[JobRecord]) -> list[list[Any]]:
    return [
        [r.id for r in records],
        [r.task for r in records],
        [r.queue for r in records],
        [r.state.value for r in records],
        [r.payload for r in records],
        [r.priority for r in records],
        [r.run_at for r in records],
        [r.order_at for r in records],
        [r.max_attempts for r in records],
        [r.timeout for r in records],
        [key_bytes(r.dedup_key) for r in records],
        [r.schedule_key for r in records],
        [r.fire_at for r in records],
        [r.deadline for r in records],
    ]


async def insert_jobs(db: Tx, jobs: Sequence[NewJob], now: float) -> list[Enqueued]:
    """Insert ``jobs`` with one statement (atomic on its own; part of the transaction ``db``
    has open, if any); a job whose dedup key a live job holds returns that job
    (``created=False``, read by a second statement)."""
    if len({j.id for j in jobs}) != len(jobs):
        raise StoreError("job id repeated within one batch")
    queues = sorted({j.queue for j in jobs})
    records = [new_record(j, now) for j in jobs]
    if len(records) == 1:
        values = [column[0] for column in columns(records)]
        inserted = await db.rows(_INSERT_ONE, (queues[0], *values, now, db.channel))
    else:
        inserted = await db.rows(_INSERT, (queues, now, *columns(records), db.channel))
    created = {r[0] for r in inserted}
    held: dict[str | None, JobRecord] = {}
    keys = [key_bytes(j.dedup_key) for j in jobs if j.id not in created]
    if keys:
        rows = await db.rows(
            f"SELECT {COLUMNS} FROM backbeat_jobs WHERE dedup_key = ANY(%s) AND state IN {LIVE}", (keys,)
        )
        held = {key_text(r[12]): job_record(r) for r in rows}
    out = []
    for new, record in zip(jobs, records, strict=True):
        if new.id in created:
            out.append(Enqueued(job=record, created=True))
        elif new.dedup_key in held:
            out.append(Enqueued(job=held[new.dedup_key], created=False))
        else:  # the holder finished between the insert and the read: rare; the caller retries
            raise StoreError(f"dedup key {new.dedup_key!r} changed hands during the enqueue; enqueue again")
    return out
