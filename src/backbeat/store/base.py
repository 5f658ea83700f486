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

* Schedules are rows. Firing an occurrence is one atomic step (``schedule_fire``) that
  creates its job under a uniqueness on (schedule key, fire time) and advances the
  schedule only if nobody advanced it first, so any number of schedulers can run. A
  schedule has at most one run in flight; when that run's job reaches a final state (by
  ``job_ack``, ``job_rescue`` or ``job_cancel``) the same step *finishes the run*: see
  ``finish_run`` below.

**Finishing a run** (applied atomically with the job's final transition, only when the job
is still its schedule's ``in_flight``): ``in_flight`` cleared, ``last_finished_at = now``,
``last_state`` = the job's state; ``run_time`` moves a fifth of the way towards the run's
duration (``now - started_at``; set outright on the first run; unchanged if the job never
started). If the job succeeded: ``last_success_at = now``, and for a schedule with an SLA
the breach accounting runs — an open breach ends (``ended_at = now``); a success later
than ``deadline_at`` with no breach open records one closed breach (``started_at =
deadline_at``, ``ended_at = now``); then ``deadline_at = now + sla``. Then the re-arm:
* delay-mode ``every``: ``next_tick = now + (next_in or every)``, ``next_at = next_tick +
  pending_jitter``;
* otherwise, only if the outcome carries ``next_in``: ``next_tick = next_at = now + next_in``.

**SLA.** ``deadline_at = staleness_base + sla`` (see ``ScheduleRecord.staleness_base``):
set on creation, on a change of the definition, on resume and on success. A paused
schedule cannot breach: pausing ends an open breach; resuming restarts the count.
Breaches are recorded exactly by the store (``sla_check`` opens them on time for alerts;
a success closes them or records a missed one).

**Rate limits** live in the store so every worker shares them: a bucket grants a start
only if it is not blocked, fewer than ``limit`` starts were granted in the last ``per``
seconds, and fewer than ``concurrency`` jobs hold it while running. Buckets are named by
an opaque id (a keyed hash of the key the task's template produced, never a secret).

**Events** are deduplicated by id: an id is recorded once, whatever its source and however
often it arrives. An event is settled (handled, unhandled or dead) exactly once, together
with its handlers' jobs, so a consumer killed at any point never loses an acknowledged
event nor doubles its jobs.

Internal module: the protocol may change between minor versions.
"""

from __future__ import annotations

import abc
import contextvars
from collections.abc import Callable, Mapping, Sequence

from backbeat.errors import EnqueueError, EventError
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

BLOCKING_OK: contextvars.ContextVar[bool] = contextvars.ContextVar("backbeat_blocking_ok", default=False)
"""True while a sync call runs its coroutine on a private loop in the caller's thread: the
caller is blocked anyway, so a store with blocking I/O (SQLite) may do it inline instead
of handing it to another thread."""

BREACHES_PER_KEY = 1_000_000
"""``sla_breaches_of`` reads every breach in its window (a limit only to satisfy ``sla_breaches``)."""

LEASE_EXPIRED = "LeaseExpired: the worker stopped heartbeating (killed or cut off) while the job ran"
"""The error ``job_rescue`` records on a job whose lease expired."""


class Store(abc.ABC):
    capabilities: frozenset[Capability] = frozenset()
    loop_bound: bool = False
    """True when an instance may only be used from the event loop that opened it; the app
    then opens one instance per loop. A sync call (``task.enqueue``, ``job.status``) runs
    the store on a private event loop of the calling thread (``BLOCKING_OK`` set), so a
    loop-bound store has an instance per such thread."""
    enqueue_batch: int = 500
    """Jobs per ``job_enqueue`` call that ``enqueue_many`` sends (one transaction each)."""

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

    async def server_time(self) -> float | None:
        """The store server's clock, seconds since the Unix epoch; ``None`` for a store with
        no clock of its own (memory, SQLite: every process shares the machine's clock).

        The one exception to "stores never read a clock": processes on machines whose
        clocks disagree correct their ``Clock`` by it (``backbeat.clock.correct``), so they
        agree on due times and lease expiries. Raises ``StoreError`` if unreachable."""
        return None

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

    def job_enqueue_blocking(self, jobs: Sequence[NewJob], *, now: float) -> list[Enqueued] | None:
        """``job_enqueue`` from sync code with no event loop, on a blocking connection of
        this (open) instance, for a store where that costs less than running the coroutine
        (Redis: no event loop round and asyncio client per call). ``None`` when this instance
        cannot (the default, or not open yet): the caller then awaits ``job_enqueue``."""
        return None

    async def job_enqueue_on(self, connection: object, jobs: Sequence[NewJob], *, now: float) -> list[Enqueued]:
        """``job_enqueue`` inside the caller's open transaction on ``connection`` (a psycopg
        connection, sync or async, to the store's own PostgreSQL database). Nothing is
        committed: the jobs exist once the caller commits, and a rollback leaves none.
        Dedup applies as in ``job_enqueue`` (a live job committed by others, or written
        earlier in the caller's transaction). Stores that cannot, and a connection of the
        wrong kind, raise ``EnqueueError`` (nothing written)."""
        kind = type(connection).__module__ + "." + type(connection).__qualname__
        raise EnqueueError(
            f"{type(self).__name__} cannot write jobs inside your transaction (got connection={kind}): "
            "pass a psycopg connection to the store's PostgreSQL database, or drop connection="
        )

    @abc.abstractmethod
    async def job_claim(self, request: ClaimRequest, *, now: float) -> list[JobRecord]:
        """Atomically take up to ``request.limit`` due jobs and return them ``running``.

        Candidates are ``queued`` jobs, and ``scheduled`` jobs whose ``run_at <= now``
        (promoted as part of the claim), in ``request.queues`` and of a task in
        ``request.tasks``, taken in dispatch order. Each claimed job gets
        ``attempts + 1``, ``started_at = now``, ``worker_id``, a fresh ``lease_token`` and
        ``lease_expires_at = now + request.lease``. No job is ever handed to two claimers
        whose leases are both current. Jobs of unknown tasks are left untouched.

        With ``request.park`` (stores that hand jobs over; the others ignore it), a claim
        that finds fewer than ``limit`` jobs parks the worker: the first job enqueued for
        it (alone, not in a batch; due now, on one of its queues not paused, of a task it
        knows) while nothing else is claimable for it is leased to it by the enqueue
        itself (as a claim would: attempts + 1, a lease of ``request.lease`` from the
        enqueue's ``now``), which ends the parking. The worker receives such a job from
        ``job_handed`` after a wake-up, or else from its next claim, which returns it
        first, counted in ``limit``. Every claim ends the previous parking; a claim that
        finds ``limit`` jobs (handed ones included) does not park.
        """

    def job_handed(self, worker_id: str) -> list[JobRecord]:
        """Jobs leased to the parked ``worker_id`` that ``wakeup_wait`` has received and
        no call has returned yet (each is returned once)."""
        return []

    async def job_unpark(self, worker_id: str) -> list[JobRecord]:
        """End ``worker_id``'s parking (shutdown); return the jobs leased to it that it
        has not received (the caller hands them back). A ``job_handed_wait`` of the worker
        that is waiting ends (with ``StoreError``)."""
        return []

    def job_handed_to_thread(self, worker_id: str) -> bool:
        """From now on a thread of ``worker_id`` receives the jobs handed to it, with
        ``job_handed_wait`` (so ``wakeup_wait`` no longer does). False, and nothing
        changes, where the store hands no jobs over."""
        return False

    def job_handed_wait(
        self, worker_id: str, timeout: float, accept: Callable[[list[JobRecord]], bool]
    ) -> list[JobRecord]:
        """Block the calling thread (not an event loop) up to ``timeout`` seconds until
        jobs are handed to the parked ``worker_id`` that no call has returned yet; then,
        while no other call can receive them, ``accept(jobs)`` decides: True and they are
        returned (no other call returns them), False and they stay for the worker's next
        claim or ``job_unpark``. ``[]`` after the timeout. Only after
        ``job_handed_to_thread`` (and a claim that parked the worker)."""
        return []

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
          ``scheduled`` at ``retry_at`` (``order_at = retry_at`` too, unless the job has a
          ``deadline``: then it keeps its place), without it ``dead`` with ``finished_at = now``.
        * ``SNOOZED``: ``scheduled`` at ``retry_at`` (``order_at`` as for ``FAILED``);
          ``attempts - 1`` (not a failure).
        * ``RELEASED``: ``queued``, ``run_at`` unchanged; ``attempts - 1``.
        * ``CANCELLED``: ``cancelled`` with ``finished_at = now``.
        Accepted outcomes are applied atomically together, each with its run's finish
        (see the module docstring) when the job reached a final state.
        """

    @abc.abstractmethod
    async def job_get(self, job_id: str) -> JobRecord:
        """The job, or ``JobNotFound``."""

    @abc.abstractmethod
    async def job_list(self, filter: JobFilter) -> list[JobRecord]:
        """Jobs matching ``filter`` (state, queue, task, schedule key), newest (highest id)
        first, at most ``filter.limit``, only ids below ``filter.before`` when given
        (keyset pagination)."""

    @abc.abstractmethod
    async def job_cancel(self, job_id: str, *, now: float) -> JobRecord:
        """Cancel a job. ``scheduled``/``queued`` become ``cancelled`` at once; a
        ``running`` job gets ``cancel_requested`` (its worker learns at the next heartbeat)
        and stays running until acked. A finished job is returned unchanged. A job
        cancelled at once finishes its schedule's run. Raises ``JobNotFound``."""

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
        token is void; a job that became final finishes its schedule's run. Returns the
        jobs as they are after the rescue."""

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

    @abc.abstractmethod
    async def job_stats(self, since: float) -> list[TaskStats]:
        """Per task, the jobs that succeeded or died at or after ``since`` and the seconds
        their last attempts ran (``finished_at - started_at``): the autopilot's demand."""

    @abc.abstractmethod
    async def job_backlog(self, queues: Sequence[str], *, now: float) -> Backlog:
        """How many jobs of ``queues`` are due and waiting (``queued``, or ``scheduled``
        with ``run_at <= now``), and the earliest due time among them."""

    # -- schedules ---------------------------------------------------------------------

    @abc.abstractmethod
    async def schedule_upsert(
        self, spec: ScheduleSpec, *, next_tick: float | None, next_at: float | None, now: float
    ) -> Upserted:
        """Add the schedule ``spec.key``, or replace its definition, atomically.

        New: ``created_at = updated_at = now``, the given ``next_tick``/``next_at``, not
        paused, no run yet, ``deadline_at = now + sla``; ``Change.ADDED``. Existing with an
        identical definition: nothing written, ``Change.UNCHANGED``. Otherwise the
        definition is replaced, ``updated_at = now`` and ``next_tick``/``next_at`` set as
        given — except while a delay-mode run is in flight, when they stay ``None`` (the
        run's end re-arms it); ``deadline_at`` is recomputed from the new SLA, and an open
        breach the new SLA no longer supports ends now; the run state (``in_flight``,
        ``last_*``, ``paused``) is kept; ``Change.CHANGED``.
        """

    @abc.abstractmethod
    async def schedule_get(self, key: str) -> ScheduleRecord:
        """The schedule, or ``ScheduleNotFound``."""

    @abc.abstractmethod
    async def schedule_list(self, filter: ScheduleFilter) -> list[ScheduleRecord]:
        """Schedules ordered by key, only keys after ``filter.after``, at most ``limit``;
        ``origin``, ``search`` (substring of key or task) and ``adaptive`` narrow it."""

    @abc.abstractmethod
    async def schedule_worst(
        self, *, after: ScheduleRank | None = None, search: str | None = None, limit: int
    ) -> list[ScheduleRecord]:
        """Schedules worst first, at most ``limit``: those with an SLA that are not paused
        (earliest ``deadline_at`` first, then key), then paused ones with an SLA (the same),
        then those without an SLA (by key) — ``ScheduleRank`` order. Only schedules ranked
        after ``after`` when given (keyset pagination: pass ``ScheduleRank.of`` the last
        record of a page); ``search`` keeps those whose key or task contains it. Each group
        is an index range scan (with ``search``: a scan until ``limit`` match). Ranks move
        as schedules succeed, so pages are a snapshot per page, not across pages."""

    @abc.abstractmethod
    async def schedule_remove(self, key: str) -> bool:
        """Delete the schedule; False if there was none. A run in flight goes on and its
        end changes nothing."""

    @abc.abstractmethod
    async def schedule_pause(self, key: str, *, now: float) -> ScheduleRecord:
        """Stop firing (``paused_at = now`` unless already paused); a run in flight goes on;
        an open breach ends now. Raises ``ScheduleNotFound``."""

    @abc.abstractmethod
    async def schedule_resume(self, key: str, *, now: float) -> ScheduleRecord:
        """Fire again; occurrences missed while paused are handled by the misfire policy.
        If it was paused: ``resumed_at = now`` and the SLA count restarts
        (``deadline_at = now + sla``). Raises ``ScheduleNotFound``."""

    @abc.abstractmethod
    async def schedule_due(self, *, now: float, limit: int) -> list[ScheduleRecord]:
        """Up to ``limit`` schedules with ``next_at <= now``, not paused, no run in flight,
        earliest ``next_at`` first (then key). An index range scan on every store."""

    @abc.abstractmethod
    async def schedule_next_due(self) -> float | None:
        """The earliest ``next_at`` of a schedule that is not paused and has no run in
        flight: the scheduler's timer."""

    @abc.abstractmethod
    async def schedule_fire(self, fires: Sequence[Fire], *, now: float) -> list[bool]:
        """Fire each occurrence, each atomically on its own; True where it fired.

        A fire happens only if its schedule exists, is not paused, has no run in flight,
        still has ``next_at == fire.expected_next_at``, and no job exists for
        (``fire.key``, ``fire.job.fire_at``). Then: ``fire.job`` is enqueued (as by
        ``job_enqueue``), and the schedule gets ``in_flight`` = that job, ``last_fire_at``
        = its ``fire_at``, ``last_job_id``, and ``next_tick``/``next_at``/
        ``pending_jitter`` from the fire. Otherwise nothing changes (another scheduler got
        there first, or the schedule changed): the caller re-reads and plans again.
        """

    @abc.abstractmethod
    async def schedule_repair(self, *, now: float) -> list[str]:
        """Finish the runs whose in-flight job no longer exists or is already final (a
        purge, a manual delete), as if they ended now; return their keys. Keeps a chain
        from ever stopping silently."""

    @abc.abstractmethod
    async def schedule_set_every(self, changes: Sequence[IntervalChange], *, now: float) -> list[bool]:
        """Apply each change on its own: set the every-schedule's effective interval
        (``every_now``, with ``every_reason``) only if it is still ``expected`` (a
        compare-and-set, so two autopilots never compound one change); False for a
        schedule that is gone, not an every-schedule, or moved on. A schedule waiting for
        its next occurrence has it moved by the difference; a run in flight re-arms with
        the new interval. ``updated_at`` is not touched (the definition did not change)."""

    # -- SLA and the decision log -------------------------------------------------------

    @abc.abstractmethod
    async def sla_check(self, *, now: float, limit: int = 1000) -> list[Breach]:
        """Open a breach for up to ``limit`` schedules with an SLA that are not paused, not
        in breach, and have ``deadline_at < now``: ``breach_since = deadline_at`` and an open
        ``Breach`` (``started_at = deadline_at``). Atomic per schedule; each breach is
        returned to exactly one caller (for alerts). An index range scan on ``deadline_at``."""

    @abc.abstractmethod
    async def sla_ended(self, *, limit: int = 1000) -> list[Breach]:
        """Closed breaches not returned before, each returned to exactly one caller (for
        alerts), oldest end first."""

    @abc.abstractmethod
    async def sla_breaches(self, *, key: str | None, since: float, limit: int = 1000) -> list[Breach]:
        """Breaches of ``key`` (or of every schedule) that were open at or after ``since``
        (open ones, and closed ones with ``ended_at >= since``), latest start first."""

    async def sla_breaches_of(self, keys: Sequence[str], *, since: float) -> dict[str, list[Breach]]:
        """``sla_breaches`` of each of ``keys`` (every one of them, latest start first), read
        at once: a page of schedules costs one round trip, not one per row. A key without
        breaches maps to ``[]``. This default asks per key (fine in process); the stores on
        a file or a server override it."""
        return {key: await self.sla_breaches(key=key, since=since, limit=BREACHES_PER_KEY) for key in keys}

    @abc.abstractmethod
    async def sla_list(self, *, limit: int) -> list[ScheduleRecord]:
        """Schedules with an SLA, worst first: not paused before paused, then earliest
        ``deadline_at`` (the most overdue), then key."""

    @abc.abstractmethod
    async def sla_stats(self, *, now: float, since: float) -> SlaStats:
        """Counts over every schedule with an SLA, and the seconds of breach inside
        ``[since, now]`` summed over them (open breaches count until ``now``)."""

    @abc.abstractmethod
    async def decision_append(self, decisions: Sequence[Decision]) -> None:
        """Add entries to schedules' decision logs."""

    @abc.abstractmethod
    async def decision_list(self, key: str, *, before: float | None = None, limit: int = 100) -> list[Decision]:
        """A schedule's decisions, newest first (entries at the same time: last appended
        first), only those before ``before`` when given."""

    @abc.abstractmethod
    async def decision_since(self, kinds: Sequence[DecisionKind], *, since: float, limit: int) -> list[Decision]:
        """Decisions of ``kinds`` at or after ``since`` across schedules, oldest first (at
        most ``limit``): the autopilot reads the rate-limit waits of the last window."""

    @abc.abstractmethod
    async def history_prune(self, *, before: float, limit: int = 10_000) -> int:
        """Delete up to ``limit`` each of decisions, closed breaches and settled events
        older than ``before`` (retention; events by ``received_at``); return how many."""

    # -- rate-limit buckets -----------------------------------------------------------

    @abc.abstractmethod
    async def bucket_acquire(self, requests: Sequence[BucketRequest], *, now: float) -> list[float | None]:
        """Decide, in order, whether each job may start now under its bucket; ``None``
        where granted, else the time to ask again.

        A request is granted if the bucket is not blocked (``blocked_until <= now``), fewer
        than ``limit`` starts were granted in ``(now - per, now]`` (when ``limit`` is set),
        and fewer than ``concurrency`` running jobs hold the bucket (when set). A grant
        records a start at ``now`` and makes the job hold the bucket until it leaves
        ``running`` (so a crashed worker's job cannot leak a slot). Denied: ``blocked_until``,
        or when the oldest start in the window leaves it, or ``now + 1`` for concurrency.
        Atomic per request; a batch's grants count against its later requests.
        """

    @abc.abstractmethod
    async def bucket_block(self, bucket: str, *, until: float) -> None:
        """Grant nothing under ``bucket`` before ``until`` (an upstream said 429); a later
        ``until`` extends the block, an earlier one does not shorten it."""

    @abc.abstractmethod
    async def bucket_state(self, bucket: str, *, now: float, per: float | None) -> BucketState:
        """The bucket's block and how many starts it granted in the last ``per`` seconds."""

    # -- events ------------------------------------------------------------------------

    @abc.abstractmethod
    async def event_append(self, events: Sequence[NewEvent], *, now: float) -> list[bool]:
        """Accept events as ``pending`` (``received_at = now``), atomically together; False
        for an id already recorded (nothing changes for it)."""

    async def event_append_on(self, connection: object, events: Sequence[NewEvent], *, now: float) -> list[bool]:
        """``event_append`` inside the caller's open transaction on ``connection`` (a
        database connection of the store's own kind: ``sqlite3.Connection`` to the same
        file, a psycopg connection to the same database). Nothing is committed: the events
        exist once the caller commits, and a rollback leaves none (a transactional outbox
        with no relay). Stores that cannot, and a connection of the wrong kind, raise
        ``EventError`` (nothing written)."""
        kind = type(connection).__module__ + "." + type(connection).__qualname__
        raise EventError(
            f"{type(self).__name__} cannot write events inside your transaction (got connection={kind}): "
            "pass a connection to the store's own SQL database, or drop connection="
        )

    @abc.abstractmethod
    async def event_settle(self, settlements: Sequence[EventSettlement], *, now: float) -> list[bool]:
        """Settle each event on its own, atomically with its jobs; True where settled now.

        An id not recorded yet is recorded with the settlement's state and reason
        (``received_at = settled_at = now``) and its jobs enqueued (as by ``job_enqueue``).
        A ``pending`` event moves to that state the same way, and its payload becomes the
        settlement's ``event.payload`` (the consumer seals secret fields a sender left in
        plain text). An event already settled is a duplicate: nothing changes, False.
        """

    @abc.abstractmethod
    async def event_pending(self, *, limit: int) -> list[EventRecord]:
        """Up to ``limit`` pending events, oldest received first."""

    @abc.abstractmethod
    async def event_get(self, event_id: str) -> EventRecord:
        """The event, or ``EventNotFound``."""

    @abc.abstractmethod
    async def event_list(self, filter: EventFilter) -> list[EventRecord]:
        """Events matching ``filter``, highest id first, only ids below ``before``."""

    @abc.abstractmethod
    async def event_replay(self, event_id: str) -> EventRecord:
        """Send a ``dead`` or ``unhandled`` event back to ``pending`` (reason cleared) so the
        consumers dispatch it again with today's handlers and contracts. Raises
        ``EventNotFound``, or ``InvalidTransition`` for an event in any other state."""

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
        task registry (replacing an older definition of the same name): every field of
        ``TaskInfo``, including ``secret`` (names, in order) and ``handles``."""

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

    # -- published state ---------------------------------------------------------------

    @abc.abstractmethod
    async def state_set(self, name: str, value: str, *, now: float) -> None:
        """Publish ``value`` (a small JSON document) under ``name``, replacing the last
        one (the autopilot's desired worker count, for ``status`` and orchestrators)."""

    @abc.abstractmethod
    async def state_get(self, name: str) -> StateValue | None:
        """The last value published under ``name``, or None."""


def breaches_by_key(keys: Sequence[str], breaches: Sequence[Breach]) -> dict[str, list[Breach]]:
    """``sla_breaches_of``'s answer from breaches read together, in the order given."""
    found: dict[str, list[Breach]] = {key: [] for key in keys}
    for breach in breaches:
        found[breach.key].append(breach)
    return found
