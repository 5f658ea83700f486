"""The SQLite store: the embedded default (``sqlite:///backbeat.db``).

Schema: ``migrations/NNNN_*.sql`` (jobs, workers, task registry, queues), versioned by
``PRAGMA user_version``. WAL mode: readers never block the one writer; several worker
processes share the file, and every write takes the lock up front (``BEGIN IMMEDIATE``).

Invariants the queries rely on:
* A job is ``running`` only with a lease token; every ack and heartbeat matches on
  ``id AND lease_token AND state = 'running'``, so a stale token changes nothing.
* Claiming promotes due ``scheduled`` jobs and takes ``queued`` ones in the same write
  transaction, so two processes can never claim one job: the second sees the first's
  committed ``running`` rows (SQLite serialises writers).
* The claim reads the partial index ``backbeat_jobs_claim`` in dispatch order: a range
  scan per queue, however many finished rows the table holds.
* Before taking the write lock a claim probes (read-only) whether anything is claimable,
  so idle workers woken by others' commits do not queue on the lock.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import Any, TypeVar

from backbeat.errors import InvalidTransition, JobNotFound, ScheduleNotFound
from backbeat.ids import token as new_token
from backbeat.store import rules
from backbeat.store.base import BLOCKING_OK, LEASE_EXPIRED, Store, breaches_by_key
from backbeat.store.sqlite import buckets, schedules
from backbeat.store.sqlite import events as sqlite_events
from backbeat.store.sqlite.connection import (
    ChangeWatcher,
    ConnectionThread,
    SQLiteOptions,
    connect,
    migrate,
    translate,
    write_tx,
)
from backbeat.types import (
    Backlog,
    Breach,
    BucketRequest,
    BucketState,
    Capability,
    ClaimRequest,
    Decision,
    DecisionKind,
    Enqueued,
    EventFilter,
    EventRecord,
    EventSettlement,
    Fire,
    HeartbeatResult,
    IntervalChange,
    JobCount,
    JobFilter,
    JobOutcome,
    JobRecord,
    JobState,
    Lease,
    NewEvent,
    NewJob,
    Outcome,
    QueueInfo,
    ScheduleFilter,
    ScheduleRank,
    ScheduleRecord,
    ScheduleSpec,
    SlaStats,
    StateValue,
    TaskInfo,
    TaskStats,
    Upserted,
    WorkerInfo,
)

COLUMNS = (
    "id, task, queue, state, payload, priority, run_at, order_at, attempts, max_attempts, created_at, "
    "timeout, dedup_key, started_at, finished_at, worker_id, lease_token, lease_expires_at, "
    "cancel_requested, result, error, traceback, schedule_key, fire_at, deadline"
)
LIVE = "('scheduled', 'queued', 'running')"
_FINAL = frozenset({"succeeded", "dead", "cancelled"})
_STATES = {s.value: s for s in JobState}
T = TypeVar("T")


def _nothing(conn: sqlite3.Connection) -> None:
    return None


def _found(key: str, record: ScheduleRecord | None) -> ScheduleRecord:
    if record is None:
        raise ScheduleNotFound(f"no schedule {key!r}")
    return record


def _job(row: Sequence[Any]) -> JobRecord:
    return JobRecord(
        id=row[0],
        task=row[1],
        queue=row[2],
        state=_STATES[row[3]],
        payload=row[4],
        priority=row[5],
        run_at=row[6],
        order_at=row[7],
        attempts=row[8],
        max_attempts=row[9],
        created_at=row[10],
        timeout=row[11],
        dedup_key=row[12],
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


def _marks(n: int) -> str:
    return ", ".join("?" * n)


@lru_cache(maxsize=64)
def _claim_sql(n_queues: int, n_tasks: int) -> tuple[str, str, str]:
    """(probe, promote, claim) statements for a claim over that many queues and tasks."""
    tasks = _marks(n_tasks)
    per_queue = (
        "SELECT * FROM (SELECT id, priority, order_at FROM backbeat_jobs "
        f"WHERE state = 'queued' AND queue = ? AND task IN ({tasks}) "
        "ORDER BY priority DESC, order_at, id LIMIT ?)"
    )
    chosen = " UNION ALL ".join([per_queue] * n_queues)
    queues = _marks(n_queues)
    probe = (
        f"SELECT EXISTS (SELECT 1 FROM backbeat_jobs WHERE state = 'queued' AND queue IN ({queues}) "
        f"AND task IN ({tasks})) OR EXISTS (SELECT 1 FROM backbeat_jobs WHERE state = 'scheduled' "
        f"AND queue IN ({queues}) AND run_at <= ? AND task IN ({tasks}))"
    )
    promote = (
        f"UPDATE backbeat_jobs SET state = 'queued' WHERE state = 'scheduled' AND queue IN ({queues}) AND run_at <= ?"
    )
    claim = (
        "UPDATE backbeat_jobs SET state = 'running', attempts = attempts + 1, started_at = ?, "
        "worker_id = ?, lease_token = ? || id, lease_expires_at = ? "
        f"WHERE id IN (SELECT id FROM ({chosen}) ORDER BY priority DESC, order_at, id LIMIT ?) "
        f"RETURNING {COLUMNS}"
    )
    return probe, promote, claim


def _dispatch_key(job: JobRecord) -> tuple[int, float, str]:
    return (-job.priority, job.order_at, job.id)


class SQLiteStore(Store):
    capabilities = frozenset({Capability.PERSISTENT, Capability.MULTI_PROCESS})

    def __init__(self, path: str, options: SQLiteOptions | None = None) -> None:
        self.path = path
        self.options = options or SQLiteOptions()
        self._lock = threading.Lock()
        self._db: ConnectionThread | None = None
        self._migrated = False
        self._local = threading.local()
        self._inline: list[sqlite3.Connection] = []
        self._watcher = ChangeWatcher(path, self.options)

    async def open(self) -> None:
        await self._run(_nothing)

    async def migrate(self) -> int:
        return await self._run(lambda conn: migrate(conn, self.path))

    async def close(self) -> None:
        with self._lock:
            db, self._db = self._db, None
            inline, self._inline = self._inline, []
            self._local = threading.local()
        if db is not None:
            db.stop()
        for conn in inline:
            conn.close()
        self._watcher.stop()

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn(conn)``: inline on the caller's own connection when a sync call is
        blocked on it anyway (``BLOCKING_OK``), else on the connection thread."""
        if BLOCKING_OK.get():
            conn = self._inline_connection()
            try:
                return fn(conn)
            except sqlite3.Error as exc:
                raise translate(exc) from None
        return await self._thread().run(fn)

    def _thread(self) -> ConnectionThread:
        with self._lock:
            if self._db is None:
                db = ConnectionThread(self.path, self.options, setup=self._migrate)
                db.start()
                self._db = db
            return self._db

    def _inline_connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path, self.options)
            self._migrate(conn)
            with self._lock:
                self._inline.append(conn)
            self._local.conn = conn
        return conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        """Once per store object, on whichever connection comes first."""
        if not self._migrated:
            migrate(conn, self.path)
            self._migrated = True

    # -- jobs --------------------------------------------------------------------------

    async def job_enqueue(self, jobs: Sequence[NewJob], *, now: float) -> list[Enqueued]:
        result: list[Enqueued] = await self._run(lambda conn: _enqueue(conn, jobs, now))
        if any(e.created for e in result):
            self._watcher.poke()
        return result

    async def job_claim(self, request: ClaimRequest, *, now: float) -> list[JobRecord]:
        result: list[JobRecord] = await self._run(lambda conn: _claim(conn, request, now))
        return result

    async def job_heartbeat(
        self, worker_id: str, leases: Sequence[Lease], *, lease: float, now: float
    ) -> HeartbeatResult:
        result: HeartbeatResult = await self._run(lambda conn: _heartbeat(conn, leases, now + lease))
        return result

    async def job_ack(self, outcomes: Sequence[JobOutcome], *, now: float) -> list[str]:
        refused: list[str] = await self._run(lambda conn: _ack(conn, outcomes, now))
        self._watcher.poke()
        return refused

    async def job_get(self, job_id: str) -> JobRecord:
        row = await self._run(
            lambda conn: conn.execute(f"SELECT {COLUMNS} FROM backbeat_jobs WHERE id = ?", (job_id,)).fetchone()
        )
        if row is None:
            raise JobNotFound(f"no job {job_id!r}")
        return _job(row)

    async def job_list(self, filter: JobFilter) -> list[JobRecord]:
        clauses, params = [], []
        filters = (
            ("state", filter.state),
            ("queue", filter.queue),
            ("task", filter.task),
            ("schedule_key", filter.schedule_key),
        )
        for column, value in filters:
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(str(value))
        if filter.before is not None:
            clauses.append("id < ?")
            params.append(filter.before)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        sql = f"SELECT {COLUMNS} FROM backbeat_jobs {where} ORDER BY id DESC LIMIT ?"
        rows = await self._run(lambda conn: conn.execute(sql, (*params, filter.limit)).fetchall())
        return [_job(r) for r in rows]

    async def job_cancel(self, job_id: str, *, now: float) -> JobRecord:
        job: JobRecord = await self._run(lambda conn: _cancel(conn, job_id, now))
        return job

    async def job_retry(self, job_id: str, *, now: float) -> JobRecord:
        job: JobRecord = await self._run(lambda conn: _retry(conn, job_id, now))
        self._watcher.poke()
        return job

    async def job_rescue(self, *, now: float, limit: int = 1000) -> list[JobRecord]:
        jobs: list[JobRecord] = await self._run(lambda conn: _rescue(conn, now, limit))
        if jobs:
            self._watcher.poke()
        return jobs

    async def job_prune(self, cutoffs: Mapping[JobState, float], *, limit: int = 10_000) -> int:
        return int(await self._run(lambda conn: _prune(conn, cutoffs, limit)))

    async def job_next_due(self, queues: Sequence[str]) -> float | None:
        sql = (
            f"SELECT MIN(run_at) FROM backbeat_jobs WHERE state = 'scheduled' AND queue IN ({_marks(len(queues))}) "
            "AND queue NOT IN (SELECT name FROM backbeat_queues WHERE paused = 1)"
        )
        row = await self._run(lambda conn: conn.execute(sql, tuple(queues)).fetchone())
        return None if row[0] is None else float(row[0])

    async def job_counts(self) -> list[JobCount]:
        # live jobs counted from their rows; finished ones kept by triggers (migration 10)
        sql = (
            "SELECT queue, task, state, COUNT(*) FROM backbeat_jobs WHERE state IN ('scheduled', 'queued', 'running') "
            "GROUP BY 1, 2, 3 UNION ALL SELECT queue, task, state, n FROM backbeat_job_counts WHERE n <> 0 "
            "ORDER BY 1, 2, 3"
        )
        rows = await self._run(lambda conn: conn.execute(sql).fetchall())
        return [JobCount(queue=q, task=t, state=_STATES[s], count=n) for q, t, s, n in rows]

    async def job_finished_since(self, since: float) -> dict[JobState, int]:
        sql = (
            "SELECT state, COUNT(*) FROM backbeat_jobs WHERE state IN ('succeeded', 'dead', 'cancelled') "
            "AND finished_at >= ? GROUP BY state"
        )
        rows = await self._run(lambda conn: conn.execute(sql, (since,)).fetchall())
        return {_STATES[s]: n for s, n in rows}

    async def job_stats(self, since: float) -> list[TaskStats]:
        sql = (
            "SELECT task, COUNT(*), TOTAL(MAX(0, finished_at - started_at)) FROM backbeat_jobs "
            "WHERE state IN ('succeeded', 'dead') AND finished_at >= ? GROUP BY task ORDER BY task"
        )
        rows = await self._run(lambda conn: conn.execute(sql, (since,)).fetchall())
        return [TaskStats(task=t, finished=n, run_seconds=s) for t, n, s in rows]

    async def job_backlog(self, queues: Sequence[str], *, now: float) -> Backlog:
        marks = _marks(len(queues))
        sql = (
            f"SELECT COUNT(*), MIN(run_at) FROM backbeat_jobs WHERE queue IN ({marks}) AND state = 'queued' "
            f"UNION ALL SELECT COUNT(*), MIN(run_at) FROM backbeat_jobs WHERE queue IN ({marks}) "
            "AND state = 'scheduled' AND run_at <= ?"
        )
        if not queues:
            return Backlog(count=0, oldest_due=None)
        rows = await self._run(lambda conn: conn.execute(sql, (*queues, *queues, now)).fetchall())
        times = [t for _, t in rows if t is not None]
        return Backlog(count=sum(n for n, _ in rows), oldest_due=min(times) if times else None)

    # -- schedules ---------------------------------------------------------------------

    async def schedule_upsert(
        self, spec: ScheduleSpec, *, next_tick: float | None, next_at: float | None, now: float
    ) -> Upserted:
        return await self._run(lambda conn: schedules.upsert(conn, spec, next_tick, next_at, now))

    async def schedule_get(self, key: str) -> ScheduleRecord:
        return _found(key, await self._run(lambda conn: schedules.get(conn, key)))

    async def schedule_list(self, filter: ScheduleFilter) -> list[ScheduleRecord]:
        return await self._run(lambda conn: schedules.listing(conn, filter))

    async def schedule_worst(
        self, *, after: ScheduleRank | None = None, search: str | None = None, limit: int
    ) -> list[ScheduleRecord]:
        return await self._run(lambda conn: schedules.worst(conn, after, search, limit))

    async def schedule_remove(self, key: str) -> bool:
        sql = "DELETE FROM backbeat_schedules WHERE key = ?"
        return bool(await self._run(lambda conn: conn.execute(sql, (key,)).rowcount))

    async def schedule_pause(self, key: str, *, now: float) -> ScheduleRecord:
        return _found(key, await self._run(lambda conn: schedules.pause(conn, key, now)))

    async def schedule_resume(self, key: str, *, now: float) -> ScheduleRecord:
        record = _found(key, await self._run(lambda conn: schedules.resume(conn, key, now)))
        self._watcher.poke()
        return record

    # -- SLA and the decision log -------------------------------------------------------

    async def sla_check(self, *, now: float, limit: int = 1000) -> list[Breach]:
        return await self._run(lambda conn: schedules.sla_check(conn, now, limit))

    async def sla_ended(self, *, limit: int = 1000) -> list[Breach]:
        return await self._run(lambda conn: schedules.sla_ended(conn, limit))

    async def sla_breaches(self, *, key: str | None, since: float, limit: int = 1000) -> list[Breach]:
        return await self._run(lambda conn: schedules.sla_breaches(conn, key, since, limit))

    async def sla_breaches_of(self, keys: Sequence[str], *, since: float) -> dict[str, list[Breach]]:
        return breaches_by_key(keys, await self._run(lambda conn: schedules.sla_breaches_of(conn, keys, since)))

    async def sla_list(self, *, limit: int) -> list[ScheduleRecord]:
        return await self._run(lambda conn: schedules.sla_list(conn, limit))

    async def sla_stats(self, *, now: float, since: float) -> SlaStats:
        return await self._run(lambda conn: schedules.sla_stats(conn, now, since))

    async def decision_append(self, decisions: Sequence[Decision]) -> None:
        if decisions:
            await self._run(lambda conn: schedules.decision_append(conn, decisions))

    async def decision_list(self, key: str, *, before: float | None = None, limit: int = 100) -> list[Decision]:
        return await self._run(lambda conn: schedules.decision_list(conn, key, before, limit))

    async def decision_since(self, kinds: Sequence[DecisionKind], *, since: float, limit: int) -> list[Decision]:
        return await self._run(lambda conn: schedules.decision_since(conn, kinds, since, limit))

    async def history_prune(self, *, before: float, limit: int = 10_000) -> int:
        return await self._run(lambda conn: schedules.history_prune(conn, before, limit))

    async def schedule_due(self, *, now: float, limit: int) -> list[ScheduleRecord]:
        return await self._run(lambda conn: schedules.due(conn, now, limit))

    async def schedule_next_due(self) -> float | None:
        return await self._run(schedules.next_due)

    async def schedule_fire(self, fires: Sequence[Fire], *, now: float) -> list[bool]:
        fired = await self._run(lambda conn: schedules.fire(conn, fires, now, _fire_job))
        if any(fired):
            self._watcher.poke()
        return fired

    async def schedule_repair(self, *, now: float) -> list[str]:
        return await self._run(lambda conn: schedules.repair(conn, now))

    async def schedule_set_every(self, changes: Sequence[IntervalChange], *, now: float) -> list[bool]:
        done: list[bool] = await self._run(lambda conn: schedules.set_every(conn, changes))
        self._watcher.poke()
        return done

    # -- rate-limit buckets -----------------------------------------------------------

    async def bucket_acquire(self, requests: Sequence[BucketRequest], *, now: float) -> list[float | None]:
        return await self._run(lambda conn: buckets.acquire(conn, requests, now))

    async def bucket_block(self, bucket: str, *, until: float) -> None:
        await self._run(lambda conn: buckets.block(conn, bucket, until))

    async def bucket_state(self, bucket: str, *, now: float, per: float | None) -> BucketState:
        return await self._run(lambda conn: buckets.state(conn, bucket, now, per))

    # -- events ------------------------------------------------------------------------

    async def event_append(self, events: Sequence[NewEvent], *, now: float) -> list[bool]:
        appended: list[bool] = await self._run(lambda conn: sqlite_events.append(conn, events, now))
        self._watcher.poke()
        return appended

    async def event_append_on(self, connection: object, events: Sequence[NewEvent], *, now: float) -> list[bool]:
        if not isinstance(connection, sqlite3.Connection):
            return await super().event_append_on(connection, events, now=now)
        sqlite_events.check_same_file(connection, self.path)
        return sqlite_events.append_on(connection, events, now)

    async def event_settle(self, settlements: Sequence[EventSettlement], *, now: float) -> list[bool]:
        settled: list[bool] = await self._run(lambda conn: sqlite_events.settle(conn, settlements, now, _fire_job))
        self._watcher.poke()
        return settled

    async def event_pending(self, *, limit: int) -> list[EventRecord]:
        return await self._run(lambda conn: sqlite_events.pending(conn, limit))

    async def event_get(self, event_id: str) -> EventRecord:
        return await self._run(lambda conn: sqlite_events.get(conn, event_id))

    async def event_list(self, filter: EventFilter) -> list[EventRecord]:
        return await self._run(lambda conn: sqlite_events.listing(conn, filter))

    async def event_replay(self, event_id: str) -> EventRecord:
        replayed: EventRecord = await self._run(lambda conn: sqlite_events.replay(conn, event_id))
        self._watcher.poke()
        return replayed

    # -- queues ------------------------------------------------------------------------

    async def queue_pause(self, queue: str, *, now: float) -> None:
        sql = (
            "INSERT INTO backbeat_queues (name, paused, paused_at) VALUES (?, 1, ?) "
            "ON CONFLICT (name) DO UPDATE SET paused = 1, paused_at = COALESCE(paused_at, excluded.paused_at)"
        )
        await self._run(lambda conn: conn.execute(sql, (queue, now)))

    async def queue_resume(self, queue: str) -> None:
        sql = "UPDATE backbeat_queues SET paused = 0, paused_at = NULL WHERE name = ?"
        await self._run(lambda conn: conn.execute(sql, (queue,)))
        self._watcher.poke()

    async def queue_purge(self, queue: str) -> int:
        sql = "DELETE FROM backbeat_jobs WHERE queue = ? AND state IN ('queued', 'scheduled')"
        return int(await self._run(lambda conn: conn.execute(sql, (queue,)).rowcount))

    async def queue_list(self) -> list[QueueInfo]:
        sql = "SELECT name, paused, paused_at FROM backbeat_queues ORDER BY name"
        rows = await self._run(lambda conn: conn.execute(sql).fetchall())
        return [QueueInfo(name=n, paused=bool(p), paused_at=t) for n, p, t in rows]

    async def wakeup_wait(self, timeout: float) -> bool:
        return await self._watcher.wait(timeout)

    # -- workers -----------------------------------------------------------------------

    async def worker_register(self, info: WorkerInfo) -> None:
        await self._run(lambda conn: _register(conn, info))

    async def worker_heartbeat(self, worker_id: str, *, in_flight: int, now: float) -> bool:
        sql = "UPDATE backbeat_workers SET heartbeat_at = ?, in_flight = ? WHERE id = ?"
        count = await self._run(lambda conn: conn.execute(sql, (now, in_flight, worker_id)).rowcount)
        return bool(count)

    async def worker_unregister(self, worker_id: str) -> None:
        await self._run(lambda conn: conn.execute("DELETE FROM backbeat_workers WHERE id = ?", (worker_id,)))

    async def worker_list(self) -> list[WorkerInfo]:
        return list(await self._run(_workers))

    async def worker_prune(self, *, dead_before: float) -> list[str]:
        sql = "DELETE FROM backbeat_workers WHERE heartbeat_at < ? RETURNING id"
        rows = await self._run(lambda conn: conn.execute(sql, (dead_before,)).fetchall())
        return [r[0] for r in rows]

    async def task_list(self) -> list[TaskInfo]:
        rows = await self._run(lambda conn: conn.execute(f"{TASK_SELECT} ORDER BY name").fetchall())
        return [_task(r) for r in rows]

    # -- published state ---------------------------------------------------------------

    async def state_set(self, name: str, value: str, *, now: float) -> None:
        sql = "INSERT OR REPLACE INTO backbeat_state (name, value, updated_at) VALUES (?, ?, ?)"
        await self._run(lambda conn: conn.execute(sql, (name, value, now)))

    async def state_get(self, name: str) -> StateValue | None:
        sql = "SELECT value, updated_at FROM backbeat_state WHERE name = ?"
        row = await self._run(lambda conn: conn.execute(sql, (name,)).fetchone())
        return None if row is None else StateValue(value=row[0], updated_at=row[1])


