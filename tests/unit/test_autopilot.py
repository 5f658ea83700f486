"""The autopilot: the pure policy, the runtime loop against a store, and simulations."""

from __future__ import annotations

import asyncio

import pytest

from backbeat import App, ManualClock, RateLimited
from backbeat.autopilot import Intervals, Load, Scaler, ceiling, plan
from backbeat.config import AutopilotSettings
from backbeat.errors import ConfigError
from backbeat.runtime.autopilot import Autopilot
from backbeat.simulate import Group, Workers, simulate
from backbeat.testing import arun_for
from backbeat.types import (
    DecisionKind,
    ScheduleKind,
    ScheduleRecord,
    ScheduleSpec,
    TaskStats,
)

T0 = 1_800_000_000.0


def record(
    key: str = "k",
    *,
    every: float = 20.0,
    max_every: float | None = 40.0,
    sla: float | None = 30.0,
    run_time: float | None = 2.0,
    every_now: float | None = None,
) -> ScheduleRecord:
    spec = ScheduleSpec(
        key=key,
        task="t",
        queue="default",
        payload="{}",
        kind=ScheduleKind.EVERY,
        every=every,
        sla=sla,
        max_every=max_every,
    )
    return ScheduleRecord(
        spec=spec, created_at=T0, updated_at=T0, next_tick=T0, next_at=T0, run_time=run_time, every_now=every_now
    )


def load(run_seconds: float, backlog: int = 0, finished: int = 100, window: float = 10.0) -> Load:
    return Load(window=window, stats=[TaskStats(task="t", finished=finished, run_seconds=run_seconds)], backlog=backlog)


# -- capacity ----------------------------------------------------------------------------


def test_scaler_goes_up_at_once_and_down_only_after_agreement() -> None:
    scaler = Scaler(minimum=1, maximum=20, concurrency=2, smoothing=1.0, down_after=3)
    assert scaler.observe(load(run_seconds=60)).desired == 4  # 6 busy slots / 0.75 = 8 slots = 4 workers
    assert scaler.observe(load(run_seconds=150)).desired == 10
    for expected in (10, 10, 9, 9, 9, 8):  # one step down per 3 agreeing observations
        assert scaler.observe(load(run_seconds=15)).desired == expected
    assert scaler.observe(load(run_seconds=1000)).desired == 20  # held within the maximum
    capacity = scaler.observe(load(run_seconds=1000))
    assert capacity.wanted == 67 and "held within 1..20" in capacity.reason


def test_the_backlog_counts_as_demand() -> None:
    scaler = Scaler(minimum=1, maximum=50, concurrency=1, smoothing=1.0, horizon=10.0)
    idle = scaler.observe(load(run_seconds=0, finished=0, backlog=0))
    assert idle.desired == 1
    scaler.observe(load(run_seconds=10, finished=20))  # mean run 0.5 s
    busy = scaler.observe(load(run_seconds=10, finished=20, backlog=300))
    assert busy.slots_needed == pytest.approx(1 + 300 * 0.5 / 10)  # the backlog cleared in 10 s
    steady = scaler.observe(load(run_seconds=10, finished=20, backlog=3))
    assert steady.slots_needed == pytest.approx(1 / 0.75)  # a small backlog fits in the spare quarter


def test_bad_bounds() -> None:
    with pytest.raises(ConfigError, match="min workers <= max workers"):
        Scaler(minimum=3, maximum=2, concurrency=1)


# -- intervals ---------------------------------------------------------------------------


def test_the_ceiling_keeps_the_sla() -> None:
    assert ceiling(record(max_every=40.0, sla=30.0, run_time=2.0)) == 25.0  # 30 - 2 - 3 (10 %)
    assert ceiling(record(max_every=22.0, sla=30.0)) == 22.0
    assert ceiling(record(max_every=40.0, sla=None)) == 40.0
    assert ceiling(record(max_every=None)) is None
    assert ceiling(record(every=20.0, max_every=25.0, sla=22.0, run_time=5.0)) == 20.0  # never below the interval


def test_waits_stretch_their_schedules_only_and_calm_shrinks_them_back() -> None:
    policy = Intervals(calm_rounds=2, calm_runs=2)
    hit, quiet = record("hit"), record("quiet")
    [change] = policy.decide([hit, quiet], {"hit": 3}, shed=0.0, now=T0, window=5.0)
    assert (change.key, change.every, change.expected) == ("hit", 25.0, None)  # 20 * 1.5 = 30, capped at 25
    assert "waited 3 time(s)" in change.reason
    stretched = record("hit", every_now=25.0)
    for later in (5.0, 25.0, 45.0):  # calm, but not for two of its own (25 s) intervals yet
        assert policy.decide([stretched, quiet], {}, shed=0.0, now=T0 + later, window=5.0) == []
    [back] = policy.decide([stretched, quiet], {}, shed=0.0, now=T0 + 50.0, window=5.0)
    assert (back.key, back.every, back.expected) == ("hit", None, 25.0)  # 25 / 1.25 = 20: the definition
    assert "no rate-limit wait for 50 s" in back.reason


