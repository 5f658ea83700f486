"""The PostgreSQL store: jobs, queues, workers, the task registry, published state.

Invariants the statements rely on:
* A job is ``running`` only with a lease token; heartbeat and ack match on
  ``id AND lease_token AND state = 'running'``, so a stale token changes nothing.
* A claim is one statement (a call of ``backbeat_claim``, planned once per session): it
  locks candidates with ``FOR UPDATE SKIP LOCKED`` (so concurrent claimers never wait on,
  nor take, each other's rows), promotes the due delayed jobs it locked and did not take,
  and marks the ones it took ``running``. Per queue it reads the partial index
  ``backbeat_jobs_claim`` in dispatch order (a range scan with a LIMIT, however many rows
  the table holds) and the due jobs from ``backbeat_jobs_due`` (at most ``PROMOTE_CAP``
  per queue and claim, earliest first).
* A job's final transition and its schedule's run end share one transaction
  (``schedules.finish_run``), as ``store/rules.py`` asks.
* Acks and heartbeats are one statement per batch (``unnest`` of the leases), not one
  per job: the round trip, not the row, is what costs.

Internal module.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from backbeat.errors import EnqueueError, InvalidTransition, JobNotFound
from backbeat.ids import token as new_token
from backbeat.store.base import LEASE_EXPIRED
from backbeat.store.postgres import schedules
from backbeat.store.postgres.connection import PostgresBase, Row, Tx
from backbeat.store.postgres.rows import COLUMNS, LIVE, STATES, insert_jobs, job_record, key_bytes
from backbeat.types import (
    Backlog,
    ClaimRequest,
    Enqueued,
    HeartbeatResult,
    JobCount,
    JobFilter,
    JobOutcome,
    JobRecord,
    JobState,
    Lease,
    NewJob,
    Outcome,
    QueueInfo,
    StateValue,
    TaskInfo,
    TaskStats,
    WorkerInfo,
)

PROMOTE_CAP = 1000
"""Most due delayed jobs one claim locks (and promotes) per queue."""


def _dispatch_key(job: JobRecord) -> tuple[int, float, str]:
    return (-job.priority, job.order_at, job.id)


# -- claim ---------------------------------------------------------------------------

_CLAIM = (
    f"SELECT {COLUMNS} FROM backbeat_claim(%(queues)s, %(tasks)s, %(limit)s, {PROMOTE_CAP}, %(now)s, "
    "%(worker)s, %(token)s, %(expires)s)"
)
"""The claim, a call of the function ``backbeat_claim``: its body, and why it is a
function, are in ``migrations/0004_claim.sql``. Its commit does not wait for the disk
(``lazy_tx``): a claim lost to a server crash leaves its jobs queued."""


NEXT_DUE = (
    "SELECT MIN(d.run_at) FROM unnest(%s::text[]) AS q(name) CROSS JOIN LATERAL ("
    "SELECT run_at FROM backbeat_jobs WHERE state = 'scheduled' AND queue = q.name ORDER BY run_at LIMIT 1) d "
    "WHERE NOT EXISTS (SELECT 1 FROM backbeat_queues p WHERE p.name = q.name AND p.paused)"
)
"""The worker's timer: the earliest due time of a delayed job, one index probe per queue."""


# -- acks ----------------------------------------------------------------------------