# -- the statements, run on the connection thread -------------------------------------

_INSERT = (
    "INSERT INTO backbeat_jobs (id, task, queue, state, payload, priority, run_at, order_at, attempts, "
    "max_attempts, created_at, timeout, dedup_key, schedule_key, fire_at, deadline) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?, ?, ?, ?) "
    f"ON CONFLICT (dedup_key) WHERE dedup_key IS NOT NULL AND state IN {LIVE} DO NOTHING"
)


def _enqueue(conn: sqlite3.Connection, jobs: Sequence[NewJob], now: float) -> list[Enqueued]:
    out: list[Enqueued] = []
    with write_tx(conn):
        for queue in {new.queue for new in jobs}:
            _register_queue(conn, queue)
        for new in jobs:
            job = _insert_job(conn, new, now)
            if job is not None:
                out.append(Enqueued(job=job, created=True))
            else:
                row = conn.execute(
                    f"SELECT {COLUMNS} FROM backbeat_jobs WHERE dedup_key = ? AND state IN {LIVE}", (new.dedup_key,)
                ).fetchone()
                out.append(Enqueued(job=_job(row), created=False))
    return out


def _register_queue(conn: sqlite3.Connection, queue: str) -> None:
    conn.execute("INSERT OR IGNORE INTO backbeat_queues (name) VALUES (?)", (queue,))


