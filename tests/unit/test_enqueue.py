"""Declaring tasks and enqueueing: every bad input is refused at the call, nothing written."""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from backbeat import App, Client, EnqueueError, JobState, ManualClock, PayloadError, TaskDefinitionError
from backbeat.errors import ConfigError
from backbeat.ids import uuid7
from backbeat.testing import eager
from backbeat.types import JobFilter


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(datetime(2026, 3, 1, 12, 0, tzinfo=UTC))


@pytest.fixture
def app(clock: ManualClock) -> Iterator[App]:
    app = App(f"memory://{uuid7()}", clock=clock, max_payload_bytes=2_000)
    yield app
    app.close()


def stored(app: App) -> list:
    async def read() -> list:
        return await (await app.client.astore()).job_list(JobFilter())

    return app.client.sync(read)


def test_task_name_defaults_to_module_and_qualname(app: App) -> None:
    @app.task
    def send_email(user_id: int) -> None: ...

    assert send_email.name == f"{__name__}.test_task_name_defaults_to_module_and_qualname.<locals>.send_email"
    assert send_email(1) is None  # calling runs the function here


@pytest.mark.parametrize("reserved", ["delay", "at", "dedup_key", "priority", "queue", "connection"])
def test_parameter_named_like_an_option_is_refused(app: App, reserved: str) -> None:
    namespace: dict = {}
    exec(f"def fn({reserved}): pass", namespace)
    with pytest.raises(TaskDefinitionError, match=f"parameter '{reserved}' clashes with the enqueue option"):
        app.task(name="fn")(namespace["fn"])


def test_duplicate_task_name_is_refused(app: App) -> None:
    app.task(name="dup")(lambda: None)
    with pytest.raises(TaskDefinitionError, match="'dup' is already declared"):
        app.task(name="dup")(lambda: None)


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"retries": -1}, "retries"),
        ({"timeout": 0}, "timeout"),
        ({"queue": ""}, "queue name"),
        ({"priority": "high"}, "priority"),
        ({"name": " "}, "task name"),
    ],
)
def test_bad_task_options_are_refused(app: App, options: dict, fragment: str) -> None:
    with pytest.raises(TaskDefinitionError, match=fragment):
        app.task(**options)(lambda: None)


def test_enqueue_writes_a_job_with_the_task_defaults(app: App, clock: ManualClock) -> None:
    @app.task(name="mail", queue="mail", retries=5, timeout=30, priority=2)
    def mail(user_id: int) -> None: ...

    job = mail.enqueue(user_id=7)
    info = job.info()
    assert (info.task, info.queue, info.max_attempts, info.timeout, info.priority) == ("mail", "mail", 6, 30.0, 2)
    assert info.state is JobState.QUEUED and info.run_at == clock.now()
    assert info.payload == '{"args":[],"kwargs":{"user_id":7}}'


def test_options_delay_at_priority_queue_dedup(app: App, clock: ManualClock) -> None:
    @app.task(name="t")
    def t(x: int) -> None: ...

    delayed = t.enqueue(1, delay=90)
    assert delayed.info().run_at == clock.now() + 90 and delayed.status() is JobState.SCHEDULED
    assert t.enqueue(1, delay=timedelta(minutes=2)).info().run_at == clock.now() + 120
    when = datetime(2026, 3, 1, 14, 0, tzinfo=UTC)
    assert t.enqueue(1, at=when).info().run_at == when.timestamp()
    other = t.enqueue(2, priority=9, queue="fast").info()
    assert (other.priority, other.queue) == (9, "fast")
    first = t.enqueue(3, dedup_key="k")
    second = t.enqueue(4, dedup_key="k")
    assert first.created and not second.created and second.id == first.id


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        (lambda t: t.enqueue(1, delay=-5), "delay cannot be negative"),
        (lambda t: t.enqueue(1, delay="soon"), "delay must be seconds"),
        (lambda t: t.enqueue(1, at=datetime(2026, 3, 1, 14, 0)), "naive"),
        (lambda t: t.enqueue(1, delay=1, at=datetime.now(UTC)), "either delay= or at="),
        (lambda t: t.enqueue(1, dedup_key=""), "dedup_key"),
        (lambda t: t.enqueue(1, priority=1.5), "priority must be an integer"),
        (lambda t: t.enqueue(1, queue="a,b"), "queue name"),
        (lambda t: t.enqueue(), "missing a required argument: 'x'"),
        (lambda t: t.enqueue(1, y=2), "unexpected keyword argument 'y'"),
        (lambda t: t.enqueue(object()), "args\\[0\\] is of type object"),
        (lambda t: t.enqueue("x" * 5_000), "over the limit of 2,000 bytes"),
    ],
)
def test_bad_enqueue_is_refused_and_writes_nothing(app: App, call, fragment: str) -> None:
    @app.task(name="t")
    def t(x: object) -> None: ...

    with pytest.raises((EnqueueError, ConfigError), match=fragment):
        call(t)
    assert stored(app) == []


