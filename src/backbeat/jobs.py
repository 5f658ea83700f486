"""Jobs from the caller's side: ``build_job`` validates an enqueue into a ``NewJob`` (the
one place every enqueue path goes through), and ``Job`` is the handle ``enqueue`` returns
(``job.id``, ``job.status()``, ``job.result()``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from backbeat import secrets
from backbeat.config import MAX_KEY, MAX_SECONDS, Settings, check_queue_name, check_text
from backbeat.errors import ConfigError, EnqueueError, JobCancelled, JobFailed
from backbeat.ids import uuid7
from backbeat.serialization import decode_result, encode_payload
from backbeat.signing import sign_payload
from backbeat.types import JobRecord, JobState, NewJob, TaskInfo

if TYPE_CHECKING:
    from backbeat.client import Client


RESERVED_OPTIONS = ("delay", "at", "dedup_key", "priority", "queue", "connection")
"""Keywords of ``enqueue`` itself: a task may not name a parameter after one of them.
(``connection`` is the caller's open database transaction, not a job option: see
``Client.aenqueue``.)"""


def many_jobs(
    what: str,
    calls: Iterable[Any],
    options: Mapping[str, Any],
    build: Callable[[tuple[Any, ...], dict[str, Any]], NewJob],
) -> list[NewJob]:
    """``enqueue_many``'s jobs, every one validated before any is written: ``build(args,
    kwargs)`` makes each, ``kwargs`` carrying its job's options over ``options``. A call is
    a dict of keyword arguments or a tuple of positional ones; an ``EnqueueError`` names
    ``what`` and the call that is refused."""
    if isinstance(calls, str | bytes | Mapping) or not isinstance(calls, Iterable):
        raise EnqueueError(
            f"{what}: enqueue_many takes an iterable of calls (a dict of keyword arguments "
            f"or a tuple of positional ones per job), got {type(calls).__name__}"
        )
    jobs = []
    for index, call in enumerate(calls):
        if isinstance(call, Mapping):
            args: tuple[Any, ...] = ()
            kwargs = {**options, **call}
        elif isinstance(call, tuple | list):
            args, kwargs = tuple(call), dict(options)
        else:
            raise EnqueueError(
                f"{what}: enqueue_many call #{index} is a {type(call).__name__}: give a dict of "
                "keyword arguments or a tuple of positional ones"
            )
        if "connection" in kwargs:
            raise EnqueueError(f"{what}: enqueue_many call #{index}: connection= applies to all calls")
        try:
            jobs.append(build(args, kwargs))
        except (EnqueueError, ConfigError) as exc:
            raise type(exc)(f"enqueue_many call #{index}: {exc}") from None
    return jobs


def resolve_run_at(now: float, delay: float | timedelta | None, at: datetime | None) -> float:
    """The due time from ``delay``/``at``, validated (negative delays and naive datetimes refused)."""
    if delay is not None and at is not None:
        raise EnqueueError("pass either delay= or at=, not both")
    if delay is not None:
        if isinstance(delay, timedelta):
            seconds = delay.total_seconds()
        elif isinstance(delay, int | float) and not isinstance(delay, bool):
            seconds = float(delay)
        else:
            raise EnqueueError(f"delay must be seconds or a timedelta, got {delay!r}")
        if not seconds >= 0:
            raise EnqueueError(f"delay cannot be negative, got {seconds} s")
        if seconds > MAX_SECONDS:
            raise EnqueueError(f"delay must be at most 100 years, got {seconds} s")
        return now + seconds
    if at is not None:
        if not isinstance(at, datetime):
            raise EnqueueError(f"at must be a timezone-aware datetime, got {at!r}")
        if at.tzinfo is None or at.utcoffset() is None:
            raise EnqueueError(
                f"at={at.isoformat()} is naive: pass a timezone-aware datetime (e.g. datetime.now(UTC) + ...)"
            )
        return at.timestamp()
    return now


def build_job(
    task: TaskInfo,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    *,
    settings: Settings,
    now: float,
    delay: float | timedelta | None = None,
    at: datetime | None = None,
    dedup_key: str | None = None,
    priority: int | None = None,
    queue: str | None = None,
) -> NewJob:
    """A validated ``NewJob``; raises ``EnqueueError`` (nothing written) on bad input."""
    if dedup_key is not None:
        check_text(dedup_key, "dedup_key", limit=MAX_KEY, error=EnqueueError)
    if priority is not None and (not isinstance(priority, int) or isinstance(priority, bool)):
        raise EnqueueError(f"priority must be an integer, got {priority!r}")
    run_at = resolve_run_at(now, delay, at)
    return NewJob(
        id=uuid7(),
        task=task.name,
        queue=check_queue_name(queue) if queue is not None else task.queue,
        payload=sign_payload(
            settings,
            task.name,
            encode_payload(args, kwargs, limit=settings.max_payload_bytes, sealer=secrets.for_task(task, settings)),
        ),
        run_at=run_at,
        priority=task.priority if priority is None else priority,
        max_attempts=task.max_attempts,
        timeout=task.timeout,
        dedup_key=dedup_key,
    )


class Job:
    """A handle on one job in the store. Cheap to create; every call reads the store."""

    __slots__ = ("_client", "created", "id")

    def __init__(self, client: Client, job_id: str, *, created: bool = True) -> None:
        self._client = client
        self.id = job_id
        self.created = created
        """False when ``enqueue`` found a live job holding the same ``dedup_key``: this is that job."""

    def __repr__(self) -> str:
        return f"<Job {self.id}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Job) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    async def ainfo(self) -> JobRecord:
        """Everything the store holds about the job (raises ``JobNotFound``)."""
        store = await self._client.astore()
        return await store.job_get(self.id)

    async def astatus(self) -> JobState:
        return (await self.ainfo()).state

    async def aresult(self, timeout: float | None = None) -> Any:
        """Wait for the job to finish and return its value.

        Raises ``JobFailed`` (dead, with the last error), ``JobCancelled``, or
        ``TimeoutError`` if it has not finished within ``timeout`` seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = 0.005
        while True:
            record = await self.ainfo()
            if record.state is JobState.SUCCEEDED:
                return decode_result(record.result)
            if record.state is JobState.DEAD:
                raise JobFailed(self.id, record.error, record.traceback)
            if record.state is JobState.CANCELLED:
                raise JobCancelled(self.id)
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"job {self.id} is still {record.state} after {timeout} s")
            wait = pause if deadline is None else min(pause, max(0.0, deadline - time.monotonic()))
            await asyncio.sleep(wait)
            pause = min(pause * 1.5, 0.25)

    async def acancel(self) -> JobState:
        """Cancel the job: at once if it has not started, at its worker's next heartbeat if
        it runs (async tasks are cancelled; see the docs for sync tasks). Returns the state."""
        store = await self._client.astore()
        return (await store.job_cancel(self.id, now=self._client.clock.now())).state

    async def aretry(self) -> JobState:
        """Requeue a dead or cancelled job."""
        store = await self._client.astore()
        return (await store.job_retry(self.id, now=self._client.clock.now())).state

    def info(self) -> JobRecord:
        return self._client.sync(self.ainfo)

    def status(self) -> JobState:
        return self._client.sync(self.astatus)

    def result(self, timeout: float | None = None) -> Any:
        return self._client.sync(self.aresult, timeout)

    def cancel(self) -> JobState:
        return self._client.sync(self.acancel)

    def retry(self) -> JobState:
        return self._client.sync(self.aretry)