def _insert_job(conn: sqlite3.Connection, new: NewJob, now: float) -> JobRecord | None:
    """Insert one job (within a write transaction); None if a live job holds its dedup key."""
    job = rules.new_record(new, now)
    values = (
        new.id,
        new.task,
        new.queue,
        job.state.value,
        new.payload,
        new.priority,
        new.run_at,
        job.order_at,
        new.max_attempts,
        now,
        new.timeout,
        new.dedup_key,
        new.schedule_key,
        new.fire_at,
        new.deadline,
    )
    if conn.execute(_INSERT, values).rowcount != 1:
        return None
    return job


def _fire_job(conn: sqlite3.Connection, new: NewJob, now: float) -> None:
    _register_queue(conn, new.queue)
    _insert_job(conn, new, now)


def _claim(conn: sqlite3.Connection, request: ClaimRequest, now: float) -> list[JobRecord]:
    if not request.tasks or request.limit < 1:
        return []
    paused = {r[0] for r in conn.execute("SELECT name FROM backbeat_queues WHERE paused = 1")}
    # a queue named twice is read once (else its jobs would fill the batch's LIMIT twice over)
    queues = tuple(q for q in dict.fromkeys(request.queues) if q not in paused)
    tasks = tuple(sorted(request.tasks))
    if not queues:
        return []
    probe, promote, claim = _claim_sql(len(queues), len(tasks))
    if not conn.execute(probe, (*queues, *tasks, *queues, now, *tasks)).fetchone()[0]:
        return []
    params: list[Any] = [now, request.worker_id, new_token() + ".", now + request.lease]
    for queue in queues:
        params += [queue, *tasks, request.limit]
    params.append(request.limit)
    with write_tx(conn):
        conn.execute(promote, (*queues, now))
        rows = conn.execute(claim, params).fetchall()
    return sorted((_job(r) for r in rows), key=_dispatch_key)


