"""The worker's background loops (heartbeat, rescue, prune, cancel, registry) in-process,
on the memory store, with a manual clock: time only moves when the test moves it."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from backbeat import App, JobState, ManualClock
from backbeat.config import WorkerSettings
from backbeat.errors import StoreError
from backbeat.ids import uuid7
from backbeat.runtime.executor import Attempt, Executor
from backbeat.runtime.threads import TaskThreads
from backbeat.runtime.worker import PRUNE_EVERY, Worker
from backbeat.store.base import Store
from backbeat.types import ClaimRequest, Decision, DecisionKind, Retention

LEASE = 10.0


async def settle() -> None:
    """Let every loop that can run, run (the memory store never blocks)."""
    for _ in range(100):
        await asyncio.sleep(0)


async def step(clock: ManualClock, seconds: float, steps: int = 10) -> None:
    for _ in range(steps):
        clock.advance(seconds / steps)
        await settle()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 3, 1, tzinfo=UTC))


@pytest.fixture
async def app(clock: ManualClock) -> AsyncIterator[App]:
    app = App(
        f"memory://{uuid7()}",
        clock=clock,
        retention=Retention(succeeded=3600, dead=3600, cancelled=3600),
        worker=WorkerSettings(lease=LEASE, maintenance_interval=1.0, idle_poll=0.05),
    )
    yield app
    await app.aclose()


async def store_of(app: App) -> Store:
    return await app.client.astore()


async def test_worker_registers_and_unregisters(app: App, clock: ManualClock) -> None:
    @app.task(name="t")
    def t() -> None: ...

    worker = Worker(app)
    task = asyncio.create_task(worker.run())
    await settle()
    [info] = await (await store_of(app)).worker_list()
    assert info.id == worker.id and [t.name for t in info.tasks] == ["t"]
    await step(clock, 5)
    assert (await (await store_of(app)).worker_list())[0].heartbeat_at > info.heartbeat_at
    worker.stop()
    await asyncio.wait_for(task, 5)
    assert await (await store_of(app)).worker_list() == []


async def test_heartbeats_keep_a_long_job_and_a_cancel_stops_it(app: App, clock: ManualClock) -> None:
    started = asyncio.Event()

    @app.task(name="forever")
    async def forever() -> None:
        started.set()
        await asyncio.Event().wait()

    job = await forever.aenqueue()
    worker = Worker(app)
    task = asyncio.create_task(worker.run())
    await asyncio.wait_for(started.wait(), 5)
    await step(clock, LEASE * 5, steps=50)  # five leases long: renewed all along
    info = await job.ainfo()
    assert info.state is JobState.RUNNING and info.attempts == 1
    assert info.lease_expires_at is not None and info.lease_expires_at > clock.now()
    await job.acancel()
    await step(clock, LEASE)
    assert await job.astatus() is JobState.CANCELLED
    worker.stop()
    await asyncio.wait_for(task, 5)


async def test_maintenance_rescues_a_dead_workers_job(app: App, clock: ManualClock) -> None:
    ran = asyncio.Event()

    @app.task(name="t")
    async def t() -> None:
        ran.set()

    store = await store_of(app)
    job = await t.aenqueue()
    claim = ClaimRequest(worker_id="dead-worker", queues=("default",), tasks=frozenset({"t"}), limit=1, lease=LEASE)
    [claimed] = await store.job_claim(claim, now=clock.now())
    assert claimed.id == job.id
    rescuer = Worker(app)
    task = asyncio.create_task(rescuer.run())
    await step(clock, LEASE + 2)
    await asyncio.wait_for(ran.wait(), 5)
    await settle()
    info = await job.ainfo()
    assert info.state is JobState.SUCCEEDED and info.attempts == 2 and info.worker_id == rescuer.id
    rescuer.stop()
    await asyncio.wait_for(task, 5)


async def test_finished_jobs_are_pruned_after_their_retention(app: App, clock: ManualClock) -> None:
    @app.task(name="t")
    async def t() -> None: ...

    job = await t.aenqueue()
    worker = Worker(app)
    task = asyncio.create_task(worker.run())
    await settle()
    assert await job.astatus() is JobState.SUCCEEDED
    await step(clock, 3000, steps=PRUNE_EVERY)
    assert (await job.astatus()) is JobState.SUCCEEDED  # within retention
    await step(clock, 1200, steps=PRUNE_EVERY * 2)
    with pytest.raises(LookupError):
        await job.ainfo()
    worker.stop()
    await asyncio.wait_for(task, 5)


async def test_a_decision_noted_while_decisions_are_written_is_kept(
    app: App, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await store_of(app)
    worker = Worker(app, background=False)
    first = Decision(key="k", at=clock.now(), kind=DecisionKind.RATE_LIMITED, detail="first")
    second = replace(first, detail="second")
    append = store.decision_append

    async def slow_append(decisions: Sequence[Decision]) -> None:
        await append(list(decisions))  # the store has the batch...
        worker.decisions.append(second)  # ...when another attempt ends, before the write returns

    monkeypatch.setattr(store, "decision_append", slow_append)
    worker.decisions.append(first)
    assert await worker._flush_acks(store)
    monkeypatch.undo()
    assert await worker._flush_acks(store)
    assert sorted(d.detail for d in await store.decision_list("k")) == ["first", "second"]


async def _held_job(app: App, worker: Worker) -> None:
    """Claim the one queued job into ``worker.ready``, as a claim or a hand-off leaves it."""
    store = await store_of(app)
    request = ClaimRequest(worker_id=worker.id, queues=("default",), tasks=frozenset({"poll"}), limit=1, lease=LEASE)
    jobs = await store.job_claim(request, now=app.clock.now())
    worker._hold(jobs)
    worker.ready.extend(jobs)


async def test_a_start_that_fails_at_its_rate_limit_puts_the_jobs_back_in_line(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    app.rate_limit("api", limit=5, per=1)

    @app.task(name="poll", rate_limit="api")
    def poll() -> None: ...

    await poll.aenqueue()
    worker = Worker(app)
    await _held_job(app, worker)
    store = await store_of(app)

    async def unreachable(*args: object, **kwargs: object) -> list[float | None]:
        raise StoreError("connection refused")

    monkeypatch.setattr(store, "bucket_acquire", unreachable)
    with pytest.raises(StoreError):
        await worker._start_ready(store)
    assert [job.task for job in worker.ready] == ["poll"] and worker.attempts == {}


async def test_an_outcome_reported_alone_comes_after_what_its_thread_queued_before(app: App) -> None:
    """The catcher queues the loop's adoption of a job it caught, then runs it. Its outcome
    must not overtake the adoption inside a batch of outcomes another task thread started
    (that batch's collect was queued first): the loop would finish an attempt it had not
    adopted yet, and adopt a finished one, holding its slot for good."""

    @app.task(name="t")
    def t() -> None: ...

    await t.aenqueue()
    request = ClaimRequest(worker_id="w", queues=("default",), tasks=frozenset({"t"}), limit=1, lease=LEASE)
    [job] = await (await store_of(app)).job_claim(request, now=app.clock.now())
    events: list[str] = []
    threads = TaskThreads(1, Executor(app.settings, app.clock), lambda a, o: events.append("finish"), print, 1.0)
    loop = threads._loop = asyncio.get_running_loop()

    def catcher() -> None:
        threads._collect_pending = True  # a task thread's outcome is waiting: its collect is queued
        loop.call_soon_threadsafe(threads._collect)
        loop.call_soon_threadsafe(events.append, "adopt")
        threads.run(Attempt(job=job, task=app.tasks["t"]), alone=True)

    thread = threading.Thread(target=catcher)
    thread.start()
    thread.join()  # on the loop's thread: the loop runs none of it before everything is queued
    await settle()
    assert events == ["adopt", "finish"]


async def until(condition: Callable[[], bool], what: str) -> None:
    """Let the loops run until ``condition`` holds (a task thread runs beside them)."""
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"waited 5 s for {what}")


async def test_sync_jobs_wait_on_the_task_threads_queue_beyond_the_free_slot(app: App, clock: ManualClock) -> None:
    """With its slot taken, a worker queues the prefetched sync jobs for its task threads
    (a thread that ends a job takes the next at once); none of them counts as running, a
    cancel or a shutdown reaches them before they start, and a rate-limited one stays in
    line (its bucket grants a start now, not after a wait)."""
    app.rate_limit("api", limit=5, per=1)
    started, release = threading.Event(), threading.Event()
    ran: list[int] = []

    @app.task(name="block")
    def block() -> None:
        started.set()
        release.wait(5)

    @app.task(name="quick")
    def quick(n: int) -> None:
        ran.append(n)

    @app.task(name="polite", rate_limit="api")
    def polite() -> None: ...

    blocking = await block.aenqueue()
    queued = [await quick.aenqueue(n) for n in range(3)]
    limited = await polite.aenqueue()
    worker = Worker(app, replace(app.settings.worker, concurrency=1, prefetch_window=1.0))
    task = asyncio.create_task(worker.run())
    await until(started.is_set, "the blocking job to start")
    await until(lambda: len(worker.attempts) == 4, "the quick jobs to be queued for the thread")
    assert [job.id for job in worker.ready] == [limited.id]
    await step(clock, worker.settings.heartbeat_interval * 1.5)
    [info] = await (await store_of(app)).worker_list()
    assert info.in_flight == 1
    await queued[0].acancel()
    await step(clock, worker.settings.heartbeat_interval * 1.5)
    assert queued[0].id not in worker.attempts  # ended at once, not when a thread reaches it
    worker.stop()
    await settle()
    assert set(worker.attempts) == {blocking.id}  # the rest handed back at once
    release.set()
    await asyncio.wait_for(task, 5)
    assert ran == []
    assert await blocking.astatus() is JobState.SUCCEEDED
    assert await queued[0].astatus() is JobState.CANCELLED
    for job in [*queued[1:], limited]:
        assert (await job.ainfo()).state is JobState.QUEUED and (await job.ainfo()).attempts == 0


async def test_a_queued_sync_jobs_timeout_counts_from_its_start(clock: ManualClock) -> None:
    """A job that waited on the threads' queue longer than its timeout still gets all of
    it once a thread takes it (timeouts are real time: a fraction of a second). A timer
    counted from the queueing would, with no thread to stop, find the job stuck a grace
    later: failed, and the worker recycled."""
    settings = WorkerSettings(concurrency=1, prefetch_window=1.0, timeout_grace=0.1)
    app = App(f"memory://{uuid7()}", clock=clock, worker=settings)
    started, release = threading.Event(), threading.Event()

    @app.task(name="block")
    def block() -> None:
        started.set()
        release.wait(5)

    @app.task(name="quick", timeout=0.2, retries=0)
    def quick() -> str:
        return "done"

    await block.aenqueue()
    job = await quick.aenqueue()
    worker = Worker(app, background=False)
    task = asyncio.create_task(worker.run())
    await until(started.is_set, "the blocking job to start")
    await until(lambda: job.id in worker.attempts, "the quick job to be queued for the thread")
    await asyncio.sleep(0.4)  # twice its timeout, waiting in the queue
    release.set()
    await until(lambda: not worker.attempts, "both jobs to end")
    assert await job.aresult(timeout=1) == "done"
    assert not worker.recycle_requested
    worker.stop()
    await asyncio.wait_for(task, 5)
    await app.aclose()


async def test_no_sync_job_waits_for_a_thread_beside_an_async_attempt(app: App) -> None:
    """An async attempt holds a slot without a task thread: sync jobs queued beyond the
    free slots would have an idle thread run one beside it, more jobs than ``concurrency``."""
    gate, release = asyncio.Event(), threading.Event()
    began: list[int] = []

    @app.task(name="awaits")
    async def awaits() -> None:
        await gate.wait()

    @app.task(name="blocks")
    def blocks(n: int) -> None:
        began.append(n)
        release.wait(5)

    await awaits.aenqueue()
    waiting = [await blocks.aenqueue(n) for n in range(3)]
    worker = Worker(app, replace(app.settings.worker, concurrency=2, prefetch_window=1.0))
    task = asyncio.create_task(worker.run())
    await until(lambda: len(began) == 1 and len(worker.ready) == 2, "one sync job to run, two to wait in line")
    assert began == [0] and len(worker.attempts) == 2
    gate.set()
    release.set()
    await until(lambda: len(began) == 3 and not worker.attempts, "every job to run")
    worker.stop()
    await asyncio.wait_for(task, 5)
    assert {(await job.ainfo()).state for job in waiting} == {JobState.SUCCEEDED}
