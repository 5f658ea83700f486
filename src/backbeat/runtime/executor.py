"""Running one attempt of a job and turning how it ended into a ``JobOutcome``.

Async tasks run on the worker's loop; sync tasks run in the worker's thread pool.

A thread cannot be killed. When a sync task must stop (its timeout passed, it was
cancelled, its lease was lost, the worker is shutting down) the executor raises an
exception inside its thread (``PyThreadState_SetAsyncExc``). That lands at the task's next
Python bytecode, so it stops ordinary Python code and I/O with timeouts, but not a call
blocked inside C (a socket read without a timeout). If the thread has not stopped
``timeout_grace`` seconds after a timeout, the attempt is recorded as failed and the
worker process recycles itself (finishes the other jobs, hands back what it has not
started, and starts afresh), which is the only way to reclaim the thread.
"""

from __future__ import annotations

import asyncio
import contextvars
import ctypes
import logging
import threading
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

from backbeat.context import JobContext, set_current
from backbeat.errors import EnqueueError, RateLimited, Retry
from backbeat.retry import retry_delay
from backbeat.serialization import decode_payload, encode_result
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
    """One running attempt, from claim to outcome."""

    job: JobRecord
    task: Task[Any, Any]
    interrupt: Interrupt | None = None
    stuck: bool = False
    thread_id: int | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    runner: asyncio.Task[JobOutcome | None] | None = None

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

    def raise_in_thread(self, exc: type[BaseException]) -> None:
        with self.lock:
            if self.thread_id is not None:
                raise_in_thread(self.thread_id, exc)


class Executor:
    def __init__(self, settings: Settings, clock: Clock, pool: ThreadPoolExecutor, on_stuck: Any) -> None:
        self.settings = settings
        self.clock = clock
        self.pool = pool
        self.on_stuck = on_stuck

    async def run(self, attempt: Attempt) -> JobOutcome | None:
        """Run the attempt; its outcome, or ``None`` when it must not be reported (lease lost)."""
        job, task = attempt.job, attempt.task
        try:
            args, kwargs = decode_payload(job.payload)
            task.check_arguments(args, kwargs)
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
        try:
            if task.is_async:
                value = await self._run_async(attempt, args, kwargs)
            else:
                value = await self._run_sync(attempt, args, kwargs)
        except asyncio.CancelledError:
            if attempt.interrupt is None:
                raise
            return self.interrupted(attempt)
        except (Exception, TaskStop) as exc:  # noqa: BLE001 - how the task ended, recorded
            return self.ended_by(attempt, exc)
        if attempt.stuck:
            return self.ended_by(attempt, TaskTimeout())
        try:
            result = encode_result(value, limit=self.settings.max_payload_bytes)
        except EnqueueError as exc:
            return self.failed(attempt, exc, final=True)
        return JobOutcome(lease=attempt.lease, outcome=Outcome.SUCCEEDED, result=result)

    def ended_by(self, attempt: Attempt, exc: BaseException) -> JobOutcome | None:
        """The outcome of an attempt that raised ``exc``."""
        match exc:
            case TaskTimeout():
                return self.failed(attempt, TimeoutError(f"task exceeded its timeout of {attempt.job.timeout:g} s"))
            case TaskStop():
                return self.interrupted(attempt)
            case Retry():
                return self.failed(attempt, exc, requested=exc.in_)
            case RateLimited():
                retry_at = self.clock.now() + exc.retry_after
                return JobOutcome(lease=attempt.lease, outcome=Outcome.SNOOZED, retry_at=retry_at)
            case _:
                return self.failed(attempt, exc)

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
        error = f"{type(exc).__name__}: {exc}"
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
        tb = "".join(traceback.format_exception(exc))[-MAX_TRACEBACK:]
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

    async def _run_sync(self, attempt: Attempt, args: list[Any], kwargs: dict[str, Any]) -> Any:
        ctx = contextvars.copy_context()
        fn = attempt.task.fn

        def in_thread() -> Any:
            with attempt.lock:
                if attempt.interrupt is not None:
                    raise TaskStop()
                attempt.thread_id = threading.get_ident()
            try:
                return ctx.run(fn, *args, **kwargs)
            finally:
                with attempt.lock:
                    attempt.thread_id = None

        future = asyncio.get_running_loop().run_in_executor(self.pool, in_thread)
        timeout = attempt.job.timeout
        if timeout is None:
            return await future
        done, _ = await asyncio.wait({future}, timeout=timeout)
        if done:
            return future.result()
        attempt.raise_in_thread(TaskTimeout)
        done, _ = await asyncio.wait({future}, timeout=self.settings.worker.timeout_grace)
        if done:
            return future.result()
        attempt.stuck = True
        self.on_stuck(attempt)
        raise TaskTimeout()
