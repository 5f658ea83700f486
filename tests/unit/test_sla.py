"""SLAs: breaches start and end (hooks, log, store), `backbeat sla` data, explain, and
deadline dispatch against FIFO under overload (the real dispatch code, simulated time)."""

from __future__ import annotations

import asyncio
import logging
import statistics
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from backbeat import App, ManualClock
from backbeat.cli.sla import explain_data, sla_data
from backbeat.ids import uuid7
from backbeat.reports import worst_rows
from backbeat.simulate import Group, Workers, simulate
from backbeat.sla import SlaEvent, compliance
from backbeat.store import open_store
from backbeat.store.base import Store
from backbeat.testing import run_for
from backbeat.testing.conformance.schedules import spec
from backbeat.types import Breach, ScheduleKind, ScheduleRecord, ScheduleSpec

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC).timestamp()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def app(clock: ManualClock) -> Iterator[App]:
    app = App(f"memory://{uuid7()}", clock=clock)
    yield app
    app.close()


def test_compliance_is_the_share_of_the_window_within_sla() -> None:
    spec = ScheduleSpec(key="k", task="t", queue="q", payload="{}", kind=ScheduleKind.EVERY, every=10, sla=30)
    record = ScheduleRecord(
        spec=spec,
        created_at=START,
        updated_at=START,
        next_tick=None,
        next_at=None,
        last_success_at=START + 990,
        deadline_at=START + 1020,
    )
    breaches = [Breach(key="k", sla=30, base_at=START + 100, started_at=START + 130, ended_at=START + 230)]
    assert compliance(record, breaches, START + 1000, 1000) == pytest.approx(0.9)
    assert compliance(record, breaches, START + 1000, 500) == 1.0  # the breach is older than the window
    late = ScheduleRecord(
        spec=spec, created_at=START, updated_at=START, next_tick=None, next_at=None, deadline_at=START + 950
    )
    assert compliance(late, [], START + 1000, 1000) == pytest.approx(0.95)  # late, not yet checked


