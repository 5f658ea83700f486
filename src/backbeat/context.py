"""``current_job()``: what a running task knows about its own job."""

from __future__ import annotations

import contextvars
from dataclasses import dataclass

from backbeat.errors import BackbeatError


@dataclass(frozen=True, kw_only=True, slots=True)
class JobContext:
    id: str
    task: str
    queue: str
    attempt: int
    """1 for the first attempt."""
    max_attempts: int
    worker_id: str | None
    fire_at: float | None = None
    """For a job fired by a schedule: the occurrence it runs for (idempotency per tick)."""


_current: contextvars.ContextVar[JobContext] = contextvars.ContextVar("backbeat_current_job")


def current_job() -> JobContext:
    """The job the calling task runs as; raises ``BackbeatError`` outside a job."""
    try:
        return _current.get()
    except LookupError:
        raise BackbeatError("current_job() was called outside a running backbeat job") from None


def set_current(context: JobContext) -> contextvars.Token[JobContext]:
    return _current.set(context)