def _heartbeat(conn: sqlite3.Connection, leases: Sequence[Lease], expires: float) -> HeartbeatResult:
    lost: set[str] = set()
    cancel: set[str] = set()
    sql = (
        "UPDATE backbeat_jobs SET lease_expires_at = ? WHERE id = ? AND lease_token = ? AND state = 'running' "
        "RETURNING cancel_requested"
    )
    with write_tx(conn):
        for lease in leases:
            row = conn.execute(sql, (expires, lease.job_id, lease.token)).fetchone()
            if row is None:
                lost.add(lease.job_id)
            elif row[0]:
                cancel.add(lease.job_id)
    return HeartbeatResult(lost=frozenset(lost), cancel_requested=frozenset(cancel))


_HELD = "WHERE id = ? AND lease_token = ? AND state = 'running' RETURNING schedule_key, state, started_at"
_RETRY_ORDER = "order_at = CASE WHEN deadline IS NULL THEN COALESCE(?, order_at) ELSE order_at END"
_FREE = "lease_token = NULL, lease_expires_at = NULL, bucket = NULL"
_ACK_SQL = {
    Outcome.SUCCEEDED: f"UPDATE backbeat_jobs SET state = 'succeeded', result = ?, finished_at = ?, {_FREE} {_HELD}",
    Outcome.FAILED: (
        "UPDATE backbeat_jobs SET state = CASE WHEN ? IS NULL THEN 'dead' ELSE 'scheduled' END, "
        f"run_at = COALESCE(?, run_at), {_RETRY_ORDER}, error = ?, traceback = ?, "
        f"finished_at = CASE WHEN ? IS NULL THEN ? END, {_FREE} {_HELD}"
    ),
    Outcome.SNOOZED: (
        f"UPDATE backbeat_jobs SET state = 'scheduled', run_at = ?, {_RETRY_ORDER}, attempts = attempts - 1, "
        f"{_FREE} {_HELD}"
    ),
    Outcome.RELEASED: f"UPDATE backbeat_jobs SET state = 'queued', attempts = attempts - 1, {_FREE} {_HELD}",
    Outcome.CANCELLED: f"UPDATE backbeat_jobs SET state = 'cancelled', finished_at = ?, {_FREE} {_HELD}",
}


