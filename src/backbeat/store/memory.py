"""The reference store: the protocol in plain Python, in one process (``memory://``).

It exists to make the specification executable (it passes the same conformance suite as
every other store) and to run an application's jobs in its own tests
(``backbeat.testing``). Nothing outlives the process.

Layout: ``_jobs`` maps id -> ``JobRecord`` (frozen; every change replaces the record);
``_live_dedup`` maps a dedup key -> the id of the live job holding it. One
``threading.Lock`` makes every method atomic, also across event loops and threads.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import ClassVar

from backbeat.errors import InvalidTransition, JobNotFound, StoreError
from backbeat.ids import token as new_token
from backbeat.store.base import LEASE_EXPIRED, Store
from backbeat.types import (
    LIVE_STATES,
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
    TaskInfo,
    WorkerInfo,
)


def dispatch_key(job: JobRecord) -> tuple[int, float, str]:
    return (-job.priority, job.order_at, job.id)


class MemoryStore(Store):
    _named: ClassVar[dict[str, MemoryStore]] = {}
    _named_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[str, JobRecord] = {}
        self._live_dedup: dict[str, str] = {}
        self._workers: dict[str, WorkerInfo] = {}
        self._tasks: dict[str, TaskInfo] = {}
        self._queues: dict[str, QueueInfo] = {}
        self._version = 0
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    @classmethod
    def named(cls, name: str) -> MemoryStore:
        """``memory://NAME`` is one store per process and name; ``memory://`` a fresh one."""
        if not name:
            return cls()
        with cls._named_lock:
            return cls._named.setdefault(name, cls())

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def migrate(self) -> int:
        return 0

    # -- helpers (call with the lock held) ---------------------------------------------

    def _put(self, job: JobRecord) -> None:
        old = self._jobs.get(job.id)
        if old is not None and old.dedup_key and old.state in LIVE_STATES:
            self._live_dedup.pop(old.dedup_key, None)
        self._jobs[job.id] = job
        if job.dedup_key and job.state in LIVE_STATES:
            self._live_dedup[job.dedup_key] = job.id
        self._version += 1

    def _notify(self) -> None:
        waiters, self._waiters = self._waiters, []
        for loop, fut in waiters:
            if not loop.is_closed():
                loop.call_soon_threadsafe(_resolve, fut)

    def _held(self, lease: Lease) -> JobRecord | None:
        job = self._jobs.get(lease.job_id)
        if job is None or job.state is not JobState.RUNNING or job.lease_token != lease.token:
            return None
        return job

    # -- jobs --------------------------------------------------------------------------

    async def job_enqueue(self, jobs: Sequence[NewJob], *, now: float) -> list[Enqueued]:
        with self._lock:
            ids = [j.id for j in jobs]
            if len(set(ids)) != len(ids) or any(i in self._jobs for i in ids):
                raise StoreError("job id already exists")
            out: list[Enqueued] = []
            for new in jobs:
                self._queues.setdefault(new.queue, QueueInfo(name=new.queue, paused=False))
                held = self._live_dedup.get(new.dedup_key) if new.dedup_key else None
                if held is not None:
                    out.append(Enqueued(job=self._jobs[held], created=False))
                    continue
                job = JobRecord(
                    id=new.id,
                    task=new.task,
                    queue=new.queue,
                    state=JobState.QUEUED if new.run_at <= now else JobState.SCHEDULED,
                    payload=new.payload,
                    priority=new.priority,
                    run_at=new.run_at,
                    order_at=new.run_at if new.order_at is None else new.order_at,
                    attempts=0,
                    max_attempts=new.max_attempts,
                    created_at=now,
                    timeout=new.timeout,
                    dedup_key=new.dedup_key,
                    schedule_key=new.schedule_key,
                    fire_at=new.fire_at,
                )
                self._put(job)
                out.append(Enqueued(job=job, created=True))
            self._notify()
            return out

    async def job_claim(self, request: ClaimRequest, *, now: float) -> list[JobRecord]:
        with self._lock:
            queues = {q for q in request.queues if not (q in self._queues and self._queues[q].paused)}
            candidates = [
                j
                for j in self._jobs.values()
                if j.queue in queues
                and j.task in request.tasks
                and (j.state is JobState.QUEUED or (j.state is JobState.SCHEDULED and j.run_at <= now))
            ]
            candidates.sort(key=dispatch_key)
            claimed: list[JobRecord] = []
            batch = new_token()
            for job in candidates[: request.limit]:
                job = replace(
                    job,
                    state=JobState.RUNNING,
                    attempts=job.attempts + 1,
                    started_at=now,
                    worker_id=request.worker_id,
                    lease_token=f"{batch}.{job.id}",
                    lease_expires_at=now + request.lease,
                )
                self._put(job)
                claimed.append(job)
            return claimed

    async def job_heartbeat(
        self, worker_id: str, leases: Sequence[Lease], *, lease: float, now: float
    ) -> HeartbeatResult:
        with self._lock:
            lost: set[str] = set()
            cancel: set[str] = set()
            for ref in leases:
                job = self._held(ref)
                if job is None:
                    lost.add(ref.job_id)
                    continue
                self._put(replace(job, lease_expires_at=now + lease))
                if job.cancel_requested:
                    cancel.add(job.id)
            return HeartbeatResult(lost=frozenset(lost), cancel_requested=frozenset(cancel))

    async def job_ack(self, outcomes: Sequence[JobOutcome], *, now: float) -> list[str]:
        with self._lock:
            refused: list[str] = []
            for outcome in outcomes:
                job = self._held(outcome.lease)
                if job is None:
                    refused.append(outcome.lease.job_id)
                    continue
                self._put(_acked(job, outcome, now))
            self._notify()
            return refused

    async def job_get(self, job_id: str) -> JobRecord:
        with self._lock:
            try:
                return self._jobs[job_id]
            except KeyError:
                raise JobNotFound(f"no job {job_id!r}") from None

    async def job_list(self, filter: JobFilter) -> list[JobRecord]:
        with self._lock:
            jobs = [
                j
                for j in self._jobs.values()
                if (filter.state is None or j.state is filter.state)
                and (filter.queue is None or j.queue == filter.queue)
                and (filter.task is None or j.task == filter.task)
                and (filter.before is None or j.id < filter.before)
            ]
        jobs.sort(key=lambda j: j.id, reverse=True)
        return jobs[: filter.limit]

    async def job_cancel(self, job_id: str, *, now: float) -> JobRecord:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                raise JobNotFound(f"no job {job_id!r}")
            if job.state in (JobState.SCHEDULED, JobState.QUEUED):
                job = replace(job, state=JobState.CANCELLED, finished_at=now)
            elif job.state is JobState.RUNNING:
                job = replace(job, cancel_requested=True)
            else:
                return job
            self._put(job)
            return job

    async def job_retry(self, job_id: str, *, now: float) -> JobRecord:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                raise JobNotFound(f"no job {job_id!r}")
            if job.state not in (JobState.DEAD, JobState.CANCELLED):
                raise InvalidTransition(f"job {job_id} is {job.state}; only dead or cancelled jobs can be retried")
            if job.dedup_key and job.dedup_key in self._live_dedup:
                raise InvalidTransition(
                    f"job {job_id} cannot be retried: job {self._live_dedup[job.dedup_key]} "
                    f"already holds its dedup key {job.dedup_key!r}"
                )
            job = replace(
                job,
                state=JobState.QUEUED,
                run_at=now,
                order_at=now,
                attempts=0,
                finished_at=None,
                cancel_requested=False,
            )
            self._put(job)
            self._notify()
            return job

    async def job_rescue(self, *, now: float, limit: int = 1000) -> list[JobRecord]:
        with self._lock:
            expired = [
                j
                for j in self._jobs.values()
                if j.state is JobState.RUNNING and j.lease_expires_at is not None and j.lease_expires_at < now
            ][:limit]
            rescued = [_rescued(j, now) for j in expired]
            for job in rescued:
                self._put(job)
            if rescued:
                self._notify()
            return rescued

    async def job_prune(self, cutoffs: Mapping[JobState, float], *, limit: int = 10_000) -> int:
        with self._lock:
            deleted = 0
            for state, cutoff in cutoffs.items():
                doomed = [
                    j.id
                    for j in self._jobs.values()
                    if j.state is state and j.finished_at is not None and j.finished_at < cutoff
                ][:limit]
                for job_id in doomed:
                    del self._jobs[job_id]
                deleted += len(doomed)
            return deleted

    async def job_next_due(self, queues: Sequence[str]) -> float | None:
        with self._lock:
            wanted = {q for q in queues if not (q in self._queues and self._queues[q].paused)}
            due = [j.run_at for j in self._jobs.values() if j.state is JobState.SCHEDULED and j.queue in wanted]
            return min(due) if due else None

    async def job_counts(self) -> list[JobCount]:
        with self._lock:
            counts: dict[tuple[str, str, JobState], int] = {}
            for j in self._jobs.values():
                key = (j.queue, j.task, j.state)
                counts[key] = counts.get(key, 0) + 1
        return [JobCount(queue=q, task=t, state=s, count=n) for (q, t, s), n in sorted(counts.items())]

    async def job_finished_since(self, since: float) -> dict[JobState, int]:
        with self._lock:
            out: dict[JobState, int] = {}
            for j in self._jobs.values():
                if j.state.is_final and j.finished_at is not None and j.finished_at >= since:
                    out[j.state] = out.get(j.state, 0) + 1
            return out

    # -- queues ------------------------------------------------------------------------

    async def queue_pause(self, queue: str, *, now: float) -> None:
        with self._lock:
            current = self._queues.get(queue)
            if current is None or not current.paused:
                self._queues[queue] = QueueInfo(name=queue, paused=True, paused_at=now)

    async def queue_resume(self, queue: str) -> None:
        with self._lock:
            if queue in self._queues:
                self._queues[queue] = QueueInfo(name=queue, paused=False)
            self._notify()

    async def queue_purge(self, queue: str) -> int:
        with self._lock:
            doomed = [
                j.id
                for j in self._jobs.values()
                if j.queue == queue and j.state in (JobState.QUEUED, JobState.SCHEDULED)
            ]
            for job_id in doomed:
                job = self._jobs.pop(job_id)
                if job.dedup_key:
                    self._live_dedup.pop(job.dedup_key, None)
            return len(doomed)

    async def queue_list(self) -> list[QueueInfo]:
        with self._lock:
            return [self._queues[name] for name in sorted(self._queues)]

    async def wakeup_wait(self, timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        with self._lock:
            self._waiters.append((loop, fut))
        try:
            async with asyncio.timeout(timeout):
                await fut
        except TimeoutError:
            return False
        finally:
            with self._lock:
                if (loop, fut) in self._waiters:
                    self._waiters.remove((loop, fut))
        return True

    # -- workers -----------------------------------------------------------------------

    async def worker_register(self, info: WorkerInfo) -> None:
        with self._lock:
            self._workers[info.id] = info
            for task in info.tasks:
                self._tasks[task.name] = task

    async def worker_heartbeat(self, worker_id: str, *, in_flight: int, now: float) -> bool:
        with self._lock:
            info = self._workers.get(worker_id)
            if info is None:
                return False
            self._workers[worker_id] = replace(info, heartbeat_at=now, in_flight=in_flight)
            return True

    async def worker_unregister(self, worker_id: str) -> None:
        with self._lock:
            self._workers.pop(worker_id, None)

    async def worker_list(self) -> list[WorkerInfo]:
        with self._lock:
            return sorted(self._workers.values(), key=lambda w: (w.started_at, w.id))

    async def worker_prune(self, *, dead_before: float) -> list[str]:
        with self._lock:
            dead = [w.id for w in self._workers.values() if w.heartbeat_at < dead_before]
            for worker_id in dead:
                del self._workers[worker_id]
            return dead

    async def task_list(self) -> list[TaskInfo]:
        with self._lock:
            return sorted(self._tasks.values(), key=lambda t: t.name)


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _acked(job: JobRecord, outcome: JobOutcome, now: float) -> JobRecord:
    """The job after an accepted outcome (the semantics of ``Store.job_ack``)."""
    done = replace(job, lease_token=None, lease_expires_at=None)
    match outcome.outcome:
        case Outcome.SUCCEEDED:
            return replace(done, state=JobState.SUCCEEDED, result=outcome.result, finished_at=now)
        case Outcome.FAILED if outcome.retry_at is not None:
            return replace(
                done,
                state=JobState.SCHEDULED,
                run_at=outcome.retry_at,
                order_at=outcome.retry_at,
                error=outcome.error,
                traceback=outcome.traceback,
            )
        case Outcome.FAILED:
            return replace(done, state=JobState.DEAD, error=outcome.error, traceback=outcome.traceback, finished_at=now)
        case Outcome.SNOOZED:
            retry_at = now if outcome.retry_at is None else outcome.retry_at
            return replace(
                done, state=JobState.SCHEDULED, run_at=retry_at, order_at=retry_at, attempts=job.attempts - 1
            )
        case Outcome.RELEASED:
            return replace(done, state=JobState.QUEUED, attempts=job.attempts - 1)
        case Outcome.CANCELLED:
            return replace(done, state=JobState.CANCELLED, finished_at=now)
    raise AssertionError(outcome.outcome)


def _rescued(job: JobRecord, now: float) -> JobRecord:
    """The job after its lease expired (the semantics of ``Store.job_rescue``)."""
    base = replace(job, lease_token=None, lease_expires_at=None, error=LEASE_EXPIRED, traceback=None)
    if job.cancel_requested:
        return replace(base, state=JobState.CANCELLED, finished_at=now)
    if job.attempts >= job.max_attempts:
        return replace(base, state=JobState.DEAD, finished_at=now)
    return replace(base, state=JobState.QUEUED)
