"""Schedules end to end in-process: the scheduler fires, the worker runs, runs end and
re-arm. Memory store (and SQLite where several schedulers share a file), manual clock."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from backbeat import App, JobState, ManualClock, Next, ScheduleError, current_job
from backbeat.errors import EnqueueError, ScheduleNotFound
from backbeat.ids import uuid7
from backbeat.runtime.scheduler import Scheduler
from backbeat.testing import run_for
from backbeat.types import Change, JobFilter, ScheduleOrigin

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def app(clock: ManualClock) -> Iterator[App]:
    app = App(f"memory://{uuid7()}", clock=clock)
    yield app
    app.close()


def ran_at(calls: list[float]) -> list[float]:
    return [round(t - START.timestamp(), 3) for t in calls]


def test_every_delay_mode_runs_now_then_interval_after_each_end(app: App, clock: ManualClock) -> None:
    calls: list[float] = []

    @app.task(name="poll")
    def poll(user_id: int) -> None:
        calls.append(clock.now())

    record = app.every(20, poll, key="poll:1", kwargs={"user_id": 1}, sla=30)
    assert record.key == "poll:1" and record.spec.sla == 30 and record.next_at == clock.now()
    run_for(app, 65)
    assert ran_at(calls) == [0, 20, 40, 60]
    info = app.schedules.get("poll:1")
    assert info.last_state is JobState.SUCCEEDED and info.last_success_at == START.timestamp() + 60


def test_every_rate_mode_keeps_its_cadence(app: App, clock: ManualClock) -> None:
    calls: list[float] = []

    @app.task(name="tick")
    def tick() -> None:
        calls.append(clock.now())

    app.every("10s", tick, mode="rate", first_in=5)
    run_for(app, 40)
    assert ran_at(calls) == [5, 15, 25, 35]


def test_a_task_can_set_its_next_interval(app: App, clock: ManualClock) -> None:
    calls: list[float] = []

    @app.task(name="adaptive")
    def adaptive() -> object:
        calls.append(clock.now())
        return Next(60, result="backing off") if len(calls) == 2 else "ok"

    app.every(10, adaptive)
    run_for(app, 100)
    assert ran_at(calls) == [0, 10, 70, 80, 90, 100]


def test_update_changes_the_gap_between_the_next_runs(app: App, clock: ManualClock) -> None:
    calls: list[float] = []

    @app.task(name="t")
    def t() -> None:
        calls.append(clock.now())

    app.every(10, t, key="k")
    run_for(app, 25)
    updated = app.schedules.update("k", every=30)
    assert updated.spec.every == 30 and updated.next_tick == START.timestamp() + 20 + 30
    run_for(app, 100)
    assert ran_at(calls) == [0, 10, 20, 50, 80, 110]


def test_pause_resume_remove(app: App, clock: ManualClock) -> None:
    calls: list[float] = []

    @app.task(name="t")
    def t() -> None:
        calls.append(clock.now())

    app.every(10, t, key="k")
    run_for(app, 5)
    assert app.schedules.pause("k").paused
    run_for(app, 100)
    assert ran_at(calls) == [0]
    app.schedules.resume("k")
    run_for(app, 15)  # the missed occurrence fires once on resume (misfire: skip)
    assert ran_at(calls) == [0, 105, 115]
    assert app.schedules.remove("k") is True
    run_for(app, 100)
    assert len(calls) == 3
    with pytest.raises(ScheduleNotFound):
        app.schedules.get("k")


def test_cron_fires_on_its_ticks_in_its_zone(app: App, clock: ManualClock) -> None:
    fired: list[str] = []
    berlin = ZoneInfo("Europe/Berlin")

    @app.task(name="CancelAbandonedOrders")
    def cancel_abandoned_orders() -> None:
        fire_at = current_job().fire_at
        assert fire_at is not None
        fired.append(datetime.fromtimestamp(fire_at, berlin).strftime("%H:%M %Z"))

    clock.set(datetime(2026, 3, 29, 0, 50, tzinfo=berlin))
    app.cron("*/30 * * * *", cancel_abandoned_orders, tz="Europe/Berlin")
    run_for(app, 2 * 3600)
    assert fired == ["01:00 CET", "01:30 CET", "03:00 CEST", "03:30 CEST"]  # 02:xx does not exist that night


def test_downtime_runs_once_then_back_on_cadence(app: App, clock: ManualClock) -> None:
    calls: list[float] = []

    @app.task(name="t")
    def t() -> None:
        calls.append(current_job().fire_at or 0)

    app.every(10, t, mode="rate")
    run_for(app, 1)
    clock.advance(3600)  # nothing ran for an hour
    run_for(app, 20)
    assert ran_at(calls) == [0, 3600, 3610, 3620]


def test_catch_up_runs_a_bounded_number_of_missed_occurrences(app: App, clock: ManualClock) -> None:
    calls: list[float] = []

    @app.task(name="t")
    def t() -> None:
        calls.append(current_job().fire_at or 0)

    app.every(10, t, mode="rate", misfire="catch_up", catch_up_limit=3)
    run_for(app, 1)
    clock.advance(3600)
    run_for(app, 0)
    assert ran_at(calls) == [0, 3580, 3590, 3600]


def test_declared_schedules_are_synced_by_the_scheduler_and_importing_writes_nothing(clock: ManualClock) -> None:
    url = f"memory://{uuid7()}"
    first = App(url, clock=clock)

    @first.periodic(cron="30 6 * * 1", tz="Europe/Stockholm", key="weekly-report")
    def weekly_report() -> None: ...

    @first.periodic(every="5m", key="heartbeat")
    def heartbeat() -> None: ...

    assert first.schedules.list() == []  # declaring wrote nothing
    first.client.sync(Scheduler(first).tick)  # a tick fires; only the scheduler's start syncs
    assert first.schedules.list() == []
    report = first.client.sync(first.schedules.async_declared)
    assert sorted(report.added) == ["heartbeat", "weekly-report"]
    assert {r.key: r.spec.origin for r in first.schedules.list()} == {
        "heartbeat": ScheduleOrigin.CODE,
        "weekly-report": ScheduleOrigin.CODE,
    }
    first.every(60, "heartbeat", key="runtime-one")  # run-time schedules are not the code's to remove
    second = App(url, clock=clock)

    @second.periodic(every="10m", key="heartbeat")
    def heartbeat2() -> None: ...

    report = second.client.sync(second.schedules.async_declared)
    assert report.changed == ["heartbeat"] and report.removed == ["weekly-report"]
    assert sorted(r.key for r in second.schedules.list()) == ["heartbeat", "runtime-one"]
    assert second.client.sync(second.schedules.async_declared).unchanged == ["heartbeat"]
    first.close()
    second.close()


def test_bad_schedules_are_refused_at_the_call(app: App) -> None:
    @app.task(name="t")
    def t(x: int) -> None: ...

    cases: list[tuple[Callable[[], object], str]] = [
        (lambda: app.every(0, t, kwargs={"x": 1}), "interval > 0"),
        (lambda: app.every("soon", t, kwargs={"x": 1}), "not a duration"),
        (lambda: app.cron("61 * * * *", t, kwargs={"x": 1}), "Bad minute"),
        (lambda: app.cron("* * * * *", t, kwargs={"x": 1}, tz="Nowhere/Land"), "unknown time zone"),
        (lambda: app.every(10, t, kwargs={"x": 1}, mode="sometimes"), "mode must be one of"),
        (lambda: app.every(10, t, kwargs={"x": 1, "y": 1}), "unexpected keyword argument"),
        (lambda: app.every(10, t, kwargs={"x": object()}), "not JSON-serialisable"),
        (lambda: app.every(10, t, kwargs={"x": 1}, misfire="catch_up", catch_up_limit=0), "catch_up_limit"),
        (lambda: app.periodic(every=5, cron="* * * * *"), "exactly one of"),
    ]
    for call, fragment in cases:
        with pytest.raises((ScheduleError, EnqueueError), match=fragment):
            call()
    assert app.schedules.list() == []


def test_upsert_by_key_reports_changes(app: App) -> None:
    @app.task(name="t")
    def t() -> None: ...

    assert app.schedules.put(app.schedules.get(app.every(10, t, key="k").key).spec).change is Change.UNCHANGED
    app.every(10, t, key="k", description="same timing, new words")
    assert app.schedules.get("k").spec.description == "same timing, new words"


def test_three_schedulers_fire_each_occurrence_once(tmp_path: Path, clock: ManualClock) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    apps = [App(url, clock=clock) for _ in range(3)]
    for a in apps:
        a.task(name="t")(lambda: None)
    apps[0].every(1, "t", key="fast", mode="rate")
    apps[0].cron("* * * * * *", "t", key="secondly")

    async def all_tick() -> None:
        schedulers = [Scheduler(a) for a in apps]
        for _ in range(300):
            await asyncio.gather(*(s.tick() for s in schedulers))
            store = await apps[0].client.astore()
            for job in await store.job_list(JobFilter(state=JobState.QUEUED, limit=1000)):
                await store.job_cancel(job.id, now=clock.now())  # end the run so the next can fire
            clock.advance(1)

    apps[0].client.sync(all_tick)
    jobs = apps[0].client.sync(_all_jobs, apps[0])
    fires = [(j.schedule_key, j.fire_at) for j in jobs]
    assert len(fires) == len(set(fires))
    assert {k for k, _ in fires} == {"fast", "secondly"} and len(fires) >= 550
    for a in apps:
        a.close()


async def _all_jobs(app: App) -> list:
    store = await app.client.astore()
    out: list = []
    before = None
    while page := await store.job_list(JobFilter(limit=1000, before=before)):
        out += page
        before = page[-1].id
    return out
