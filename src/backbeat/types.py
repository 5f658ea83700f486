"""Plain data shared by every part of backbeat: frozen, keyword-only records and enums.

This module imports nothing from backbeat (it is the leaf every other module builds on).
Times are float seconds since the Unix epoch (UTC) everywhere inside backbeat; they are
turned into ISO 8601 strings only at the edges (CLI ``--json``, HTTP API).

Internal module: the public names are re-exported by ``backbeat``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any, TypeVar


class JobState(StrEnum):
    """The life of a job; the same strings in every store, the CLI and the API."""

    SCHEDULED = "scheduled"
    """Due later: delayed by ``delay``/``at``, or waiting to retry."""
    QUEUED = "queued"
    """Due: waiting for a worker."""
    RUNNING = "running"
    """Claimed by a worker under a lease."""
    SUCCEEDED = "succeeded"
    DEAD = "dead"
    """Retries exhausted; the last error and traceback are kept."""
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATES


LIVE_STATES = frozenset({JobState.SCHEDULED, JobState.QUEUED, JobState.RUNNING})
FINAL_STATES = frozenset({JobState.SUCCEEDED, JobState.DEAD, JobState.CANCELLED})


class Capability(StrEnum):
    """Optional store features; the conformance suite skips on these, never on a store's name."""

    PERSISTENT = "persistent"
    """Data outlives the process (every store but ``memory://``)."""
    MULTI_PROCESS = "multi_process"
    """Several OS processes can share the store."""


@dataclass(frozen=True, kw_only=True, slots=True)
class NewJob:
    """A job to be written by ``Store.job_enqueue``; built and validated by the app layer."""

    id: str
    task: str
    queue: str
    payload: str
    """JSON text ``{"args": [...], "kwargs": {...}}``, encoded by ``serialization``."""
    run_at: float
    """Due time; at or before ``now`` means the job is queued at once."""
    priority: int = 0
    max_attempts: int = 1
    timeout: float | None = None
    dedup_key: str | None = None
    order_at: float | None = None
    """Dispatch key among jobs of equal priority (earlier first); ``None`` means ``run_at``.
    Jobs of SLA schedules carry their deadline here."""
    schedule_key: str | None = None
    """The key of the schedule that fired this job."""
    fire_at: float | None = None
    """The occurrence of the schedule this job runs for."""
    deadline: float | None = None
    """For a job of a schedule with an SLA: when the schedule breaches it. A retry keeps
    the job's place in dispatch order (``order_at``) rather than going to the back."""


@dataclass(frozen=True, kw_only=True, slots=True)
class JobRecord:
    """A job as the store holds it."""

    id: str
    task: str
    queue: str
    state: JobState
    payload: str
    priority: int
    run_at: float
    order_at: float
    attempts: int
    """Attempts started so far (a claim starts one; a rate-limit snooze or a hand-back
    before the task started gives it back)."""
    max_attempts: int
    created_at: float
    timeout: float | None = None
    dedup_key: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    worker_id: str | None = None
    lease_token: str | None = None
    lease_expires_at: float | None = None
    cancel_requested: bool = False
    result: str | None = None
    """JSON text of the return value, once succeeded."""
    error: str | None = None
    """The last error (``Type: message``), kept through retries and in ``dead``."""
    traceback: str | None = None
    schedule_key: str | None = None
    fire_at: float | None = None
    deadline: float | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Enqueued:
    """What ``Store.job_enqueue`` did with one ``NewJob``."""

    job: JobRecord
    created: bool
    """False when a live job with the same ``dedup_key`` existed; ``job`` is that job."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ClaimRequest:
    worker_id: str
    queues: tuple[str, ...]
    tasks: frozenset[str]
    """Only jobs of these tasks are claimed: a job no worker knows waits, it is never failed."""
    limit: int
    lease: float
    """Seconds the lease lasts unless renewed by ``job_heartbeat``."""
    park: float = 0.0
    """If more than 0 and the claim finds fewer jobs than ``limit``: for up to this many
    seconds, until its next claim, the worker is *parked*, and a store that can (Redis)
    leases the next job enqueued for it straight to it (``Store.job_handed``)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Lease:
    """Proof of ownership of one attempt: the token is fresh for every claim."""

    job_id: str
    token: str


