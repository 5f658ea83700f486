"""The store protocol: everything workers, schedulers, clients and the CLI ask of a store.

These docstrings are the specification. Every implementation (``memory``, ``sqlite``, and
the server stores to come) runs the one conformance suite in
``backbeat.testing.conformance``, which checks exactly what is written here.

Conventions
-----------
* Methods are ``async`` and named noun-first (``job_claim``, ``worker_register``).
* Time is float seconds since the epoch, always passed in as ``now`` by the caller: a store
  never reads the wall clock, so tests drive time and every process agrees on it.
* "Atomic" means all of the method's effects become visible together or none does, also
  to other processes sharing the store.
* A lease is owned by whoever holds its current token. Every claim mints a fresh token;
  heartbeat and ack must present it. A stale token is refused, so a worker that wakes up
  late can never overwrite the attempt that replaced its own.
* Dispatch order: higher ``priority`` first, then earlier ``order_at`` (a deadline for
  jobs of SLA schedules, the due time for the rest), then earlier id.

Slots for what follows (not part of the protocol yet): keyed schedules
(``schedule_upsert/get/list/pause/remove`` and an atomic ``schedule_fire`` built on a
unique (key, fire time)), SLA history, rate-limit buckets, events and the per-schedule
decision log. ``NewJob.schedule_key``/``fire_at``/``order_at`` already carry what a fired
job needs.

Internal module: the protocol may change between minor versions.
"""

from __future__ import annotations

import abc
import contextvars
from collections.abc import Mapping, Sequence

from backbeat.types import (
    Capability,
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
    TaskInfo,
    WorkerInfo,
)

BLOCKING_OK: contextvars.ContextVar[bool] = contextvars.ContextVar("backbeat_blocking_ok", default=False)
"""True while a sync call runs its coroutine on a private loop in the caller's thread: the
caller is blocked anyway, so a store with blocking I/O (SQLite) may do it inline instead
of handing it to another thread."""

LEASE_EXPIRED = "LeaseExpired: the worker stopped heartbeating (killed or cut off) while the job ran"
"""The error ``job_rescue`` records on a job whose lease expired."""


