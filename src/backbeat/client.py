"""The client: what a main app needs to hand work to backbeat, with no job code imported.

``Client(url).emit("account.linked", {...})`` sends an event; ``enqueue("task.name",
kwargs=...)`` a job by task name. ``url`` is the jobs app's store (``sqlite://``,
``postgresql://``, ...: events and jobs are written straight into it, and job handles read
state and results), or a broker the jobs app consumes (``amqp://``, ``nats://``,
``http(s)://`` for its ``/api/events``): events are published there, and an enqueue travels
as the reserved event ``backbeat.enqueue``. Delivery is retried for ``send_timeout``
seconds, then ``EmitError``: nothing is dropped silently.

``App`` uses a ``Client`` for all of its store access, so the two behave the same. Sync
methods go through the portal to the async ones; there is one implementation of each
operation. The one shortcut: a sync enqueue on a store with a blocking write
(``Store.job_enqueue_blocking``, Redis) writes the job with no event loop (``submit``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, ParamSpec, TypeVar

from backbeat.brokers import Publisher, is_broker_url, open_publisher, redact
from backbeat.clock import Clock, SystemClock, correct, iso
from backbeat.config import DEFAULT_QUEUE, MAX_NAME, Settings, check_queue_name, check_text
from backbeat.errors import ConfigError, EmitError, EnqueueError, EventError, SchemaTooNew, StoreError
from backbeat.events import ENQUEUE_EVENT, from_envelope, seal_event, secret_fields_of
from backbeat.ids import uuid7
from backbeat.jobs import RESERVED_OPTIONS, Job, build_job, many_jobs, resolve_run_at
from backbeat.metrics import job_metrics
from backbeat.portal import Portal, close_with_thread, inline_loop, keep_inherited
from backbeat.secrets import refuse_positional, secret_names
from backbeat.serialization import encode_payload
from backbeat.signing import signing
from backbeat.store import open_store
from backbeat.store.base import Store
from backbeat.types import Enqueued, NewEvent, NewJob, TaskInfo

P = ParamSpec("P")
T = TypeVar("T")
log = logging.getLogger("backbeat.client")
REGISTRY_TTL = 30.0
"""Seconds the task registry read from the store is reused (a new task name re-reads it)."""
_clients: weakref.WeakSet[Client] = weakref.WeakSet()


def _forget_parent_stores() -> None:
    """In a forked child: every client opens its own stores and publishers on its next
    call; the parent's are left alone (``portal.keep_inherited``)."""
    for client in list(_clients):
        keep_inherited((client._shared, dict(client._per_loop), dict(client._publishers)))
        client._shared = None
        client._per_loop = weakref.WeakKeyDictionary()
        client._publishers = weakref.WeakKeyDictionary()
        client._lock = threading.Lock()  # a parent's thread may have held it at the fork


os.register_at_fork(after_in_child=_forget_parent_stores)


