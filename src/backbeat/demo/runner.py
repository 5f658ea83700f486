"""Running the demo: the store, the fake APIs, the main app, the jobs app under ``backbeat
run``'s machinery, the view, and the end.

**Processes.** The jobs app runs exactly as ``backbeat run`` runs it, with the same
classes: a ``Supervisor`` keeping ``--workers`` ``backbeat worker`` processes alive, and a
``Scheduler`` and the event ``Consumer`` in this process. Not in-process workers: worker
processes are what users run and what the autopilot will scale, and the view counts them
from their heartbeats in the store, as an operator would. This process also hosts the fake
APIs (threads), the main app (a ``Client`` that emits) and the view, on one event loop.
The workers' logs and this process's go to ``demo.log`` so they do not tear the live view.

**Timeline.** The main app links the accounts over the first seconds (``RAMP``, at most a
quarter of the run). Halfway through, the fake Twitter tightens its limit to
``TIGHTENED``. At ``--duration`` (or on Ctrl-C / SIGTERM) the workers get SIGTERM and
finish what runs, the scheduler and consumer stop, and the summary is read from the store,
which nothing changes any more: its figures can be checked against the store afterwards.

**The autopilot** runs as in ``backbeat run``: with ``--workers auto`` (the default) it
sizes the worker processes to the load (``Demo.desired_workers`` is its count, shown as
"workers (actual / desired)"), and it stretches the polls that Twitter throttles, within
their SLA (the view shows the schedules' effective intervals, read from the store).

Internal module.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any

from backbeat.client import Client
from backbeat.clock import Clock, SystemClock
from backbeat.demo import figures, jobs
from backbeat.demo.fakeapis import FakeFeed, FakeTwitter, Limit, served
from backbeat.demo.figures import Run, Snapshot, Upstreams
from backbeat.demo.mainapp import MainApp
from backbeat.demo.view import Display
from backbeat.errors import BackbeatError, ConfigError
from backbeat.runtime.autopilot import Autopilot, scaler
from backbeat.runtime.consumer import Consumer
from backbeat.runtime.scheduler import Scheduler
from backbeat.runtime.supervisor import Supervisor, worker_argv
from backbeat.secrets import keygen
from backbeat.store import check_url
from backbeat.store.base import Store
from backbeat.types import Capability, EventFilter, ScheduleFilter

log = logging.getLogger("backbeat.demo")
SECRET_KEY_ENV = "BACKBEAT_SECRET_KEY"
"""Where the demo's key for the tokens lives (made up for the run unless already set)."""
APP_REF = "backbeat.demo.jobs:app"
MAIN_APP = "the main app"
TIGHTENED = Limit(requests=1, per=25.0)
"""Twitter's limit from halfway: one request per token in any 25 s. A poll comes 20 s (plus
its run time) after the last one ended, so each now meets a 429 and waits about 5 s for
its Retry-After: the gap between successful polls stays under the 30-s SLA."""
RAMP = 5.0
"""Seconds over which the main app links the accounts (at most a quarter of the run)."""
REFRESH = 1.0
"""Seconds between two reads of the store for the view."""
TWITTER_LATENCY = 0.05
"""Seconds each granted Twitter answer takes."""
WORKER_START = 30.0
"""Seconds to wait for a first worker heartbeat before giving up (a broken install)."""


