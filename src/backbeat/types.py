"""Plain data shared by every part of backbeat: frozen, keyword-only records and enums.

This module imports nothing from backbeat (it is the leaf every other module builds on).
Times are float seconds since the Unix epoch (UTC) everywhere inside backbeat; they are
turned into ISO 8601 strings only at the edges (CLI ``--json``, HTTP API).

Internal module: the public names are re-exported by ``backbeat``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


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
    """Reserved for schedules: the key of the schedule that fired this job."""
    fire_at: float | None = None
    """Reserved for schedules: the occurrence this job runs for."""


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
