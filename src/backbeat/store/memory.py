"""The reference store: the protocol in plain Python, in one process (``memory://``).

It exists to make the specification executable (it passes the same conformance suite as
every other store) and to run an application's jobs in its own tests
(``backbeat.testing``). Nothing outlives the process.

Layout: ``_jobs`` maps id -> ``JobRecord`` (frozen; every change replaces the record);
``_live_dedup`` maps a dedup key -> the id of the live job holding it; ``_schedules`` maps
key -> ``ScheduleRecord``; ``_fires`` maps (schedule key, fire_at) -> job id, the
uniqueness every store keeps for fired occurrences. One ``threading.Lock`` makes every
method atomic, also across event loops and threads.
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import ClassVar

from backbeat.errors import InvalidTransition, JobNotFound, ScheduleNotFound, StoreError
from backbeat.ids import token as new_token
from backbeat.store import rules
from backbeat.store.base import LEASE_EXPIRED, Store
from backbeat.types import (
    LIVE_STATES,
    Breach,
    BucketRequest,
    BucketState,
    Change,
    ClaimRequest,
    Decision,
    Enqueued,
    Fire,
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
    ScheduleFilter,
    ScheduleKind,
    ScheduleMode,
    ScheduleRecord,
    ScheduleSpec,
    SlaStats,
    TaskInfo,
    Upserted,
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
        self._schedules: dict[str, ScheduleRecord] = {}
        self._fires: dict[tuple[str, float], str] = {}
        self._breaches: list[Breach] = []
        self._announced: set[tuple[str, float]] = set()
        """(key, started_at) of closed breaches already returned by ``sla_ended``."""
        self._decisions: list[Decision] = []
        self._blocked: dict[str, float] = {}
        self._starts: dict[str, deque[float]] = {}
        self._holders: dict[str, str] = {}
        """job id -> the bucket it holds while running."""
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

    def _put(self, job: JobRecord, *, next_in: float | None = None) -> None:
        old = self._jobs.get(job.id)
        if job.state is not JobState.RUNNING:
            self._holders.pop(job.id, None)
        if old is not None and old.dedup_key and old.state in LIVE_STATES:
            self._live_dedup.pop(old.dedup_key, None)
        self._jobs[job.id] = job
        if job.dedup_key and job.state in LIVE_STATES:
            self._live_dedup[job.dedup_key] = job.id
        if job.schedule_key is not None and job.fire_at is not None:
            self._fires[(job.schedule_key, job.fire_at)] = job.id
        if job.state.is_final and (old is None or not old.state.is_final):
            self._finish_run(job, next_in)
        self._version += 1

    def _delete(self, job_id: str) -> None:
        job = self._jobs.pop(job_id)
        if job.dedup_key and self._live_dedup.get(job.dedup_key) == job_id:
            del self._live_dedup[job.dedup_key]
        if job.schedule_key is not None and job.fire_at is not None:
            self._fires.pop((job.schedule_key, job.fire_at), None)

    def _finish_run(self, job: JobRecord, next_in: float | None) -> None:
        """The run of ``job``'s schedule ended (see "Finishing a run" in ``store.base``)."""
        record = self._schedules.get(job.schedule_key or "")
        if record is None or record.in_flight != job.id:
            return
        assert job.finished_at is not None
        end = rules.finish_run(record, job.state, job.started_at, job.finished_at, next_in)
        self._apply_end(end, job.finished_at)

    def _apply_end(self, end: rules.RunEnd, now: float) -> None:
        if end.end_open_breach:
            self._end_breach(end.record.key, now)
        if end.missed_breach is not None:
            self._breaches.append(end.missed_breach)
        self._schedules[end.record.key] = end.record

    def _end_breach(self, key: str, now: float) -> None:
        for i, breach in enumerate(self._breaches):
            if breach.key == key and breach.ended_at is None:
                self._breaches[i] = replace(breach, ended_at=now)

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
                job = _new_record(new, now)
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
                self._put(_acked(job, outcome, now), next_in=outcome.next_in)
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
                and (filter.schedule_key is None or j.schedule_key == filter.schedule_key)
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
                    self._delete(job_id)
                deleted += len(doomed)
            return deleted

    async def job_next_due(self, queues: Sequence[str]) -> float | None:
        with self._lock:
            wanted = set(queues)
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

    # -- schedules ---------------------------------------------------------------------

    async def schedule_upsert(
        self, spec: ScheduleSpec, *, next_tick: float | None, next_at: float | None, now: float
    ) -> Upserted:
        with self._lock:
            old = self._schedules.get(spec.key)
            if old is None:
                record = ScheduleRecord(
                    spec=spec,
                    created_at=now,
                    updated_at=now,
                    next_tick=next_tick,
                    next_at=next_at,
                    deadline_at=None if spec.sla is None else now + spec.sla,
                )
                change = Change.ADDED
            elif old.spec == spec:
                return Upserted(record=old, change=Change.UNCHANGED)
            else:
                delay = spec.kind is ScheduleKind.EVERY and spec.mode is ScheduleMode.DELAY
                waiting = old.in_flight is not None and delay
                deadline, ends = rules.changed_deadline(old, spec.sla, now)
                breach_since = None if ends else old.breach_since
                if ends:
                    self._end_breach(spec.key, now)
                record = replace(
                    old,
                    spec=spec,
                    updated_at=now,
                    next_tick=None if waiting else next_tick,
                    next_at=None if waiting else next_at,
                    deadline_at=deadline,
                    breach_since=breach_since,
                )
                change = Change.CHANGED
            self._schedules[spec.key] = record
            return Upserted(record=record, change=change)

    async def schedule_get(self, key: str) -> ScheduleRecord:
        with self._lock:
            try:
                return self._schedules[key]
            except KeyError:
                raise ScheduleNotFound(f"no schedule {key!r}") from None

    async def schedule_list(self, filter: ScheduleFilter) -> list[ScheduleRecord]:
        with self._lock:
            found = [
                r
                for key, r in sorted(self._schedules.items())
                if (filter.after is None or key > filter.after)
                and (filter.origin is None or r.spec.origin is filter.origin)
                and (filter.search is None or filter.search in key or filter.search in r.spec.task)
            ]
        return found[: filter.limit]

    async def schedule_remove(self, key: str) -> bool:
        with self._lock:
            return self._schedules.pop(key, None) is not None

    async def schedule_pause(self, key: str, *, now: float) -> ScheduleRecord:
        with self._lock:
            record = self._schedules.get(key)
            if record is None:
                raise ScheduleNotFound(f"no schedule {key!r}")
            if not record.paused:
                if record.breach_since is not None:
                    self._end_breach(key, now)
                record = self._schedules[key] = replace(record, paused=True, paused_at=now, breach_since=None)
            return record

    async def schedule_resume(self, key: str, *, now: float) -> ScheduleRecord:
        with self._lock:
            record = self._schedules.get(key)
            if record is None:
                raise ScheduleNotFound(f"no schedule {key!r}")
            if record.paused:
                sla = record.spec.sla
                deadline = None if sla is None else now + sla
                record = replace(record, paused=False, paused_at=None, resumed_at=now, deadline_at=deadline)
                self._schedules[key] = record
            return record

    def _firing(self) -> list[ScheduleRecord]:
        return [r for r in self._schedules.values() if not r.paused and r.in_flight is None and r.next_at is not None]

    async def schedule_due(self, *, now: float, limit: int) -> list[ScheduleRecord]:
        with self._lock:
            due = [r for r in self._firing() if r.next_at is not None and r.next_at <= now]
        due.sort(key=lambda r: (r.next_at, r.key))
        return due[:limit]

    async def schedule_next_due(self) -> float | None:
        with self._lock:
            times = [r.next_at for r in self._firing() if r.next_at is not None]
            return min(times) if times else None

    async def schedule_fire(self, fires: Sequence[Fire], *, now: float) -> list[bool]:
        with self._lock:
            fired: list[bool] = []
            for fire in fires:
                record = self._schedules.get(fire.key)
                ok = (
                    record is not None
                    and not record.paused
                    and record.in_flight is None
                    and record.next_at == fire.expected_next_at
                    and (fire.key, fire.job.fire_at) not in self._fires
                    and fire.job.id not in self._jobs
                )
                if ok:
                    assert record is not None
                    job = _new_record(fire.job, now)
                    self._put(job)
                    self._schedules[fire.key] = replace(
                        record,
                        in_flight=job.id,
                        last_fire_at=fire.job.fire_at,
                        last_job_id=job.id,
                        next_tick=fire.next_tick,
                        next_at=fire.next_at,
                        pending_jitter=fire.pending_jitter,
                    )
                fired.append(ok)
            if any(fired):
                self._notify()
            return fired

    async def schedule_repair(self, *, now: float) -> list[str]:
        with self._lock:
            repaired = []
            for record in list(self._schedules.values()):
                if record.in_flight is None:
                    continue
                job = self._jobs.get(record.in_flight)
                if job is None or job.state.is_final:
                    state, started = (JobState.CANCELLED, None) if job is None else (job.state, job.started_at)
                    self._apply_end(rules.finish_run(record, state, started, now, None), now)
                    repaired.append(record.key)
            return repaired

    # -- SLA and the decision log -------------------------------------------------------

    def _late(self, now: float) -> list[ScheduleRecord]:
        return [
            r
            for r in self._schedules.values()
            if r.spec.sla is not None and not r.paused and r.deadline_at is not None and r.deadline_at < now
        ]

    async def sla_check(self, *, now: float, limit: int = 1000) -> list[Breach]:
        with self._lock:
            late = sorted((r for r in self._late(now) if r.breach_since is None), key=lambda r: (r.deadline_at, r.key))
            opened = []
            for record in late[:limit]:
                assert record.deadline_at is not None and record.spec.sla is not None
                breach = Breach(
                    key=record.key,
                    sla=record.spec.sla,
                    base_at=record.deadline_at - record.spec.sla,
                    started_at=record.deadline_at,
                )
                self._breaches.append(breach)
                self._schedules[record.key] = replace(record, breach_since=record.deadline_at)
                opened.append(breach)
            return opened

    async def sla_ended(self, *, limit: int = 1000) -> list[Breach]:
        with self._lock:
            ended = [
                b for b in self._breaches if b.ended_at is not None and (b.key, b.started_at) not in self._announced
            ]
            ended.sort(key=lambda b: (b.ended_at, b.key))
            self._announced.update((b.key, b.started_at) for b in ended[:limit])
            return ended[:limit]

    async def sla_breaches(self, *, key: str | None, since: float, limit: int = 1000) -> list[Breach]:
        with self._lock:
            found = [
                b
                for b in self._breaches
                if (key is None or b.key == key) and (b.ended_at is None or b.ended_at >= since)
            ]
        found.sort(key=lambda b: (b.started_at, b.key), reverse=True)
        return found[:limit]

    async def sla_list(self, *, limit: int) -> list[ScheduleRecord]:
        with self._lock:
            found = [r for r in self._schedules.values() if r.spec.sla is not None]
        found.sort(key=lambda r: (r.paused, r.deadline_at if r.deadline_at is not None else math.inf, r.key))
        return found[:limit]

    async def sla_stats(self, *, now: float, since: float) -> SlaStats:
        with self._lock:
            with_sla = [r for r in self._schedules.values() if r.spec.sla is not None]
            seconds = sum(
                max(0.0, min(now, b.ended_at if b.ended_at is not None else now) - max(b.started_at, since))
                for b in self._breaches
            )
            return SlaStats(
                schedules=len(with_sla),
                paused=sum(1 for r in with_sla if r.paused),
                breached=len(self._late(now)),
                breach_seconds=seconds,
            )

    async def decision_append(self, decisions: Sequence[Decision]) -> None:
        with self._lock:
            self._decisions.extend(decisions)

    async def decision_list(self, key: str, *, before: float | None = None, limit: int = 100) -> list[Decision]:
        with self._lock:
            found = [d for d in reversed(self._decisions) if d.key == key and (before is None or d.at < before)]
        found.sort(key=lambda d: d.at, reverse=True)  # stable: entries at the same time, newest first
        return found[:limit]

    async def history_prune(self, *, before: float, limit: int = 10_000) -> int:
        with self._lock:
            old = [i for i, d in enumerate(self._decisions) if d.at < before][:limit]
            for i in reversed(old):
                del self._decisions[i]
            closed = [i for i, b in enumerate(self._breaches) if b.ended_at is not None and b.ended_at < before]
            for i in reversed(closed[:limit]):
                breach = self._breaches.pop(i)
                self._announced.discard((breach.key, breach.started_at))
            return len(old) + len(closed[:limit])

    # -- rate-limit buckets -----------------------------------------------------------

    async def bucket_acquire(self, requests: Sequence[BucketRequest], *, now: float) -> list[float | None]:
        with self._lock:
            return [self._acquire(request, now) for request in requests]

    def _acquire(self, r: BucketRequest, now: float) -> float | None:
        blocked = self._blocked.get(r.bucket)
        if blocked is not None and blocked > now:
            return blocked
        starts = self._starts.setdefault(r.bucket, deque())
        if r.limit is not None and r.per is not None:
            while starts and starts[0] <= now - r.per:
                starts.popleft()
            if len(starts) >= r.limit:
                return starts[0] + r.per
        if r.concurrency is not None and self._holding(r.bucket) >= r.concurrency:
            return now + 1.0
        if r.limit is not None:
            starts.append(now)
        self._holders[r.job_id] = r.bucket
        return None

    def _holding(self, bucket: str) -> int:
        return sum(
            1
            for job_id, held in self._holders.items()
            if held == bucket and (job := self._jobs.get(job_id)) is not None and job.state is JobState.RUNNING
        )

    async def bucket_block(self, bucket: str, *, until: float) -> None:
        with self._lock:
            self._blocked[bucket] = max(until, self._blocked.get(bucket, until))

    async def bucket_state(self, bucket: str, *, now: float, per: float | None) -> BucketState:
        with self._lock:
            starts = self._starts.get(bucket, deque())
            in_window = len(starts) if per is None else sum(1 for t in starts if t > now - per)
            return BucketState(
                bucket=bucket,
                blocked_until=self._blocked.get(bucket),
                starts=in_window,
                running=self._holding(bucket),
            )

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
                self._delete(job_id)
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


def _new_record(new: NewJob, now: float) -> JobRecord:
    return JobRecord(
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
        deadline=new.deadline,
    )


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
                order_at=outcome.retry_at if job.deadline is None else job.order_at,
                error=outcome.error,
                traceback=outcome.traceback,
            )
        case Outcome.FAILED:
            return replace(done, state=JobState.DEAD, error=outcome.error, traceback=outcome.traceback, finished_at=now)
        case Outcome.SNOOZED:
            retry_at = now if outcome.retry_at is None else outcome.retry_at
            order_at = retry_at if job.deadline is None else job.order_at
            return replace(
                done, state=JobState.SCHEDULED, run_at=retry_at, order_at=order_at, attempts=job.attempts - 1
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