def _ack_params(o: JobOutcome, now: float) -> tuple[Any, ...]:
    held = (o.lease.job_id, o.lease.token)
    match o.outcome:
        case Outcome.SUCCEEDED:
            return (o.result, now, *held)
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


def _ack(conn: sqlite3.Connection, outcomes: Sequence[JobOutcome], now: float) -> list[str]:
    refused: list[str] = []
    with write_tx(conn):
        for outcome in outcomes:
            row = conn.execute(_ACK_SQL[outcome.outcome], _ack_params(outcome, now)).fetchone()
            if row is None:
                refused.append(outcome.lease.job_id)
            elif row[0] is not None and row[1] in _FINAL:
                schedules.finish_run(conn, row[0], outcome.lease.job_id, JobState(row[1]), row[2], now, outcome.next_in)
    return refused


def _get(conn: sqlite3.Connection, job_id: str) -> JobRecord:
    row = conn.execute(f"SELECT {COLUMNS} FROM backbeat_jobs WHERE id = ?", (job_id,)).fetchone()
    if row is None:
        raise JobNotFound(f"no job {job_id!r}")
    return _job(row)


def _cancel(conn: sqlite3.Connection, job_id: str, now: float) -> JobRecord:
    with write_tx(conn):
        job = _get(conn, job_id)
        if job.state in (JobState.SCHEDULED, JobState.QUEUED):
            conn.execute("UPDATE backbeat_jobs SET state = 'cancelled', finished_at = ? WHERE id = ?", (now, job_id))
            if job.schedule_key is not None:
                schedules.finish_run(conn, job.schedule_key, job_id, JobState.CANCELLED, job.started_at, now)
        elif job.state is JobState.RUNNING:
            conn.execute("UPDATE backbeat_jobs SET cancel_requested = 1 WHERE id = ?", (job_id,))
        return _get(conn, job_id)