class Outcome(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    """The attempt failed: back to ``scheduled`` at ``retry_at``, or ``dead`` without one."""
    SNOOZED = "snoozed"
    """Held back (rate limit): back to ``scheduled`` at ``retry_at``; the attempt is given back."""
    RELEASED = "released"
    """Handed back before the task started (shutdown): ``queued``; the attempt is given back."""
    CANCELLED = "cancelled"


@dataclass(frozen=True, kw_only=True, slots=True)
class JobOutcome:
    """How an attempt ended, reported by the worker that holds its lease."""

    lease: Lease
    outcome: Outcome
    result: str | None = None
    error: str | None = None
    traceback: str | None = None
    retry_at: float | None = None
    next_in: float | None = None
    """For a job fired by a schedule: the task asked for its next run this many seconds
    after this one ends (``backbeat.Next``)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class HeartbeatResult:
    lost: frozenset[str] = frozenset()
    """Jobs whose lease this worker no longer holds: abandon them, never report them."""
    cancel_requested: frozenset[str] = frozenset()


@dataclass(frozen=True, kw_only=True, slots=True)
class JobFilter:
    """Keyset-paginated listing, newest first: pass the last id seen as ``before``."""

    state: JobState | None = None
    queue: str | None = None
    task: str | None = None
    schedule_key: str | None = None
    before: str | None = None
    limit: int = 50


@dataclass(frozen=True, kw_only=True, slots=True)
class JobCount:
    queue: str
    task: str
    state: JobState
    count: int


@dataclass(frozen=True, kw_only=True, slots=True)
class QueueInfo:
    name: str
    paused: bool
    paused_at: float | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Retention:
    """How long finished jobs are kept (seconds after they finished)."""

    succeeded: float = 24 * 3600.0
    dead: float = 7 * 24 * 3600.0
    cancelled: float = 24 * 3600.0
    history: float = 7 * 24 * 3600.0
    """Decision logs, closed SLA breaches and settled events."""

    def cutoffs(self, now: float) -> dict[JobState, float]:
        return {
            JobState.SUCCEEDED: now - self.succeeded,
            JobState.DEAD: now - self.dead,
            JobState.CANCELLED: now - self.cancelled,
        }


@dataclass(frozen=True, kw_only=True, slots=True)
class TaskInfo:
    """A task as a worker registers it, so clients and the CLI can check names without code."""

    name: str
    queue: str
    max_attempts: int
    timeout: float | None = None
    priority: int = 0
    secret: tuple[str, ...] = ()
    """Names whose values are stored sealed (``@app.task(secret=...)``): the task's
    parameters; for an event handler (``handles`` set), fields of the event payload."""
    handles: str | None = None
    """For an event handler (``@app.on``): the event pattern it handles."""


@dataclass(frozen=True, kw_only=True, slots=True)
class WorkerInfo:
    id: str
    host: str
    pid: int
    queues: tuple[str, ...]
    concurrency: int
    tasks: tuple[TaskInfo, ...] = ()
    started_at: float
    heartbeat_at: float
    in_flight: int = 0
    version: str = ""


# -- schedules ---------------------------------------------------------------------------


class ScheduleKind(StrEnum):
    EVERY = "every"
    CRON = "cron"


class ScheduleMode(StrEnum):
    """How an ``every`` schedule re-arms."""

    DELAY = "delay"
    """The next run is due ``every`` seconds after the previous run *ends* (the talk's
    "wait 90 s, re-enqueue self"): the gap is interval + run time."""
    RATE = "rate"
    """Runs are due on a fixed cadence, ``every`` seconds apart, whatever they take."""


class Misfire(StrEnum):
    """What a schedule does about occurrences missed while nothing could fire them
    (downtime, a paused schedule, a run still in flight)."""

    SKIP = "skip"
    """One run now for the latest missed occurrence, then on cadence."""
    CATCH_UP = "catch_up"
    """Run missed occurrences one after another, at most ``catch_up_limit`` of them."""


class ScheduleOrigin(StrEnum):
    CODE = "code"
    """Declared with ``@app.periodic``: synced (added, changed, removed) at scheduler start."""
    RUNTIME = "runtime"
    """Written at run time (``app.every``/``app.cron``, CLI, API)."""
    FILE = "file"
    """Loaded from a resque-scheduler YAML file."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ScheduleSpec:
    """What a schedule is: its definition, validated by the app layer (``schedules.py``)."""

    key: str
    task: str
    queue: str
    payload: str
    """JSON ``{"args": [...], "kwargs": {...}}`` for each job it fires."""
    kind: ScheduleKind
    every: float | None = None
    cron: str | None = None
    tz: str = "UTC"
    mode: ScheduleMode = ScheduleMode.DELAY
    jitter: float = 0.0
    """Each occurrence is due up to this many seconds late, at random (spreads load)."""
    sla: float | None = None
    """Longest allowed gap between successful runs, seconds."""
    max_every: float | None = None
    """An every-schedule's range: the autopilot may stretch its interval up to this (never
    past what its SLA allows) when a rate limit or the workers run short."""
    misfire: Misfire = Misfire.SKIP
    catch_up_limit: int = 0
    priority: int = 0
    max_attempts: int = 1
    timeout: float | None = None
    description: str = ""
    origin: ScheduleOrigin = ScheduleOrigin.RUNTIME


@dataclass(frozen=True, kw_only=True, slots=True)
class ScheduleRecord:
    """A schedule as the store holds it: its definition and where its runs stand."""

    spec: ScheduleSpec
    created_at: float
    updated_at: float
    next_tick: float | None
    """The next occurrence (cron tick, rate tick, or end of last run + interval), before jitter.
    ``None`` while a delay-mode run is in flight: it is re-armed when the run ends."""
    next_at: float | None
    """When the next occurrence is due: ``next_tick`` plus its jitter."""
    paused: bool = False
    paused_at: float | None = None
    pending_jitter: float = 0.0
    """The jitter drawn for the next delay-mode re-arm (drawn by the scheduler at fire time)."""
    in_flight: str | None = None
    """The id of the job of the run in flight; at most one per schedule (runs never overlap)."""
    last_fire_at: float | None = None
    last_job_id: str | None = None
    last_finished_at: float | None = None
    last_state: JobState | None = None
    last_success_at: float | None = None
    resumed_at: float | None = None
    """Staleness counts from here if it is later than the last success (a pause suspends the SLA)."""
    deadline_at: float | None = None
    """For a schedule with an SLA: last success (or creation, or resume) + SLA, the moment it
    breaches without another success."""
    breach_since: float | None = None
    """When the current breach began; ``None`` when within SLA."""
    run_time: float | None = None
    """Moving average of its runs' durations (seconds), the "expected run time" of deadline dispatch."""
    every_now: float | None = None
    """The interval the autopilot set (``None``: ``spec.every``); a new definition resets it."""
    every_reason: str | None = None
    """Why ``every_now`` is what it is (shown by ``schedules list``, logged in ``explain``)."""

    @property
    def key(self) -> str:
        return self.spec.key

    @property
    def timing(self) -> ScheduleSpec:
        """The definition with the effective interval: what fires and re-arms follow."""
        return self.spec if self.every_now is None else evolve(self.spec, every=self.every_now)

    @property
    def staleness_base(self) -> float:
        """Staleness counts from the last success, or creation before one, or the last resume."""
        base = self.last_success_at if self.last_success_at is not None else self.created_at
        return max(base, self.resumed_at or base)


@dataclass(frozen=True, kw_only=True, slots=True)
class IntervalChange:
    """Set a schedule's effective interval to ``every`` (``None``: back to its definition)
    if it is still ``expected`` (``None``: the definition's)."""

    key: str
    every: float | None
    expected: float | None
    reason: str


@dataclass(frozen=True, kw_only=True, slots=True)
class TaskStats:
    """Jobs of one task that finished in a window, and the seconds they ran."""

    task: str
    finished: int
    run_seconds: float


@dataclass(frozen=True, kw_only=True, slots=True)
class Backlog:
    """Jobs due and waiting for a slot (``queued``, or ``scheduled`` and due)."""

    count: int
    oldest_due: float | None


@dataclass(frozen=True, kw_only=True, slots=True)
class StateValue:
    """A small document a process published for others (``Store.state_set``)."""

    value: str
    updated_at: float


class Change(StrEnum):
    ADDED = "added"
    CHANGED = "changed"
    UNCHANGED = "unchanged"


@dataclass(frozen=True, kw_only=True, slots=True)
class Upserted:
    record: ScheduleRecord
    change: Change


@dataclass(frozen=True, kw_only=True, slots=True)
class Fire:
    """One occurrence to fire, planned by the scheduler from a due ``ScheduleRecord``."""

    key: str
    expected_next_at: float
    """The ``next_at`` the plan was made from: the fire happens only if it is unchanged."""
    job: NewJob
    """The run's job; ``schedule_key``/``fire_at`` set; unique per (key, fire_at)."""
    next_tick: float | None
    next_at: float | None
    pending_jitter: float = 0.0
    skipped: int = 0
    """Occurrences passed over by the misfire policy (for the decision log)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ScheduleFilter:
    """Keyset-paginated listing by key: pass the last key seen as ``after``."""

    origin: ScheduleOrigin | None = None
    search: str | None = None
    """Substring of the key or task name."""
    adaptive: bool = False
    """Only schedules with a range (``max_every``): what the autopilot may stretch."""
    after: str | None = None
    limit: int = 100


@dataclass(frozen=True, kw_only=True, slots=True, order=True)
class ScheduleRank:
    """A schedule's place in the worst-first order (``Store.schedule_worst``), and the keyset
    cursor of its pages: compare ranks as tuples ``(group, deadline_at, key)``.

    Groups: 0 = an SLA and not paused (by ``deadline_at``: the most overdue first), 1 = an
    SLA and paused (same), 2 = no SLA (by key; ``deadline_at`` is 0)."""

    group: int
    deadline_at: float
    key: str

    @classmethod
    def of(cls, record: ScheduleRecord) -> ScheduleRank:
        if record.spec.sla is None:
            return cls(group=2, deadline_at=0.0, key=record.key)
        deadline = record.deadline_at if record.deadline_at is not None else float("inf")
        return cls(group=1 if record.paused else 0, deadline_at=deadline, key=record.key)


@dataclass(frozen=True, kw_only=True, slots=True)
class Breach:
    """A span during which a schedule's staleness exceeded its SLA."""

    key: str
    sla: float
    base_at: float
    """The last success (or creation, or resume) staleness counted from."""
    started_at: float
    """``base_at + sla``: when the promise broke."""
    ended_at: float | None = None
    """The next success (or a pause); ``None`` while the breach lasts."""

    def staleness(self, now: float) -> float:
        """The worst staleness of the breach (so far)."""
        return (self.ended_at if self.ended_at is not None else now) - self.base_at


@dataclass(frozen=True, kw_only=True, slots=True)
class SlaStats:
    schedules: int
    """Schedules with an SLA."""
    paused: int
    breached: int
    """Not paused and past their deadline now."""
    breach_seconds: float
    """Seconds of breach inside the window, summed over schedules."""


class DecisionKind(StrEnum):
    """What backbeat decided about a schedule (the ``explain`` log). Routine fires are not
    logged here: they are the schedule's jobs, which ``explain`` reads alongside."""

    SKIPPED = "skipped"
    """Occurrences passed over (misfire policy; a run still in flight)."""
    RATE_LIMITED = "rate_limited"
    PAUSED = "paused"
    RESUMED = "resumed"
    CHANGED = "changed"
    """The definition changed (interval, cron, arguments...), by whom and how."""
    INTERVAL = "interval"
    """The effective interval changed (the autopilot)."""
    LEASE_LOST = "lease_lost"
    """A run's worker stopped heartbeating; its job was taken back."""
    REPAIRED = "repaired"
    BREACH_STARTED = "breach_started"
    BREACH_ENDED = "breach_ended"
    RUN_NOW = "run_now"
    """Someone asked for a run outside the cadence (``app.schedules.run_now``, the dashboard)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Decision:
    key: str
    at: float
    kind: DecisionKind
    detail: str = ""
    job_id: str | None = None


# -- rate limits -------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class RateLimit:
    """A named limit (``app.rate_limit("twitter", limit=900, per=900)``): at most ``limit``
    starts in any window of ``per`` seconds, and at most ``concurrency`` running at once,
    per bucket (each distinct key a task's template produces is its own bucket)."""

    name: str
    limit: int | None = None
    per: float | None = None
    concurrency: int | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class BucketState:
    bucket: str
    blocked_until: float | None
    starts: int
    """Starts granted in the window asked about."""
    running: int
    """Running jobs holding the bucket."""


@dataclass(frozen=True, kw_only=True, slots=True)
class BucketRequest:
    """A job asking to start under a bucket's limits."""

    bucket: str
    job_id: str
    limit: int | None
    per: float | None
    concurrency: int | None


# -- events ------------------------------------------------------------------------------


class EventState(StrEnum):
    PENDING = "pending"
    """Accepted into the store (``Client.emit`` on a store URL); not yet dispatched to handlers."""
    HANDLED = "handled"
    """One job per matching handler was enqueued."""
    UNHANDLED = "unhandled"
    """No handler matched: recorded, not an error."""
    DEAD = "dead"
    """Refused (malformed, over the size limit, failed a handler's contract): kept with the reason."""


@dataclass(frozen=True, kw_only=True, slots=True)
class NewEvent:
    """An event as it arrives: the wire envelope, validated, plus where it came from."""

    id: str
    name: str
    occurred_at: float
    payload: str
    """JSON text of the payload object (for a malformed message: ``{"raw": ...}``)."""
    key: str | None = None
    source: str = "store"


@dataclass(frozen=True, kw_only=True, slots=True)
class EventRecord:
    id: str
    name: str
    occurred_at: float
    payload: str
    received_at: float
    state: EventState
    key: str | None = None
    source: str = "store"
    reason: str | None = None
    """Why it is dead."""
    jobs: int = 0
    """Handler jobs it created."""
    settled_at: float | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class EventSettlement:
    """What a consumer decided for one event: its state, and its handlers' jobs."""

    event: NewEvent
    state: EventState
    reason: str | None = None
    jobs: tuple[NewJob, ...] = ()


@dataclass(frozen=True, kw_only=True, slots=True)
class EventFilter:
    """Newest first (by id); pass the last id seen as ``before``."""

    state: EventState | None = None
    name: str | None = None
    before: str | None = None
    limit: int = 50


R = TypeVar("R")
_EVOLVERS: dict[type, Any] = {}


def evolve(record: R, **changes: Any) -> R:
    """``dataclasses.replace`` for these records (none has a ``__post_init__``), several
    times faster: the stores and the simulation make millions of them. The per-class
    function is generated once, as ``dataclasses`` generates ``__init__``."""
    cls = type(record)
    fn = _EVOLVERS.get(cls)
    if fn is None:
        fn = _EVOLVERS[cls] = _evolver(cls)
    return fn(record, changes)  # type: ignore[no-any-return]


def _evolver(cls: type) -> Any:
    names = [f.name for f in fields(cls)]
    lines = ["def evolve(r, c):", "    n = new(cls)", "    k = 0"]
    for name in names:
        lines += [
            f"    if {name!r} in c:",
            f"        put(n, {name!r}, c[{name!r}])",
            "        k += 1",
            "    else:",
            f"        put(n, {name!r}, r.{name})",
        ]
    lines += [
        "    if k != len(c):",
        "        raise TypeError(f'{cls.__name__} has no field(s) {sorted(set(c) - known)}')",
        "    return n",
    ]
    scope: dict[str, Any] = {"known": frozenset(names), "cls": cls, "new": object.__new__, "put": object.__setattr__}
    exec("\n".join(lines), scope)
    return scope["evolve"]
