"""The reference store's state: its maps, the lock, and the helpers every method shares."""

from __future__ import annotations

import asyncio
import bisect
import heapq
import threading
from collections import deque
from collections.abc import Collection, Iterable, Iterator, Sequence
from typing import Any

from backbeat.store import rules
from backbeat.store.base import LEASE_EXPIRED
from backbeat.types import (
    LIVE_STATES,
    Breach,
    Decision,
    EventRecord,
    JobOutcome,
    JobRecord,
    JobState,
    Lease,
    Outcome,
    QueueInfo,
    ScheduleRecord,
    StateValue,
    TaskInfo,
    WorkerInfo,
    evolve,
)


def dispatch_key(job: JobRecord) -> tuple[int, float, str]:
    return (-job.priority, job.order_at, job.id)


class Waiting:
    """Heaps of the jobs waiting to run, so a claim reads heads instead of every job: per
    queue the ``queued`` jobs in dispatch order, and the ``scheduled`` ones by due time.

    Entries are pushed on every write that leaves a job waiting and checked against the job
    when read (a stale entry is dropped), so nothing else has to remove them.
    """

    def __init__(self) -> None:
        self.queued: dict[str, list[tuple[tuple[int, float, str], str]]] = {}
        self.scheduled: list[tuple[float, str]] = []

    def add(self, job: JobRecord) -> None:
        if job.state is JobState.QUEUED:
            heapq.heappush(self.queued.setdefault(job.queue, []), (dispatch_key(job), job.id))
        elif job.state is JobState.SCHEDULED:
            heapq.heappush(self.scheduled, (job.run_at, job.id))

    def due(self, jobs: dict[str, JobRecord], now: float) -> list[JobRecord]:
        """Pop the ``scheduled`` jobs due by ``now`` (each once)."""
        out: dict[str, JobRecord] = {}
        while self.scheduled and self.scheduled[0][0] <= now:
            run_at, job_id = heapq.heappop(self.scheduled)
            job = jobs.get(job_id)
            if job is not None and job.state is JobState.SCHEDULED and job.run_at == run_at:
                out[job_id] = job
        return list(out.values())

    def count(self, jobs: dict[str, JobRecord], queues: Iterable[str], now: float) -> tuple[int, float | None]:
        """(how many of ``queues``' jobs are due and waiting, the earliest due time)."""
        wanted = set(queues)
        seen: set[str] = set()
        oldest: float | None = None
        heaps: list[Sequence[tuple[object, str]]] = [self.scheduled, *(self.queued.get(q, []) for q in wanted)]
        for entries in heaps:
            for entry in entries:
                job = jobs.get(entry[1])
                if job is None or job.id in seen or job.queue not in wanted:
                    continue
                if job.state is JobState.QUEUED or (job.state is JobState.SCHEDULED and job.run_at <= now):
                    seen.add(job.id)
                    oldest = job.run_at if oldest is None else min(oldest, job.run_at)
        return len(seen), oldest

    def next_due(self, jobs: dict[str, JobRecord], queues: Iterable[str]) -> float | None:
        wanted = set(queues)
        times = [
            run_at
            for run_at, job_id in self.scheduled
            if (job := jobs.get(job_id)) is not None
            and job.state is JobState.SCHEDULED
            and job.run_at == run_at
            and job.queue in wanted
        ]
        return min(times) if times else None

    def heads(
        self, jobs: dict[str, JobRecord], queues: Iterable[str], tasks: Collection[str], limit: int
    ) -> list[JobRecord]:
        """The first ``limit`` queued jobs of ``tasks`` across ``queues`` in dispatch order;
        they stay indexed (the caller's writes make the claimed ones stale)."""
        found: dict[str, tuple[tuple[int, float, str], str]] = {}
        for queue in queues:
            heap = self.queued.get(queue, [])
            aside: list[tuple[tuple[int, float, str], str]] = []
            taken = 0
            while heap and taken < limit:
                entry = heapq.heappop(heap)
                job = jobs.get(entry[1])
                if job is None or job.state is not JobState.QUEUED or dispatch_key(job) != entry[0]:
                    continue
                if entry[1] in found:
                    continue  # a duplicate entry of a job already taken from this heap
                aside.append(entry)
                if job.task in tasks:
                    found[entry[1]] = entry
                    taken += 1
            for entry in aside:
                heapq.heappush(heap, entry)
        chosen = sorted(found.values())[:limit]
        return [jobs[job_id] for _, job_id in chosen]