def _retry(conn: sqlite3.Connection, job_id: str, now: float) -> JobRecord:
    with write_tx(conn):
        job = _get(conn, job_id)
        if job.state not in (JobState.DEAD, JobState.CANCELLED):
            raise InvalidTransition(f"job {job_id} is {job.state}; only dead or cancelled jobs can be retried")
        if job.dedup_key is not None:
            holder = conn.execute(
                f"SELECT id FROM backbeat_jobs WHERE dedup_key = ? AND state IN {LIVE}", (job.dedup_key,)
            ).fetchone()
            if holder is not None:
                raise InvalidTransition(
                    f"job {job_id} cannot be retried: job {holder[0]} already holds its dedup key {job.dedup_key!r}"
                )
        conn.execute(
            "UPDATE backbeat_jobs SET state = 'queued', run_at = ?, order_at = ?, attempts = 0, finished_at = NULL, "
            "cancel_requested = 0 WHERE id = ?",
            (now, now, job_id),
        )
        return _get(conn, job_id)


def _rescue(conn: sqlite3.Connection, now: float, limit: int) -> list[JobRecord]:
    sql = (
        "UPDATE backbeat_jobs SET "
        "state = CASE WHEN cancel_requested THEN 'cancelled' WHEN attempts >= max_attempts THEN 'dead' "
        "ELSE 'queued' END, "
        "finished_at = CASE WHEN cancel_requested OR attempts >= max_attempts THEN ? END, "
        f"error = ?, traceback = NULL, {_FREE} "
        "WHERE id IN (SELECT id FROM backbeat_jobs WHERE state = 'running' AND lease_expires_at < ? LIMIT ?) "
        f"RETURNING {COLUMNS}"
    )
    with write_tx(conn):
        jobs = [_job(r) for r in conn.execute(sql, (now, LEASE_EXPIRED, now, limit)).fetchall()]
        for job in jobs:
            if job.schedule_key is not None and job.state.is_final:
                schedules.finish_run(conn, job.schedule_key, job.id, job.state, job.started_at, now)
    return jobs


