"""One rooted exception hierarchy.

Failures derive from ``BackbeatError``; lookups also derive from ``LookupError`` and bad
input from ``ValueError``/``TypeError``, so ordinary ``except`` clauses keep working.
Control flow that a task raises on purpose (``Retry``, ``RateLimited``) is kept apart:
it is not a failure and does not derive from ``BackbeatError``.

Every message names the thing that is wrong and, where there is one, what to do.
"""

from __future__ import annotations

from datetime import timedelta


class BackbeatError(Exception):
    """Root of every error backbeat raises."""


class ConfigError(BackbeatError, ValueError):
    """Bad configuration: a malformed URL, an unknown scheme, an invalid setting."""


class TaskDefinitionError(BackbeatError, TypeError):
    """A task cannot be declared as written (reserved parameter name, duplicate name...)."""


class EnqueueError(BackbeatError, ValueError):
    """The enqueue call was refused; nothing was written."""


class PayloadError(EnqueueError):
    """Arguments or a result that cannot travel as JSON, or are over the size limit."""


class TaskNotFound(BackbeatError, LookupError):
    """No task by that name is registered."""


class JobNotFound(BackbeatError, LookupError):
    """No job with that id (it may have been pruned after its retention)."""


class EventNotFound(BackbeatError, LookupError):
    """No event with that id (it may have been pruned after its retention)."""


class EventError(BackbeatError, ValueError):
    """An event that cannot be accepted as given (bad envelope, bad name, too large...)."""


class EmitError(BackbeatError):
    """An event (or an enqueue sent over a broker) could not be delivered: the broker or
    store stayed unreachable for the client's ``send_timeout``. It was not sent."""


class ScheduleNotFound(BackbeatError, LookupError):
    """No schedule with that key."""


class ScheduleError(BackbeatError, ValueError):
    """A schedule cannot be defined as given (bad cron, bad duration, bad time zone...)."""


class WorkerNotFound(BackbeatError, LookupError):
    """No worker with that id is registered."""


class InvalidTransition(BackbeatError):
    """The job is not in a state that allows the operation (e.g. retrying a running job)."""


class SecretError(BackbeatError, ValueError):
    """A secret cannot be sealed or opened: no key is configured, the key that sealed it is
    not configured, or the sealed value was altered (see docs/secrets.md)."""


class SignatureError(BackbeatError, ValueError):
    """A job or event is not signed by a key this process knows, or was altered after it
    was signed, while signatures are required (``BACKBEAT_SIGNING_KEY``; docs/secrets.md)."""


class StoreError(BackbeatError):
    """The store failed or holds something this version of backbeat cannot use."""


class SchemaTooNew(StoreError):
    """The store's schema was written by a newer backbeat than this one."""


class JobFailed(BackbeatError):
    """The job is dead: its retries are exhausted. ``error`` and ``traceback`` hold the last failure."""

    def __init__(self, job_id: str, error: str | None, traceback: str | None = None) -> None:
        super().__init__(f"job {job_id} is dead: {error or 'no error recorded'}")
        self.job_id = job_id
        self.error = error
        self.traceback = traceback


class JobCancelled(BackbeatError):
    """The job was cancelled before it produced a result."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id} was cancelled")
        self.job_id = job_id


# -- control flow: raised by task code on purpose, not failures ---------------------------


def _seconds(value: float | timedelta | None) -> float | None:
    if value is None:
        return None
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if seconds < 0:
        raise ValueError(f"a delay cannot be negative (got {seconds} s)")
    return seconds


class Retry(Exception):
    """Raise inside a task to retry it: ``raise Retry(in_=30)``.

    The attempt counts against the task's retries; without ``in_`` the usual exponential
    backoff applies. When retries are exhausted the job goes to ``dead``.
    """

    def __init__(self, in_: float | timedelta | None = None, reason: str = "") -> None:
        self.in_ = _seconds(in_)
        self.reason = reason
        super().__init__(reason or (f"retry in {self.in_} s" if self.in_ is not None else "retry"))


class RateLimited(Exception):
    """Raise inside a task when an upstream refused for now (an HTTP 429).

    The job goes back to waiting for ``retry_after`` seconds; it is not a failure and does
    not use up a retry.
    """

    def __init__(self, retry_after: float | timedelta = 1.0, reason: str = "") -> None:
        seconds = _seconds(retry_after)
        assert seconds is not None
        self.retry_after = seconds
        self.reason = reason
        super().__init__(reason or f"rate limited; retry after {seconds} s")
