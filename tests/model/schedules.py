"""Schedules, SLA and buckets on the store under test against the reference store
(``memory://``): the same random operations must give the same answers, double for double.
On Redis this checks that ``scripts/lib_schedules.lua`` computes what ``store/rules.py``
computes; on the SQL stores, that their queries around ``rules.py`` do (the end of a run,
re-arming, deadlines, breaches, interval changes), under fires planned by the real
scheduler code (``plan_fire``), with jitter, retries, rescues, cancels, purges and repairs.

Times are arbitrary floats. Allowed differences, normalised: lease tokens; a due
``scheduled`` job that a claim did not take may be promoted to ``queued`` by one store
and not the other; breaches that tie in the order asked for may come in another order.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field, replace
from typing import Any

from backbeat.schedules import plan_fire
from backbeat.testing.conformance.schedules import spec
from backbeat.types import (
    Breach,
    BucketRequest,
    ClaimRequest,
    Decision,
    DecisionKind,
    IntervalChange,
    JobFilter,
    JobOutcome,
    Lease,
    Outcome,
    ScheduleFilter,
    ScheduleKind,
    ScheduleMode,
    ScheduleSpec,
)
from tests.model.twins import T0, Twins

KEYS = ("a", "b", "c", "d")
QUEUE = "q"
GAPS = (0.25, 1.0, 3.5, 11.0, 2.3125)
"""Seconds the clock moves by, one at a time."""


def _breach_order(b: Breach) -> tuple[float, float, str]:
    return (b.ended_at or 0.0, b.started_at, b.key)


def _breaches(found: list[Breach]) -> list[Breach]:
    return sorted(found, key=_breach_order)


@dataclass
class ScheduleModel(Twins):
    fired: list[str] = field(default_factory=list)

    def spec(self, key: str) -> ScheduleSpec:
        r = self.rng
        kind = r.choice([ScheduleKind.EVERY, ScheduleKind.EVERY, ScheduleKind.CRON])
        return spec(
            key,
            queue=QUEUE,
            kind=kind,
            every=r.choice([5.0, 7.25, 20.0]) if kind is ScheduleKind.EVERY else None,
            cron="* * * * *" if kind is ScheduleKind.CRON else None,
            mode=r.choice([ScheduleMode.DELAY, ScheduleMode.RATE]),
            jitter=r.choice([0.0, 0.0, 1.5]),
            sla=r.choice([None, 10.0, 30.5]),
            max_attempts=r.choice([1, 2]),
        )

    # -- operations ----------------------------------------------------------------------

    async def upsert(self) -> None:
        key = self.rng.choice(KEYS)
        tick = self.now + self.rng.choice([0.0, 0.5, 3.0, 12.75])
        await self.same("schedule_upsert", self.spec(key), next_tick=tick, next_at=tick, now=self.now)

    async def fire(self) -> None:
        due = await self.same("schedule_due", now=self.now, limit=10)
        fires = [plan_fire(r, self.now, self.rng) for r in due]
        if fires and self.rng.random() < 0.3:
            fires.append(replace(fires[0], job=replace(fires[0].job, id=fires[0].job.id + "x")))  # a racing twin
        if fires and self.rng.random() < 0.2:
            fires.insert(0, replace(fires[0], expected_next_at=fires[0].expected_next_at - 1))  # planned on stale data
        done = await self.same("schedule_fire", fires, now=self.now)
        self.fired += [f.job.id for f, ok in zip(fires, done, strict=True) if ok]

    async def claim(self) -> None:
        request = ClaimRequest(
            worker_id="w", queues=(QUEUE,), tasks=frozenset({"t.a"}), limit=self.rng.randint(1, 3), lease=4.0
        )
        m, r = await self.both("job_claim", request, now=self.now)
        assert [self.norm(j) for j in m] == [self.norm(j) for j in r]
        for a, b in zip(m, r, strict=True):
            assert a.lease_token and b.lease_token
            self.held[a.id] = (Lease(job_id=a.id, token=a.lease_token), Lease(job_id=b.id, token=b.lease_token))

    async def ack(self) -> None:
        if not self.held:
            return
        job_id = self.rng.choice(sorted(self.held))
        pair = self.held.pop(job_id)
        kind = self.rng.choice([Outcome.SUCCEEDED, Outcome.SUCCEEDED, Outcome.FAILED, Outcome.SNOOZED])
        retry = self.rng.choice([None, self.now + 2.5]) if kind is Outcome.FAILED else self.now + 1.25
        next_in = self.rng.choice([None, None, 42.5])
        for store, lease in ((self.mem, pair[0]), (self.sut, pair[1])):
            o = JobOutcome(lease=lease, outcome=kind, result="null", error="E", retry_at=retry, next_in=next_in)
            assert await store.job_ack([o], now=self.now) == []

    async def cancel(self) -> None:
        if self.fired:
            m, r = await self.both("job_cancel", self.rng.choice(self.fired), now=self.now)
            assert self.norm_or_error(m) == self.norm_or_error(r)

    async def pause_or_resume(self) -> None:
        call = self.rng.choice(["schedule_pause", "schedule_resume"])
        await self.same(call, self.rng.choice(KEYS), now=self.now)

    async def set_every(self) -> None:
        key = self.rng.choice(KEYS)
        current = (await self.both("schedule_get", key))[0]
        expected = None if isinstance(current, type) else current.every_now
        if self.rng.random() < 0.2:
            expected = 99.0
        change = IntervalChange(key=key, every=self.rng.choice([None, 9.5, 31.0]), expected=expected, reason="r")
        await self.same("schedule_set_every", [change], now=self.now)

    async def remove(self) -> None:
        await self.same("schedule_remove", self.rng.choice(KEYS))

    async def purge_and_repair(self) -> None:
        if self.rng.random() < 0.5:
            await self.same("queue_purge", QUEUE)
        m, r = await self.both("schedule_repair", now=self.now)
        assert sorted(m) == sorted(r)

    async def sla(self) -> None:
        await self.same("sla_check", now=self.now)
        m, r = await self.both("sla_ended")
        assert _breaches(m) == _breaches(r)

    async def decisions(self) -> None:
        kinds = list(DecisionKind)
        entries = [
            Decision(key=self.rng.choice(KEYS), at=self.now, kind=self.rng.choice(kinds), detail="d", job_id=None)
            for _ in range(self.rng.randint(1, 3))
        ]
        await self.same("decision_append", entries)
        if self.rng.random() < 0.2:
            await self.same("history_prune", before=self.now - 20)

    async def buckets(self) -> None:
        requests = [
            BucketRequest(bucket=self.rng.choice(["x", "y"]), job_id=job_id, limit=2, per=7.5, concurrency=2)
            for job_id in self.rng.sample(sorted(self.held), min(2, len(self.held)))
        ]
        await self.same("bucket_acquire", requests, now=self.now)
        if self.rng.random() < 0.1:
            await self.same("bucket_block", "x", until=self.now + 3.5)

    async def compare_all(self) -> None:
        await self.same("schedule_list", ScheduleFilter(limit=100))
        await self.same("schedule_next_due")
        await self.same("sla_list", limit=100)
        m, r = await self.both("sla_breaches", key=None, since=0.0)
        assert _breaches(m) == _breaches(r)
        await self.same("sla_stats", now=self.now, since=T0)
        for key in KEYS:
            await self.same("decision_list", key)
        await self.same("decision_since", list(DecisionKind), since=0.0, limit=1000)
        for bucket in ("x", "y"):
            await self.same("bucket_state", bucket, now=self.now, per=7.5)
        m, r = await self.both("job_list", JobFilter(limit=10_000))
        assert [self.norm(j) for j in m] == [self.norm(j) for j in r]
        await self.same("job_stats", T0)
        await self.same("job_backlog", [QUEUE], now=self.now)

    def operations(self) -> list[Callable[[], Coroutine[Any, Any, None]]]:
        steps = [self.upsert] * 3 + [self.fire] * 4 + [self.claim] * 4 + [self.ack] * 4
        steps += [self.rescue, self.cancel, self.pause_or_resume, self.set_every, self.remove]
        return [*steps, self.purge_and_repair, self.sla, self.sla, self.decisions, self.buckets]