def _prune(conn: sqlite3.Connection, cutoffs: Mapping[JobState, float], limit: int) -> int:
    deleted = 0
    sql = (
        "DELETE FROM backbeat_jobs WHERE id IN (SELECT id FROM backbeat_jobs "
        "WHERE state = ? AND finished_at IS NOT NULL AND finished_at < ? LIMIT ?)"
    )
    with write_tx(conn):
        for state, cutoff in cutoffs.items():
            deleted += conn.execute(sql, (state.value, cutoff, limit)).rowcount
    return deleted


def _register(conn: sqlite3.Connection, info: WorkerInfo) -> None:
    with write_tx(conn):
        conn.execute(
            "INSERT OR REPLACE INTO backbeat_workers (id, host, pid, queues, concurrency, tasks, started_at, "
            "heartbeat_at, in_flight, version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
        conn.executemany(
            "INSERT OR REPLACE INTO backbeat_tasks (name, queue, max_attempts, timeout, priority, secret, handles) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (t.name, t.queue, t.max_attempts, t.timeout, t.priority, json.dumps(list(t.secret)), t.handles)
                for t in info.tasks
            ],
        )


TASK_SELECT = "SELECT name, queue, max_attempts, timeout, priority, secret, handles FROM backbeat_tasks"


def _task(r: Sequence[Any]) -> TaskInfo:
    return TaskInfo(
        name=r[0],
        queue=r[1],
        max_attempts=r[2],
        timeout=r[3],
        priority=r[4],
        secret=tuple(json.loads(r[5])),
        handles=r[6],
    )


def _workers(conn: sqlite3.Connection) -> list[WorkerInfo]:
    tasks = {r[0]: _task(r) for r in conn.execute(TASK_SELECT)}
    rows = conn.execute(
        "SELECT id, host, pid, queues, concurrency, tasks, started_at, heartbeat_at, in_flight, version "
        "FROM backbeat_workers ORDER BY started_at, id"
    ).fetchall()
    return [
        WorkerInfo(
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
        for r in rows
    ]