def test_capacity_shortfall_stretches_the_roomiest_first() -> None:
    policy = Intervals()
    tight = record("tight", every=20.0, max_every=22.0)
    roomy = record("roomy", every=10.0, max_every=25.0, run_time=2.0)
    changes = policy.decide([tight, roomy], {}, shed=0.01, now=T0, window=5.0)
    assert [(c.key, c.every) for c in changes] == [("roomy", 15.0)]
    assert "capacity" in changes[0].reason
    assert len(policy.decide([tight, roomy], {}, shed=5.0, now=T0, window=5.0)) == 2


# -- planning ----------------------------------------------------------------------------


def test_plan_the_talks_example() -> None:
    p = plan(schedules=10_000, sla=30, job_time=5, concurrency=10)
    assert p.every == 22.0  # 30 - 5 - 3
    assert p.demand == pytest.approx(10_000 * 5 / 27)
    assert p.workers == 247 and p.feasible
    assert 0.74 < p.utilisation <= 0.75


def test_plan_says_when_an_sla_cannot_be_kept() -> None:
    assert not plan(schedules=10, sla=30, job_time=5, every=40).feasible
    assert not plan(schedules=10, sla=30, job_time=5, limit=1, per=60).feasible
    limited = plan(schedules=10, sla=30, job_time=5, limit=1, per=20)
    assert limited.feasible and limited.every == 22.0
    slower = plan(schedules=10, sla=60, job_time=5, limit=1, per=55)
    assert slower.every == 50.0 and any("rate limit" in n for n in slower.notes)
    assert not plan(schedules=10, sla=3, job_time=5).feasible


# -- the loop on a store -----------------------------------------------------------------


class Upstream:
    """A fake API that answers 429 for some accounts while it is limited."""

    def __init__(self) -> None:
        self.limited: set[str] = set()
        self.calls: list[str] = []

    def get(self, account: str) -> None:
        self.calls.append(account)
        if account in self.limited:
            raise RateLimited(retry_after=1.0)


def test_a_429ing_upstream_stretches_its_schedules_within_the_sla_and_recovery_shrinks_them() -> None:
    clock = ManualClock(T0)
    app = App("memory://autopilot-429", clock=clock, autopilot=AutopilotSettings(period=2.0))
    upstream = Upstream()

    @app.task(name="poll")
    def poll(account: str) -> None:
        upstream.get(account)

    accounts = ["a", "b", "c", "d"]

    async def scenario() -> None:
        for account in accounts:
            await app.aevery(2, poll, key=f"poll:{account}", kwargs={"account": account}, sla=10, max_every=8)
        store = await app.client.astore()
        autopilot = Autopilot(app)

        async def rounds(n: int) -> dict[str, float | None]:
            for _ in range(n):
                await arun_for(app, 2.0)
                await autopilot.step(store)
            return {a: (await store.schedule_get(f"poll:{a}")).every_now for a in accounts}

        assert set((await rounds(3)).values()) == {None}
        upstream.limited = {"a", "b"}
        stretched = await rounds(6)
        assert stretched["a"] is not None and stretched["b"] is not None
        assert 2.0 < stretched["a"] <= 8.0  # ceiling: min(max_every 8, 10 - run time - 1)
        assert stretched["c"] is None and stretched["d"] is None
        decisions = await store.decision_list("poll:a")
        assert any(d.kind is DecisionKind.INTERVAL and "rate limit" in d.detail for d in decisions)
        upstream.limited = set()
        recovered = await rounds(60)
        assert set(recovered.values()) == {None}
        assert any(
            d.kind is DecisionKind.INTERVAL and "no rate-limit wait" in d.detail
            for d in await store.decision_list("poll:a")
        )

    app.client.sync(scenario)


# -- simulation --------------------------------------------------------------------------


def test_auto_workers_hold_the_sla_with_little_more_than_the_minimum_capacity() -> None:
    every = plan(schedules=40, sla=3, job_time=0.5, concurrency=1).every
    groups = [Group(count=40, every=every, sla=3, job_time=0.5)]
    result = asyncio.run(
        simulate(
            groups,
            workers=Workers(concurrency=1, maximum=40),
            duration=600,
            sample_every=1,
            warmup=120,
            autopilot=AutopilotSettings(period=2.0),
        )
    )
    after = result.after(120)
    compliance = sum(s.compliance or 0 for s in after) / len(after)
    minimum = 40 * 0.5 / (every + 0.5)  # busy slots at 100 % utilisation
    assert compliance >= 0.99
    assert max(s.slots for s in after) <= 1.5 * minimum


def test_plan_and_simulate_agree_on_the_workers_needed() -> None:
    p = plan(schedules=1000, sla=30, job_time=5, concurrency=10)
    groups = [Group(count=1000, every=p.every, sla=30, job_time=5)]
    result = asyncio.run(
        simulate(groups, workers=Workers(concurrency=10, maximum=100), duration=900, sample_every=10, warmup=300)
    )
    settled = result.after(600)
    workers = sum(s.workers for s in settled) / len(settled)
    assert abs(workers - p.workers) <= 0.1 * p.workers, (workers, p.workers)
