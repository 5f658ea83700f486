"""The worker's catcher on Redis (``runtime/catcher.py``): an idle worker's handed job
starts on the thread that received it; a job it may not start alone, or one handed while
no slot is free, goes through the loop. A worker in this process on a real server; the
jobs come from a second ``App``, as from another process."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis

from backbeat import App, JobState
from backbeat.config import WorkerSettings
from backbeat.runtime.worker import Worker
from tests.redis_server import SERVER, fresh_url

pytestmark = pytest.mark.asyncio
WAIT = 30.0
"""Seconds any one thing may take before the test fails (it never waits this long to pass)."""


async def until(check: Callable[[], Any], what: str) -> None:
    async with asyncio.timeout(WAIT):
        while not check():  # noqa: ASYNC110 - polls the server and the worker, no event to wait on
            await asyncio.sleep(0.01)


class Apps:
    def __init__(self, url: str, **settings: Any) -> None:
        settings = {"concurrency": 4, "idle_poll": 0.2, "prefetch_window": 0.0} | settings
        self.worker_app, self.producer = App(url, worker=WorkerSettings(**settings)), App(url)
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

    def parked(self, worker: Worker) -> bool:
        store = self.worker_app.client.url
        with redis.Redis.from_url(SERVER, decode_responses=True) as c:
            prefix = store.split("prefix=")[1]
            return bool(c.exists(f"{{{prefix}}}:park:{worker.id}"))


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


async def running(apps: Apps) -> tuple[Worker, asyncio.Task[None]]:
    worker = Worker(apps.worker_app)
    task = asyncio.create_task(worker.run())
    await until(lambda: apps.parked(worker), "the worker to park")
    return worker, task


async def stopped(worker: Worker, task: asyncio.Task[None]) -> None:
    worker.stop()
    await asyncio.wait_for(task, WAIT)


async def test_an_idle_workers_handed_job_runs_on_the_thread_that_received_it(apps: Apps) -> None:
    worker, task = await running(apps)
    job = await apps.producer.tasks["where"].aenqueue(tag="a")
    await until(lambda: "a" in apps.threads, "the job to run")
    assert apps.threads["a"] == "backbeat-catch"
    await until(lambda: worker.started == 1 and not worker.attempts, "the attempt to end")
    await stopped(worker, task)
    assert (await job.ainfo()).state is JobState.SUCCEEDED
    assert worker.catcher is not None and worker.catcher.caught == 0


async def test_what_the_catcher_may_not_start_alone_goes_through_the_loop(apps: Apps) -> None:
    """An async task runs on the loop; a rate-limited one asks its bucket from the loop first."""
    worker, task = await running(apps)
    jobs = []
    for name, tag in [("where_async", "b"), ("where_limited", "c")]:
        jobs.append(await apps.producer.tasks[name].aenqueue(tag=tag))
        await until(lambda tag=tag: tag in apps.threads, f"job {tag} to run")  # type: ignore[misc]
        await until(lambda: apps.parked(worker), "the worker to park again")
    assert apps.threads["b"] == "MainThread"
    assert apps.threads["c"].startswith("backbeat-task-")
    await stopped(worker, task)
    assert [(await j.ainfo()).state for j in jobs] == [JobState.SUCCEEDED, JobState.SUCCEEDED]


@pytest.mark.parametrize("apps", [{"concurrency": 1, "prefetch_window": 10.0}], indirect=True)
async def test_a_job_handed_while_no_slot_is_free_waits_for_one(apps: Apps) -> None:
    """Concurrency 1: the first job holds the only slot, the worker still parks (it
    prefetches), and the next job handed over waits in line instead of starting beside it."""
    worker, task = await running(apps)
    first = await apps.producer.tasks["where"].aenqueue(tag="first", hold=True)
    await until(lambda: "first" in apps.threads, "the first job to start")
    await until(lambda: apps.parked(worker), "the worker to park with its slot taken")
    second = await apps.producer.tasks["where"].aenqueue(tag="second")
    await until(lambda: any(j.id == second.id for j in worker.ready), "the second job to reach the worker")
    assert "second" not in apps.threads and len(worker.attempts) == 1
    apps.release.set()
    await until(lambda: "second" in apps.threads, "the second job to run")
    await stopped(worker, task)
    assert [(await j.ainfo()).state for j in (first, second)] == [JobState.SUCCEEDED, JobState.SUCCEEDED]


@pytest.mark.parametrize("apps", [{"idle_poll": 4 * WAIT}], indirect=True)
async def test_a_stopping_worker_leaves_no_catcher_waiting(apps: Apps) -> None:
    """The catcher waits an ``idle_poll`` at a time; the stop cuts its wait short."""
    worker, task = await running(apps)
    await apps.producer.tasks["where"].aenqueue(tag="a")  # the catcher's thread is started by the first parking
    await until(lambda: "a" in apps.threads, "the job to run")
    await until(lambda: apps.parked(worker), "the worker to park again")
    catcher = worker.catcher
    assert catcher is not None and catcher._thread.is_alive()
    await stopped(worker, task)  # the app stays open: the stop itself ends the catcher's wait
    await until(lambda: not catcher._thread.is_alive(), "the catcher to end")
