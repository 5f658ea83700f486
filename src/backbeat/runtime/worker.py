"""The worker: claims jobs in batches, runs them in slots, acks them in batches.

One asyncio loop runs six small loops that share the worker's state:

* claim: while slots are free, claim up to that many jobs (dispatch order is the
  store's), start each; when nothing is claimable, sleep until the store signals a write,
  a slot frees, or the earliest delayed job comes due (a timer, not a poll);
* ack: outcomes are queued as attempts end and written in one batch per round trip;
* heartbeat: renews the leases this worker holds and its registry row; learns which jobs
  were cancelled or lost;
* lease watch: stops an attempt whose lease could not be renewed before it expires (the
  store is unreachable), so no job runs on two workers at once (``runtime/leases.py``);
* maintenance: rescues jobs whose leases expired (their workers died), prunes finished
  jobs past their retention and workers that stopped heartbeating;
* watch: turns the store's wake-up hint into the claim loop's wake event, and takes the
  jobs the store handed this worker while it was parked (``ClaimRequest.park``), unless
  the catcher's thread receives them (``runtime/catcher.py``: an idle worker's handed job
  starts on the thread that received it).

Invariant: a lease stays in ``held`` from claim until its outcome is written (or the
store says it was lost), so heartbeats keep renewing it while the ack is pending.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections import deque
from collections.abc import Awaitable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar

from backbeat import __version__
from backbeat.clock import correct, iso
from backbeat.errors import ConfigError, StoreError
from backbeat.ids import uuid7
from backbeat.metrics import job_metrics
from backbeat.runtime.catcher import Catcher
from backbeat.runtime.executor import Attempt, Executor, Interrupt
from backbeat.runtime.leases import Renewals
from backbeat.runtime.threads import TaskThreads
from backbeat.secrets import require_keys
from backbeat.store.base import Store
from backbeat.types import (
    BucketRequest,
    ClaimRequest,
    Decision,
    DecisionKind,
    JobOutcome,
    JobRecord,
    Lease,
    Outcome,
    WorkerInfo,
)

if TYPE_CHECKING:
    from backbeat.app import App
    from backbeat.config import WorkerSettings
    from backbeat.tasks import Task

T = TypeVar("T")
log = logging.getLogger("backbeat.worker")
PRUNE_EVERY = 12
"""Maintenance rounds between prunes (a minute at the default interval)."""
START_SLACK = 0.1
"""Seconds added to a rate limit's window: a grant comes a few milliseconds before the task's
first instruction, so windows are counted a little long to keep the starts the upstream
sees within the limit too."""
ACK_LINGER = 0.005
"""Seconds an outcome waits for others to share its write, while other jobs run."""
HANDOFF_QUIET = 0.0005
"""Seconds the loop makes no store call after it started a job handed over: a store call
holds the GIL for a while, and the task thread that must take it to start the job would
wait (the pickup of an idle worker went from 0.15 to 0.07 ms between hand-off to the
thread and the task's first line). A real-time pause, not a scheduling decision."""
PARK_POLLS = 2
"""A parking (``ClaimRequest.park``) lasts this many ``idle_poll`` periods; an idle worker
claims once a period, which renews it."""


class Worker:
    def __init__(
        self,
        app: App,
        settings: WorkerSettings | None = None,
        *,
        burst: bool = False,
        background: bool = True,
    ) -> None:
        self.app = app
        self.settings = settings or app.settings.worker
        self.clock = app.clock
        self.burst = burst
        """Stop once nothing is claimable and nothing runs (tests, ``--burst``)."""
        self.background = background
        """Register, heartbeat and do maintenance (off for in-process test runs)."""
        self.id = f"{socket.gethostname()}.{os.getpid()}.{uuid7()[-8:]}"
        self.attempts: dict[str, Attempt] = {}
        self.ready: deque[JobRecord] = deque()
        """Claimed, not started yet (prefetched): handed back on shutdown."""
        self.held: dict[str, Lease] = {}
        self.renewals = Renewals(self.settings.lease, self.settings.heartbeat_interval)
        self._mean_run = 0.1
        """EWMA of run time, seconds; starts pessimistic so the first claim is small."""
        self.acks: list[JobOutcome] = []
        self.started = 0
        self.rate_limited = 0
        """Starts held back by a rate limit (a bucket at its limit, or a task's RateLimited)."""
        self.blocks: list[tuple[str, float]] = []
        self.decisions: list[Decision] = []
        """Attempts started by this worker."""
        self.recycle_requested = False
        self._wake = asyncio.Event()
        self._ack_needed = asyncio.Event()
        self._ack_writing = asyncio.Lock()
        """Held by the ack loop while it writes a batch: shutdown waits for it, never cancels
        a write (on Redis a cancelled write is not made, and its outcomes were lost: the jobs
        stayed ``running`` until their leases expired, and ran again)."""
        self._quiet_until = 0.0
        """Loop time until which the claim and watch loops make no store call (``HANDOFF_QUIET``)."""
        self._starved = asyncio.Event()
        """Set when the last claim found less than it asked for: wake on the store's hint."""
        self._stopping = asyncio.Event()
        self._hard_stop = False
        self.executor = Executor(app.settings, self.clock)
        self.threads = TaskThreads(
            self.settings.concurrency, self.executor, self._finish, self._on_stuck, self.settings.timeout_grace
        )
        self.catcher: Catcher | None = None
        """Receives the jobs handed to this worker, where the store lets a thread do it."""
        self._store: Store | None = None
        self._tasks = frozenset(app.tasks)
        self.metrics = job_metrics()
        """Counters and histograms per attempt (``backbeat.metrics``): the one metrics hook."""

    # -- control -----------------------------------------------------------------------

    def stop(self, *, hard: bool = False) -> None:
        """Stop claiming and drain (within the shutdown grace; at once if ``hard``)."""
        self._hard_stop = self._hard_stop or hard
        self._stopping.set()
        if self.catcher is not None:
            self.catcher.disarm()
        self._wake.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def _on_stuck(self, attempt: Attempt) -> None:
        log.error(
            "job %s (%s): sync task still running %.0f s after its timeout; recycling this worker process "
            "(a thread cannot be killed: give blocking calls their own timeouts)",
            attempt.job.id,
            attempt.job.task,
            self.settings.timeout_grace,
        )
        self.recycle_requested = True
        self.stop()

    # -- the run -----------------------------------------------------------------------

    async def run(self) -> None:
        """Run until ``stop()`` (or, in burst mode, until idle), then drain."""
        missing = sorted({t.limit_name for t in self.app.tasks.values() if t.limit_name} - set(self.app.rate_limits))
        if missing:
            raise ConfigError(
                f"tasks refer to rate limits nobody declared: {', '.join(missing)} "
                "(declare each with app.rate_limit(name, limit=..., per=...))"
            )
        require_keys((t.info for t in self.app.tasks.values()), self.app.settings)
        store = self._store = await self.app.client.astore()
        if not self._tasks:
            log.warning("worker %s knows no tasks: declare them with @app.task in the app it loads", self.id)
        if self.background:
            await store.worker_register(self._info())
            log.info(
                "worker %s started: queues %s, concurrency %d, %d tasks, store %s",
                self.id,
                ",".join(self.settings.queues),
                self.settings.concurrency,
                len(self._tasks),
                self.app.client.url,
            )
        self.threads.start(asyncio.get_running_loop())
        if self.background and not self.burst and store.job_handed_to_thread(self.id):
            self.catcher = Catcher(
                self.id,
                store,
                self.threads,
                wait=self.settings.idle_poll,
                runnable=self._catchable,
                adopt=self._adopt,
                take=self._take,
            )
        helpers = [self._ack_loop(store), self._watch_loop(store)]
        if self.background:
            helpers += [self._heartbeat_loop(store), self._maintenance_loop(store), self._lease_watch_loop()]
        running = [asyncio.create_task(h) for h in helpers]
        try:
            await self._claim_loop(store)
        finally:
            await self._unpark(store)
            await self._drain(store)
            await self._stop_helpers(running)
            await self._flush_acks(store)
            if self.background:
                await _quietly(store.worker_unregister(self.id))
            self.threads.stop()
            log.info("worker %s stopped", self.id)

    async def _stop_helpers(self, running: list[asyncio.Task[None]]) -> None:
        """Cancel the helper loops, once a batch of outcomes being written is written (a
        store that never answers gets a lease's time)."""
        try:
            async with asyncio.timeout(self.settings.lease):
                await self._ack_writing.acquire()
        except TimeoutError:
            log.warning("writing job outcomes did not finish within %g s; stopping without them", self.settings.lease)
        for t in running:
            t.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        if self._ack_writing.locked():
            self._ack_writing.release()

    def _info(self) -> WorkerInfo:
        now = self.clock.now()
        return WorkerInfo(
            id=self.id,
            host=socket.gethostname(),
            pid=os.getpid(),
            queues=self.settings.queues,
            concurrency=self.settings.concurrency,
            tasks=tuple(self.app.tasks[name].info for name in sorted(self._tasks)),
            started_at=now,
            heartbeat_at=now,
            in_flight=self._running(),
            version=__version__,
        )

    async def _claim_loop(self, store: Store) -> None:
        s = self.settings
        while not self.stopping:
            self._wake.clear()  # before claiming: a write during the claim leaves it set
            if self.catcher is not None:
                self.catcher.disarm()
            await self._start_ready(store)
            await self._quiet()
            target = s.concurrency + self._prefetch()
            in_flight = self._in_flight()
            room = target - in_flight - len(self.ready)
            timeout = s.idle_poll
            # claimed, not started: prefetched, or queued beyond the slots for the task threads
            waiting = len(self.ready) + max(0, in_flight - s.concurrency)
            if room > 0 and (waiting < s.concurrency or room >= target // 2):
                want = min(room, s.claim_batch)
                jobs = await self._claim(store, want)
                self.ready.extend(jobs)
                await self._start_ready(store)
                if len(jobs) == want:
                    self._starved.clear()
                    continue
                self._starved.set()
                if self.burst and not self.attempts and not self.ready:
                    return
                timeout = await self._idle_timeout(store)
                if self.catcher is not None:  # parked (if the store parks it)
                    self.catcher.start(asyncio.get_running_loop())
                    if not self.ready and self._in_flight() < s.concurrency and not self.stopping:
                        self.catcher.arm()
            await self.clock.wait(self._wake, timeout)

    async def _quiet(self) -> None:
        """Pause while a job handed over has just started (``HANDOFF_QUIET``)."""
        pause = self._quiet_until - asyncio.get_running_loop().time()
        if pause > 0:
            await asyncio.sleep(pause)

    def _prefetch(self) -> int:
        """Jobs to hold claimed beyond the free slots: about ``prefetch_window`` seconds of
        work per slot at the measured mean run time."""
        window = self.settings.prefetch_window
        if window <= 0:
            return 0
        ahead = int(self.settings.concurrency * window / max(self._mean_run, 1e-4))
        return min(ahead, self.settings.claim_batch)

    async def _claim(self, store: Store, limit: int) -> list[JobRecord]:
        request = ClaimRequest(
            worker_id=self.id,
            queues=self.settings.queues,
            tasks=self._tasks,
            limit=limit,
            lease=self.settings.lease,
            park=PARK_POLLS * self.settings.idle_poll if self._may_park() else 0.0,
        )
        try:
            jobs = await store.job_claim(request, now=self.clock.now())
        except StoreError as exc:
            log.warning("claim failed (%s); retrying", exc)
            await self.clock.sleep(1.0)
            return []
        self._hold(jobs)
        return jobs

    def _hold(self, jobs: list[JobRecord]) -> None:
        """Jobs leased to this worker (claimed, or handed to it while parked). Each lease
        counts from its grant (``started_at``: the claim's or the enqueue's ``now``), not
        from the reply, which may come late."""
        now = self.clock.now()
        for job in jobs:
            assert job.lease_token is not None and job.started_at is not None
            self.held[job.id] = Lease(job_id=job.id, token=job.lease_token)
            self.renewals.renewed([job.id], min(job.started_at, now))

    async def _idle_timeout(self, store: Store) -> float:
        """Seconds until the earliest delayed job is due, at most ``idle_poll``."""
        try:
            due = await store.job_next_due(self.settings.queues)
        except StoreError:
            return self.settings.idle_poll
        if due is None:
            return self.settings.idle_poll
        return max(0.0, min(self.settings.idle_poll, due - self.clock.now()))

    async def _start_ready(self, store: Store) -> None:
        """Start claimed jobs while slots are free: async ones on this loop, sync ones on
        the task threads; a job under a rate limit starts only if its bucket grants it now
        (else it waits, as scheduled, for the time the bucket names).

        Sync jobs without a rate limit also go to the threads' queue beyond the free slots
        (up to the prefetch), while every slot is a task thread's (``_may_queue_ahead``;
        a cancel, a lost lease or a shutdown ends a queued job at once, ``_stop`` and
        ``_drain``): a thread that ends a job takes the next at once instead of
        waiting for this loop to hear of it and hand one over (with the lease tokens of
        ``ids.token``, a Redis drain of one ``INCR`` per job gained 12% on one process and
        on two: ``benchmarks/drain_split.py --against``). The queue holds no more than the
        worker holds claimed anyway, and a queued attempt's timeout counts from the thread
        taking it (``runtime/threads.py``)."""
        starting = self._startable()
        if not starting:
            return
        try:
            buckets = await self._admit(store, starting)
        except BaseException:  # not started: back in line, for the drain (or the next start)
            self.ready.extendleft(reversed(starting))
            raise
        for job in starting:
            if job.id in buckets and buckets[job.id] is None:
                continue  # denied: already handed back to wait for its bucket
            attempt = Attempt(
                job=job, task=self.app.tasks[job.task], began=self.clock.now(), bucket=buckets.get(job.id)
            )
            self.attempts[job.id] = attempt
            self.started += 1
            if attempt.task.is_async:
                attempt.runner = asyncio.create_task(self._execute(attempt), name=f"job-{job.id}")
            else:
                self.threads.submit(attempt)

    def _startable(self) -> list[JobRecord]:
        """The prefetched jobs to start now, taken off ``ready`` in order (see ``_start_ready``)."""
        starting: list[JobRecord] = []
        ahead = self.settings.concurrency + self._prefetch()
        queue_ahead: bool | None = None  # decided once needed (it looks at every attempt)
        while self.ready:
            job = self.ready[0]
            task = self.app.tasks[job.task]
            taken = self._in_flight() + len(starting)
            if taken >= self.settings.concurrency:
                if queue_ahead is None:
                    queue_ahead = self._may_queue_ahead()
                # only a sync job with no rate limit waits for a thread (a grant is for now)
                if not (queue_ahead and taken < ahead and not task.is_async and task.limit_name is None):
                    break
            self.ready.popleft()
            if task.is_async:
                queue_ahead = False  # it holds a slot without a task thread
            if self.background and self.renewals.overdue([job.id], self.clock.now()):
                log.warning("job %s: its lease expires before it could start (a late answer); not starting it", job.id)
                self._forget(job.id)
                continue
            starting.append(job)
        return starting

    def _may_queue_ahead(self) -> bool:
        """Whether sync jobs may be queued beyond the free slots: only while every slot is
        a task thread's. An async attempt or the catcher's holds a slot without one, and a
        task thread left idle would take a queued job beside it (more jobs running than
        ``concurrency``)."""
        caught = self.catcher is not None and self.catcher.current is not None
        return not caught and not any(a.task.is_async for a in self.attempts.values())

    def _stop(self, attempt: Attempt, reason: Interrupt) -> None:
        """Stop an attempt; one still waiting for a task thread ends here and now."""
        if attempt.withdraw(reason):
            self._finish(attempt, self.executor.interrupted(attempt))
        else:
            attempt.stop(reason)

    def _running(self) -> int:
        """Attempts running (a sync one queued for the task threads is not yet)."""
        return sum(1 for a in self.attempts.values() if a.task.is_async or a.started)

    def _may_park(self) -> bool:
        """Whether a claim may park this worker: not in tests' runs, and not while the
        catcher runs a job (it reads nothing then: a job handed over would wait)."""
        catching = self.catcher is not None and self.catcher.current is not None
        return self.background and not self.burst and not catching

    def _in_flight(self) -> int:
        """Slots taken: attempts, and a job the catcher started that the loop has not adopted yet."""
        caught = self.catcher.current if self.catcher is not None else None
        return len(self.attempts) + int(caught is not None and caught.job.id not in self.attempts)

    def _catchable(self, job: JobRecord) -> Task[Any, Any] | None:
        """The task of a handed job the catcher may start alone: sync, no rate limit (its
        bucket is asked from the loop), known to this worker, its lease not about to expire
        (the loop drops such a job, as any it could not start in time)."""
        task = self.app.tasks.get(job.task)
        if task is None or job.task not in self._tasks or task.is_async or task.limit_name is not None:
            return None
        expires = job.lease_expires_at
        if expires is None or self.clock.now() >= expires - self.renewals.margin:
            return None
        return task

    def _adopt(self, attempt: Attempt) -> None:
        """The catcher started a job handed over: from now on it is this loop's attempt.
        The claim loop claims again (after ``HANDOFF_QUIET``): the claim clears the job's
        ``handed`` mark (it began: a rescue counts its attempt) and ends the parking."""
        self._hold([attempt.job])
        self.attempts[attempt.job.id] = attempt
        self.started += 1
        self._quiet_until = asyncio.get_running_loop().time() + HANDOFF_QUIET
        self._wake.set()

    def _take(self, jobs: list[JobRecord]) -> None:
        """Jobs handed over, to start here (the watch loop's, or the catcher's when it may
        not start them)."""
        self._hold(jobs)
        self.ready.extend(jobs)
        self._quiet_until = asyncio.get_running_loop().time() + HANDOFF_QUIET
        self._wake.set()

    async def _admit(self, store: Store, jobs: list[JobRecord]) -> dict[str, str | None]:
        """Ask the buckets of rate-limited jobs; job id -> its bucket if granted, ``None``
        if denied (that job was snoozed until its bucket allows it)."""
        asking: list[tuple[JobRecord, BucketRequest]] = []
        for job in jobs:
            task = self.app.tasks[job.task]
            if task.limit_name is None:
                continue
            try:
                args, kwargs, _ = task.arguments(job.payload, self.executor.keys)
                bucket = task.bucket(args, kwargs, self.app.settings.secret_key)
            except (ValueError, TypeError):
                continue  # the executor reports bad arguments (and secrets that do not open)
            assert bucket is not None
            limit = self.app.rate_limits[task.limit_name]
            per = None if limit.per is None else limit.per + START_SLACK
            request = BucketRequest(
                bucket=bucket, job_id=job.id, limit=limit.limit, per=per, concurrency=limit.concurrency
            )
            asking.append((job, request))
        if not asking:
            return {}
        now = self.clock.now()
        answers = await store.bucket_acquire([r for _, r in asking], now=now)
        granted: dict[str, str | None] = {}
        for (job, request), retry_at in zip(asking, answers, strict=True):
            granted[job.id] = request.bucket if retry_at is None else None
            if retry_at is not None:
                self.rate_limited += 1
                self._ack(JobOutcome(lease=self.held[job.id], outcome=Outcome.SNOOZED, retry_at=retry_at))
                self._note_wait(job, now, retry_at, f"rate limit {request.bucket} at its limit")
                self.metrics.rate_limit_wait(task_limiter(self.app, job.task), retry_at - now)
        return granted

    def _note_wait(self, job: JobRecord, now: float, until: float, why: str) -> None:
        if job.schedule_key is not None:
            self.decisions.append(
                Decision(
                    key=job.schedule_key,
                    at=now,
                    kind=DecisionKind.RATE_LIMITED,
                    job_id=job.id,
                    detail=f"{why}: the run waits until {iso(until)} (not a failure)",
                )
            )

    async def _execute(self, attempt: Attempt) -> None:
        outcome: JobOutcome | None
        try:
            outcome = await self.executor.run(attempt)
        except asyncio.CancelledError:
            if attempt.interrupt is None:
                raise
            outcome = self.executor.interrupted(attempt)
        except Exception as exc:  # a bug of ours: record it on the job, keep the worker
            log.exception("job %s: internal error", attempt.job.id)
            outcome = self.executor.failed(attempt, exc)
        self._finish(attempt, outcome)

    def _finish(self, attempt: Attempt, outcome: JobOutcome | None) -> None:
        """An attempt ended: free its slot, queue its outcome (none if its lease was lost).
        A task that raised ``RateLimited`` blocks its bucket for everyone until its retry."""
        attempt.finished = True
        if self.catcher is not None and self.catcher.current is attempt:
            self.catcher.current = None  # its thread waits for handed jobs again: the worker may park
        if outcome is not None and outcome.outcome is Outcome.SNOOZED and outcome.retry_at is not None:
            self.rate_limited += 1
            if attempt.bucket is not None:
                self.blocks.append((attempt.bucket, outcome.retry_at))
            where = f"rate limit {attempt.bucket} blocked" if attempt.bucket else "the task raised RateLimited"
            now = self.clock.now()
            self._note_wait(attempt.job, now, outcome.retry_at, f"{where}: the upstream said so")
            self.metrics.rate_limit_wait(task_limiter(self.app, attempt.job.task), outcome.retry_at - now)
        self.attempts.pop(attempt.job.id, None)
        self._mean_run += 0.05 * (max(0.0, self.clock.now() - attempt.began) - self._mean_run)
        self.metrics.attempt_ended(attempt.job, outcome, began=attempt.began, ended=self.clock.now())
        self._wake.set()
        if outcome is None:
            self._forget(attempt.job.id)
            return
        self._ack(outcome)

    def _ack(self, outcome: JobOutcome) -> None:
        self.acks.append(outcome)
        self._ack_needed.set()

    # -- acks --------------------------------------------------------------------------

    async def _ack_loop(self, store: Store) -> None:
        while True:
            await self._ack_needed.wait()
            if self.attempts and len(self.acks) < self.settings.claim_batch:
                # jobs are running: let the outcomes due in a moment join this batch (one
                # write instead of many); a real-time pause, not a scheduling decision
                await asyncio.sleep(ACK_LINGER)
            self._ack_needed.clear()
            async with self._ack_writing:
                written = await self._flush_acks(store)
            if not written:
                await self.clock.sleep(1.0)
                self._ack_needed.set()

    async def _flush_acks(self, store: Store) -> bool:
        """Write bucket blocks, then the pending outcomes, then decisions; False (and keep
        them) if the store failed."""
        try:
            while self.blocks:
                bucket, until = self.blocks[0]
                await store.bucket_block(bucket, until=until)
                self.blocks.pop(0)
            # taken off the list before the write: an attempt ending during it notes its
            # decision on the new list, for the next flush (clearing after would lose it)
            decisions, self.decisions = self.decisions, []
            try:
                if decisions:
                    await store.decision_append(decisions)
            except StoreError:
                self.decisions = decisions + self.decisions
                raise
        except StoreError as exc:
            log.warning("writing rate-limit blocks or decisions failed (%s); retrying", exc)
            return False
        batch, self.acks = self.acks, []
        if not batch:
            return True
        try:
            refused = await store.job_ack(batch, now=self.clock.now())
        except StoreError as exc:
            log.warning("writing %d job outcomes failed (%s); retrying", len(batch), exc)
            self.acks = batch + self.acks
            return False
        for outcome in batch:
            self._forget(outcome.lease.job_id)
        if refused:
            log.warning("lease lost before the outcome was written (another worker took over): %s", refused)
        return True

    # -- heartbeat, maintenance, wake-ups ----------------------------------------------

    async def _heartbeat_loop(self, store: Store) -> None:
        interval = self.settings.heartbeat_interval
        while True:
            await self.clock.sleep(interval)
            await _quietly(self._heartbeat(store))

    async def _heartbeat(self, store: Store) -> None:
        now = self.clock.now()
        leases = list(self.held.values())
        heartbeat = store.job_heartbeat(self.id, leases, lease=self.settings.lease, now=now)
        result = await self._within_lease(heartbeat, "a heartbeat")
        self.renewals.renewed({lease.job_id for lease in leases if lease.job_id in self.held} - result.lost, now)
        if result.lost or result.cancel_requested:
            self._drop_ready(result.lost, result.cancel_requested)
        for job_id in result.lost:
            self._forget(job_id)
            if (attempt := self.attempts.get(job_id)) is not None:
                log.warning("job %s: lease lost (taken over after expiry); abandoning this attempt", job_id)
                self._stop(attempt, Interrupt.LOST)
        for job_id in result.cancel_requested:
            if (attempt := self.attempts.get(job_id)) is not None:
                log.info("job %s: cancel requested; stopping it", job_id)
                self._stop(attempt, Interrupt.CANCEL)
        if not await store.worker_heartbeat(self.id, in_flight=self._running(), now=now):
            await store.worker_register(replace(self._info(), started_at=now))
        # then follow the store server's clock (leases, due times): its readings come after
        # the renewal, which they must not delay
        await self._within_lease(correct(self.clock, store), "a reading of the server's clock")

    async def _within_lease(self, call: Awaitable[T], what: str) -> T:
        """``call``'s answer; a store call stuck on a black-holed connection must not hold up
        the next heartbeats: ``StoreError`` after a lease's time."""
        try:
            async with asyncio.timeout(self.settings.lease):
                return await call
        except TimeoutError:
            raise StoreError(f"no answer to {what} within the lease ({self.settings.lease:g} s)") from None

    def _forget(self, job_id: str) -> None:
        """This worker holds the job's lease no more."""
        self.held.pop(job_id, None)
        self.renewals.forget(job_id)

    async def _lease_watch_loop(self) -> None:
        """Stop attempts (and drop prefetched jobs) whose leases could not be renewed in
        time, before another worker may rescue them."""
        while True:
            await self.clock.sleep(self.renewals.margin / 2)
            now = self.clock.now()
            overdue = set(self.renewals.overdue(self.held.keys(), now))
            if not overdue:
                continue
            self.ready = deque(job for job in self.ready if job.id not in overdue)
            for job_id in overdue:
                attempt = self.attempts.get(job_id)
                if attempt is not None and attempt.interrupt is None:
                    log.warning(
                        "job %s: lease lost: not renewed for %.1f s (store unreachable, or this process was "
                        "paused); stopping this attempt before another worker may take it over",
                        job_id,
                        now - (self.renewals.deadline(job_id) - self.settings.lease + self.renewals.margin),
                    )
                    self._stop(attempt, Interrupt.LOST)
                if attempt is None or attempt.finished:
                    self._forget(job_id)

    def _drop_ready(self, lost: frozenset[str], cancelled: frozenset[str]) -> None:
        """Prefetched jobs that were cancelled or lost never start."""
        keep: deque[JobRecord] = deque()
        for job in self.ready:
            if job.id in cancelled:
                self._ack(JobOutcome(lease=self.held[job.id], outcome=Outcome.CANCELLED))
            elif job.id not in lost:
                keep.append(job)
        self.ready = keep

    async def _maintenance_loop(self, store: Store) -> None:
        interval = min(self.settings.maintenance_interval, self.settings.lease / 2)
        rounds = 0
        while True:
            await self.clock.sleep(interval)
            rounds += 1
            await _quietly(self._rescue(store))
            if rounds % PRUNE_EVERY == 0:
                await _quietly(self._prune(store))

    async def _rescue(self, store: Store) -> None:
        now = self.clock.now()
        rescued = await store.job_rescue(now=now)
        for job in rescued:
            log.warning(
                "job %s (%s): lease expired (its worker stopped heartbeating); now %s", job.id, job.task, job.state
            )
        await store.decision_append(
            [
                Decision(
                    key=job.schedule_key,
                    at=now,
                    kind=DecisionKind.LEASE_LOST,
                    job_id=job.id,
                    detail=f"worker {job.worker_id} stopped heartbeating during attempt {job.attempts} of "
                    f"{job.max_attempts}; the job is now {job.state}",
                )
                for job in rescued
                if job.schedule_key is not None
            ]
        )

    async def _prune(self, store: Store) -> None:
        now = self.clock.now()
        pruned = await store.job_prune(self.app.settings.retention.cutoffs(now))
        dead = await store.worker_prune(dead_before=now - 2 * self.settings.lease)
        if pruned or dead:
            log.info("pruned %d finished jobs past retention, %d dead workers", pruned, len(dead))

    async def _watch_loop(self, store: Store) -> None:
        while True:
            await self._starved.wait()  # a busy worker claims when a slot frees: no hint needed
            try:
                if await store.wakeup_wait(self.settings.idle_poll):
                    handed = store.job_handed(self.id)
                    if handed:
                        self._take(handed)
                    self._wake.set()
                await self._quiet()
            except StoreError:
                await self.clock.sleep(1.0)

    # -- shutdown ----------------------------------------------------------------------

    async def _unpark(self, store: Store) -> None:
        """No job may be handed to this worker any more; those handed and not received
        join the prefetched ones (the drain hands them back). The catcher's jobs reach the
        loop first: it queued them for the loop before it could be closed."""
        if self.catcher is not None:
            self.catcher.close()
            # what it caught or passed was queued for this loop before close() returned, so
            # it runs in the next loop turn, before this coroutine resumes
            await asyncio.sleep(0)
        try:
            handed = await store.job_unpark(self.id)
        except StoreError as exc:
            log.warning("ending this worker's parking failed (%s); jobs handed to it return as leases expire", exc)
            return
        self._hold(handed)
        self.ready.extend(handed)

    async def _drain(self, store: Store) -> None:
        """Hand back prefetched jobs (and those waiting for a task thread); let running
        ones finish within the grace, then hand back what still runs."""
        while self.ready:
            job = self.ready.popleft()
            self.acks.append(JobOutcome(lease=self.held[job.id], outcome=Outcome.RELEASED))
        for attempt in list(self.attempts.values()):
            if attempt.withdraw(Interrupt.SHUTDOWN):
                self._finish(attempt, self.executor.interrupted(attempt))
        if self.attempts and not self._hard_stop:
            log.info("waiting up to %.0f s for %d running jobs", self.settings.shutdown_grace, len(self.attempts))
            await self._wait_idle(self.settings.shutdown_grace)
        if not self.attempts:
            return
        for attempt in list(self.attempts.values()):
            attempt.stop(Interrupt.SHUTDOWN)
        await self._wait_idle(1.0)
        if self.attempts:
            log.warning("handing back %d jobs that did not stop", len(self.attempts))
        for attempt in list(self.attempts.values()):  # sync tasks stuck in C: hand back anyway
            self._finish(attempt, JobOutcome(lease=attempt.lease, outcome=Outcome.RELEASED))

    async def _wait_idle(self, timeout: float) -> None:
        deadline = self.clock.now() + timeout
        while self.attempts and (remaining := deadline - self.clock.now()) > 0:
            self._wake.clear()
            await self.clock.wait(self._wake, remaining)


async def _quietly(aw: Awaitable[Any]) -> None:
    """Await a background store call; a failure is logged and retried by the caller's loop."""
    try:
        await aw
    except StoreError as exc:
        log.warning("store call failed: %s", exc)


def task_limiter(app: App, task: str) -> str:
    """The ``limiter`` label of a wait: the task's declared rate limit, else ``task:<name>``."""
    found = app.tasks.get(task)
    name = found.limit_name if found is not None else None
    return name if name is not None else f"task:{task}"