class Store(abc.ABC):
    capabilities: frozenset[Capability] = frozenset()
    loop_bound: bool = False
    """True when an instance may only be used from the event loop that opened it; the app
    then opens one instance per loop."""

    # -- lifecycle ---------------------------------------------------------------------

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect and bring the schema up to date (creating it on first use).

        Idempotent. Raises ``SchemaTooNew`` if the store was written by a newer backbeat,
        ``StoreError`` if it cannot be reached.
        """

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections. Idempotent; allowed before ``open``."""

    @abc.abstractmethod
    async def migrate(self) -> int:
        """Apply every pending schema migration and return the schema version.

        Safe when many processes call it at once (they serialise; one applies each step).
        Raises ``SchemaTooNew`` like ``open``."""

    # -- jobs --------------------------------------------------------------------------

    @abc.abstractmethod
    async def job_enqueue(self, jobs: Sequence[NewJob], *, now: float) -> list[Enqueued]:
        """Write ``jobs`` atomically (all or none), one ``Enqueued`` per job, in order.

        A job whose ``run_at`` is at or before ``now`` is ``queued``, otherwise
        ``scheduled``. ``order_at`` defaults to ``run_at``. If a *live* job (scheduled,
        queued or running) already holds the job's ``dedup_key`` — written earlier or
        earlier in this same batch — nothing is written for it and the live job is
        returned with ``created=False``. Ids are unique; a repeated id is a ``StoreError``.
        """

    @abc.abstractmethod
    async def job_claim(self, request: ClaimRequest, *, now: float) -> list[JobRecord]:
        """Atomically take up to ``request.limit`` due jobs and return them ``running``.

        Candidates are ``queued`` jobs, and ``scheduled`` jobs whose ``run_at <= now``
        (promoted as part of the claim), in ``request.queues`` and of a task in
        ``request.tasks``, taken in dispatch order. Each claimed job gets
        ``attempts + 1``, ``started_at = now``, ``worker_id``, a fresh ``lease_token`` and
        ``lease_expires_at = now + request.lease``. No job is ever handed to two claimers
        whose leases are both current. Jobs of unknown tasks are left untouched.
        """

    @abc.abstractmethod
    async def job_heartbeat(
        self, worker_id: str, leases: Sequence[Lease], *, lease: float, now: float
    ) -> HeartbeatResult:
        """Extend each lease still held (job running, same token) to ``now + lease``.

        Returns the ids no longer held (rescued, cancelled and finished, or unknown) as
        ``lost``, and the ids held but asked to cancel as ``cancel_requested``.
        """

    @abc.abstractmethod
    async def job_ack(self, outcomes: Sequence[JobOutcome], *, now: float) -> list[str]:
        """Record how attempts ended; return the ids whose lease was not held (refused).

        Only a job that is ``running`` under the presented token changes; each accepted
        outcome clears the lease (token and expiry; ``worker_id`` stays as a record):
        * ``SUCCEEDED``: ``succeeded``, ``result`` stored, ``finished_at = now``.
        * ``FAILED``: ``error``/``traceback`` stored; with ``retry_at`` the job is
          ``scheduled`` at ``retry_at``, without it ``dead`` with ``finished_at = now``.
        * ``SNOOZED``: ``scheduled`` at ``retry_at``; ``attempts - 1`` (not a failure).
        * ``RELEASED``: ``queued``, ``run_at`` unchanged; ``attempts - 1``.
        * ``CANCELLED``: ``cancelled`` with ``finished_at = now``.
        Accepted outcomes are applied atomically together.
        """

    @abc.abstractmethod
    async def job_get(self, job_id: str) -> JobRecord:
        """The job, or ``JobNotFound``."""

    @abc.abstractmethod
    async def job_list(self, filter: JobFilter) -> list[JobRecord]:
        """Jobs matching ``filter``, newest (highest id) first, at most ``filter.limit``,
        only ids below ``filter.before`` when given (keyset pagination)."""

    @abc.abstractmethod
    async def job_cancel(self, job_id: str, *, now: float) -> JobRecord:
        """Cancel a job. ``scheduled``/``queued`` become ``cancelled`` at once; a
        ``running`` job gets ``cancel_requested`` (its worker learns at the next heartbeat)
        and stays running until acked. A finished job is returned unchanged.
        Raises ``JobNotFound``."""

    @abc.abstractmethod
    async def job_retry(self, job_id: str, *, now: float) -> JobRecord:
        """Requeue a ``dead`` or ``cancelled`` job: ``queued``, ``run_at = now``,
        ``attempts = 0``, error kept until the next attempt. Raises ``JobNotFound``, or
        ``InvalidTransition`` for a job in any other state."""

    @abc.abstractmethod
    async def job_rescue(self, *, now: float, limit: int = 1000) -> list[JobRecord]:
        """Take back up to ``limit`` ``running`` jobs whose lease expired before ``now``
        (their worker stopped heartbeating): back to ``queued`` (at-least-once) if
        attempts remain, else ``dead`` with the error ``"LeaseExpired: ..."``. The old
        token is void. Returns the jobs as they are after the rescue."""

    @abc.abstractmethod
    async def job_prune(self, cutoffs: Mapping[JobState, float], *, limit: int = 10_000) -> int:
        """Delete up to ``limit`` jobs in each final state given whose ``finished_at`` is
        before that state's cutoff; return how many were deleted."""

    @abc.abstractmethod
    async def job_next_due(self, queues: Sequence[str]) -> float | None:
        """The earliest ``run_at`` of a ``scheduled`` job in those of ``queues`` that are
        not paused, or ``None``: the timer a worker sleeps to, so delayed jobs start on
        time without polling. (A paused queue's jobs cannot be claimed, so its due jobs
        must not set the timer to "now"; ``queue_resume`` wakes waiters instead.)"""

    @abc.abstractmethod
    async def job_counts(self) -> list[JobCount]:
        """Live and finished job counts per (queue, task, state); zero counts omitted."""

    @abc.abstractmethod
    async def job_finished_since(self, since: float) -> dict[JobState, int]:
        """How many jobs reached each final state at or after ``since`` (throughput)."""

    # -- queues ------------------------------------------------------------------------

    @abc.abstractmethod
    async def queue_pause(self, queue: str, *, now: float) -> None:
        """Stop ``job_claim`` from taking jobs of ``queue`` (running jobs go on; enqueueing
        still works). Idempotent; the queue need not have jobs yet."""

    @abc.abstractmethod
    async def queue_resume(self, queue: str) -> None:
        """Let ``job_claim`` take jobs of ``queue`` again. Idempotent."""

    @abc.abstractmethod
    async def queue_purge(self, queue: str) -> int:
        """Delete every ``queued`` and ``scheduled`` job of ``queue`` (running and finished
        jobs stay); return how many were deleted. Atomic."""

    @abc.abstractmethod
    async def queue_list(self) -> list[QueueInfo]:
        """Every queue that ever had a job enqueued or was paused, by name, with its pause state."""

    # -- wake-ups (a hint; correctness never depends on it) ----------------------------

    @abc.abstractmethod
    async def wakeup_wait(self, timeout: float) -> bool:
        """Return True soon after new work may have arrived (a write by anyone sharing the
        store), or False after ``timeout`` seconds of real time without one. Spurious
        True returns are allowed; a missed one only delays work until the next poll."""

    # -- workers and the task registry -------------------------------------------------

    @abc.abstractmethod
    async def worker_register(self, info: WorkerInfo) -> None:
        """Insert or replace the worker's row, and record each of ``info.tasks`` in the
        task registry (replacing an older definition of the same name)."""

    @abc.abstractmethod
    async def worker_heartbeat(self, worker_id: str, *, in_flight: int, now: float) -> bool:
        """Update the worker's heartbeat; False if it is not registered (pruned as dead:
        it should register again)."""

    @abc.abstractmethod
    async def worker_unregister(self, worker_id: str) -> None:
        """Remove the worker's row (clean shutdown). Unknown ids are ignored."""

    @abc.abstractmethod
    async def worker_list(self) -> list[WorkerInfo]:
        """Registered workers, oldest first."""

    @abc.abstractmethod
    async def worker_prune(self, *, dead_before: float) -> list[str]:
        """Remove workers whose last heartbeat is before ``dead_before``; return their ids."""

    @abc.abstractmethod
    async def task_list(self) -> list[TaskInfo]:
        """Every task a worker has registered, by name (the last registration wins)."""