_FREE = "lease_token = NULL, lease_expires_at = NULL, bucket = NULL"
_HELD = "WHERE id = %s AND lease_token = %s AND state = 'running' RETURNING id, schedule_key, state, started_at"
_RETRY_ORDER = "order_at = CASE WHEN deadline IS NULL THEN COALESCE(%s::float8, order_at) ELSE order_at END"
_SUCCEEDED = (
    f"UPDATE backbeat_jobs j SET state = 'succeeded', result = a.result, finished_at = %s, {_FREE} "
    "FROM unnest(%s::text[], %s::text[], %s::text[]) AS a(id, token, result) "
    "WHERE j.id = a.id AND j.lease_token = a.token AND j.state = 'running' "
    "RETURNING j.id, j.schedule_key, j.state, j.started_at"
)
_ACK_SQL = {
    Outcome.FAILED: (
        "UPDATE backbeat_jobs SET state = CASE WHEN %s::float8 IS NULL THEN 'dead' ELSE 'scheduled' END, "
        f"run_at = COALESCE(%s::float8, run_at), {_RETRY_ORDER}, error = %s, traceback = %s, "
        f"finished_at = CASE WHEN %s::float8 IS NULL THEN %s::float8 END, {_FREE} {_HELD}"
    ),
    Outcome.SNOOZED: (
        f"UPDATE backbeat_jobs SET state = 'scheduled', run_at = %s, {_RETRY_ORDER}, attempts = attempts - 1, "
        f"{_FREE} {_HELD}"
    ),
    Outcome.RELEASED: f"UPDATE backbeat_jobs SET state = 'queued', attempts = attempts - 1, {_FREE} {_HELD}",
    Outcome.CANCELLED: f"UPDATE backbeat_jobs SET state = 'cancelled', finished_at = %s, {_FREE} {_HELD}",
}


def _ack_params(o: JobOutcome, now: float) -> tuple[Any, ...]:
    held = (o.lease.job_id, o.lease.token)
    match o.outcome:
        case Outcome.FAILED:
            r = o.retry_at
            return (r, r, r, o.error, o.traceback, r, now, *held)
        case Outcome.SNOOZED:
            r = now if o.retry_at is None else o.retry_at
            return (r, r, *held)
        case Outcome.RELEASED:
            return held
        case Outcome.CANCELLED:
            return (now, *held)
    raise AssertionError(o.outcome)


async def _ack(db: Tx, outcomes: Sequence[JobOutcome], now: float) -> list[str]:
    done: list[Row] = []
    wins = [o for o in outcomes if o.outcome is Outcome.SUCCEEDED]
    if wins:
        ids = [o.lease.job_id for o in wins]
        tokens = [o.lease.token for o in wins]
        done += await db.rows(_SUCCEEDED, (now, ids, tokens, [o.result for o in wins]))
    requeued = False
    for o in outcomes:
        if o.outcome is not Outcome.SUCCEEDED:
            row = await db.row(_ACK_SQL[o.outcome], _ack_params(o, now))
            if row is not None:
                done.append(row)
                requeued = requeued or row[2] in ("queued", "scheduled")
    next_in = {o.lease.job_id: o.next_in for o in outcomes}
    for job_id, key, state, started_at in sorted(done, key=lambda r: (r[1] or "", r[0])):
        if key is not None and STATES[state].is_final:
            await schedules.finish_run(db, key, job_id, STATES[state], started_at, now, next_in[job_id])
    if requeued:
        await db.notify()
    accepted = {r[0] for r in done}
    return [o.lease.job_id for o in outcomes if o.lease.job_id not in accepted]


# -- cancel, retry, rescue -----------------------------------------------------------


async def _locked(db: Tx, job_id: str) -> JobRecord:
    row = await db.row(f"SELECT {COLUMNS} FROM backbeat_jobs WHERE id = %s FOR UPDATE", (job_id,))
    if row is None:
        raise JobNotFound(f"no job {job_id!r}")
    return job_record(row)


async def _cancel(db: Tx, job_id: str, now: float) -> JobRecord:
    job = await _locked(db, job_id)
    if job.state in (JobState.SCHEDULED, JobState.QUEUED):
        await db.run("UPDATE backbeat_jobs SET state = 'cancelled', finished_at = %s WHERE id = %s", (now, job_id))
        if job.schedule_key is not None:
            await schedules.finish_run(db, job.schedule_key, job_id, JobState.CANCELLED, job.started_at, now)
    elif job.state is JobState.RUNNING:
        await db.run("UPDATE backbeat_jobs SET cancel_requested = true WHERE id = %s", (job_id,))
    return await _locked(db, job_id)


