"""The client: what a main app needs to hand work to backbeat, with no job code imported.

``Client(url).enqueue("task.name", kwargs=...)`` writes a job by task name; job handles
read its state and result. ``App`` uses a ``Client`` for all of its store access, so the
two behave the same. Sync methods go through the portal to the async ones; there is one
implementation of each operation.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, ParamSpec, TypeVar

from backbeat.clock import Clock, SystemClock
from backbeat.config import DEFAULT_QUEUE, Settings, check_queue_name
from backbeat.errors import EnqueueError
from backbeat.ids import uuid7
from backbeat.jobs import Job
from backbeat.metrics import job_metrics
from backbeat.portal import Portal
from backbeat.serialization import encode_payload
from backbeat.store import open_store, store_is_loop_bound
from backbeat.store.base import Store
from backbeat.types import NewJob, TaskInfo

P = ParamSpec("P")
T = TypeVar("T")

RESERVED_OPTIONS = ("delay", "at", "dedup_key", "priority", "queue")
"""Keywords of ``enqueue`` itself: a task may not name a parameter after one of them."""


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
    if dedup_key is not None and (not isinstance(dedup_key, str) or not dedup_key):
        raise EnqueueError(f"dedup_key must be a non-empty string, got {dedup_key!r}")
    if priority is not None and (not isinstance(priority, int) or isinstance(priority, bool)):
        raise EnqueueError(f"priority must be an integer, got {priority!r}")
    run_at = resolve_run_at(now, delay, at)
    return NewJob(
        id=uuid7(),
        task=task.name,
        queue=check_queue_name(queue) if queue is not None else task.queue,
        payload=encode_payload(args, kwargs, limit=settings.max_payload_bytes),
        run_at=run_at,
        priority=task.priority if priority is None else priority,
        max_attempts=task.max_attempts,
        timeout=task.timeout,
        dedup_key=dedup_key,
    )


class Client:
    """Enqueue by task name and follow jobs, against a store URL (default ``BACKBEAT_URL``)."""

    def __init__(self, url: str | None = None, *, settings: Settings | None = None, clock: Clock | None = None) -> None:
        self.settings = settings if settings is not None else Settings.build(url)
        self.clock: Clock = clock or SystemClock()
        self._portal = Portal(inline=not store_is_loop_bound(self.settings.url))
        self._lock = threading.Lock()
        self._shared: Store | None = None
        self._per_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Store] = weakref.WeakKeyDictionary()
        self._registry: dict[str, TaskInfo] | None = None

    @property
    def url(self) -> str:
        return self.settings.url

    def sync(self, fn: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run an async method to completion from sync code (the sync facade's one path)."""
        return self._portal.call(fn, *args, **kwargs)

    # -- the store ---------------------------------------------------------------------

    async def astore(self) -> Store:
        """The opened store for the running event loop (one per loop if the store needs it)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            store = self._shared if self._shared is not None else self._per_loop.get(loop)
            if store is None:
                store = open_store(self.settings.url)
                if store.loop_bound:
                    self._per_loop[loop] = store
                else:
                    self._shared = store
        await store.open()
        return store

    def use_store(self, store: Store) -> None:
        """Make an already-open store the one this client uses (a worker shares its own)."""
        with self._lock:
            if store.loop_bound:
                self._per_loop[asyncio.get_running_loop()] = store
            else:
                self._shared = store

    async def aclose(self) -> None:
        """Close the store used from this loop (and the shared one)."""
        with self._lock:
            stores = [s for s in (self._shared, self._per_loop.pop(asyncio.get_running_loop(), None)) if s]
            self._shared = None
        for store in stores:
            await store.close()

    def close(self) -> None:
        """Close the shared store and the portal's; stop the portal thread."""
        if self._portal.started:
            self._portal.close(self.aclose)
        elif self._shared is not None:
            self._portal.call(self.aclose)

    # -- enqueue by name ---------------------------------------------------------------

    async def atask_info(self, name: str) -> TaskInfo:
        """How workers declared ``name`` (queue, retries, timeout), or the defaults."""
        if self._registry is None or name not in self._registry:
            store = await self.astore()
            self._registry = {t.name: t for t in await store.task_list()}
        return self._registry.get(name) or TaskInfo(
            name=name, queue=DEFAULT_QUEUE, max_attempts=1 + self.settings.default_retries
        )

    async def aenqueue(
        self,
        task: str,
        *,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        delay: float | timedelta | None = None,
        at: datetime | None = None,
        dedup_key: str | None = None,
        priority: int | None = None,
        queue: str | None = None,
    ) -> Job:
        """Enqueue a job of the task named ``task``. Queue, retries and timeout default to
        what workers registered for that name. Raises ``EnqueueError`` on bad input."""
        if not isinstance(task, str) or not task:
            raise EnqueueError(f"task must be a task name, got {task!r}")
        info = await self.atask_info(task)
        new = build_job(
            info,
            args,
            kwargs or {},
            settings=self.settings,
            now=self.clock.now(),
            delay=delay,
            at=at,
            dedup_key=dedup_key,
            priority=priority,
            queue=queue,
        )
        return await self.asubmit(new)

    def enqueue(
        self,
        task: str,
        *,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        delay: float | timedelta | None = None,
        at: datetime | None = None,
        dedup_key: str | None = None,
        priority: int | None = None,
        queue: str | None = None,
    ) -> Job:
        return self.sync(
            self.aenqueue,
            task,
            args=args,
            kwargs=kwargs,
            delay=delay,
            at=at,
            dedup_key=dedup_key,
            priority=priority,
            queue=queue,
        )

    async def asubmit(self, new: NewJob) -> Job:
        """Write one validated job; the handle of the live job if its dedup key was taken."""
        store = await self.astore()
        [enqueued] = await store.job_enqueue([new], now=self.clock.now())
        if enqueued.created:
            job_metrics().enqueued(new.queue, new.task)
        return Job(self, enqueued.job.id, created=enqueued.created)

    def job(self, job_id: str) -> Job:
        """A handle on an existing job."""
        return Job(self, job_id)
