"""The worker's catcher on Redis (``runtime/catcher.py``): an idle worker's handed job
starts on the thread that received it; a job it may not start alone, or one handed while
no slot is free, goes through the loop. A worker in this process on a real server; the
jobs come from a second ``App``, as from another process."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
import redis

from backbeat import App, JobState, ManualClock
from backbeat.config import WorkerSettings
from backbeat.runtime.worker import Worker
from backbeat.store.redis.store import RedisStore
from tests.redis_server import SERVER, blocked, fresh_url

pytestmark = pytest.mark.asyncio
WAIT = 30.0
"""Seconds any one thing may take before the test fails (it never waits this long to pass)."""


async def until(check: Callable[[], Any], what: str) -> None:
    """Poll ``check`` (the server and the worker: no event to wait on) until it holds; the
    timeout only bounds a broken run."""
    try:
        async with asyncio.timeout(WAIT):
            while not check():  # noqa: ASYNC110 - see above
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"timed out after {WAIT} s waiting for {what}") from None


class Apps:
    def __init__(self, url: str, **settings: Any) -> None:
        # idle_poll: the claim loop wakes only for a reason (a wake-up, a job's end), so
        # the catcher stays armed while a test enqueues; no heartbeat or rescue within a test
        producer_clock = settings.pop("producer_clock", None)
        settings = {
            "concurrency": 4,
            "idle_poll": 4 * WAIT,
            "prefetch_window": 0.0,
            "lease": 20 * WAIT,
            "maintenance_interval": 20 * WAIT,
        } | settings
        self.worker_app = App(url, worker=WorkerSettings(**settings))
        self.producer = App(url, clock=producer_clock)
        self.prefix = url.split("prefix=")[1]
        self.threads: dict[str, str] = {}
        self.release = threading.Event()
        for app in (self.worker_app, self.producer):
            app.rate_limit("api", limit=1000, per=1)

            @app.task(name="where")
            def where(tag: str, hold: bool = False) -> None:
                self.threads[tag] = threading.current_thread().name
                if hold:
                    self.release.wait(WAIT)

            @app.task(name="where_async")
            async def where_async(tag: str) -> None:
                self.threads[tag] = threading.current_thread().name

            @app.task(name="where_limited", rate_limit="api")
            def where_limited(tag: str) -> None:
                self.threads[tag] = threading.current_thread().name

    def key(self, name: str) -> str:
        return f"{{{self.prefix}}}:{name}"

    def parked(self, worker: Worker) -> bool:
        with redis.Redis.from_url(SERVER, decode_responses=True) as c:
            return bool(c.exists(self.key(f"park:{worker.id}")))


def armed(worker: Worker) -> bool:
    return worker.catcher is not None and worker.catcher._armed


def idle(worker: Worker) -> bool:
    """Parked and waiting, its catcher armed, with nothing left to do before the next
    wake-up (which would disarm the catcher for a moment)."""
    catcher = worker.catcher
    return (
        catcher is not None
        and catcher._armed
        and catcher.current is None
        and not worker.attempts
        and not worker.ready
        and not worker._wake.is_set()
    )


def in_blocking_read(worker: Worker) -> bool:
    store = worker._store
    assert isinstance(store, RedisStore)
    catcher = store._catchers.get(worker.id)
    return catcher is not None and blocked(catcher)


@pytest.fixture
async def apps(request: pytest.FixtureRequest) -> AsyncIterator[Apps]:
    with fresh_url() as url:
        apps = Apps(url, **getattr(request, "param", {}))
        try:
            yield apps
        finally:
            apps.release.set()
            await apps.producer.aclose()
            await apps.worker_app.aclose()


async def running(apps: Apps, until_armed: bool = True) -> tuple[Worker, asyncio.Task[None]]:
    worker = Worker(apps.worker_app)
    task = asyncio.create_task(worker.run())
    if until_armed:
        await until(lambda: idle(worker), "the worker to park, its catcher armed")
    return worker, task


async def stopped(worker: Worker, task: asyncio.Task[None]) -> None:
    worker.stop()
    await asyncio.wait_for(task, WAIT)


async def test_an_idle_workers_handed_job_runs_on_the_thread_that_received_it(apps: Apps) -> None:
    worker, task = await running(apps)
    job = await apps.producer.tasks["where"].aenqueue(tag="a", hold=True)
    await until(lambda: "a" in apps.threads, "the job to run")
    assert apps.threads["a"] == "backbeat-catch"
    with redis.Redis.from_url(SERVER, decode_responses=True) as c:
        # the loop adopted it and claimed again: the job lost its "handed" mark (it began:
        # a rescue would count its attempt), and the worker is not parked while the
        # catcher runs it (nothing would read a job handed to it)
        await until(lambda: not c.hexists(apps.key(f"job:{job.id}"), "handed"), "the handed mark to go")
        assert job.id in worker.attempts and job.id in worker.held
        assert not apps.parked(worker)
    apps.release.set()
    await until(lambda: idle(worker) and apps.parked(worker), "the worker to park again once the job ended")
    await stopped(worker, task)
    assert (await job.ainfo()).state is JobState.SUCCEEDED
    assert worker.started == 1 and worker.catcher is not None and worker.catcher.current is None


async def test_what_the_catcher_may_not_start_alone_goes_through_the_loop(apps: Apps) -> None:
    """An async task runs on the loop; a rate-limited one asks its bucket from the loop first."""
    worker, task = await running(apps)
    jobs = []
    for name, tag in [("where_async", "b"), ("where_limited", "c"), ("where", "d")]:
        jobs.append(await apps.producer.tasks[name].aenqueue(tag=tag))
        await until(lambda tag=tag: tag in apps.threads, f"job {tag} to run")  # type: ignore[misc]
        await until(lambda: idle(worker), "the worker to park again")
    assert apps.threads["b"] == "MainThread"
    assert apps.threads["c"].startswith("backbeat-task-")
    assert apps.threads["d"] == "backbeat-catch"  # the catcher was there all along
    await stopped(worker, task)
    assert {(await j.ainfo()).state for j in jobs} == {JobState.SUCCEEDED}


@pytest.mark.parametrize("apps", [{"concurrency": 1, "prefetch_window": 10.0}], indirect=True)
async def test_a_job_handed_while_no_slot_is_free_waits_for_one(apps: Apps) -> None:
    """Concurrency 1: the first job (claimed: on a task thread) holds the only slot, the
    worker still parks (it prefetches), and the next job handed over waits in line (on
    the task threads' queue) instead of starting on the catcher beside it."""
    first = await apps.producer.tasks["where"].aenqueue(tag="first", hold=True)
    worker, task = await running(apps, until_armed=False)
    await until(lambda: "first" in apps.threads, "the first job to start")
    assert apps.threads["first"].startswith("backbeat-task-")
    await until(lambda: apps.parked(worker), "the worker to park with its slot taken")
    assert not armed(worker)
    second = await apps.producer.tasks["where"].aenqueue(tag="second")
    await until(lambda: second.id in worker.attempts, "the second job to be queued for the task thread")
    assert "second" not in apps.threads and worker._running() == 1
    apps.release.set()
    await until(lambda: "second" in apps.threads, "the second job to run")
    await stopped(worker, task)
    assert [(await j.ainfo()).state for j in (first, second)] == [JobState.SUCCEEDED, JobState.SUCCEEDED]


@pytest.mark.parametrize("apps", [{"concurrency": 1, "prefetch_window": 10.0}], indirect=True)
async def test_no_job_waits_for_a_task_thread_beside_the_catchers(apps: Apps) -> None:
    """Concurrency 1: the catcher runs a handed job (its slot has no task thread); a job
    enqueued meanwhile is claimed and waits in line, not on the idle task thread, where it
    would run beside the first."""
    worker, task = await running(apps)
    first = await apps.producer.tasks["where"].aenqueue(tag="first", hold=True)
    await until(lambda: first.id in worker.attempts, "the loop to adopt the caught job")
    assert apps.threads["first"] == "backbeat-catch"
    second = await apps.producer.tasks["where"].aenqueue(tag="second")
    await until(lambda: any(j.id == second.id for j in worker.ready), "the second job to be claimed")
    assert "second" not in apps.threads and second.id not in worker.attempts
    apps.release.set()
    await until(lambda: "second" in apps.threads, "the second job to run")
    await stopped(worker, task)
    assert [(await j.ainfo()).state for j in (first, second)] == [JobState.SUCCEEDED, JobState.SUCCEEDED]


@pytest.mark.parametrize(
    "apps", [{"producer_clock": ManualClock(datetime.fromtimestamp(time.time() - 3600, UTC))}], indirect=True
)
async def test_a_handed_job_whose_lease_is_about_to_expire_is_not_started(
    apps: Apps, caplog: pytest.LogCaptureFixture
) -> None:
    """The producer's clock is an hour behind: the lease the enqueue grants has expired
    by the worker's. Another worker may rescue the job; this one must not start it."""
    worker, task = await running(apps)
    await apps.producer.tasks["where"].aenqueue(tag="late")
    await until(lambda: "before it could start" in caplog.text, "the worker to drop the job")
    assert "late" not in apps.threads
    await stopped(worker, task)


async def test_a_stopping_worker_leaves_no_catcher_waiting(apps: Apps) -> None:
    """The catcher waits an ``idle_poll`` (here far longer than the test) at a time; the
    stop cuts its wait short, with the app still open."""
    worker, task = await running(apps)
    catcher = worker.catcher
    assert catcher is not None and catcher._thread.is_alive()
    await until(lambda: in_blocking_read(worker), "the catcher to wait on the server")
    await stopped(worker, task)
    await until(lambda: not catcher._thread.is_alive(), "the catcher to end")