class Client:
    """Emit events and enqueue by task name, against a store URL (default ``BACKBEAT_URL``)
    or a broker URL (``amqp://``, ``nats://``, ``http(s)://``); follow jobs on a store URL.

    ``token`` (default ``BACKBEAT_TOKEN``) authenticates to an ``http(s)://`` endpoint.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        settings: Settings | None = None,
        clock: Clock | None = None,
        token: str | None = None,
    ) -> None:
        self.broker_url = url if is_broker_url(url) else None
        self.settings = settings if settings is not None else Settings.build(None if self.broker_url else url)
        self.clock: Clock = clock or SystemClock()
        self._token = token if token is not None else os.environ.get("BACKBEAT_TOKEN") or None
        if self.broker_url is not None:
            open_publisher(self.broker_url, token=self._token)  # validates the URL and the driver now
        self._portal = Portal(inline=self.broker_url is None)
        self._lock = threading.Lock()
        self._shared: Store | None = None
        self._per_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Store] = weakref.WeakKeyDictionary()
        self._publishers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Publisher] = weakref.WeakKeyDictionary()
        self._registry: dict[str, TaskInfo] | None = None
        self._registry_at = 0.0
        self._clock_checked = False
        _clients.add(self)

    @property
    def url(self) -> str:
        return redact(self.broker_url) if self.broker_url else self.settings.url

    def sync(self, fn: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run an async method to completion from sync code (the sync facade's path; the
        one shortcut is ``submit``)."""
        return self._portal.call(fn, *args, **kwargs)

    # -- the store ---------------------------------------------------------------------

    async def astore(self) -> Store:
        """The opened store for the running event loop (one per loop if the store needs it)."""
        if self.broker_url is not None:
            raise ConfigError(
                f"Client({self.url!r}) sends to a broker and cannot read the store: follow jobs and "
                "events with a Client on the jobs app's store URL"
            )
        loop = asyncio.get_running_loop()
        with self._lock:
            store = self._shared if self._shared is not None else self._per_loop.get(loop)
            if store is None:
                store = open_store(self.settings.url)
                if store.loop_bound:
                    self._per_loop[loop] = store
                    close_with_thread(store.close)
                else:
                    self._shared = store
        await store.open()
        if not self._clock_checked:  # every first caller waits for it (they agree: see correct)
            await self._correct_clock(store)
            self._clock_checked = True
        return store

    async def _correct_clock(self, store: Store) -> None:
        """Follow the store server's clock from the start (``backbeat.clock.correct``)."""
        try:
            await correct(self.clock, store)
        except StoreError as exc:
            log.warning("could not read the store server's clock (%s); using this machine's", exc)

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
            loop = asyncio.get_running_loop()
            stores = [s for s in (self._shared, self._per_loop.pop(loop, None)) if s]
            self._shared = None
            publisher = self._publishers.pop(loop, None)
        for store in stores:
            await store.close()
        if publisher is not None:
            await publisher.close()

    def close(self) -> None:
        """Close the shared store, the portal's and this thread's; stop the portal thread.
        (The store a sync call opened on another thread closes when that thread ends.)"""
        if self._portal.started:
            self._portal.close(self.aclose)
        if self._shared is not None or (self._portal.inline and self._per_loop):
            self._portal.call(self.aclose)

    # -- enqueue by name ---------------------------------------------------------------

    async def aregistry(self, *, refresh: bool = False) -> dict[str, TaskInfo]:
        """The tasks workers registered, by name: read again after ``REGISTRY_TTL`` seconds."""
        if refresh or self._registry is None or time.monotonic() - self._registry_at > REGISTRY_TTL:
            store = await self.astore()
            self._registry = {t.name: t for t in await store.task_list()}
            self._registry_at = time.monotonic()
        return self._registry

    def _declared(self, name: str) -> TaskInfo | None:
        """``name``'s declaration from the registry already read, if it is there and fresh."""
        registry = self._registry
        if registry is None or time.monotonic() - self._registry_at > REGISTRY_TTL:
            return None
        return registry.get(name)

    async def atask_info(self, name: str) -> TaskInfo:
        """How workers declared ``name`` (queue, retries, timeout, secret arguments), or the defaults."""
        registry = await self.aregistry()
        if name not in registry:
            registry = await self.aregistry(refresh=True)
        return registry.get(name) or TaskInfo(
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
        connection: object | None = None,
    ) -> Job:
        """Enqueue a job of the task named ``task``. Queue, retries and timeout default to
        what workers registered for that name. Raises ``EnqueueError`` on bad input.

        With ``connection`` (your open psycopg transaction, sync or async, on the store's
        own PostgreSQL database) the job is written in that transaction: it exists once
        you commit, never if you roll back (``docs/postgres.md``)."""
        check_text(task, "task name", limit=MAX_NAME, error=EnqueueError)
        if connection is not None and self.broker_url is not None:
            raise EnqueueError(f"connection= joins your database transaction: it needs the store's URL, not {self.url}")
        if self.broker_url is not None:
            run_at = resolve_run_at(self.clock.now(), delay, at) if delay is not None or at is not None else None
            return await self._send_enqueue(
                task, args, kwargs or {}, run_at=run_at, dedup_key=dedup_key, priority=priority, queue=queue
            )
        info = await self.atask_info(task)
        new = self._new_job(info, args, kwargs, delay=delay, at=at, dedup_key=dedup_key, priority=priority, queue=queue)
        return await self.asubmit(new, connection=connection)

    def _new_job(self, info: TaskInfo, args: Sequence[Any], kwargs: Mapping[str, Any] | None, **options: Any) -> NewJob:
        refuse_positional(info, args)
        return build_job(info, args, kwargs or {}, settings=self.settings, now=self.clock.now(), **options)

    def _new_jobs(self, info: TaskInfo, calls: Iterable[Any], options: dict[str, Any]) -> list[NewJob]:
        def build(args: tuple[Any, ...], kwargs: dict[str, Any]) -> NewJob:
            own = {key: kwargs.pop(key) for key in RESERVED_OPTIONS if key in kwargs}
            return self._new_job(info, args, kwargs, **own)

        return many_jobs(f"task {info.name!r}", calls, {k: v for k, v in options.items() if v is not None}, build)

    def _declared_for_sync(self, task: str, connection: object | None) -> TaskInfo | None:
        """The declaration a sync enqueue by name may use without reading the store (a store
        client, outside the caller's transaction, the registry already read and fresh)."""
        check_text(task, "task name", limit=MAX_NAME, error=EnqueueError)
        return self._declared(task) if connection is None and self.broker_url is None else None

    async def aenqueue_many(
        self,
        task: str,
        calls: Iterable[Any],
        /,
        *,
        delay: float | timedelta | None = None,
        at: datetime | None = None,
        priority: int | None = None,
        queue: str | None = None,
        connection: object | None = None,
    ) -> list[Job]:
        """Enqueue one job of the task named ``task`` per call, as ``Task.enqueue_many`` does
        (a call: a dict of keyword arguments, which may carry its job's ``dedup_key``,
        ``delay``, ``at``, ``priority``, ``queue``, or a tuple of positional arguments);
        queue, retries and timeout default to what workers registered for that name."""
        check_text(task, "task name", limit=MAX_NAME, error=EnqueueError)
        if self.broker_url is not None:
            raise EnqueueError(
                f"Client({self.url!r}) sends to a broker, one event per job: enqueue_many writes to the "
                "store in batches and needs the store's URL (over a broker, call enqueue for each job)"
            )
        options = {"delay": delay, "at": at, "priority": priority, "queue": queue}
        jobs = self._new_jobs(await self.atask_info(task), calls, options)
        return await self.asubmit_many(jobs, connection=connection)

    def enqueue_many(
        self,
        task: str,
        calls: Iterable[Any],
        /,
        *,
        delay: float | timedelta | None = None,
        at: datetime | None = None,
        priority: int | None = None,
        queue: str | None = None,
        connection: object | None = None,
    ) -> list[Job]:
        info = self._declared_for_sync(task, connection)
        if info is not None:  # no store read needed: Client.submit_many may write with no event loop
            return self.submit_many(
                self._new_jobs(info, calls, {"delay": delay, "at": at, "priority": priority, "queue": queue})
            )
        return self.sync(
            self.aenqueue_many, task, calls, delay=delay, at=at, priority=priority, queue=queue, connection=connection
        )

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
        connection: object | None = None,
    ) -> Job:
        info = self._declared_for_sync(task, connection)
        if info is not None:  # no store read needed: Client.submit may write with no event loop
            new = self._new_job(
                info, args, kwargs, delay=delay, at=at, dedup_key=dedup_key, priority=priority, queue=queue
            )
            return self.submit(new)
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
            connection=connection,
        )

    async def asubmit(self, new: NewJob, *, connection: object | None = None) -> Job:
        """Write one validated job (in the caller's transaction on ``connection`` if given);
        the handle of the live job if its dedup key was taken."""
        [job] = await self.asubmit_many([new], connection=connection)
        return job

    async def asubmit_many(self, jobs: Sequence[NewJob], *, connection: object | None = None) -> list[Job]:
        """``asubmit`` for many jobs, written ``Store.enqueue_batch`` at a time (each batch
        all or none); their handles in order."""
        store = await self.astore()
        handles: list[Job] = []
        for start in range(0, len(jobs), store.enqueue_batch):
            batch = jobs[start : start + store.enqueue_batch]
            if connection is not None:
                written = await store.job_enqueue_on(connection, batch, now=self.clock.now())
            else:
                written = await store.job_enqueue(batch, now=self.clock.now())
            handles += self._submitted(batch, written)
        return handles

    def submit(self, new: NewJob) -> Job:
        """``asubmit`` from sync code (see ``submit_many``)."""
        [job] = self.submit_many([new])
        return job

    def submit_many(self, jobs: Sequence[NewJob]) -> list[Job]:
        """``asubmit_many`` from sync code. Once this thread's store is open, a store with a
        blocking path (``Store.job_enqueue_blocking``: Redis) writes the jobs without
        running an event loop; otherwise they go through the portal, as every sync call does."""
        handles: list[Job] = []
        while (done := len(handles)) < len(jobs):
            store = self._inline_store()
            if store is not None:
                batch = jobs[done : done + store.enqueue_batch]
                written = store.job_enqueue_blocking(batch, now=self.clock.now())
                if written is not None:
                    handles += self._submitted(batch, written)
                    continue
            return handles + self.sync(self.asubmit_many, jobs[done:])  # no blocking path (yet)
        return handles

    def _inline_store(self) -> Store | None:
        """The store this thread's sync calls opened, when this thread runs no loop."""
        loop = inline_loop() if self._portal.inline else None
        if loop is None:
            return None
        with self._lock:
            return self._shared if self._shared is not None else self._per_loop.get(loop)

    def _submitted(self, jobs: Sequence[NewJob], written: Sequence[Enqueued]) -> list[Job]:
        handles = []
        for new, enqueued in zip(jobs, written, strict=True):
            if enqueued.created:
                job_metrics().enqueued(new.queue, new.task)
            handles.append(Job(self, enqueued.job.id, created=enqueued.created))
        return handles

    def job(self, job_id: str) -> Job:
        """A handle on an existing job."""
        return Job(self, job_id)

    # -- events ------------------------------------------------------------------------

    async def aemit(
        self,
        name: str,
        payload: Mapping[str, Any] | None = None,
        *,
        id: str | None = None,
        key: str | None = None,
        occurred_at: datetime | None = None,
        connection: object | None = None,
        secret: Sequence[str] = (),
    ) -> str:
        """Send the event ``name`` with ``payload`` (a JSON object); return its id.

        ``id`` makes it idempotent (an id is processed once, however often sent; default a
        new UUIDv7). With ``connection`` (your open transaction on the store's own
        database) the event is written in that transaction: it exists once you commit,
        never if you roll back. ``secret=("token",)`` names payload fields sealed before
        they leave this process (``BACKBEAT_SECRET_KEY``, the jobs app's key); on a store
        URL so are the fields the jobs app's handlers declare secret. Raises
        ``EventError`` on a bad event, ``SecretError`` when a field must be sealed and no
        key is set, ``EmitError`` when the broker or store stayed unreachable for
        ``send_timeout`` seconds.
        """
        event = self._event(name, payload, id, key, occurred_at)
        await self._deliver([event], connection, secret)
        return event.id

    async def aseal_event(self, event: NewEvent, secret: Sequence[str] = ()) -> NewEvent:
        """``event`` with the fields ``secret`` names sealed, and on a store URL those the
        registered handlers declare (read from the store); ``EventError`` if ``secret``
        names a field the payload lacks."""
        fields = set(secret_names(secret, f"event {event.name}", EventError))
        missing = sorted(fields - set(json.loads(event.payload))) if fields else []
        if missing:
            raise EventError(f"event {event.name}: secret names {missing[0]!r}, which is not a field of the payload")
        if self.broker_url is None:
            fields |= secret_fields_of(event.name, (await self.aregistry()).values())
        return seal_event(event, fields, self.settings)

    def _check_size(self, event: NewEvent) -> NewEvent:
        size = len(event.payload.encode())
        if size > self.settings.max_payload_bytes:
            raise EventError(
                f"event {event.name}: payload is {size:,} bytes, over the limit of {self.settings.max_payload_bytes:,}"
            )
        return event

    def emit(
        self,
        name: str,
        payload: Mapping[str, Any] | None = None,
        *,
        id: str | None = None,
        key: str | None = None,
        occurred_at: datetime | None = None,
        connection: object | None = None,
        secret: Sequence[str] = (),
    ) -> str:
        return self.sync(
            self.aemit, name, payload, id=id, key=key, occurred_at=occurred_at, connection=connection, secret=secret
        )

    def _event(
        self, name: str, payload: Mapping[str, Any] | None, id: str | None, key: str | None, at: datetime | None
    ) -> NewEvent:
        if at is not None and (not isinstance(at, datetime) or at.tzinfo is None):
            raise EventError(f"occurred_at must be a timezone-aware datetime, got {at!r}")
        envelope: dict[str, Any] = {"name": name, "payload": {} if payload is None else payload}
        if not isinstance(envelope["payload"], Mapping):
            raise EventError(f"event {name}: payload must be a mapping (a JSON object), got {type(payload).__name__}")
        envelope["payload"] = dict(envelope["payload"])
        for field, value in (("id", id), ("key", key), ("occurred_at", at)):
            if value is not None:
                envelope[field] = value
        return from_envelope(envelope, source="store", received=self.clock.now())

    async def _send_enqueue(
        self,
        task: str,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        *,
        run_at: float | None,
        dedup_key: str | None,
        priority: int | None,
        queue: str | None,
    ) -> Job:
        """An enqueue as the reserved event, for a jobs app reached only over a broker."""
        encode_payload(args, kwargs, limit=self.settings.max_payload_bytes)  # refuse what could not travel
        job_id = uuid7()
        body: dict[str, Any] = {"task": task, "args": list(args), "kwargs": dict(kwargs), "job_id": job_id}
        for field, value in (("at", None if run_at is None else iso(run_at)), ("dedup_key", dedup_key)):
            if value is not None:
                body[field] = value
        if priority is not None:
            body["priority"] = priority
        if queue is not None:
            body["queue"] = check_queue_name(queue)
        await self._deliver([self._event(ENQUEUE_EVENT, body, job_id, None, None)], None)
        return Job(self, job_id)

    async def _deliver(self, events: Sequence[NewEvent], connection: object | None, secret: Sequence[str] = ()) -> None:
        """Seal (``aseal_event``) and send, retrying an unreachable store or broker."""
        if connection is not None:
            if self.broker_url is not None:
                raise EventError(
                    f"connection= joins your database transaction: it needs the store's URL, not {self.url}"
                )
            sealed = [self._check_size(await self.aseal_event(e, secret)) for e in events]
            await (await self.astore()).event_append_on(connection, sealed, now=self.clock.now())
            return
        limit = self.settings.send_timeout
        deadline = time.monotonic() + limit
        backoff = 0.1
        while True:
            try:
                sealed = [self._check_size(await self.aseal_event(e, secret)) for e in events]
                if self.broker_url is not None:
                    await (await self._publisher()).publish(sealed)
                else:
                    await (await self.astore()).event_append(sealed, now=self.clock.now())
                return
            except (OSError, TimeoutError, StoreError) as exc:
                if isinstance(exc, SchemaTooNew) or time.monotonic() + backoff > deadline:
                    raise EmitError(
                        f"could not deliver event {events[0].name} ({events[0].id}) to {self.url} "
                        f"within {limit:g} s: {exc}; it was not sent"
                    ) from exc
                log.warning("cannot reach %s (%s); retrying in %.1f s", self.url, exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)

    async def _publisher(self) -> Publisher:
        assert self.broker_url is not None
        loop = asyncio.get_running_loop()
        with self._lock:
            publisher = self._publishers.get(loop)
            if publisher is None:
                publisher = self._publishers[loop] = open_publisher(
                    self.broker_url, token=self._token, signing=signing(self.settings)
                )
        return publisher
