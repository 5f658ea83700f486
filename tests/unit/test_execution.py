"""What happens when jobs run: outcomes, retries, timeouts, the job handle, testing helpers.

Jobs run in-process through the real worker and executor on the memory store, with a
manual clock, so no test sleeps on wall-clock time (timeouts excepted, which are real by
nature and kept to fractions of a second).
"""

import asyncio
import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from backbeat import App, JobCancelled, JobFailed, JobState, ManualClock, RateLimited, Retry, current_job
from backbeat.config import WorkerSettings
from backbeat.errors import BackbeatError, EnqueueError
from backbeat.ids import uuid7
from backbeat.retry import RetryPolicy
from backbeat.testing import eager, run_until_idle


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 3, 1, 12, 0, tzinfo=UTC))


@pytest.fixture
def app(clock: ManualClock) -> Iterator[App]:
    app = App(
        f"memory://{uuid7()}",
        clock=clock,
        retry=RetryPolicy(base=10, jitter=0),
        worker=WorkerSettings(timeout_grace=0.2),
    )
    yield app
    app.close()


def test_sync_and_async_tasks_return_results(app: App) -> None:
    @app.task(name="add")
    def add(a: int, b: int) -> int:
        return a + b

    @app.task(name="aadd")
    async def aadd(a: int, b: int) -> dict:
        await asyncio.sleep(0)
        return {"sum": a + b}

    jobs = [add.enqueue(1, 2), aadd.enqueue(a=3, b=4)]
    assert run_until_idle(app) == 2
    assert [j.result(timeout=1) for j in jobs] == [3, {"sum": 7}]
    info = jobs[0].info()
    assert info.state is JobState.SUCCEEDED and info.attempts == 1 and info.finished_at == app.clock.now()


def test_failures_retry_with_backoff_then_die_keeping_the_error(app: App, clock: ManualClock) -> None:
    calls: list[float] = []

    @app.task(name="flaky", retries=2)
    def flaky() -> None:
        calls.append(clock.now())
        raise ValueError("upstream said no")

    job = flaky.enqueue()
    assert run_until_idle(app) == 1
    assert job.status() is JobState.SCHEDULED and job.info().error == "ValueError: upstream said no"
    assert run_until_idle(app, advance=True) == 2
    start = calls[0]
    assert [c - start for c in calls] == [0, 10, 30]  # base 10, factor 2, no jitter
    info = job.info()
    assert info.state is JobState.DEAD and info.attempts == 3
    assert "upstream said no (after 3 attempts)" in (info.error or "")
    assert "raise ValueError" in (info.traceback or "")
    with pytest.raises(JobFailed, match="upstream said no") as caught:
        job.result()
    assert caught.value.traceback and caught.value.job_id == job.id


def test_retry_exception_picks_the_delay_and_counts(app: App, clock: ManualClock) -> None:
    seen: list[int] = []

    @app.task(name="r", retries=1)
    def r() -> str:
        seen.append(current_job().attempt)
        if len(seen) == 1:
            raise Retry(in_=300, reason="not ready")
        return "done"

    job = r.enqueue()
    run_until_idle(app)
    assert job.info().run_at == clock.now() + 300
    run_until_idle(app, advance=True)
    assert job.result() == "done" and seen == [1, 2]


def test_rate_limited_waits_without_using_a_retry(app: App, clock: ManualClock) -> None:
    calls = []

    @app.task(name="api", retries=0)
    def api() -> str:
        calls.append(clock.now())
        if len(calls) < 3:
            raise RateLimited(retry_after=60)
        return "ok"

    job = api.enqueue()
    run_until_idle(app, advance=True)
    assert job.result() == "ok" and job.info().attempts == 1
    assert [c - calls[0] for c in calls] == [0, 60, 120]


