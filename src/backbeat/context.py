"""What a running task knows about its own job (``current_job()``), and what it can tell
its schedule (return ``Next(seconds)``)."""

from __future__ import annotations

import contextvars
import math
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

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


@dataclass(frozen=True, slots=True)
class Next:
    """Return ``Next(seconds)`` from a task fired by a schedule to have its next run start
    that long after this one ends, once, instead of the usual interval (a poll that found
    nothing can back off; one that found a burst can come back sooner). ``result`` is
    stored as the job's result. Cron schedules keep their ticks and only log it.
    """

    seconds: float | timedelta
    result: Any = None

    @property
    def delay(self) -> float:
        value = self.seconds.total_seconds() if isinstance(self.seconds, timedelta) else float(self.seconds)
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"Next() needs a finite number of seconds >= 0, got {self.seconds!r}")
        return value