async def _retry(db: Tx, job_id: str, now: float) -> JobRecord:
    job = await _locked(db, job_id)
    if job.state not in (JobState.DEAD, JobState.CANCELLED):
        raise InvalidTransition(f"job {job_id} is {job.state}; only dead or cancelled jobs can be retried")
    if job.dedup_key is not None:
        holder = await db.row(
            f"SELECT id FROM backbeat_jobs WHERE dedup_key = %s AND state IN {LIVE}", (key_bytes(job.dedup_key),)
        )
        if holder is not None:
            raise InvalidTransition(
                f"job {job_id} cannot be retried: job {holder[0]} already holds its dedup key {job.dedup_key!r}"
            )
    await db.run(
        "UPDATE backbeat_jobs SET state = 'queued', run_at = %s, order_at = %s, attempts = 0, finished_at = NULL, "
        "cancel_requested = false WHERE id = %s",
        (now, now, job_id),
    )
    await db.notify()
    return await _locked(db, job_id)


_RESCUE = (
    "UPDATE backbeat_jobs SET "
    "state = CASE WHEN cancel_requested THEN 'cancelled' WHEN attempts >= max_attempts THEN 'dead' ELSE 'queued' END, "
    "finished_at = CASE WHEN cancel_requested OR attempts >= max_attempts THEN %s::float8 END, "
    f"error = %s, traceback = NULL, {_FREE} "
    "WHERE id IN (SELECT id FROM backbeat_jobs WHERE state = 'running' AND lease_expires_at < %s "
    "ORDER BY lease_expires_at LIMIT %s FOR UPDATE SKIP LOCKED) "
    f"RETURNING {COLUMNS}"
)


COUNTS = (
    "SELECT queue, task, state, SUM(n)::bigint FROM (SELECT queue, task, state, n FROM backbeat_job_counts "
    "UNION ALL SELECT queue, task, state, n FROM backbeat_job_count_deltas "
    "UNION ALL SELECT queue, task, state, COUNT(*) FROM backbeat_jobs "
    "WHERE state IN ('scheduled', 'queued', 'running') GROUP BY 1, 2, 3) AS c "
    "GROUP BY 1, 2, 3 HAVING SUM(n) <> 0 ORDER BY 1, 2, 3"
)
"""Live jobs counted from their rows (the backlog); finished ones from the kept counts plus
the deltas not folded yet (migration 5): exact at any snapshot."""
FOLD_COUNTS = (
    "WITH folded AS (DELETE FROM backbeat_job_count_deltas RETURNING queue, task, state, n), "
    "summed AS (SELECT queue, task, state, SUM(n) AS n FROM folded GROUP BY 1, 2, 3) "
    "INSERT INTO backbeat_job_counts AS c (queue, task, state, n) SELECT * FROM summed ORDER BY 1, 2, 3 "
    "ON CONFLICT (queue, task, state) DO UPDATE SET n = c.n + EXCLUDED.n"
)
"""Move the deltas into the kept counts (then the counts at 0 are dropped). Two folds at once
are safe: a delta row is deleted, so summed, by one of them only, and both update the
counts in key order (no deadlock between two workers' maintenance rounds)."""


async def _rescue(db: Tx, now: float, limit: int) -> list[JobRecord]:
    jobs = [job_record(r) for r in await db.rows(_RESCUE, (now, LEASE_EXPIRED, now, limit))]
    for job in sorted(jobs, key=lambda j: (j.schedule_key or "", j.id)):
        if job.schedule_key is not None and job.state.is_final:
            await schedules.finish_run(db, job.schedule_key, job.id, job.state, job.started_at, now)
    if any(j.state is JobState.QUEUED for j in jobs):
        await db.notify()
    return jobs


# -- workers -------------------------------------------------------------------------

TASK_SELECT = "SELECT name, queue, max_attempts, timeout, priority, secret, handles FROM backbeat_tasks"


def task_info(r: Row) -> TaskInfo:
    return TaskInfo(
        name=r[0],
        queue=r[1],
        max_attempts=r[2],
        timeout=r[3],
        priority=r[4],
        secret=tuple(json.loads(r[5])),
        handles=r[6],
    )


