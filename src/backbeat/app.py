"""``App``: the task registry plus a ``Client`` on the store, shared by web processes and workers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, ParamSpec, TypeVar, overload

from backbeat import ratelimits
from backbeat.client import Client
from backbeat.clock import Clock, SystemClock
from backbeat.config import DEFAULT_QUEUE, Settings
from backbeat.errors import ConfigError, EventError, ScheduleError, TaskDefinitionError
from backbeat.events import (
    NAME,
    Event,
    Handler,
    check_pattern,
    check_schema,
    handler_wrapper,
    secret_fields,
    secret_fields_of,
)
from backbeat.jobs import Job
from backbeat.schedule_manager import Declared, Duration, Schedules, SyncReport, build_spec
from backbeat.schedules import parse_duration
from backbeat.secrets import secret_names
from backbeat.sla import SlaEvent
from backbeat.tasks import Task, default_name
from backbeat.types import RateLimit, ScheduleKind, ScheduleOrigin, ScheduleRecord

P = ParamSpec("P")
R = TypeVar("R")


class App:
    """A backbeat application: ``App("sqlite:///backbeat.db")``, default ``BACKBEAT_URL``.

    Constructing an App and declaring tasks writes nothing and opens no connection;
    the store is opened on first use. Keyword arguments are ``Settings`` fields.
    """

    def __init__(
        self, url: str | None = None, *, name: str = "default", clock: Clock | None = None, **settings: Any
    ) -> None:
        if not isinstance(name, str) or not NAME.fullmatch(name):
            raise ConfigError(f"app name must be letters, digits, '_', '-' or '.', got {name!r}")
        self.name = name
        """Names this app's broker consumers (the RabbitMQ queue ``backbeat.events.<name>``, the
        NATS consumer ``backbeat-<name>``): two jobs apps on one broker need different names."""
        self.settings = Settings.build(url, **settings)
        self.clock: Clock = clock or SystemClock()
        self.client = Client(settings=self.settings, clock=self.clock)
        self.tasks: dict[str, Task[Any, Any]] = {}
        self.schedules = Schedules(self)
        """Schedules as data: ``update``, ``pause``, ``resume``, ``remove``, ``get``, ``list``."""
        self.rate_limits: dict[str, RateLimit] = {}
        self.handlers: list[Handler] = []
        """Event handlers (``@app.on``), in declaration order."""
        self.sla_hooks: list[Callable[[SlaEvent], Any]] = []
        """Called by the scheduler when a breach starts and when it ends (``@app.on_sla_breach``)."""
        self.eager = False
        """Run each job as soon as it is enqueued, in the enqueuing process (see ``backbeat.testing.eager``)."""
        self._draining = False

    def __repr__(self) -> str:
        return f"<App {self.settings.url} tasks={len(self.tasks)}>"

    def configure(self, *, url: str | None = None, **changes: Any) -> None:
        """Replace settings before the app is used (the CLI's ``--url`` wins over the code's)."""
        settings = replace(self.settings, **changes)
        if url is not None:
            settings = replace(settings, url=url)
        self.settings = settings
        self.client.close()
        self.client = Client(settings=settings, clock=self.clock)

    # -- declaring tasks ---------------------------------------------------------------

    @overload
    def task(self, fn: Callable[P, R], /) -> Task[P, R]: ...

    @overload
    def task(
        self,
        *,
        name: str | None = None,
        queue: str = DEFAULT_QUEUE,
        retries: int | None = None,
        timeout: float | timedelta | None = None,
        priority: int = 0,
        rate_limit: str | None = None,
        secret: Sequence[str] = (),
    ) -> Callable[[Callable[P, R]], Task[P, R]]: ...

    def task(
        self,
        fn: Callable[..., Any] | None = None,
        *,
        name: str | None = None,
        queue: str = DEFAULT_QUEUE,
        retries: int | None = None,
        timeout: float | timedelta | None = None,
        priority: int = 0,
        rate_limit: str | None = None,
        secret: Sequence[str] = (),
    ) -> Any:
        """Declare a task: ``@app.task`` or ``@app.task(name=..., queue=..., retries=..., timeout=...)``.

        The name defaults to ``module.qualname``; ``retries`` to the app's default (3).
        ``rate_limit="twitter:{token}"`` starts each job under the bucket its arguments name
        (declare the limit with ``app.rate_limit``). ``secret=("token",)`` names parameters
        whose values are sealed before they reach the store, in its jobs and in schedules
        of it (needs ``BACKBEAT_SECRET_KEY``; docs/secrets.md). A parameter named like an
        enqueue option, or a name already taken, is refused.
        """

        def declare(func: Callable[..., Any]) -> Task[Any, Any]:
            options = {"queue": queue, "timeout": timeout, "priority": priority, "secret": secret}
            return self._declare(func, name=name, retries=retries, rate_limit=rate_limit, **options)

        return declare(fn) if fn is not None else declare

    def _declare(self, fn: Callable[..., Any], *, retries: int | None, **options: Any) -> Task[Any, Any]:
        """A new task of this app (``retries`` defaulting to the app's); its name must be free."""
        task: Task[Any, Any] = Task(
            self, fn, retries=self.settings.default_retries if retries is None else retries, **options
        )
        if task.name in self.tasks:
            raise TaskDefinitionError(
                f"task name {task.name!r} is already declared (by {self.tasks[task.name].fn!r}); pass a different name="
            )
        self.tasks[task.name] = task
        return task

    def rate_limit(
        self,
        name: str,
        *,
        limit: int | None = None,
        per: float | timedelta | None = None,
        concurrency: int | None = None,
    ) -> RateLimit:
        """Declare a limit shared by every worker: at most ``limit`` starts in any window of
        ``per`` seconds and/or ``concurrency`` running at once, per bucket. Tasks refer to it
        with ``@app.task(rate_limit="name:{argument}")`` (one bucket per argument value).
        A job over its limit waits (not a failure, no retry used) without blocking others."""
        seconds_per = per.total_seconds() if isinstance(per, timedelta) else per
        declared = ratelimits.declare(name, limit, seconds_per, concurrency)
        self.rate_limits[name] = declared
        return declared

    # -- schedules ---------------------------------------------------------------------

    async def aevery(
        self,
        interval: Duration,
        task: Task[Any, Any] | str,
        *,
        key: str | None = None,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        sla: Duration | None = None,
        max_every: Duration | None = None,
        mode: str = "delay",
        jitter: Duration = 0,
        first_in: Duration | None = None,
        misfire: str = "skip",
        catch_up_limit: int | None = None,
        queue: str | None = None,
        priority: int | None = None,
        description: str = "",
    ) -> ScheduleRecord:
        """Run ``task`` every ``interval`` (seconds, timedelta or ``"20s"``), keyed by ``key``
        (default: the task name); written at once, upserted by key.

        ``mode="delay"`` (default) re-arms when a run ends, so the gap is interval + run
        time; ``"rate"`` keeps a fixed cadence. Runs of one key never overlap. The first
        run is due at once unless ``first_in``. ``sla`` is the longest allowed gap between
        successful runs. ``max_every`` lets the autopilot stretch the interval up to it
        (never past what the SLA allows) while a rate limit or the workers run short.
        """
        info = await self.schedules.task_info(task, args, kwargs or {})
        spec = build_spec(
            info,
            key=key,
            kind=ScheduleKind.EVERY,
            every=interval,
            args=args,
            kwargs=kwargs,
            sla=sla,
            max_every=max_every,
            mode=mode,
            jitter=jitter,
            misfire=misfire,
            catch_up_limit=catch_up_limit,
            queue=queue,
            priority=priority,
            description=description,
            settings=self.settings,
        )
        first = None if first_in is None else parse_duration(first_in, "first_in")
        return (await self.schedules.aput(spec, first_in=first)).record

    def every(self, interval: Duration, task: Task[Any, Any] | str, **options: Any) -> ScheduleRecord:
        return self.client.sync(self.aevery, interval, task, **options)

    async def acron(
        self,
        expr: str,
        task: Task[Any, Any] | str,
        *,
        key: str | None = None,
        tz: str = "UTC",
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        sla: Duration | None = None,
        jitter: Duration = 0,
        misfire: str = "skip",
        catch_up_limit: int | None = None,
        queue: str | None = None,
        priority: int | None = None,
        description: str = "",
    ) -> ScheduleRecord:
        """Run ``task`` on the cron expression ``expr`` in time zone ``tz`` (5 fields, 6 with
        seconds first, or ``@hourly`` and friends), keyed by ``key``; written at once."""
        info = await self.schedules.task_info(task, args, kwargs or {})
        spec = build_spec(
            info,
            key=key,
            kind=ScheduleKind.CRON,
            cron=expr,
            tz=tz,
            args=args,
            kwargs=kwargs,
            sla=sla,
            jitter=jitter,
            misfire=misfire,
            catch_up_limit=catch_up_limit,
            queue=queue,
            priority=priority,
            description=description,
            settings=self.settings,
        )
        return (await self.schedules.aput(spec)).record

    def cron(self, expr: str, task: Task[Any, Any] | str, **options: Any) -> ScheduleRecord:
        return self.client.sync(self.acron, expr, task, **options)

    def periodic(
        self,
        *,
        every: Duration | None = None,
        cron: str | None = None,
        key: str | None = None,
        tz: str = "UTC",
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        sla: Duration | None = None,
        max_every: Duration | None = None,
        mode: str = "delay",
        jitter: Duration = 0,
        first_in: Duration | None = None,
        misfire: str = "skip",
        catch_up_limit: int | None = None,
        description: str = "",
        name: str | None = None,
        queue: str = DEFAULT_QUEUE,
        retries: int | None = None,
        timeout: float | timedelta | None = None,
        priority: int = 0,
        secret: Sequence[str] = (),
    ) -> Callable[[Callable[P, R]], Task[P, R]]:
        """Declare a schedule owned by the code: ``@app.periodic(cron="30 6 * * 1", key=...)``.

        The function becomes a task (``name``/``queue``/``retries``/``timeout``/``priority``/
        ``secret`` as for ``@app.task``; an existing ``Task`` is used as is). Nothing is written at
        import: the scheduler syncs declared schedules when it starts (adding, changing,
        and removing those no longer declared).
        """
        if (every is None) == (cron is None):
            raise ScheduleError("@app.periodic needs exactly one of every= or cron=")

        def declare(fn: Callable[P, R]) -> Task[P, R]:
            task: Task[P, R] = (
                fn
                if isinstance(fn, Task)
                else self.task(
                    name=name, queue=queue, retries=retries, timeout=timeout, priority=priority, secret=secret
                )(fn)
            )
            task.check_arguments(args, kwargs or {})
            spec = build_spec(
                task.info,
                key=key,
                kind=ScheduleKind.CRON if cron else ScheduleKind.EVERY,
                every=every,
                cron=cron,
                tz=tz,
                args=args,
                kwargs=kwargs,
                sla=sla,
                max_every=max_every,
                mode=mode,
                jitter=jitter,
                misfire=misfire,
                catch_up_limit=catch_up_limit,
                description=description,
                origin=ScheduleOrigin.CODE,
                settings=self.settings,
            )
            if spec.key in self.schedules.declared:
                raise ScheduleError(f"schedule key {spec.key!r} is already declared; pass a different key=")
            first = None if first_in is None else parse_duration(first_in, "first_in")
            self.schedules.declared[spec.key] = Declared(spec=spec, first_in=first)
            return task

        return declare

    async def aload_schedules(self, path: str) -> SyncReport:
        """Load a resque-scheduler YAML file (see ``backbeat.resque``): all or nothing."""
        text = await asyncio.to_thread(Path(path).read_text, encoding="utf-8")
        return await self.schedules.aload(text, path)

    def load_schedules(self, path: str) -> SyncReport:
        return self.client.sync(self.aload_schedules, path)

    def on(
        self,
        pattern: str,
        *,
        schema: Any = None,
        name: str | None = None,
        queue: str = DEFAULT_QUEUE,
        retries: int | None = None,
        timeout: float | timedelta | None = None,
        priority: int = 0,
        secret: Sequence[str] = (),
    ) -> Callable[[Callable[[Event], Any]], Task[Any, Any]]:
        """Handle events named like ``pattern`` (``"account.linked"``, ``"account.*"``): each
        matching event becomes one durable job of this handler, retried on its own.

        ``schema`` (a pydantic model) is the event's contract: a payload it refuses is
        dead-lettered with the reason, and ``event.data`` holds the validated object. The
        handler takes one argument, the ``Event``; it is a task (``name``, ``queue``,
        ``retries``, ``timeout``, ``priority`` as for ``@app.task``). ``secret=("token",)``
        names payload fields sealed before they reach the store (with the contract's
        ``SecretStr`` fields; docs/secrets.md).
        """
        check_pattern(pattern)
        check_schema(schema, pattern)
        fields = secret_fields(secret, schema, pattern)

        def declare(fn: Callable[[Event], Any]) -> Task[Any, Any]:
            wrapper = handler_wrapper(fn, schema)
            wrapper.__name__, wrapper.__qualname__ = fn.__name__, fn.__qualname__
            wrapper.__module__, wrapper.__doc__ = fn.__module__, fn.__doc__
            options = {"queue": queue, "timeout": timeout, "priority": priority, "secret": fields}
            task = self._declare(wrapper, name=name or default_name(fn), retries=retries, handles=pattern, **options)
            self.handlers.append(Handler(pattern=pattern, task=task, schema=schema))
            return task

        return declare

    def on_sla_breach(self, fn: Callable[[SlaEvent], Any]) -> Callable[[SlaEvent], Any]:
        """Register ``fn(event)`` (sync or async) to run in the scheduler process when a
        schedule's SLA breach starts (``event.kind == "started"``) and when it ends. Each
        event is delivered once, whatever the number of schedulers."""
        self.sla_hooks.append(fn)
        return fn

    # -- enqueue by name, jobs ---------------------------------------------------------

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
        """Enqueue by task name: a task declared here is checked against its signature;
        another name goes through the client (checked against what workers registered).
        ``connection``: write it in your open transaction (``Client.aenqueue``)."""
        options: dict[str, Any] = {
            "delay": delay,
            "at": at,
            "dedup_key": dedup_key,
            "priority": priority,
            "queue": queue,
            "connection": connection,
        }
        if task in self.tasks:
            given = {k: v for k, v in options.items() if v is not None}
            return await self.tasks[task].aenqueue(*args, **dict(kwargs or {}), **given)
        return await self.client.aenqueue(task, args=args, kwargs=kwargs, **options)

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
        return self.client.sync(
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
        """Emit an event into this app's store (see ``Client.aemit``); return its id. The
        payload fields this app's handlers of ``name`` declare secret are sealed too."""
        declared = secret_fields_of(name, [h.task.info for h in self.handlers])
        given = set(payload or ()) if isinstance(payload, Mapping) else set()
        secret = (*secret_names(secret, f"event {name}", EventError), *sorted(declared & given))
        event_id = await self.client.aemit(
            name, payload, id=id, key=key, occurred_at=occurred_at, connection=connection, secret=secret
        )
        if self.eager:
            await self.arun_until_idle()
        return event_id

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
        return self.client.sync(
            self.aemit, name, payload, id=id, key=key, occurred_at=occurred_at, connection=connection, secret=secret
        )

    def job(self, job_id: str) -> Job:
        return self.client.job(job_id)

    # -- running in-process ------------------------------------------------------------

    async def arun_until_idle(self) -> int:
        """Dispatch pending events and run every due job of this app's tasks in this process;
        return how many attempts ran.

        Not re-entrant: a job that enqueues while an outer call drains is picked up by it.
        """
        if self._draining:
            return 0
        from backbeat.runtime.consumer import Consumer
        from backbeat.runtime.worker import Worker

        queues = tuple(sorted({t.info.queue for t in self.tasks.values()} | set(self.settings.worker.queues)))
        consumer = Consumer(self)
        store = await self.client.astore()
        started = 0
        self._draining = True
        try:
            while True:  # pending events make jobs, and jobs may emit events
                await consumer.drain(store)
                worker = Worker(self, replace(self.settings.worker, queues=queues), burst=True, background=False)
                await worker.run()
                started += worker.started
                if not worker.started:
                    return started
        finally:
            self._draining = False

    def run_until_idle(self) -> int:
        return self.client.sync(self.arun_until_idle)

    async def aclose(self) -> None:
        await self.client.aclose()

    def close(self) -> None:
        self.client.close()
