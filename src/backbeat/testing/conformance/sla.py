"""Conformance: SLA accounting (deadlines, breaches), run times, the decision log."""

from __future__ import annotations

from backbeat.store.base import Store
from backbeat.testing.conformance.helpers import T0, Base, claim, new_job, outcome
from backbeat.testing.conformance.schedules import fire_of, spec
from backbeat.types import Decision, DecisionKind, JobFilter, JobState, Outcome, ScheduleRank, ScheduleRecord


class SlaTests(Base):
    async def with_sla(self, store: Store, key: str = "s1", sla: float = 30.0, every: float = 20.0) -> ScheduleRecord:
        result = await store.schedule_upsert(spec(key, sla=sla, every=every), next_tick=T0, next_at=T0, now=T0)
        return result.record

    async def run_once(
        self, store: Store, record: ScheduleRecord, *, start: float, end: float, kind: Outcome = Outcome.SUCCEEDED
    ) -> None:
        """Fire the schedule's current occurrence at ``start`` and end it at ``end``."""
        fire = fire_of(record, record.next_tick or start, now=start)
        assert await store.schedule_fire([fire], now=start) == [True]
        job = await self.claim_one(store, now=start)
        await store.job_ack([outcome(job, kind, result="null", error="E")], now=end)

    async def test_deadline_counts_from_creation_then_each_success(self, store: Store) -> None:
        record = await self.with_sla(store)
        assert record.deadline_at == T0 + 30 and record.breach_since is None
        plain = await store.schedule_upsert(spec("plain"), next_tick=T0, next_at=T0, now=T0)
        assert plain.record.deadline_at is None
        await self.run_once(store, record, start=T0 + 1, end=T0 + 5)
        after = await store.schedule_get("s1")
        assert after.last_success_at == T0 + 5 and after.deadline_at == T0 + 35
        assert await store.sla_breaches(key=None, since=T0, limit=10) == []

    async def test_check_opens_each_breach_once_and_success_ends_it(self, store: Store) -> None:
        record = await self.with_sla(store)
        await self.with_sla(store, "other", sla=1000)
        assert await store.sla_check(now=T0 + 30) == []  # not late yet
        [opened] = await store.sla_check(now=T0 + 31)
        assert (opened.key, opened.sla, opened.base_at, opened.started_at, opened.ended_at) == (
            "s1",
            30.0,
            T0,
            T0 + 30,
            None,
        )
        assert opened.staleness(T0 + 45) == 45
        assert await store.sla_check(now=T0 + 40) == []
        assert (await store.schedule_get("s1")).breach_since == T0 + 30
        await self.run_once(store, record, start=T0 + 41, end=T0 + 50)
        after = await store.schedule_get("s1")
        assert after.breach_since is None and after.deadline_at == T0 + 80
        [closed] = await store.sla_breaches(key="s1", since=T0, limit=10)
        assert (closed.started_at, closed.ended_at, closed.staleness(T0 + 999)) == (T0 + 30, T0 + 50, 50)
        assert await store.sla_ended() == [closed]
        assert await store.sla_ended() == []

    async def test_a_failed_run_does_not_end_a_breach(self, store: Store) -> None:
        record = await self.with_sla(store, every=5)
        await self.run_once(store, record, start=T0 + 1, end=T0 + 2, kind=Outcome.FAILED)  # no retries given
        await store.sla_check(now=T0 + 31)
        after = await store.schedule_get("s1")
        assert after.last_state is JobState.DEAD and after.breach_since == T0 + 30 and after.last_success_at is None

    async def test_a_late_success_nobody_checked_is_recorded(self, store: Store) -> None:
        record = await self.with_sla(store)
        await self.run_once(store, record, start=T0 + 100, end=T0 + 110)
        [missed] = await store.sla_breaches(key="s1", since=T0, limit=10)
        assert (missed.started_at, missed.ended_at, missed.base_at) == (T0 + 30, T0 + 110, T0)
        assert (await store.sla_ended())[0].ended_at == T0 + 110

    async def test_pause_suspends_the_sla_and_resume_restarts_it(self, store: Store) -> None:
        await self.with_sla(store)
        await store.sla_check(now=T0 + 40)
        paused = await store.schedule_pause("s1", now=T0 + 50)
        assert paused.breach_since is None
        [ended] = await store.sla_breaches(key="s1", since=T0, limit=10)
        assert ended.ended_at == T0 + 50
        assert await store.sla_check(now=T0 + 500) == []  # paused: no breach
        resumed = await store.schedule_resume("s1", now=T0 + 600)
        assert resumed.resumed_at == T0 + 600 and resumed.deadline_at == T0 + 630
        assert resumed.staleness_base == T0 + 600

    async def test_changing_the_sla_moves_the_deadline(self, store: Store) -> None:
        await self.with_sla(store)
        await store.sla_check(now=T0 + 40)
        changed = await store.schedule_upsert(spec(sla=100.0), next_tick=T0, next_at=T0, now=T0 + 45)
        assert changed.record.deadline_at == T0 + 100 and changed.record.breach_since is None
        [ended] = await store.sla_breaches(key="s1", since=T0, limit=10)
        assert ended.ended_at == T0 + 45
        dropped = await store.schedule_upsert(spec(sla=None), next_tick=T0, next_at=T0, now=T0 + 46)
        assert dropped.record.deadline_at is None

    async def test_sla_list_stats_and_breach_window(self, store: Store) -> None:
        for key, sla in (("a", 100.0), ("b", 10.0), ("c", 50.0), ("p", 5.0)):
            await self.with_sla(store, key, sla=sla)
        await store.schedule_upsert(spec("no-sla"), next_tick=T0, next_at=T0, now=T0)
        await store.schedule_pause("p", now=T0)
        assert [r.key for r in await store.sla_list(limit=10)] == ["b", "c", "a", "p"]
        assert [r.key for r in await store.sla_list(limit=2)] == ["b", "c"]
        await store.sla_check(now=T0 + 60)  # b (since T0+10) and c (since T0+50)
        stats = await store.sla_stats(now=T0 + 60, since=T0 + 20)
        assert (stats.schedules, stats.paused, stats.breached) == (4, 1, 2)
        assert stats.breach_seconds == 40 + 10  # b: [T0+20, T0+60]; c: [T0+50, T0+60]
        recent = await store.sla_breaches(key=None, since=T0, limit=10)
        assert [b.key for b in recent] == ["c", "b"]

    async def test_breaches_of_several_schedules_are_read_together(self, store: Store) -> None:
        records = {key: await self.with_sla(store, key, sla=10.0, every=5) for key in ("a", "b", "c")}
        await store.sla_check(now=T0 + 11)  # all three in breach
        await self.run_once(store, records["a"], start=T0 + 12, end=T0 + 13)  # a's ends at T0+13
        await store.sla_check(now=T0 + 30)  # a's second breach, since T0+23
        await self.run_once(store, records["b"], start=T0 + 31, end=T0 + 32)  # b's ends at T0+32
        keys = ["c", "a", "b", "none"]
        for since in (T0, T0 + 20):
            found = await store.sla_breaches_of(keys, since=since)
            assert list(found) == keys and found["none"] == []
            for key in keys:
                assert found[key] == await store.sla_breaches(key=key, since=since, limit=100), (key, since)
        assert [b.ended_at for b in (await store.sla_breaches_of(["a"], since=T0))["a"]] == [None, T0 + 13]
        assert (await store.sla_breaches_of(["a"], since=T0 + 20))["a"][0].started_at == T0 + 23
        assert await store.sla_breaches_of([], since=T0) == {}

    async def test_worst_first_pages_by_rank(self, store: Store) -> None:
        for key, sla in (("a", 100.0), ("b", 10.0), ("c", 50.0), ("d", 50.0), ("p", 5.0), ("q", 5.0)):
            await self.with_sla(store, key, sla=sla)
        for key in ("z-plain", "m-plain"):
            await store.schedule_upsert(spec(key, task="t.other"), next_tick=T0, next_at=T0, now=T0)
        await store.schedule_pause("p", now=T0)
        await store.schedule_pause("m-plain", now=T0)
        everything = ["q", "b", "c", "d", "a", "p", "m-plain", "z-plain"]
        assert [r.key for r in await store.schedule_worst(limit=20)] == everything
        assert [r.key for r in await store.schedule_worst(limit=1)] == ["q"]
        # keyset: each page starts after the rank of the last row of the one before
        seen: list[str] = []
        after: ScheduleRank | None = None
        while page := await store.schedule_worst(after=after, limit=3):
            seen += [r.key for r in page]
            after = ScheduleRank.of(page[-1])
        assert seen == everything
        # a cursor whose schedule is gone still finds its place (same deadline, later key)
        gone = ScheduleRank(group=0, deadline_at=T0 + 50, key="c0")
        assert [r.key for r in await store.schedule_worst(after=gone, limit=2)] == ["d", "a"]
        assert [r.key for r in await store.schedule_worst(search="plain", limit=20)] == ["m-plain", "z-plain"]
        assert [r.key for r in await store.schedule_worst(search="t.other", limit=1)] == ["m-plain"]
        page = await store.schedule_worst(search="plain", after=ScheduleRank(group=0, deadline_at=0, key=""), limit=5)
        assert [r.key for r in page] == ["m-plain", "z-plain"]

    async def test_run_time_is_a_moving_average(self, store: Store) -> None:
        record = await self.with_sla(store, every=1)
        await self.run_once(store, record, start=T0, end=T0 + 10)
        assert (await store.schedule_get("s1")).run_time == 10
        record = await store.schedule_get("s1")
        await self.run_once(store, record, start=T0 + 20, end=T0 + 25)
        assert (await store.schedule_get("s1")).run_time == 9  # 10 + 0.2 * (5 - 10)

    async def test_a_retried_deadline_job_keeps_its_place(self, store: Store) -> None:
        urgent, plain = new_job(deadline=T0 + 30, order_at=T0 + 25), new_job()
        await store.job_enqueue([urgent, plain], now=T0)
        assert (await store.job_get(urgent.id)).deadline == T0 + 30
        for job in await store.job_claim(claim(2), now=T0):
            await store.job_ack([outcome(job, Outcome.FAILED, error="E", retry_at=T0 + 5)], now=T0)
        assert (await store.job_get(urgent.id)).order_at == T0 + 25
        assert (await store.job_get(plain.id)).order_at == T0 + 5

    async def test_jobs_of_a_schedule_can_be_listed(self, store: Store) -> None:
        record = await self.with_sla(store)
        await self.run_once(store, record, start=T0, end=T0 + 1)
        await store.job_enqueue([new_job()], now=T0)
        jobs = await store.job_list(JobFilter(schedule_key="s1"))
        assert len(jobs) == 1 and jobs[0].schedule_key == "s1"

    async def test_decision_log_and_retention(self, store: Store) -> None:
        await store.decision_append(
            [
                Decision(key="a", at=T0 + 1, kind=DecisionKind.PAUSED, detail="by cli"),
                Decision(key="a", at=T0 + 3, kind=DecisionKind.RATE_LIMITED, detail="bucket twitter:x", job_id="j1"),
                Decision(key="b", at=T0 + 2, kind=DecisionKind.RESUMED),
                Decision(key="a", at=T0 + 2, kind=DecisionKind.SKIPPED, detail="2 occurrences"),
            ]
        )
        log = await store.decision_list("a")
        assert [(d.at, d.kind) for d in log] == [
            (T0 + 3, DecisionKind.RATE_LIMITED),
            (T0 + 2, DecisionKind.SKIPPED),
            (T0 + 1, DecisionKind.PAUSED),
        ]
        assert log[0] == Decision(
            key="a", at=T0 + 3, kind=DecisionKind.RATE_LIMITED, detail="bucket twitter:x", job_id="j1"
        )
        assert [d.at for d in await store.decision_list("a", before=T0 + 3, limit=1)] == [T0 + 2]
        await store.decision_append(
            [Decision(key="t", at=T0, kind=DecisionKind.PAUSED), Decision(key="t", at=T0, kind=DecisionKind.RESUMED)]
        )
        assert [d.kind for d in await store.decision_list("t")] == [DecisionKind.RESUMED, DecisionKind.PAUSED]
        record = await self.with_sla(store, "s")
        await self.run_once(store, record, start=T0 + 100, end=T0 + 110)  # a breach ending at T0+110
        assert await store.history_prune(before=T0 + 2.5) == 5
        assert [d.at for d in await store.decision_list("a")] == [T0 + 3]
        assert len(await store.sla_breaches(key="s", since=T0, limit=10)) == 1
        assert await store.history_prune(before=T0 + 200) == 2
        assert await store.sla_breaches(key="s", since=T0, limit=10) == []
