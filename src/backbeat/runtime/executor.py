"""Running one attempt of a job and turning how it ended into a ``JobOutcome``.

Async tasks run on the worker's event loop (``Executor.run``). Sync tasks run on the
worker's task threads (``Executor.run_in_thread``, driven by ``runtime.threads``; a job
handed to an idle worker on the catcher's thread, ``runtime.catcher``), which
also decode the arguments and encode the result, so the event loop does almost nothing
per sync job.

A thread cannot be killed. When a sync task must stop (its timeout passed, it was
cancelled, its lease was lost, the worker is shutting down) an exception is raised inside
its thread (``PyThreadState_SetAsyncExc``). That lands at the task's next Python bytecode,
so it stops ordinary Python code and I/O with timeouts, but not a call blocked inside C
(``time.sleep``, a socket read without a timeout). If the thread has not stopped
``timeout_grace`` seconds after a timeout, the attempt is recorded as failed and the
worker process recycles itself (finishes the other jobs, hands back what it has not
started, and re-executes), which is the only way to reclaim the thread.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import threading
import traceback
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

from backbeat.context import JobContext, Next, set_current
from backbeat.errors import EnqueueError, RateLimited, Retry, SecretError, SignatureError
from backbeat.retry import retry_delay
from backbeat.secrets import keyring, scrub
from backbeat.serialization import encode_result
from backbeat.signing import signing
from backbeat.types import JobOutcome, JobRecord, Lease, Outcome

if TYPE_CHECKING:
    from backbeat.clock import Clock
    from backbeat.config import Settings
    from backbeat.tasks import Task

log = logging.getLogger("backbeat.worker")
MAX_TRACEBACK = 32_000


class Interrupt(Enum):
    CANCEL = "cancel"
    """The job was cancelled: report ``cancelled``."""
    LOST = "lost"
    """The lease was lost: another worker may run the job; report nothing."""
    SHUTDOWN = "shutdown"
    """The worker is stopping: hand the job back."""


class TaskStop(BaseException):
    """Raised inside a sync task's thread to stop it. A ``BaseException``, so a task's own
    ``except Exception`` does not swallow it."""


class TaskTimeout(TaskStop):
    pass


def raise_in_thread(thread_id: int, exc: type[BaseException]) -> bool:
    done: int = ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), ctypes.py_object(exc))
    return done == 1


@dataclass(eq=False)
class Attempt:
    """One running attempt, from start to outcome."""

    job: JobRecord
    task: Task[Any, Any]
    interrupt: Interrupt | None = None
    stuck: bool = False
    finished: bool = False
    """Set once, by whoever reports the outcome (the loop owns this flag)."""
    thread_id: int | None = None
    """The task thread running the function, while it runs (guarded by ``lock``)."""
    started: bool = False
    """A task thread took it (guarded by ``lock``); until then a sync attempt only waits."""
    lock: threading.Lock = field(default_factory=threading.Lock)
    runner: asyncio.Task[None] | None = None
    timer: asyncio.TimerHandle | None = None
    began: float = 0.0
    bucket: str | None = None
    """The rate-limit bucket this attempt started under."""
    opened: list[str] = field(default_factory=list)
    """The secrets opened for this attempt: scrubbed from its error and traceback."""

    @property
    def lease(self) -> Lease:
        assert self.job.lease_token is not None
        return Lease(job_id=self.job.id, token=self.job.lease_token)

    def stop(self, reason: Interrupt) -> None:
        """Ask the attempt to stop; the first reason wins."""
        if self.interrupt is None:
            self.interrupt = reason
        if self.task.is_async:
            if self.runner is not None:
                self.runner.cancel()
        else:
            self.raise_in_thread(TaskStop)

    def withdraw(self, reason: Interrupt) -> bool:
        """Whether this is a sync attempt no task thread has taken yet, now stopped for
        ``reason`` before it starts: the caller reports its outcome at once (the thread
        that takes it later only passes it by)."""
        with self.lock:
            if self.task.is_async or self.started or self.interrupt is not None:
                return False
            self.interrupt = reason
            return True

    def raise_in_thread(self, exc: type[BaseException]) -> None:
        with self.lock:
            if self.thread_id is not None:
                raise_in_thread(self.thread_id, exc)


class Executor:
    def __init__(self, settings: Settings, clock: Clock) -> None:
        self.settings = settings
        self.clock = clock
        self.keys = keyring(settings)
        self.signing = signing(settings)
        """When set, a job runs only if a known key signed its payload for its task."""

    def prepare(self, attempt: Attempt) -> tuple[list[Any], dict[str, Any]] | JobOutcome:
        """Decoded arguments that fit the task, secrets opened (and ``current_job()`` set),
        or the outcome of an attempt that cannot run."""
        job = attempt.job
        try:
            if self.signing is not None:
                self.signing.verify_payload(job.task, job.payload, f"job {job.id} of {job.task}")
            args, kwargs, attempt.opened = attempt.task.arguments(job.payload, self.keys)
            attempt.task.fits(args, kwargs)
        except (SecretError, SignatureError) as exc:
            return self.failed(attempt, exc, final=True)
        except (ValueError, EnqueueError) as exc:
            return self.failed(attempt, TypeError(f"the stored arguments do not fit: {exc}"), final=True)
        set_current(
            JobContext(
                id=job.id,
                task=job.task,
                queue=job.queue,
                attempt=job.attempts,
                max_attempts=job.max_attempts,
                worker_id=job.worker_id,
                fire_at=job.fire_at,
            )
        )
        return args, kwargs

    async def run(self, attempt: Attempt) -> JobOutcome | None:
        """Run an async task's attempt on this loop; ``None`` when it must not be reported."""
        prepared = self.prepare(attempt)
        if isinstance(prepared, JobOutcome):
            return prepared
        args, kwargs = prepared
        try:
            value = await self._run_async(attempt, args, kwargs)
        except asyncio.CancelledError:
            if attempt.interrupt is None:
                raise
            return self.interrupted(attempt)
        except (Exception, TaskStop) as exc:  # noqa: BLE001 - how the task ended, recorded
            return self.ended_by(attempt, exc)
        return self.succeeded(attempt, value)

    def run_in_thread(self, attempt: Attempt) -> JobOutcome | None:
        """Run a sync task's attempt in the calling (task) thread."""
        with attempt.lock:
            attempt.started = True
            stopped = attempt.interrupt is not None
        if stopped:  # stopped while it waited for a thread: nothing is opened or run
            return self.interrupted(attempt)
        prepared = self.prepare(attempt)
        if isinstance(prepared, JobOutcome):
            return prepared
        args, kwargs = prepared
        try:
            with attempt.lock:
                if attempt.interrupt is not None:
                    raise TaskStop()
                attempt.thread_id = threading.get_ident()
            try:
                value = attempt.task.fn(*args, **kwargs)
            finally:
                with attempt.lock:
                    attempt.thread_id = None
                # a stop raised just before thread_id was cleared is still pending: a
                # backward jump checks for it, so it is delivered here, inside the try
                for _ in range(2):
                    pass
        except BaseException as exc:  # noqa: BLE001 - how the task ended (sys.exit() too), recorded
            return self.ended_by(attempt, exc)
        return self.succeeded(attempt, value)

    def succeeded(self, attempt: Attempt, value: Any) -> JobOutcome:
        if attempt.stuck:
            return self.timed_out(attempt)
        next_in = None
        try:
            if isinstance(value, Next):
                next_in, value = value.delay, value.result
            result = encode_result(value, limit=self.settings.max_payload_bytes)
        except (EnqueueError, ValueError) as exc:
            return self.failed(attempt, exc, final=True)
        return JobOutcome(lease=attempt.lease, outcome=Outcome.SUCCEEDED, result=result, next_in=next_in)

    def ended_by(self, attempt: Attempt, exc: BaseException) -> JobOutcome | None:
        """The outcome of an attempt that raised ``exc``."""
        match exc:
            case TaskTimeout():
                return self.timed_out(attempt)
            case TaskStop():
                return self.interrupted(attempt)
            case Retry():
                return self.failed(attempt, exc, requested=exc.in_)
            case RateLimited():
                retry_at = self.clock.now() + exc.retry_after
                return JobOutcome(lease=attempt.lease, outcome=Outcome.SNOOZED, retry_at=retry_at)
            case _:
                return self.failed(attempt, exc)

    def timed_out(self, attempt: Attempt) -> JobOutcome:
        return self.failed(attempt, TimeoutError(f"task exceeded its timeout of {attempt.job.timeout:g} s"))

    def interrupted(self, attempt: Attempt) -> JobOutcome | None:
        match attempt.interrupt:
            case Interrupt.CANCEL:
                return JobOutcome(lease=attempt.lease, outcome=Outcome.CANCELLED)
            case Interrupt.SHUTDOWN:
                return JobOutcome(lease=attempt.lease, outcome=Outcome.RELEASED)
            case _:
                return None

    def failed(
        self, attempt: Attempt, exc: BaseException, *, final: bool = False, requested: float | None = None
    ) -> JobOutcome:
        job = attempt.job
        delay = None
        if not final:
            delay = retry_delay(
                attempts=job.attempts, max_attempts=job.max_attempts, policy=self.settings.retry, requested=requested
            )
        error = scrub(f"{type(exc).__name__}: {exc}", attempt.opened)
        if delay is None and job.max_attempts > 1 and not final:
            error += f" (after {job.attempts} attempts)"
        level = logging.ERROR if delay is None else logging.INFO if isinstance(exc, Retry) else logging.WARNING
        log.log(
            level,
            "job %s (%s) attempt %d failed: %s%s",
            job.id,
            job.task,
            job.attempts,
            error,
            f"; retry in {delay:.1f} s" if delay is not None else "; dead",
        )
        tb = scrub("".join(traceback.format_exception(exc)), attempt.opened)[-MAX_TRACEBACK:]
        retry_at = None if delay is None else self.clock.now() + delay
        return JobOutcome(lease=attempt.lease, outcome=Outcome.FAILED, error=error, traceback=tb, retry_at=retry_at)

    async def _run_async(self, attempt: Attempt, args: list[Any], kwargs: dict[str, Any]) -> Any:
        coro = attempt.task.fn(*args, **kwargs)
        if attempt.job.timeout is None:
            return await coro
        deadline = asyncio.timeout(attempt.job.timeout)
        try:
            async with deadline:
                return await coro
        except TimeoutError:
            if deadline.expired() and attempt.interrupt is None:
                raise TaskTimeout() from None
            raise  # the task's own TimeoutError
