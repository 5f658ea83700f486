"""The reference store: jobs, queues, wake-ups, workers and the task registry."""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import Mapping, Sequence

from backbeat.errors import InvalidTransition, JobNotFound, StoreError
from backbeat.ids import token as new_token
from backbeat.store import rules
from backbeat.store.memory.state import (
    MemoryState,
    after_ack,
    after_rescue,
)
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
    QueueInfo,
    StateValue,
    TaskInfo,
    TaskStats,
    WorkerInfo,
    evolve,
)


class JobMethods(MemoryState):
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
                job = rules.new_record(new, now)
                self._put(job)
                out.append(Enqueued(job=job, created=True))
            self._notify()
            return out

    async def job_claim(self, request: ClaimRequest, *, now: float) -> list[JobRecord]:
        with self._lock:
            for due in self._waiting.due(self._jobs, now):
                self._put(evolve(due, state=JobState.QUEUED))
            queues = {q for q in request.queues if not (q in self._queues and self._queues[q].paused)}
            claimed: list[JobRecord] = []
            batch = new_token()
            for job in self._waiting.heads(self._jobs, sorted(queues), request.tasks, request.limit):
                job = evolve(
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
                self._put(evolve(job, lease_expires_at=now + lease))
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
                self._put(after_ack(job, outcome, now), next_in=outcome.next_in)
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
                job = evolve(job, state=JobState.CANCELLED, finished_at=now)
            elif job.state is JobState.RUNNING:
                job = evolve(job, cancel_requested=True)
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
            job = evolve(
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
            rescued = [after_rescue(j, now) for j in expired]
            for job in rescued:
                self._put(job)
            if rescued:
                self._notify()
            return rescued

    async def job_prune(self, cutoffs: Mapping[JobState, float], *, limit: int = 10_000) -> int:
        with self._lock:
            if not cutoffs:
                return 0
            latest = max(cutoffs.values())
            deleted: dict[JobState, int] = {}
            end = bisect.bisect_left(self._finished, (latest, ""))
            kept = []
            for finished_at, job_id in self._finished[:end]:
                job = self._jobs.get(job_id)
                if job is None or not job.state.is_final or job.finished_at != finished_at:
                    continue  # stale: the job was deleted, or retried and finished again
                state = job.state
                if state in cutoffs and finished_at < cutoffs[state] and deleted.get(state, 0) < limit:
                    self._delete(job_id)
                    deleted[state] = deleted.get(state, 0) + 1
                else:
                    kept.append((finished_at, job_id))
            self._finished[:end] = kept
            return sum(deleted.values())

    async def job_next_due(self, queues: Sequence[str]) -> float | None:
        with self._lock:
            wanted = [q for q in queues if not (q in self._queues and self._queues[q].paused)]
            return self._waiting.next_due(self._jobs, wanted)

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
            for j in self._finished_since(since):
                out[j.state] = out.get(j.state, 0) + 1
            return out

    async def job_stats(self, since: float) -> list[TaskStats]:
        counts: dict[str, int] = {}
        seconds: dict[str, float] = {}
        with self._lock:
            for j in self._finished_since(since):
                if j.state is JobState.SUCCEEDED or j.state is JobState.DEAD:
                    counts[j.task] = counts.get(j.task, 0) + 1
                    if j.finished_at is not None and j.started_at is not None and j.finished_at > j.started_at:
                        seconds[j.task] = seconds.get(j.task, 0.0) + j.finished_at - j.started_at
        return [TaskStats(task=t, finished=n, run_seconds=seconds.get(t, 0.0)) for t, n in sorted(counts.items())]

    async def job_backlog(self, queues: Sequence[str], *, now: float) -> Backlog:
        with self._lock:
            count, oldest = self._waiting.count(self._jobs, queues, now)
        return Backlog(count=count, oldest_due=oldest)

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
            self._workers[worker_id] = evolve(info, heartbeat_at=now, in_flight=in_flight)
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

    # -- published state ---------------------------------------------------------------

    async def state_set(self, name: str, value: str, *, now: float) -> None:
        with self._lock:
            self._published[name] = StateValue(value=value, updated_at=now)

    async def state_get(self, name: str) -> StateValue | None:
        with self._lock:
            return self._published.get(name)
