"""Names and keys holding SQL or Redis syntax, quotes, control characters or unicode are
plain data: stored and found again exactly, on the memory and SQLite stores. What is
refused by design (NUL bytes, lone surrogates, commas in queue names, over-long names) is
a clear error, and nothing is written. Size limits hold at enqueue and emit."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backbeat import App, Client, JobState
from backbeat.config import MAX_KEY, MAX_NAME
from backbeat.errors import BackbeatError, EventError, PayloadError
from backbeat.testing import ManualClock, run_until_idle
from backbeat.types import EventFilter, JobFilter, ScheduleFilter
from tests.unit.test_hostile_input import NASTY

NAMES = st.one_of(st.sampled_from(NASTY), st.text(min_size=1, max_size=40))
_seq = itertools.count()


@pytest.fixture(params=["memory", "sqlite"])
def url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if request.param == "memory":
        yield f"memory://hostile-{next(_seq)}"
    else:
        yield f"sqlite:///{tmp_path_factory.mktemp('hostile')}/s.db"


def refused_by_design(name: str) -> bool:
    """NUL bytes and lone surrogates: no store can keep them all (PostgreSQL text holds no NUL)."""
    try:
        name.encode()
    except UnicodeEncodeError:
        return True
    return "\x00" in name


def store_call(app: App, fn: Any) -> Any:
    async def call() -> Any:
        return await fn(await app.client.astore())

    return app.client.sync(call)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(name=NAMES.filter(lambda n: n.strip()))
def _round_trip(url: str, name: str) -> None:
    name = name[:MAX_NAME]
    app = App(url, clock=ManualClock(1_800_000_000.0))
    try:
        if refused_by_design(name):
            _refused(app, name)
        else:
            _stored_and_found(app, name)
    finally:
        app.close()


def _refused(app: App, name: str) -> None:
    with pytest.raises(BackbeatError) as caught:
        app.task(name=name)(lambda: None)
    assert "task name" in str(caught.value)

    @app.task(name="plain")
    def plain() -> None: ...

    jobs_before = store_call(app, lambda s: s.job_list(JobFilter(limit=10_000)))
    events_before = store_call(app, lambda s: s.event_list(EventFilter(limit=10_000)))
    for call in (
        lambda: plain.enqueue(queue=name),
        lambda: plain.enqueue(dedup_key=name),
        lambda: app.every(60, plain, key=name),
        lambda: app.emit("a.b", {}, key=name),
        lambda: app.emit("a.b", {}, id=name),
        lambda: Client(settings=app.settings).enqueue(name),
    ):
        with pytest.raises(BackbeatError) as caught:
            call()
        assert str(caught.value)
    assert store_call(app, lambda s: s.job_list(JobFilter(limit=10_000))) == jobs_before
    assert store_call(app, lambda s: s.event_list(EventFilter(limit=10_000))) == events_before
    assert all(r.key != name for r in app.schedules.list(limit=1000))


def _stored_and_found(app: App, name: str) -> None:
    n = next(_seq)
    ran: list[str] = []

    @app.task(name=name)
    def task(value: str) -> str:
        ran.append(value)
        return value

    queue = name if "," not in name else name.replace(",", ";")
    job = task.enqueue(value=name, queue=queue, dedup_key=name)
    assert task.enqueue(value="again", queue=queue, dedup_key=name).id == job.id  # the same live key
    info = job.info()
    assert (info.task, info.queue, info.dedup_key) == (name, queue, name)
    found = store_call(app, lambda s: s.job_list(JobFilter(task=name, queue=queue, limit=1000)))
    assert job.id in [j.id for j in found]
    app.configure(worker=app.settings.worker.__class__(queues=(queue,)))
    run_until_idle(app)
    assert job.status() is JobState.SUCCEEDED and job.result() == name and ran == [name]

    schedule = app.every(60, task, key=name, kwargs={"value": name}, description=name)
    assert app.schedules.get(name) == schedule and schedule.spec.description == name
    assert name in [r.key for r in app.schedules.list(search=name, limit=1000)]
    page = store_call(app, lambda s: s.schedule_list(ScheduleFilter(after=None, limit=1000)))
    assert name in [r.key for r in page]
    assert app.schedules.remove(name)

    event_id = f"{n}:{name}"[:200]
    assert app.emit("hostile.names", {name: name}, id=event_id, key=name) == event_id
    event = store_call(app, lambda s: s.event_get(event_id))
    assert (event.key, event.payload) == (name, f'{{"{_json(name)}":"{_json(name)}"}}')
    listed = store_call(app, lambda s: s.event_list(EventFilter(name="hostile.names", limit=1000)))
    assert event_id in [e.id for e in listed]


def _json(text: str) -> str:
    import json

    return json.dumps(text, ensure_ascii=False)[1:-1]


def test_hostile_names_are_plain_data(url: str) -> None:
    _round_trip(url)


def test_blank_task_names_and_schedule_keys_are_refused(url: str) -> None:
    app = App(url, clock=ManualClock(1.0))
    with pytest.raises(BackbeatError, match="task name must not be blank"):
        app.task(name=" \t")(lambda: None)

    @app.task(name="t")
    def t() -> None: ...

    with pytest.raises(BackbeatError, match="schedule key must not be blank"):
        app.every(60, t, key="  ")
    t.enqueue(queue=" ", dedup_key=" ")  # elsewhere blank is plain data
    app.close()


def test_event_names_are_words_only(url: str) -> None:
    app = App(url, clock=ManualClock(1.0))
    for bad in ("a.b\n", "a;DROP TABLE x", "a b", "*", "a.*", "\x00", "é"):
        with pytest.raises(EventError, match="event name must be dot-separated words"):
            app.emit(bad, {})
    assert store_call(app, lambda s: s.event_list(EventFilter())) == []
    app.close()


# -- limits ------------------------------------------------------------------------------


def test_names_and_keys_have_limits_with_clear_errors(url: str) -> None:
    app = App(url, clock=ManualClock(1.0), max_payload_bytes=1000)

    @app.task(name="t")
    def t(data: str) -> None: ...

    refusals: dict[str, Callable[[], object]] = {
        "queue name is 201 characters, over the limit of 200": lambda: t.enqueue(data="", queue="q" * 201),
        "dedup_key is 501 characters, over the limit of 500": lambda: t.enqueue(data="", dedup_key="k" * 501),
        "schedule key is 501 characters, over the limit of 500": lambda: app.every(
            60, t, key="k" * 501, kwargs={"data": ""}
        ),
        "key is 501 characters, over the limit of 500": lambda: app.emit("a.b", {}, key="k" * 501),
        r"payload is 1,\d\d\d bytes, over the limit of 1,000 bytes": lambda: t.enqueue(data="x" * 1000),
        r"payload is 1,\d\d\d bytes, over the limit of 1,000": lambda: app.emit("a.b", {"data": "x" * 1000}),
        "description is 10,001 characters": lambda: app.every(
            60, t, key="k", kwargs={"data": ""}, description="d" * 10_001
        ),
        "task name is 201 characters": lambda: app.task(name="n" * 201)(lambda: None),
        "queue name must be a non-empty string without commas": lambda: t.enqueue(data="", queue="a,b"),
        "without commas or NUL bytes": lambda: t.enqueue(data="", queue="a\x00b"),
        "dedup_key must not contain NUL bytes": lambda: t.enqueue(data="", dedup_key="a\x00b"),
    }
    for message, call in refusals.items():
        with pytest.raises(BackbeatError, match=message.replace("(", r"\(")):
            call()
    assert store_call(app, lambda s: s.job_list(JobFilter())) == []
    assert store_call(app, lambda s: s.event_list(EventFilter())) == []
    assert app.schedules.list() == []
    t.enqueue(data="", queue="q" * MAX_NAME, dedup_key="k" * MAX_KEY)  # at the limits: fine
    app.close()


def test_sealing_counts_against_the_payload_limit(tmp_path: Path) -> None:
    app = App("memory://sealed-limit", clock=ManualClock(1.0), max_payload_bytes=200, secret_key="s" * 32)

    @app.task(name="t", secret=("token",))
    def t(token: str) -> None: ...

    t.enqueue(token="x" * 50)
    with pytest.raises(PayloadError, match="over the limit of 200 bytes"):
        t.enqueue(token="x" * 120)  # fits as plain text, not once sealed
    app.close()