def test_arguments_that_do_not_fit_kill_the_job_without_retries(app: App) -> None:
    @app.task(name="t", retries=5)
    def t(a: int) -> None: ...

    job = app.client.enqueue("t", kwargs={"b": 1})
    run_until_idle(app)
    assert job.status() is JobState.DEAD
    assert job.info().error == "TypeError: the stored arguments do not fit: task 't': missing a required argument: 'a'"


def test_a_remembered_verdict_on_the_arguments_is_the_binding_one(app: App) -> None:
    """``Task.fits`` remembers per call shape; a second job of a shape gets the same verdict."""

    @app.task(name="t", retries=5)
    def t(a: int, /, b: int = 0, *, c: int) -> int:
        return a + b + c

    shapes = [((1,), {"c": 2}), ((1, 2), {"c": 3}), ((), {"a": 1, "c": 2}), ((1,), {}), ((1, 2, 3), {"c": 1})]
    for args, kwargs in shapes * 2:
        try:
            t.signature.bind(*args, **kwargs)
            expected = None
        except TypeError as exc:
            expected = f"task 't': {exc}"
        try:
            t.fits(args, kwargs)
            verdict = None
        except EnqueueError as exc:
            verdict = str(exc)
        assert verdict == expected, (args, kwargs)
    jobs = [app.client.enqueue("t", args=[1], kwargs={"b": 2, "c": 3}) for _ in range(2)]
    jobs += [app.client.enqueue("t", args=[1]) for _ in range(2)]
    run_until_idle(app)
    assert [j.status() for j in jobs] == [JobState.SUCCEEDED] * 2 + [JobState.DEAD] * 2
    assert (
        jobs[3].info().error
        == jobs[2].info().error
        == ("TypeError: the stored arguments do not fit: task 't': missing a required argument: 'c'")
    )


def test_a_result_that_is_not_json_kills_the_job(app: App) -> None:
    @app.task(name="t", retries=5)
    def t() -> object:
        return object()

    job = t.enqueue()
    run_until_idle(app)
    info = job.info()
    assert info.state is JobState.DEAD and "result is of type object" in (info.error or "")


def test_async_timeout_fails_the_attempt(app: App) -> None:
    @app.task(name="slow", timeout=0.05, retries=0)
    async def slow() -> None:
        await asyncio.sleep(30)

    job = slow.enqueue()
    run_until_idle(app)
    assert job.info().error == "TimeoutError: task exceeded its timeout of 0.05 s"


def test_async_task_own_timeout_error_is_an_ordinary_failure(app: App) -> None:
    @app.task(name="own", timeout=30, retries=0)
    async def own() -> None:
        raise TimeoutError("upstream timed out")

    job = own.enqueue()
    run_until_idle(app)
    assert job.info().error == "TimeoutError: upstream timed out"


def test_sync_timeout_stops_python_code_in_its_thread(app: App) -> None:
    stopped = threading.Event()

    @app.task(name="spin", timeout=0.1, retries=0)
    def spin() -> None:
        try:
            while True:
                sum(range(100))
        finally:
            stopped.set()

    job = spin.enqueue()
    run_until_idle(app)
    assert stopped.is_set()
    assert job.info().error == "TimeoutError: task exceeded its timeout of 0.1 s"


def test_current_job_outside_a_job_is_an_error() -> None:
    with pytest.raises(BackbeatError, match="outside a running backbeat job"):
        current_job()


def test_job_handle_result_states(app: App) -> None:
    @app.task(name="t")
    def t() -> None: ...

    job = t.enqueue()
    with pytest.raises(TimeoutError, match="still queued"):
        job.result(timeout=0)
    assert job.cancel() is JobState.CANCELLED
    with pytest.raises(JobCancelled):
        job.result()
    assert job.retry() is JobState.QUEUED
    run_until_idle(app)
    assert job.result() is None
    assert repr(job) == f"<Job {job.id}>" and job == app.job(job.id)