def test_payload_error_is_an_enqueue_error(app: App) -> None:
    @app.task(name="t")
    def t(x: object) -> None: ...

    with pytest.raises(PayloadError):
        t.enqueue({1: 2})


def test_client_enqueues_by_name_with_registered_defaults(app: App) -> None:
    @app.task(name="known", queue="q1", retries=0)
    def known() -> None: ...

    async def register() -> None:
        from backbeat.runtime.worker import Worker

        worker = Worker(app)
        await (await app.client.astore()).worker_register(worker._info())

    app.client.sync(register)
    client = Client(settings=app.settings, clock=app.clock)
    try:
        info = client.enqueue("known").info()
        assert (info.queue, info.max_attempts) == ("q1", 1)
        unknown = client.enqueue("not.registered", kwargs={"a": 1}).info()
        assert (unknown.queue, unknown.max_attempts) == ("default", 4)
        with pytest.raises(EnqueueError, match="task name must be a non-empty string"):
            client.enqueue("")
    finally:
        client.close()


def test_app_enqueue_by_name_checks_local_signatures(app: App) -> None:
    @app.task(name="local")
    def local(a: int) -> None: ...

    assert app.enqueue("local", kwargs={"a": 1}, delay=5).status() is JobState.SCHEDULED
    with pytest.raises(EnqueueError, match="unexpected keyword argument"):
        app.enqueue("local", kwargs={"a": 1, "b": 1})


def test_bad_url_fails_at_construction() -> None:
    with pytest.raises(ConfigError, match="unknown scheme"):
        App("mongodb://localhost")


def test_enqueue_many_writes_one_job_per_call_in_order(app: App, clock: ManualClock) -> None:
    @app.task(name="poll", priority=1)
    def poll(account: int, full: bool = False) -> None: ...

    calls = [{"account": 1}, (2, True), {"account": 3, "priority": 7, "dedup_key": "poll:3"}]
    jobs = poll.enqueue_many(calls, delay=30, queue="polls")
    infos = [job.info() for job in jobs]
    assert [i.payload for i in infos] == [
        '{"args":[],"kwargs":{"account":1}}',
        '{"args":[2,true],"kwargs":{}}',
        '{"args":[],"kwargs":{"account":3}}',
    ]
    assert [(i.queue, i.priority, i.run_at) for i in infos] == [("polls", 1, clock.now() + 30)] * 2 + [
        ("polls", 7, clock.now() + 30)
    ]
    assert all(job.created for job in jobs) and len(stored(app)) == 3
    assert poll.enqueue_many([]) == []


def test_enqueue_many_dedups_within_the_calls_and_against_live_jobs(app: App) -> None:
    @app.task(name="poll")
    def poll(account: int) -> None: ...

    live = poll.enqueue(1, dedup_key="poll:1")
    jobs = poll.enqueue_many({"account": n, "dedup_key": f"poll:{n % 2}"} for n in (1, 2, 3, 4))
    assert [job.created for job in jobs] == [False, True, False, False]
    assert jobs[0].id == live.id == jobs[2].id and jobs[3].id == jobs[1].id
    assert len(stored(app)) == 2