async def _register(db: Tx, info: WorkerInfo) -> None:
    await db.run(
        "INSERT INTO backbeat_workers (id, host, pid, queues, concurrency, tasks, started_at, heartbeat_at, "
        "in_flight, version) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET "
        "host = EXCLUDED.host, pid = EXCLUDED.pid, queues = EXCLUDED.queues, concurrency = EXCLUDED.concurrency, "
        "tasks = EXCLUDED.tasks, started_at = EXCLUDED.started_at, heartbeat_at = EXCLUDED.heartbeat_at, "
        "in_flight = EXCLUDED.in_flight, version = EXCLUDED.version",
        (
            info.id,
            info.host,
            info.pid,
            json.dumps(list(info.queues)),
            info.concurrency,
            json.dumps([t.name for t in info.tasks]),
            info.started_at,
            info.heartbeat_at,
            info.in_flight,
            info.version,
        ),
    )
    for t in sorted(info.tasks, key=lambda t: t.name):  # one order: concurrent registrations never deadlock
        await db.run(
            "INSERT INTO backbeat_tasks (name, queue, max_attempts, timeout, priority, secret, handles) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (name) DO UPDATE SET queue = EXCLUDED.queue, "
            "max_attempts = EXCLUDED.max_attempts, timeout = EXCLUDED.timeout, priority = EXCLUDED.priority, "
            "secret = EXCLUDED.secret, handles = EXCLUDED.handles",
            (t.name, t.queue, t.max_attempts, t.timeout, t.priority, json.dumps(list(t.secret)), t.handles),
        )


def _worker(r: Row, tasks: Mapping[str, TaskInfo]) -> WorkerInfo:
    return WorkerInfo(
        id=r[0],
        host=r[1],
        pid=r[2],
        queues=tuple(json.loads(r[3])),
        concurrency=r[4],
        tasks=tuple(tasks.get(n) or TaskInfo(name=n, queue="", max_attempts=1) for n in json.loads(r[5])),
        started_at=r[6],
        heartbeat_at=r[7],
        in_flight=r[8],
        version=r[9],
    )


