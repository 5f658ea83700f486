"""Conformance: what the autopilot reads and writes — effective intervals, demand and
backlog, the decisions of a window, published state."""

from __future__ import annotations

from backbeat.store.base import Store
from backbeat.testing.conformance.helpers import T0, Base, claim, new_job, outcome
from backbeat.testing.conformance.schedules import fire_of, spec
from backbeat.types import (
    Decision,
    DecisionKind,
    IntervalChange,
    Outcome,
    ScheduleFilter,
    ScheduleKind,
    ScheduleMode,
    StateValue,
)


class AutopilotTests(Base):
    async def test_an_interval_change_is_a_compare_and_set_that_moves_the_next_occurrence(self, store: Store) -> None:
        await store.schedule_upsert(spec(every=20.0, max_every=40.0), next_tick=T0 + 20, next_at=T0 + 21, now=T0)
        stretch = IntervalChange(key="s1", every=30.0, expected=None, reason="rate limit")
        assert await store.schedule_set_every([stretch], now=T0 + 1) == [True]
        record = await store.schedule_get("s1")
        assert (record.every_now, record.every_reason, record.updated_at) == (30.0, "rate limit", T0)
        assert (record.next_tick, record.next_at) == (T0 + 30, T0 + 31)
        assert record.spec.max_every == 40.0
        # a second autopilot that read the old value does not compound the change
        assert await store.schedule_set_every([stretch], now=T0 + 1) == [False]
        back = IntervalChange(key="s1", every=None, expected=30.0, reason="calm")
        missing = IntervalChange(key="nope", every=30.0, expected=None, reason="x")
        assert await store.schedule_set_every([back, missing], now=T0 + 2) == [True, False]
        record = await store.schedule_get("s1")
        assert (record.every_now, record.next_tick) == (None, T0 + 20)

    async def test_a_run_in_flight_re_arms_with_the_new_interval(self, store: Store) -> None:
        added = await store.schedule_upsert(spec(every=20.0), next_tick=T0, next_at=T0, now=T0)
        assert await store.schedule_fire([fire_of(added.record, T0)], now=T0) == [True]
        change = IntervalChange(key="s1", every=50.0, expected=None, reason="capacity")
        assert await store.schedule_set_every([change], now=T0 + 1) == [True]
        [job] = await store.job_claim(claim(1), now=T0 + 1)
        await store.job_ack([outcome(job, Outcome.SUCCEEDED, result="null")], now=T0 + 3)
        after = await store.schedule_get("s1")
        assert (after.next_tick, after.next_at) == (T0 + 53, T0 + 53)

    async def test_a_rate_schedule_fires_on_the_new_cadence_and_a_new_definition_resets_it(self, store: Store) -> None:
        await store.schedule_upsert(spec(mode=ScheduleMode.RATE), next_tick=T0 + 20, next_at=T0 + 20, now=T0)
        change = IntervalChange(key="s1", every=25.0, expected=None, reason="r")
        assert await store.schedule_set_every([change], now=T0) == [True]
        assert (await store.schedule_get("s1")).next_at == T0 + 25
        changed = await store.schedule_upsert(
            spec(mode=ScheduleMode.RATE, every=60.0), next_tick=T0 + 60, next_at=T0 + 60, now=T0 + 1
        )
        assert (changed.record.every_now, changed.record.every_reason) == (None, None)
        cron = spec("c", kind=ScheduleKind.CRON, every=None, cron="* * * * *")
        await store.schedule_upsert(cron, next_tick=T0 + 60, next_at=T0 + 60, now=T0)
        assert await store.schedule_set_every(
            [IntervalChange(key="c", every=9.0, expected=None, reason="")], now=T0
        ) == [False]

    async def test_listing_only_the_adaptive_schedules(self, store: Store) -> None:
        for key, top in (("a", 40.0), ("b", None), ("c", 30.0)):
            await store.schedule_upsert(spec(key, max_every=top), next_tick=T0, next_at=T0, now=T0)
        adaptive = await store.schedule_list(ScheduleFilter(adaptive=True, limit=10))
        assert [r.key for r in adaptive] == ["a", "c"]
        assert [r.key for r in await store.schedule_list(ScheduleFilter(adaptive=True, after="a", limit=1))] == ["c"]

    async def test_job_stats_and_backlog(self, store: Store) -> None:
        await store.job_enqueue([new_job(task="t.a"), new_job(task="t.a"), new_job(task="t.b")], now=T0)
        await store.job_enqueue([new_job(run_at=T0 + 5), new_job(run_at=T0 + 50, queue="other")], now=T0)
        backlog = await store.job_backlog(["default", "other"], now=T0 + 10)
        assert (backlog.count, backlog.oldest_due) == (4, T0)
        jobs = await store.job_claim(claim(3), now=T0 + 1)
        assert len(jobs) == 3
        acks = [outcome(j, Outcome.SUCCEEDED, result="null") for j in jobs if j.task == "t.a"]
        acks += [outcome(j, Outcome.FAILED, error="x", retry_at=None) for j in jobs if j.task == "t.b"]
        await store.job_ack(acks, now=T0 + 3)
        stats = {s.task: (s.finished, s.run_seconds) for s in await store.job_stats(T0)}
        assert stats["t.a"] == (2, 4.0)
        assert (await store.job_stats(T0 + 4)) == []
        backlog = await store.job_backlog(["default"], now=T0 + 10)
        assert (backlog.count, backlog.oldest_due) == (1, T0 + 5)
        assert (await store.job_backlog(["default"], now=T0 + 1)).count == 0
        assert (await store.job_backlog([], now=T0 + 100)).count == 0

    async def test_decisions_of_a_window_across_schedules(self, store: Store) -> None:
        def d(key: str, at: float, kind: DecisionKind) -> Decision:
            return Decision(key=key, at=at, kind=kind, detail=f"{key}@{at}")

        await store.decision_append(
            [
                d("a", T0, DecisionKind.RATE_LIMITED),
                d("b", T0 + 2, DecisionKind.RATE_LIMITED),
                d("a", T0 + 3, DecisionKind.SKIPPED),
                d("a", T0 + 4, DecisionKind.RATE_LIMITED),
            ]
        )
        found = await store.decision_since([DecisionKind.RATE_LIMITED], since=T0 + 1, limit=10)
        assert [(x.key, x.at) for x in found] == [("b", T0 + 2), ("a", T0 + 4)]
        assert len(await store.decision_since([DecisionKind.RATE_LIMITED], since=T0, limit=2)) == 2

    async def test_published_state(self, store: Store) -> None:
        assert await store.state_get("autopilot") is None
        await store.state_set("autopilot", '{"desired": 3}', now=T0)
        await store.state_set("autopilot", '{"desired": 4}', now=T0 + 1)
        assert await store.state_get("autopilot") == StateValue(value='{"desired": 4}', updated_at=T0 + 1)