def test_enqueue_many_writes_in_batches(app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    @app.task(name="t")
    def t(x: int) -> None: ...

    store = app.client.sync(app.client.astore)
    batches: list[int] = []
    enqueue = store.job_enqueue
    monkeypatch.setattr(store, "enqueue_batch", 3)

    async def counted(jobs: list, *, now: float) -> list:
        batches.append(len(jobs))
        return await enqueue(jobs, now=now)

    monkeypatch.setattr(store, "job_enqueue", counted)
    jobs = t.enqueue_many((n,) for n in range(8))
    assert batches == [3, 3, 2]
    assert [job.info().payload for job in jobs] == [f'{{"args":[{n}],"kwargs":{{}}}}' for n in range(8)]


@pytest.mark.parametrize(
    ("calls", "options", "fragment"),
    [
        ([{"x": 1}, {"x": 2, "y": 2}], {}, "call #1: task 't': got an unexpected keyword argument 'y'"),
        ([(1,), (object(),)], {}, "call #1: args\\[0\\] is of type object"),
        ([{"x": 1}, {"x": 1, "delay": -1}], {}, "call #1: delay cannot be negative"),
        ([(1,)], {"priority": "high"}, "call #0: priority must be an integer"),
        ([{"x": 1}, "x=2"], {}, "call #1 is a str: give a dict of keyword arguments or a tuple"),
        ([{"x": 1, "connection": None}], {}, "call #0: connection= applies to all calls"),
        ({"x": 1}, {}, "takes an iterable of calls .* got dict"),
        ("abc", {}, "takes an iterable of calls .* got str"),
        (5, {}, "takes an iterable of calls .* got int"),
        ([(1,)], {"x": 2}, "then only the options .*; got x"),
    ],
)
def test_a_bad_call_in_enqueue_many_is_named_and_nothing_is_written(
    app: App, calls: Any, options: dict, fragment: str
) -> None:
    @app.task(name="t")
    def t(x: object) -> None: ...

    with pytest.raises(EnqueueError, match=fragment):
        t.enqueue_many(calls, **options)
    assert stored(app) == []


def test_aenqueue_many_and_eager_mode(app: App) -> None:
    ran: list[int] = []

    @app.task(name="t")
    def t(x: int) -> None:
        ran.append(x)

    with eager(app):
        t.enqueue_many([(1,), {"x": 2}])
    assert sorted(ran) == [1, 2]  # one clock reading: equal order_at, so id order decides

    async def enqueue() -> list:
        return await t.aenqueue_many([(3,), (4,)])

    assert [job.status() for job in app.client.sync(enqueue)] == [JobState.QUEUED] * 2


def test_client_enqueues_many_by_name_with_registered_defaults(app: App) -> None:
    @app.task(name="known", queue="q1", retries=0)
    def known(a: int) -> None: ...

    async def register() -> None:
        from backbeat.runtime.worker import Worker

        await (await app.client.astore()).worker_register(Worker(app)._info())

    app.client.sync(register)
    client = Client(settings=app.settings, clock=app.clock)
    try:
        jobs = client.enqueue_many("known", [{"a": 1, "dedup_key": "k"}, {"a": 2, "dedup_key": "k"}], priority=3)
        assert [job.created for job in jobs] == [True, False] and jobs[1].id == jobs[0].id
        info = jobs[0].info()
        assert (info.queue, info.max_attempts, info.priority, info.payload) == (
            "q1",
            1,
            3,
            '{"args":[],"kwargs":{"a":1}}',
        )
        later = client.enqueue_many("known", [{"a": 3}], delay=60)  # the registry is read now: no store read
        assert later[0].status() is JobState.SCHEDULED
        with pytest.raises(EnqueueError, match=r"enqueue_many call #1: .*delay cannot be negative"):
            client.enqueue_many("known", [{"a": 4}, {"a": 5, "delay": -1}])
        with pytest.raises(EnqueueError, match="takes an iterable of calls"):
            client.enqueue_many("known", {"a": 6})

        async def by_name() -> list:
            return await client.aenqueue_many("not.registered", [(7,), (8,)])

        assert [job.info().queue for job in client.sync(by_name)] == ["default", "default"]
        assert len(stored(app)) == 4
    finally:
        client.close()


def test_a_broker_client_refuses_enqueue_many() -> None:
    client = Client("amqp://guest:guest@127.0.0.1:5672/")
    try:
        with pytest.raises(EnqueueError, match="sends to a broker, one event per job"):
            client.enqueue_many("mail.send", [{"to": "a@example.com"}])
    finally:
        client.close()
