"""Conformance: schedules (definitions, due, atomic fire, the end of a run, repair)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from backbeat.errors import ScheduleNotFound
from backbeat.store import open_store
from backbeat.store.base import Store
from backbeat.testing.conformance.helpers import T0, Base, claim, new_job, outcome
from backbeat.types import (
    Capability,
    Change,
    Fire,
    JobState,
    Misfire,
    Outcome,
    ScheduleFilter,
    ScheduleKind,
    ScheduleMode,
    ScheduleOrigin,
    ScheduleRecord,
    ScheduleSpec,
)


def spec(key: str = "s1", **changes: Any) -> ScheduleSpec:
    fields: dict[str, Any] = {
        "key": key,
        "task": "t.a",
        "queue": "default",
        "payload": '{"args":[],"kwargs":{"user_id":1}}',
        "kind": ScheduleKind.EVERY,
        "every": 20.0,
        "mode": ScheduleMode.DELAY,
        "max_attempts": 3,
    }
    fields.update(changes)
    return ScheduleSpec(**fields)


def fire_of(
    record: ScheduleRecord,
    fire_at: float,
    next_tick: float | None = None,
    next_at: float | None = None,
    pending: float = 0.0,
    now: float = T0,
) -> Fire:
    assert record.next_at is not None
    job = new_job(run_at=now, schedule_key=record.key, fire_at=fire_at, task=record.spec.task, queue=record.spec.queue)
    return Fire(
        key=record.key,
        expected_next_at=record.next_at,
        job=job,
        next_tick=next_tick,
        next_at=next_at,
        pending_jitter=pending,
    )


class ScheduleTests(Base):
    async def add(self, store: Store, s: ScheduleSpec, at: float = T0) -> ScheduleRecord:
        result = await store.schedule_upsert(s, next_tick=at, next_at=at, now=T0)
        return result.record

    async def fire_now(self, store: Store, record: ScheduleRecord, **kw: Any) -> str:
        """Fire the record's occurrence; the id of its job."""
        fire = fire_of(record, record.next_tick or T0, **kw)
        assert await store.schedule_fire([fire], now=kw.get("now", T0)) == [True]
        return fire.job.id

    # -- definitions -------------------------------------------------------------------

    async def test_upsert_adds_changes_and_leaves_alone(self, store: Store) -> None:
        added = await store.schedule_upsert(spec(), next_tick=T0 + 5, next_at=T0 + 6, now=T0)
        assert added.change is Change.ADDED
        record = added.record
        assert (record.next_tick, record.next_at, record.created_at, record.updated_at) == (T0 + 5, T0 + 6, T0, T0)
        assert record.spec == spec() and not record.paused and record.in_flight is None
        assert await store.schedule_get("s1") == record
        same = await store.schedule_upsert(spec(), next_tick=T0 + 50, next_at=T0 + 50, now=T0 + 1)
        assert same.change is Change.UNCHANGED and same.record == record
        await store.schedule_pause("s1", now=T0 + 2)
        changed = await store.schedule_upsert(spec(every=60.0), next_tick=T0 + 60, next_at=T0 + 61, now=T0 + 3)
        assert changed.change is Change.CHANGED
        assert changed.record.spec.every == 60.0 and changed.record.paused and changed.record.updated_at == T0 + 3
        assert (changed.record.next_tick, changed.record.next_at, changed.record.created_at) == (T0 + 60, T0 + 61, T0)
        assert await store.schedule_get("s1") == changed.record

    async def test_every_field_round_trips(self, store: Store) -> None:
        full = spec(
            "k\"'; --x",
            task="t.b",
            queue="low",
            kind=ScheduleKind.CRON,
            every=None,
            cron="30 6 * * 1",
            tz="Europe/Stockholm",
            mode=ScheduleMode.RATE,
            jitter=1.5,
            sla=30.0,
            misfire=Misfire.CATCH_UP,
            catch_up_limit=3,
            priority=-2,
            max_attempts=7,
            timeout=9.5,
            description="Reset ü",
            origin=ScheduleOrigin.FILE,
        )
        await store.schedule_upsert(full, next_tick=T0 + 0.25, next_at=T0 + 1.75, now=T0)
        assert (await store.schedule_get(full.key)).spec == full

    async def test_unknown_schedules(self, store: Store) -> None:
        for call in (store.schedule_get("x"), store.schedule_pause("x", now=T0), store.schedule_resume("x", now=T0)):
            with pytest.raises(ScheduleNotFound):
                await call
        assert await store.schedule_remove("x") is False

    async def test_list_pages_by_key_and_filters(self, store: Store) -> None:
        for key in ("c", "a", "e", "b", "d"):
            await self.add(
                store,
                spec(
                    key,
                    task="t.b" if key == "d" else "t.a",
                    origin=ScheduleOrigin.CODE if key in "ab" else ScheduleOrigin.RUNTIME,
                ),
            )
        page = await store.schedule_list(ScheduleFilter(limit=2))
        assert [r.key for r in page] == ["a", "b"]
        assert [r.key for r in await store.schedule_list(ScheduleFilter(after="b", limit=2))] == ["c", "d"]
        code = await store.schedule_list(ScheduleFilter(origin=ScheduleOrigin.CODE))
        assert [r.key for r in code] == ["a", "b"]
        assert [r.key for r in await store.schedule_list(ScheduleFilter(search="t.b"))] == ["d"]
        assert [r.key for r in await store.schedule_list(ScheduleFilter(search="e"))] == ["e"]

    async def test_search_takes_wildcards_and_case_literally(self, store: Store) -> None:
        for key in ("a_b", "axb", "50%", "500", "back\\slash", "Case"):
            await self.add(store, spec(key))
        cases: tuple[tuple[str, list[str]], ...] = (
            ("a_b", ["a_b"]),
            ("0%", ["50%"]),
            ("\\", ["back\\slash"]),
            ("case", []),
            ("C", ["Case"]),
        )
        for search, found in cases:
            assert [r.key for r in await store.schedule_list(ScheduleFilter(search=search))] == found, search
            assert [r.key for r in await store.schedule_worst(search=search, limit=10)] == found, search

    async def test_remove_and_pause_resume(self, store: Store) -> None:
        await self.add(store, spec("a"))
        await self.add(store, spec("b"), at=T0 + 1)
        paused = await store.schedule_pause("a", now=T0 + 3)
        assert paused.paused and paused.paused_at == T0 + 3
        assert (await store.schedule_pause("a", now=T0 + 9)).paused_at == T0 + 3
        assert [r.key for r in await store.schedule_due(now=T0 + 10, limit=10)] == ["b"]
        assert await store.schedule_next_due() == T0 + 1
        resumed = await store.schedule_resume("a", now=T0 + 4)
        assert not resumed.paused and resumed.paused_at is None
        assert [r.key for r in await store.schedule_due(now=T0 + 10, limit=10)] == ["a", "b"]
        assert await store.schedule_remove("a") is True
        assert [r.key for r in await store.schedule_list(ScheduleFilter())] == ["b"]

    # -- due and fire ------------------------------------------------------------------

    async def test_due_is_ordered_and_bounded(self, store: Store) -> None:
        for key, at in (("x", T0 + 3), ("y", T0 + 1), ("z", T0 + 1), ("later", T0 + 100)):
            await self.add(store, spec(key), at=at)
        assert [r.key for r in await store.schedule_due(now=T0 + 5, limit=10)] == ["y", "z", "x"]
        assert [r.key for r in await store.schedule_due(now=T0 + 5, limit=2)] == ["y", "z"]
        assert await store.schedule_due(now=T0, limit=10) == []
        assert await store.schedule_next_due() == T0 + 1

    async def test_fire_enqueues_the_job_and_marks_the_run(self, store: Store) -> None:
        record = await self.add(store, spec())
        fire = fire_of(record, T0, next_tick=None, next_at=None, pending=0.5)
        assert await store.schedule_fire([fire], now=T0) == [True]
        job = await store.job_get(fire.job.id)
        assert job.state is JobState.QUEUED and job.schedule_key == "s1" and job.fire_at == T0
        after = await store.schedule_get("s1")
        assert after.in_flight == job.id and after.last_job_id == job.id and after.last_fire_at == T0
        assert (after.next_tick, after.next_at, after.pending_jitter) == (None, None, 0.5)
        assert await store.schedule_due(now=T0 + 1000, limit=10) == []  # a run in flight: never overlaps
        assert await store.schedule_next_due() is None

    async def test_fire_happens_once_per_occurrence(self, store: Store) -> None:
        record = await self.add(store, spec(mode=ScheduleMode.RATE))
        first, second = fire_of(record, T0, T0 + 20, T0 + 20), fire_of(record, T0, T0 + 20, T0 + 20)
        assert await store.schedule_fire([first, second], now=T0) == [True, False]
        with pytest.raises(LookupError):
            await store.job_get(second.job.id)
        stale = fire_of(record, T0 + 20, T0 + 40, T0 + 40)  # planned from the old next_at
        job = await self.claim_one(store)
        await store.job_ack([outcome(job, Outcome.SUCCEEDED, result="null")], now=T0 + 1)
        assert await store.schedule_fire([stale], now=T0 + 21) == [False]

    async def test_a_fired_occurrence_is_never_fired_again(self, store: Store) -> None:
        record = await self.add(store, spec(mode=ScheduleMode.RATE))
        await self.fire_now(store, record, next_tick=T0 + 20, next_at=T0 + 20)
        job = await self.claim_one(store)
        await store.job_ack([outcome(job, Outcome.SUCCEEDED, result="null")], now=T0 + 1)
        # an edit that moves the schedule back to the same occurrence cannot fire it twice
        await store.schedule_upsert(spec(mode=ScheduleMode.RATE, every=21.0), next_tick=T0, next_at=T0, now=T0 + 2)
        again = fire_of(await store.schedule_get("s1"), T0, T0 + 21, T0 + 21)
        assert await store.schedule_fire([again], now=T0 + 3) == [False]

    async def test_paused_or_removed_schedules_do_not_fire(self, store: Store) -> None:
        a, b = await self.add(store, spec("a")), await self.add(store, spec("b"))
        await store.schedule_pause("a", now=T0)
        await store.schedule_remove("b")
        assert await store.schedule_fire([fire_of(a, T0), fire_of(b, T0)], now=T0) == [False, False]
        assert await store.job_claim(claim(10), now=T0) == []

    async def test_concurrent_schedulers_fire_each_occurrence_once(self, store: Store, store_url: str) -> None:
        keys = [f"k{i:03d}" for i in range(60)]
        for key in keys:
            await self.add(store, spec(key, mode=ScheduleMode.RATE))
        shared = Capability.MULTI_PROCESS in store.capabilities
        handles = [open_store(store_url) if shared else store for _ in range(3)]
        try:
            for h in handles:
                await h.open()

            async def scheduler(h: Store) -> int:
                due = await h.schedule_due(now=T0, limit=100)
                fires = [fire_of(r, T0, T0 + 20, T0 + 20) for r in due]
                return sum(await h.schedule_fire(fires, now=T0))

            fired = await asyncio.gather(*(scheduler(h) for h in handles))
        finally:
            if shared:
                for h in handles:
                    await h.close()
        assert sum(fired) == len(keys)
        jobs = await store.job_claim(claim(1000), now=T0)
        assert sorted(j.schedule_key or "" for j in jobs) == keys

    # -- the end of a run ----------------------------------------------------------------

    async def test_a_delay_schedule_re_arms_when_its_run_ends(self, store: Store) -> None:
        record = await self.add(store, spec(every=20.0))
        await self.fire_now(store, record, pending=0.5)
        job = await self.claim_one(store)
        await store.job_ack([outcome(job, Outcome.SUCCEEDED, result="null")], now=T0 + 7)
        after = await store.schedule_get("s1")
        assert after.in_flight is None and after.last_finished_at == T0 + 7
        assert after.last_state is JobState.SUCCEEDED and after.last_success_at == T0 + 7
        assert (after.next_tick, after.next_at) == (T0 + 27, T0 + 27.5)  # interval + run time (+ jitter)

    async def test_next_in_overrides_the_next_gap(self, store: Store) -> None:
        for key, mode in (("d", ScheduleMode.DELAY), ("r", ScheduleMode.RATE)):
            record = await self.add(store, spec(key, mode=mode))
            await self.fire_now(
                store, record, next_tick=None if key == "d" else T0 + 20, next_at=None if key == "d" else T0 + 20
            )
        for job in await store.job_claim(claim(2), now=T0):
            await store.job_ack([outcome(job, Outcome.SUCCEEDED, result="null", next_in=300.0)], now=T0 + 2)
        for key in ("d", "r"):
            after = await store.schedule_get(key)
            assert (after.next_tick, after.next_at) == (T0 + 302, T0 + 302)

    async def test_a_rate_schedule_keeps_its_cadence(self, store: Store) -> None:
        record = await self.add(store, spec(mode=ScheduleMode.RATE))
        await self.fire_now(store, record, next_tick=T0 + 20, next_at=T0 + 20.25)
        job = await self.claim_one(store)
        assert await store.schedule_due(now=T0 + 25, limit=10) == []  # in flight past its next tick
        await store.job_ack([outcome(job, Outcome.SUCCEEDED, result="null")], now=T0 + 30)
        after = await store.schedule_get("s1")
        assert (after.next_tick, after.next_at, after.in_flight) == (T0 + 20, T0 + 20.25, None)
        assert [r.key for r in await store.schedule_due(now=T0 + 30, limit=10)] == ["s1"]

    async def test_retries_stay_in_flight_and_death_ends_the_run(self, store: Store) -> None:
        record = await self.add(store, spec())
        job_id = await self.fire_now(store, record)
        job = await self.claim_one(store)
        await store.job_ack([outcome(job, Outcome.FAILED, error="E", retry_at=T0 + 1)], now=T0)
        assert (await store.schedule_get("s1")).in_flight == job_id
        again = await self.claim_one(store, now=T0 + 1)
        await store.job_ack([outcome(again, Outcome.FAILED, error="E")], now=T0 + 2)
        after = await store.schedule_get("s1")
        assert after.in_flight is None and after.last_state is JobState.DEAD and after.last_success_at is None
        assert after.next_tick == T0 + 22  # the chain goes on after a dead run

    async def test_rescue_and_cancel_end_runs_too(self, store: Store) -> None:
        a, b = await self.add(store, spec("a")), await self.add(store, spec("b"))
        await store.schedule_fire([fire_of(a, T0)], now=T0)
        job = await self.claim_one(store, lease=5)
        await store.job_ack([outcome(job, Outcome.FAILED, error="E", retry_at=T0)], now=T0)
        job = await self.claim_one(store, lease=5)
        await store.job_ack([outcome(job, Outcome.FAILED, error="E", retry_at=T0)], now=T0)
        await self.claim_one(store, lease=5)
        await store.job_rescue(now=T0 + 10)  # third attempt of three: dead
        assert (await store.schedule_get("a")).last_state is JobState.DEAD
        b_job = await self.fire_now(store, b)
        await store.job_cancel(b_job, now=T0 + 11)
        after = await store.schedule_get("b")
        assert after.in_flight is None and after.last_state is JobState.CANCELLED and after.next_tick == T0 + 31

    async def test_an_edit_during_a_delay_run_applies_at_its_end(self, store: Store) -> None:
        record = await self.add(store, spec(every=20.0))
        await self.fire_now(store, record)
        changed = await store.schedule_upsert(spec(every=60.0), next_tick=T0 + 60, next_at=T0 + 60, now=T0 + 1)
        assert (changed.record.next_tick, changed.record.next_at) == (None, None)
        job = await self.claim_one(store)
        await store.job_ack([outcome(job, Outcome.SUCCEEDED, result="null")], now=T0 + 5)
        assert (await store.schedule_get("s1")).next_tick == T0 + 65

    async def test_removing_a_schedule_lets_its_run_finish(self, store: Store) -> None:
        record = await self.add(store, spec())
        await self.fire_now(store, record)
        assert await store.schedule_remove("s1")
        job = await self.claim_one(store)
        assert await store.job_ack([outcome(job, Outcome.SUCCEEDED, result="null")], now=T0 + 1) == []
        with pytest.raises(ScheduleNotFound):
            await store.schedule_get("s1")

    async def test_repair_ends_runs_whose_job_is_gone(self, store: Store) -> None:
        record = await self.add(store, spec(queue="q"))
        await self.fire_now(store, record)
        assert await store.schedule_repair(now=T0 + 1) == []
        assert await store.queue_purge("q") == 1
        assert await store.schedule_repair(now=T0 + 2) == ["s1"]
        after = await store.schedule_get("s1")
        assert after.in_flight is None and after.last_finished_at == T0 + 2 and after.next_tick == T0 + 22
        assert await store.schedule_repair(now=T0 + 3) == []