class JobMethods(PostgresBase):
    # -- jobs --------------------------------------------------------------------------

    async def job_enqueue(self, jobs: Sequence[NewJob], *, now: float) -> list[Enqueued]:
        if not jobs:
            return []
        async with self.connection() as db:  # one statement: a transaction of its own
            return await insert_jobs(db, jobs, now)

    async def job_enqueue_on(self, connection: object, jobs: Sequence[NewJob], *, now: float) -> list[Enqueued]:
        db = self.caller_tx(connection)
        if db is None:
            return await super().job_enqueue_on(connection, jobs, now=now)
        await self._check_caller(db, EnqueueError)
        return await insert_jobs(db, jobs, now) if jobs else []

    async def job_claim(self, request: ClaimRequest, *, now: float) -> list[JobRecord]:
        if request.limit < 1 or not request.tasks or not request.queues:
            return []
        params = {
            "queues": list(dict.fromkeys(request.queues)),
            "tasks": sorted(request.tasks),
            "limit": request.limit,
            "now": now,
            "worker": request.worker_id,
            "token": new_token() + ".",
            "expires": now + request.lease,
        }
        async with self.connection() as db:
            rows = await db.rows(_CLAIM, params)
        return sorted((job_record(r) for r in rows), key=_dispatch_key)

    async def job_heartbeat(
        self, worker_id: str, leases: Sequence[Lease], *, lease: float, now: float
    ) -> HeartbeatResult:
        if not leases:
            return HeartbeatResult(lost=frozenset(), cancel_requested=frozenset())
        rows = await self.rows(
            "UPDATE backbeat_jobs j SET lease_expires_at = %s FROM unnest(%s::text[], %s::text[]) AS l(id, token) "
            "WHERE j.id = l.id AND j.lease_token = l.token AND j.state = 'running' RETURNING j.id, j.cancel_requested",
            (now + lease, [x.job_id for x in leases], [x.token for x in leases]),
        )
        held = {r[0] for r in rows}
        return HeartbeatResult(
            lost=frozenset(x.job_id for x in leases if x.job_id not in held),
            cancel_requested=frozenset(r[0] for r in rows if r[1]),
        )

    async def job_ack(self, outcomes: Sequence[JobOutcome], *, now: float) -> list[str]:
        if not outcomes:
            return []
        async with self.lazy_tx() as db:  # a lost ack only makes its job run again
            return await _ack(db, outcomes, now)

    async def job_get(self, job_id: str) -> JobRecord:
        row = await self.row(f"SELECT {COLUMNS} FROM backbeat_jobs WHERE id = %s", (job_id,))
        if row is None:
            raise JobNotFound(f"no job {job_id!r}")
        return job_record(row)

    async def job_list(self, filter: JobFilter) -> list[JobRecord]:
        clauses, params = [], []
        for column, value in (
            ("state", filter.state),
            ("queue", filter.queue),
            ("task", filter.task),
            ("schedule_key", filter.schedule_key),
        ):
            if value is not None:
                clauses.append(f"{column} = %s")
                params.append(str(value))
        if filter.before is not None:
            clauses.append("id < %s")
            params.append(filter.before)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = await self.rows(
            f"SELECT {COLUMNS} FROM backbeat_jobs {where} ORDER BY id DESC LIMIT %s", (*params, filter.limit)
        )
        return [job_record(r) for r in rows]

    async def job_cancel(self, job_id: str, *, now: float) -> JobRecord:
        async with self.tx() as db:
            return await _cancel(db, job_id, now)

    async def job_retry(self, job_id: str, *, now: float) -> JobRecord:
        async with self.tx() as db:
            return await _retry(db, job_id, now)

    async def job_rescue(self, *, now: float, limit: int = 1000) -> list[JobRecord]:
        async with self.tx() as db:
            rescued = await _rescue(db, now, limit)
        async with self.tx() as db:  # every maintenance round: fold the count deltas (migration 0005)
            await db.run(FOLD_COUNTS)
            await db.run("DELETE FROM backbeat_job_counts WHERE n = 0")
        return rescued

    async def job_prune(self, cutoffs: Mapping[JobState, float], *, limit: int = 10_000) -> int:
        deleted = 0
        async with self.tx() as db:
            for state, cutoff in cutoffs.items():
                deleted += await db.run(
                    "DELETE FROM backbeat_jobs WHERE id IN (SELECT id FROM backbeat_jobs WHERE state = %s "
                    "AND finished_at IS NOT NULL AND finished_at < %s LIMIT %s)",
                    (state.value, cutoff, limit),
                )
        return deleted

    async def job_next_due(self, queues: Sequence[str]) -> float | None:
        row = await self.row(NEXT_DUE, (list(queues),))
        return None if row is None or row[0] is None else float(row[0])

    async def job_counts(self) -> list[JobCount]:
        rows = await self.rows(COUNTS)
        return [JobCount(queue=q, task=t, state=STATES[s], count=n) for q, t, s, n in rows]

    async def job_finished_since(self, since: float) -> dict[JobState, int]:
        rows = await self.rows(
            "SELECT state, COUNT(*) FROM backbeat_jobs WHERE state IN ('succeeded', 'dead', 'cancelled') "
            "AND finished_at IS NOT NULL AND finished_at >= %s GROUP BY state",
            (since,),
        )
        return {STATES[s]: n for s, n in rows}

    async def job_stats(self, since: float) -> list[TaskStats]:
        rows = await self.rows(
            "SELECT task, COUNT(*), COALESCE(SUM(GREATEST(0, finished_at - started_at)), 0) FROM backbeat_jobs "
            "WHERE state IN ('succeeded', 'dead') AND finished_at IS NOT NULL AND finished_at >= %s "
            "GROUP BY task ORDER BY task",
            (since,),
        )
        return [TaskStats(task=t, finished=n, run_seconds=float(s)) for t, n, s in rows]

    async def job_backlog(self, queues: Sequence[str], *, now: float) -> Backlog:
        if not queues:
            return Backlog(count=0, oldest_due=None)
        rows = await self.rows(
            "SELECT COUNT(*), MIN(run_at) FROM backbeat_jobs WHERE queue = ANY(%s) AND state = 'queued' "
            "UNION ALL SELECT COUNT(*), MIN(run_at) FROM backbeat_jobs WHERE queue = ANY(%s) "
            "AND state = 'scheduled' AND run_at <= %s",
            (list(queues), list(queues), now),
        )
        times = [t for _, t in rows if t is not None]
        return Backlog(count=sum(n for n, _ in rows), oldest_due=min(times) if times else None)

    # -- queues ------------------------------------------------------------------------

    async def queue_pause(self, queue: str, *, now: float) -> None:
        await self.run(
            "INSERT INTO backbeat_queues (name, paused, paused_at) VALUES (%s, true, %s) ON CONFLICT (name) "
            "DO UPDATE SET paused = true, paused_at = COALESCE(backbeat_queues.paused_at, EXCLUDED.paused_at)",
            (queue, now),
        )

    async def queue_resume(self, queue: str) -> None:
        async with self.tx() as db:
            await db.run("UPDATE backbeat_queues SET paused = false, paused_at = NULL WHERE name = %s", (queue,))
            await db.notify()

    async def queue_purge(self, queue: str) -> int:
        return await self.run(
            "DELETE FROM backbeat_jobs WHERE queue = %s AND state IN ('queued', 'scheduled')", (queue,)
        )

    async def queue_list(self) -> list[QueueInfo]:
        rows = await self.rows("SELECT name, paused, paused_at FROM backbeat_queues ORDER BY name")
        return [QueueInfo(name=n, paused=bool(p), paused_at=t) for n, p, t in rows]

    # -- workers -----------------------------------------------------------------------

    async def worker_register(self, info: WorkerInfo) -> None:
        async with self.tx() as db:
            await _register(db, info)

    async def worker_heartbeat(self, worker_id: str, *, in_flight: int, now: float) -> bool:
        count = await self.run(
            "UPDATE backbeat_workers SET heartbeat_at = %s, in_flight = %s WHERE id = %s", (now, in_flight, worker_id)
        )
        return bool(count)

    async def worker_unregister(self, worker_id: str) -> None:
        await self.run("DELETE FROM backbeat_workers WHERE id = %s", (worker_id,))

    async def worker_list(self) -> list[WorkerInfo]:
        async with self.connection() as db:
            tasks = {r[0]: task_info(r) for r in await db.rows(TASK_SELECT)}
            rows = await db.rows(
                "SELECT id, host, pid, queues, concurrency, tasks, started_at, heartbeat_at, in_flight, version "
                "FROM backbeat_workers ORDER BY started_at, id"
            )
        return [_worker(r, tasks) for r in rows]

    async def worker_prune(self, *, dead_before: float) -> list[str]:
        rows = await self.rows("DELETE FROM backbeat_workers WHERE heartbeat_at < %s RETURNING id", (dead_before,))
        return sorted(r[0] for r in rows)

    async def task_list(self) -> list[TaskInfo]:
        return [task_info(r) for r in await self.rows(f"{TASK_SELECT} ORDER BY name")]

    # -- published state ---------------------------------------------------------------

    async def state_set(self, name: str, value: str, *, now: float) -> None:
        await self.run(
            "INSERT INTO backbeat_state (name, value, updated_at) VALUES (%s, %s, %s) ON CONFLICT (name) "
            "DO UPDATE SET value = EXCLUDED.value, updated_at = EXCLUDED.updated_at",
            (name, value, now),
        )

    async def state_get(self, name: str) -> StateValue | None:
        row = await self.row("SELECT value, updated_at FROM backbeat_state WHERE name = %s", (name,))
        return None if row is None else StateValue(value=row[0], updated_at=row[1])