class DemoError(BackbeatError):
    """The demo could not run as set up (no worker came up, a part stopped)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class DemoOptions:
    url: str | None = None
    """The store; ``None``: a fresh SQLite file (``in_dir`` names it)."""
    users: int = 200
    duration: float = 60.0
    workers: int | None = None
    """A fixed count; ``None``: the autopilot sizes them (``--workers auto``)."""
    max_workers: int = 4

    def __post_init__(self) -> None:
        if self.url is not None:
            check_url(self.url)
        if not isinstance(self.users, int) or self.users < 1:
            raise ConfigError(f"--users must be a whole number >= 1, got {self.users!r}")
        if not self.duration > 0:
            raise ConfigError(f"--duration must be > 0 seconds, got {self.duration!r}")
        if self.workers is not None and (not isinstance(self.workers, int) or self.workers < 1):
            raise ConfigError(f"--workers must be a whole number >= 1 or 'auto', got {self.workers!r}")
        if not isinstance(self.max_workers, int) or self.max_workers < 1:
            raise ConfigError(f"--max-workers must be a whole number >= 1, got {self.max_workers!r}")

    def in_dir(self, directory: Path) -> DemoOptions:
        """These options with the default store, a fresh SQLite file, in ``directory``."""
        return self if self.url is not None else replace(self, url=f"sqlite:///{directory / 'demo.db'}")


class Demo:
    def __init__(
        self, options: DemoOptions, display: Display, *, log_file: IO[Any], clock: Clock | None = None
    ) -> None:
        if options.url is None:
            raise ConfigError("the demo needs a store URL: options.in_dir(directory) gives a fresh SQLite file")
        self.url = options.url
        self.options = options
        self.display = display
        self.log_file = log_file
        self.clock: Clock = clock or SystemClock()
        self.twitter = FakeTwitter(documented_limit(), latency=TWITTER_LATENCY)
        self.feed = FakeFeed()
        self.first_limit = self.twitter.limit
        self._stopping = asyncio.Event()
        self._supervisor: Supervisor | None = None
        self._peak_workers = 0

    def desired_workers(self) -> int:
        """The worker processes the demo wants: ``--workers``, or the autopilot's count
        (which the supervisor follows; the view shows it beside the actual one)."""
        if self._supervisor is not None:
            return self._supervisor.count
        return self.options.workers or 1

    def stop(self) -> None:
        """End the run early (Ctrl-C); a second call stops the workers at once."""
        if self._stopping.is_set() and self._supervisor is not None:
            self._supervisor.stop()
        self._stopping.set()

    async def run(self) -> Snapshot:
        """Run the demo to its end; return the summary."""
        url = self.url
        if not os.environ.get(SECRET_KEY_ENV):  # the tokens are secrets: a key for this run
            os.environ[SECRET_KEY_ENV] = keygen()  # the worker processes inherit it
        jobs.app.configure(url=url, secret_key=os.environ[SECRET_KEY_ENV])
        view_client, main_client = Client(url), Client(url)
        try:
            store = await view_client.astore()
            await check_store(store, url)
            with served(self.twitter, name="twitter") as twitter, served(self.feed, name="feed") as feed:
                os.environ[jobs.TWITTER_URL_ENV] = twitter.url
                os.environ[jobs.FEED_URL_ENV] = feed.url
                over = min(RAMP, self.options.duration / 4)
                return await self._run(store, MainApp(main_client, self.options.users, over=over, clock=self.clock))
        finally:
            self.display.close()
            for client in (view_client, main_client, jobs.app.client):
                await client.aclose()

    async def _run(self, store: Store, main_app: MainApp) -> Snapshot:
        since = self.clock.now()
        argv = worker_argv(APP_REF, log_level="info", log_format="text", url=self.url)
        supervisor = self._supervisor = Supervisor(argv, self.desired_workers(), output=self.log_file)
        fixed = self.options.workers
        pilot = scaler(
            jobs.app,
            minimum=fixed or 1,
            maximum=fixed or self.options.max_workers,
            concurrency=jobs.app.settings.worker.concurrency,
        )
        scheduler, consumer = Scheduler(jobs.app), Consumer(jobs.app)
        autopilot = Autopilot(jobs.app, scaler=pilot, resize=None if fixed else supervisor.resize)
        parts = {
            "the worker supervisor": asyncio.create_task(supervisor.run()),
            "the scheduler": asyncio.create_task(scheduler.run()),
            "the event consumer": asyncio.create_task(consumer.run()),
            "the autopilot": asyncio.create_task(autopilot.run()),
            MAIN_APP: asyncio.create_task(main_app.run()),
        }
        try:
            await self._watch(store, since, main_app, parts)
        finally:
            supervisor.stop()
            scheduler.stop()
            consumer.stop()
            autopilot.stop()
            parts[MAIN_APP].cancel()
            for name, result in zip(parts, await asyncio.gather(*parts.values(), return_exceptions=True), strict=True):
                if isinstance(result, Exception):
                    log.error("%s failed while stopping: %s", name, result)
        now = self.clock.now()
        last = await self.snapshot(store, since, now, main_app)
        record = await figures.record(store, since=since, now=now)
        return replace(
            last,
            figures=replace(last.figures, workers=self._peak_workers),  # they have all stopped by now
            record=record,
            interrupted=self._stopping.is_set(),
        )

    async def _watch(self, store: Store, since: float, main_app: MainApp, parts: dict[str, asyncio.Task[Any]]) -> None:
        """Show the run until ``--duration`` or ``stop()``; tighten Twitter's limit halfway."""
        duration = self.options.duration
        while not self._stopping.is_set():
            now = self.clock.now()
            if now - since >= duration:
                return
            self._check(parts)
            if self.twitter.tightened_at is None and now - since >= duration / 2:
                self.twitter.tighten(TIGHTENED)
                log.info("the fake Twitter tightened its limit to %s per token", TIGHTENED)
            snapshot = await self.snapshot(store, since, now, main_app)
            if snapshot.figures.workers == 0 and now - since > WORKER_START:
                raise DemoError(f"no worker process heartbeated within {WORKER_START:g} s; see {self.log_file.name}")
            self._peak_workers = max(self._peak_workers, snapshot.figures.workers)
            self.display.update(snapshot)
            await self.clock.wait(self._stopping, min(REFRESH, duration - (now - since)))

    def _check(self, parts: dict[str, asyncio.Task[Any]]) -> None:
        """Every part runs until the end, except the main app, which may finish early."""
        for name, part in parts.items():
            if part.done() and ((error := part.exception()) is not None or name != MAIN_APP):
                raise DemoError(f"{name} stopped ({error or 'no error'}); see {self.log_file.name}") from error

    async def snapshot(self, store: Store, since: float, now: float, main_app: MainApp) -> Snapshot:
        stale_after = 2 * jobs.app.settings.worker.lease
        seen = await figures.collect(store, since=since, now=now, stale_after=stale_after)
        posts, feeds = self.feed.totals()  # read after the store: an upstream never shows less than it
        tightened = self.twitter.tightened_at
        return Snapshot(
            run=Run(
                url=self.url,
                users=self.options.users,
                emitted=main_app.emitted,
                duration=self.options.duration,
                auto=self.options.workers is None,
                workers=self.desired_workers(),
                log=self.log_file.name,
            ),
            figures=seen,
            upstreams=Upstreams(
                requests=self.twitter.requests,
                throttled=self.twitter.throttled,
                first_limit=str(self.first_limit),
                limit=str(self.twitter.limit),
                tightened_after=None if tightened is None else tightened - since,
                posts=posts,
                feeds=feeds,
            ),
        )


async def check_store(store: Store, url: str) -> None:
    """The demo needs a store its worker processes share, and an empty one: it counts
    everything in it."""
    if Capability.MULTI_PROCESS not in store.capabilities:
        raise ConfigError(
            f"the demo's workers are separate processes, and {url} cannot be shared between processes: "
            "leave out --url (a fresh SQLite file) or give a store URL such as sqlite:///demo.db"
        )
    if (
        await store.schedule_list(ScheduleFilter(limit=1))
        or await store.job_counts()
        or await store.event_list(EventFilter(limit=1))
    ):
        raise ConfigError(
            f"{url} already holds schedules, jobs or events: the demo counts everything in its store, so it "
            "needs an empty one (leave out --url for a fresh SQLite file)"
        )


def documented_limit() -> Limit:
    """The fake Twitter starts at the limit the jobs app declares (what Twitter documents)."""
    declared = jobs.app.rate_limits["twitter"]
    assert declared.limit is not None and declared.per is not None
    return Limit(requests=declared.limit, per=declared.per)


def install_signals(demo: Demo) -> None:
    """Ctrl-C and SIGTERM end the run with its summary (a second one stops workers at once)."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, demo.stop)