def test_a_failing_schedule_breaches_alerts_and_recovers(
    app: App, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    events: list[tuple[str, str, float]] = []
    upstream = {"down": True}

    @app.on_sla_breach
    def alert(event: SlaEvent) -> None:
        events.append((event.kind, event.key, clock.now() - START))

    @app.on_sla_breach
    async def broken_hook(event: SlaEvent) -> None:
        raise RuntimeError("the pager is down")

    @app.task(name="poll", retries=0)
    def poll() -> None:
        if upstream["down"]:
            raise RuntimeError("upstream down")

    app.every(10, poll, key="poll:1", sla=25)
    with caplog.at_level(logging.INFO, logger="backbeat.scheduler"):
        run_for(app, 60)
        assert events == [("started", "poll:1", 30)]  # deadline 25, seen at the next instant visited
        data = app.client.sync(sla_data, app.client, 3600, 50)
        assert data["summary"]["in_breach"] == 1 and data["schedules"][0]["status"] == "breach"
        upstream["down"] = False
        run_for(app, 30)
    assert events[-1] == ("ended", "poll:1", 70)
    [breach] = app.client.sync(_breaches, app)
    assert (breach.started_at - START, breach.ended_at and breach.ended_at - START) == (25, 70)
    assert breach.staleness(0) == 70  # the worst staleness: 70 s without a success
    assert "SLA breach started: schedule poll:1" in caplog.text and "SLA breach ended" in caplog.text
    assert "on_sla_breach hook" in caplog.text and "the pager is down" in caplog.text
    after = app.client.sync(sla_data, app.client, 3600, 50)
    assert after["summary"]["in_breach"] == 0
    assert after["schedules"][0]["compliance"] == pytest.approx(1 - 45 / 90)  # 45 s of its 90 s life late
    timeline = app.client.sync(explain_data, app.client, "poll:1", 200)["timeline"]
    kinds = [e["kind"] for e in timeline]
    assert "breach_started" in kinds and "breach_ended" in kinds and "dead" in kinds and "succeeded" in kinds


async def _breaches(app: App) -> list[Breach]:
    store = await app.client.astore()
    return await store.sla_breaches(key="poll:1", since=0)


def test_explain_says_why_a_run_did_not_happen(app: App, clock: ManualClock) -> None:
    @app.task(name="t")
    def t() -> None: ...

    app.every(10, t, key="k", mode="rate")
    run_for(app, 5)
    app.schedules.pause("k")
    run_for(app, 60)
    app.schedules.resume("k")
    app.schedules.update("k", every=30)
    run_for(app, 1)
    timeline = app.client.sync(explain_data, app.client, "k", 100)["timeline"]
    text = [(e["kind"], e["detail"]) for e in timeline]
    kinds = [k for k, _ in text]
    assert kinds.index("changed") < kinds.index("resumed") < kinds.index("paused")  # newest first
    assert any(k == "skipped" and "while the schedule was paused" in d for k, d in text)
    assert any(k == "changed" and "every 10.0 -> 30.0" in d for k, d in text)
    assert kinds.count("fired") == 2


def worst_over_mean(worst: dict[str, float]) -> float:
    return max(worst.values()) / statistics.mean(worst.values())


def test_deadline_dispatch_spreads_staleness_where_fifo_favours_fast_jobs() -> None:
    # overload: 40 schedules every 1 s, half with 0.2 s jobs and half with 2 s jobs, 10 slots
    groups = [
        Group(count=20, every=1, sla=4, job_time=0.2, name="fast"),
        Group(count=20, every=1, sla=4, job_time=2.0, name="slow"),
    ]

    async def both() -> tuple[dict[str, float], dict[str, float]]:
        edf = await simulate(groups, workers=Workers(count=10), duration=400, sample_every=0.5, warmup=100, seed=3)
        fifo = await simulate(
            groups,
            workers=Workers(count=10),
            duration=400,
            sample_every=0.5,
            warmup=100,
            seed=3,
            deadline_dispatch=False,
        )
        return edf.worst, fifo.worst

    edf, fifo = asyncio.run(both())
    assert worst_over_mean(edf) < 1.1  # every schedule equally stale at worst
    assert worst_over_mean(fifo) > 1.15  # the slow jobs' schedules fall behind
    slow_fifo = max(v for k, v in fifo.items() if k.startswith("slow"))
    fast_fifo = max(v for k, v in fifo.items() if k.startswith("fast"))
    assert slow_fifo > fast_fifo + 0.8


def test_deadline_dispatch_keeps_every_promise_fifo_breaks() -> None:
    # overload for FIFO: frequent schedules crowd out the infrequent ones with the same SLA
    groups = [
        Group(count=30, every=1, sla=6, job_time=0.5, name="often"),
        Group(count=10, every=5, sla=6, job_time=0.5, name="seldom"),
    ]

    async def both() -> tuple[dict[str, float], dict[str, float]]:
        edf = await simulate(groups, workers=Workers(count=5), duration=400, sample_every=0.5, warmup=100, seed=3)
        fifo = await simulate(
            groups,
            workers=Workers(count=5),
            duration=400,
            sample_every=0.5,
            warmup=100,
            seed=3,
            deadline_dispatch=False,
        )
        return edf.worst, fifo.worst

    edf, fifo = asyncio.run(both())
    assert max(edf.values()) <= 6  # nobody breaches
    assert worst_over_mean(edf) <= 2
    assert max(v for k, v in fifo.items() if k.startswith("seldom")) > 6  # FIFO breaches the seldom ones


class CountingStore:
    """A store whose method calls are counted (the calls the store makes on itself are not)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.store, name)

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            return method(*args, **kwargs)

        return counted


def test_a_page_of_schedules_reads_its_breaches_in_one_call(clock: ManualClock) -> None:
    async def main() -> None:
        store = open_store(f"memory://{uuid7()}")
        await store.open()
        for n in range(30):
            await store.schedule_upsert(spec(f"s{n:02}", sla=10.0), next_tick=START, next_at=START, now=START)
        await store.schedule_upsert(spec("plain"), next_tick=START, next_at=START, now=START)
        await store.sla_check(now=START + 11)
        counting = CountingStore(store)
        rows, _ = await worst_rows(counting, now=START + 12, limit=50)  # type: ignore[arg-type]
        assert len(rows) == 31 and all(r["sla_status"] == "breach" for r in rows[:30])
        assert rows[-1]["sla_report"] is None
        assert counting.calls["sla_breaches_of"] == 1 and counting.calls["sla_breaches"] == 0

    asyncio.run(main())