class ScheduleTable(dict[str, ScheduleRecord]):
    """Schedules by key, with a heap of the due times of those that may fire (not paused,
    no run in flight), checked against the record when read."""

    def __init__(self) -> None:
        super().__init__()
        self.heap: list[tuple[float, str]] = []
        self.adaptive: set[str] = set()
        """Keys of the schedules with a range (``max_every``), for the autopilot's listing."""

    def __setitem__(self, key: str, record: ScheduleRecord) -> None:
        super().__setitem__(key, record)
        if record.spec.max_every is not None:
            self.adaptive.add(key)
        else:
            self.adaptive.discard(key)
        if self._fires_at(record) is not None:
            assert record.next_at is not None
            heapq.heappush(self.heap, (record.next_at, key))

    @staticmethod
    def _fires_at(record: ScheduleRecord | None) -> float | None:
        if record is None or record.paused or record.in_flight is not None:
            return None
        return record.next_at

    def _valid(self, entry: tuple[float, str]) -> bool:
        return self._fires_at(self.get(entry[1])) == entry[0]

    def due(self, now: float, limit: int) -> list[ScheduleRecord]:
        """Up to ``limit`` schedules due by ``now``, by (next_at, key); they stay indexed."""
        out: dict[str, tuple[float, str]] = {}
        while self.heap and self.heap[0][0] <= now and len(out) < limit:
            entry = heapq.heappop(self.heap)
            if self._valid(entry):
                out[entry[1]] = entry
        for entry in out.values():
            heapq.heappush(self.heap, entry)
        return [self[key] for _, key in sorted(out.values())]

    def next_due(self) -> float | None:
        while self.heap and not self._valid(self.heap[0]):
            heapq.heappop(self.heap)
        return self.heap[0][0] if self.heap else None