def test_delayed_jobs_wait_for_their_time(app: App, clock: ManualClock) -> None:
    ran = []

    @app.task(name="later")
    def later() -> None:
        ran.append(clock.now())

    later.enqueue(delay=90)
    assert run_until_idle(app) == 0
    clock.advance(89)
    assert run_until_idle(app) == 0
    clock.advance(1)
    assert run_until_idle(app) == 1 and ran == [clock.now()]


def test_priority_then_due_time_orders_a_backlog(app: App, clock: ManualClock) -> None:
    order = []

    @app.task(name="t")
    def t(n: int) -> None:
        order.append(n)

    t.enqueue(1)
    clock.advance(1)
    t.enqueue(2, priority=5)
    clock.advance(1)
    t.enqueue(3)
    clock.advance(1)
    t.enqueue(4, priority=5)
    app.configure(worker=WorkerSettings(concurrency=1, prefetch_window=0))
    run_until_idle(app)
    assert order == [2, 4, 1, 3]


def test_eager_runs_jobs_and_the_jobs_they_enqueue(app: App) -> None:
    log = []

    @app.task(name="child")
    def child(n: int) -> None:
        log.append(("child", n))

    @app.task(name="parent")
    async def parent(n: int) -> int:
        await child.aenqueue(n + 1)
        log.append(("parent", n))
        return n

    with eager(app):
        job = parent.enqueue(1)
        assert job.status() is JobState.SUCCEEDED
    assert sorted(log) == [("child", 2), ("parent", 1)]
    parent.enqueue(5)
    assert len(log) == 2  # outside the block, jobs wait for a worker


def test_jobs_of_unknown_tasks_wait(app: App) -> None:
    job = app.client.enqueue("nobody.knows.me")
    assert run_until_idle(app) == 0
    assert job.status() is JobState.QUEUED


def test_advance_needs_a_manual_clock() -> None:
    app = App(f"memory://{uuid7()}")
    try:
        with pytest.raises(TypeError, match="ManualClock"):
            run_until_idle(app, advance=True)
    finally:
        app.close()


def test_sync_task_can_enqueue_from_its_thread(app: App) -> None:
    @app.task(name="leaf")
    def leaf() -> str:
        return "leaf"

    @app.task(name="root")
    def root() -> str:
        return leaf.enqueue().id

    job = root.enqueue()
    run_until_idle(app)
    child = app.job(job.result())
    run_until_idle(app)
    assert child.result() == "leaf"


def test_a_sync_task_calling_sys_exit_fails_its_job_and_the_worker_goes_on(app: App) -> None:
    """``SystemExit`` ends a thread silently: caught, it is the attempt's failure (before,
    the task thread died, its slot and the job's lease were held until the process ended)."""

    @app.task(name="quits", retries=0)
    def quits() -> None:
        raise SystemExit(3)

    @app.task(name="after")
    def after() -> int:
        return 1

    quitter, later = quits.enqueue(), after.enqueue()
    assert run_until_idle(app) == 2
    info = quitter.info()
    assert info.state is JobState.DEAD and info.error is not None and "SystemExit" in info.error
    assert later.result(timeout=1) == 1


def test_the_enqueue_check_remembers_its_own_verdict_per_shape(app: App) -> None:
    """``check_arguments`` (the producer's, which also refuses a secret given positionally)
    remembers per call shape apart from ``fits`` (the worker's): a shape one accepts and
    the other refuses gets each one's verdict, every time."""

    @app.task(name="t", secret=("token",))
    def t(account: str, token: str = "") -> None: ...

    for _ in range(2):
        t.fits(("a", "s3cret"), {})
        with pytest.raises(EnqueueError, match="pass the secret argument 'token' by keyword"):
            t.check_arguments(("a", "s3cret"), {})
        t.check_arguments(("a",), {"token": "s3cret"})
        with pytest.raises(EnqueueError, match="missing a required argument: 'account'"):
            t.check_arguments((), {"token": "s3cret"})