class MemoryState:
    """The reference store's data and the helpers its methods share (call with the lock held)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[str, JobRecord] = {}
        self._live_dedup: dict[str, str] = {}
        self._workers: dict[str, WorkerInfo] = {}
        self._tasks: dict[str, TaskInfo] = {}
        self._queues: dict[str, QueueInfo] = {}
        self._waiting = Waiting()
        self._finished: list[tuple[float, str]] = []
        """(finished_at, job id) of jobs as they reached a final state, sorted (stale entries
        are skipped when read)."""
        self._published: dict[str, StateValue] = {}
        self._schedules = ScheduleTable()
        self._fires: dict[tuple[str, float], str] = {}
        self._breaches: list[Breach] = []
        self._announced: set[tuple[str, float, float | None]] = set()
        """(key, started_at, ended_at) of closed breaches already returned by ``sla_ended``
        (two breaches of one key can start at the same deadline: an SLA removed and set
        again restores it)."""
        self._decisions: list[Decision] = []
        self._events: dict[str, EventRecord] = {}
        self._blocked: dict[str, float] = {}
        self._starts: dict[str, deque[float]] = {}
        self._holders: dict[str, str] = {}
        """job id -> the bucket it holds while running."""
        self._version = 0
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    # -- helpers (call with the lock held) ---------------------------------------------

    def _put(self, job: JobRecord, *, next_in: float | None = None) -> None:
        old = self._jobs.get(job.id)
        if job.state is not JobState.RUNNING:
            self._holders.pop(job.id, None)
        if old is not None and old.dedup_key and old.state in LIVE_STATES:
            self._live_dedup.pop(old.dedup_key, None)
        self._jobs[job.id] = job
        self._waiting.add(job)
        if job.dedup_key and job.state in LIVE_STATES:
            self._live_dedup[job.dedup_key] = job.id
        if job.schedule_key is not None and job.fire_at is not None:
            self._fires[(job.schedule_key, job.fire_at)] = job.id
        if job.state.is_final and (old is None or not old.state.is_final):
            assert job.finished_at is not None
            # one entry per (time, job): a job retried and finished again at the same time
            # (a clock that did not move) was counted twice by job_finished_since
            entry = (job.finished_at, job.id)
            at = bisect.bisect_left(self._finished, entry)
            if at == len(self._finished) or self._finished[at] != entry:
                self._finished.insert(at, entry)
            self._finish_run(job, next_in)
        self._version += 1

    def _delete(self, job_id: str) -> None:
        job = self._jobs.pop(job_id)
        if job.dedup_key and self._live_dedup.get(job.dedup_key) == job_id:
            del self._live_dedup[job.dedup_key]
        if job.schedule_key is not None and job.fire_at is not None:
            self._fires.pop((job.schedule_key, job.fire_at), None)

    def _finished_since(self, since: float) -> Iterator[JobRecord]:
        """Final jobs with ``finished_at >= since`` (each once: an entry is current only if
        the job still ended at that time, and one job ends once at a time)."""
        jobs = self._jobs
        finished = self._finished
        for i in range(bisect.bisect_left(finished, (since, "")), len(finished)):
            finished_at, job_id = finished[i]
            job = jobs.get(job_id)
            if job is not None and job.finished_at == finished_at and job.state.is_final:
                yield job

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
                self._breaches[i] = evolve(breach, ended_at=now)

    def _notify(self) -> None:
        waiters, self._waiters = self._waiters, []
        for loop, fut in waiters:
            if not loop.is_closed():
                loop.call_soon_threadsafe(resolve, fut)

    def _held(self, lease: Lease) -> JobRecord | None:
        job = self._jobs.get(lease.job_id)
        if job is None or job.state is not JobState.RUNNING or job.lease_token != lease.token:
            return None
        return job


def resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def after_ack(job: JobRecord, outcome: JobOutcome, now: float) -> JobRecord:
    """The job after an accepted outcome (the semantics of ``Store.job_ack``)."""
    return evolve(job, lease_token=None, lease_expires_at=None, **_ack_changes(job, outcome, now))


def _ack_changes(job: JobRecord, outcome: JobOutcome, now: float) -> dict[str, Any]:
    match outcome.outcome:
        case Outcome.SUCCEEDED:
            return {"state": JobState.SUCCEEDED, "result": outcome.result, "finished_at": now}
        case Outcome.FAILED if outcome.retry_at is not None:
            return {
                "state": JobState.SCHEDULED,
                "run_at": outcome.retry_at,
                "order_at": outcome.retry_at if job.deadline is None else job.order_at,
                "error": outcome.error,
                "traceback": outcome.traceback,
            }
        case Outcome.FAILED:
            return {"state": JobState.DEAD, "error": outcome.error, "traceback": outcome.traceback, "finished_at": now}
        case Outcome.SNOOZED:
            retry_at = now if outcome.retry_at is None else outcome.retry_at
            order_at = retry_at if job.deadline is None else job.order_at
            return {"state": JobState.SCHEDULED, "run_at": retry_at, "order_at": order_at, "attempts": job.attempts - 1}
        case Outcome.RELEASED:
            return {"state": JobState.QUEUED, "attempts": job.attempts - 1}
        case Outcome.CANCELLED:
            return {"state": JobState.CANCELLED, "finished_at": now}
    raise AssertionError(outcome.outcome)


def after_rescue(job: JobRecord, now: float) -> JobRecord:
    """The job after its lease expired (the semantics of ``Store.job_rescue``)."""
    ending: dict[str, Any] = {"state": JobState.QUEUED}
    if job.cancel_requested:
        ending = {"state": JobState.CANCELLED, "finished_at": now}
    elif job.attempts >= job.max_attempts:
        ending = {"state": JobState.DEAD, "finished_at": now}
    return evolve(job, lease_token=None, lease_expires_at=None, error=LEASE_EXPIRED, traceback=None, **ending)
