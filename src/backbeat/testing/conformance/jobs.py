"""Conformance: jobs (enqueue, claim, heartbeat, ack, rescue, cancel, retry, reading)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import pytest

from backbeat.errors import InvalidTransition, JobNotFound, StoreError
from backbeat.store import open_store
from backbeat.store.base import LEASE_EXPIRED, Store
from backbeat.testing.conformance.helpers import T0, TASKS, Base, claim, lease_of, new_job, outcome
from backbeat.types import Capability, JobFilter, JobOutcome, JobState, Lease, Outcome


class JobTests(Base):
    # -- enqueue -----------------------------------------------------------------------

    async def test_enqueue_due_now_is_queued_and_later_is_scheduled(self, store: Store) -> None:
        now_job, later_job = new_job(), new_job(run_at=T0 + 60)
        result = await store.job_enqueue([now_job, later_job], now=T0)
        assert [e.created for e in result] == [True, True]
        assert [e.job.state for e in result] == [JobState.QUEUED, JobState.SCHEDULED]
        assert (await store.job_get(later_job.id)).state is JobState.SCHEDULED

    async def test_enqueue_round_trips_every_field(self, store: Store) -> None:
        new = new_job(
            task="t.b",
            queue="q\"'; DROP TABLE x; --",
            payload='{"args":[1,"ü\\u0000"],"kwargs":{"k":null}}',
            priority=-5,
            run_at=T0 + 1.25,
            max_attempts=7,
            timeout=2.5,
            dedup_key="d\x00k",
            order_at=T0 - 3.5,
            schedule_key="s:1",
            fire_at=T0 + 1,
        )
        [enqueued] = await store.job_enqueue([new], now=T0)
        stored = await store.job_get(new.id)
        assert stored == enqueued.job
        for name in (
            "id",
            "task",
            "queue",
            "payload",
            "priority",
            "run_at",
            "max_attempts",
            "timeout",
            "dedup_key",
            "order_at",
            "schedule_key",
            "fire_at",
        ):
            assert getattr(stored, name) == getattr(new, name), name
        assert stored.attempts == 0 and stored.created_at == T0 and stored.lease_token is None

    async def test_order_at_defaults_to_run_at(self, store: Store) -> None:
        new = new_job(run_at=T0 + 5)
        await store.job_enqueue([new], now=T0)
        assert (await store.job_get(new.id)).order_at == T0 + 5

    async def test_repeated_id_is_refused_and_batch_is_atomic(self, store: Store) -> None:
        first = new_job()
        await store.job_enqueue([first], now=T0)
        fresh = new_job()
        with pytest.raises(StoreError):
            await store.job_enqueue([fresh, replace(first, task="t.b")], now=T0)
        with pytest.raises(JobNotFound):
            await store.job_get(fresh.id)
        assert (await store.job_get(first.id)).task == "t.a"

    async def test_dedup_returns_the_live_job(self, store: Store) -> None:
        a, b = new_job(dedup_key="k"), new_job(dedup_key="k")
        [ea] = await store.job_enqueue([a], now=T0)
        [eb] = await store.job_enqueue([b], now=T0)
        assert ea.created and not eb.created and eb.job.id == a.id
        with pytest.raises(JobNotFound):
            await store.job_get(b.id)

    async def test_dedup_within_one_batch(self, store: Store) -> None:
        a, b = new_job(dedup_key="k"), new_job(dedup_key="k")
        result = await store.job_enqueue([a, b], now=T0)
        assert [e.created for e in result] == [True, False]
        assert result[1].job.id == a.id

    async def test_dedup_key_is_free_again_once_the_job_finished(self, store: Store) -> None:
        a = new_job(dedup_key="k")
        await store.job_enqueue([a], now=T0)
        job = await self.claim_one(store)
        [while_running] = await store.job_enqueue([new_job(dedup_key="k")], now=T0)
        assert not while_running.created and while_running.job.id == a.id
        assert await store.job_ack([outcome(job, Outcome.SUCCEEDED, result="1")], now=T0) == []
        [again] = await store.job_enqueue([new_job(dedup_key="k")], now=T0)
        assert again.created and again.job.id != a.id

    # -- claim -------------------------------------------------------------------------

    async def test_claim_follows_dispatch_order(self, store: Store) -> None:
        low_early = new_job(priority=0, order_at=T0 - 10)
        high_late = new_job(priority=5, order_at=T0 - 1)
        high_early = new_job(priority=5, order_at=T0 - 2)
        low_late = new_job(priority=0, order_at=T0 - 5)
        tie_first, tie_second = new_job(order_at=T0 - 3), new_job(order_at=T0 - 3)
        await store.job_enqueue([low_early, high_late, high_early, low_late, tie_second, tie_first], now=T0)
        order: list[str] = []
        for _ in range(6):
            order.append((await self.claim_one(store)).id)
        assert order == [high_early.id, high_late.id, low_early.id, low_late.id, tie_first.id, tie_second.id]

    async def test_claim_batch_is_returned_in_dispatch_order(self, store: Store) -> None:
        jobs = [new_job(priority=p) for p in (1, 3, 2)]
        await store.job_enqueue(jobs, now=T0)
        claimed = await store.job_claim(claim(10), now=T0)
        assert [j.priority for j in claimed] == [3, 2, 1]

    async def test_claim_sets_lease_and_counts_the_attempt(self, store: Store) -> None:
        new = new_job()
        await store.job_enqueue([new], now=T0)
        job = await self.claim_one(store, now=T0 + 1, lease=12.0, worker="w9")
        assert job.state is JobState.RUNNING and job.attempts == 1 and job.worker_id == "w9"
        assert job.started_at == T0 + 1 and job.lease_expires_at == T0 + 13
        assert job.lease_token and await store.job_get(new.id) == job

    async def test_claim_respects_limit_queues_and_tasks(self, store: Store) -> None:
        await store.job_enqueue(
            [new_job(), new_job(), new_job(queue="other"), new_job(task="t.unknown"), new_job(task="t.b")], now=T0
        )
        assert len(await store.job_claim(claim(1), now=T0)) == 1
        rest = await store.job_claim(claim(10, tasks=frozenset({"t.a"})), now=T0)
        assert [(j.queue, j.task) for j in rest] == [("default", "t.a")]
        both = await store.job_claim(claim(10, queues=("default", "other")), now=T0)
        assert sorted((j.queue, j.task) for j in both) == [("default", "t.b"), ("other", "t.a")]
        assert await store.job_claim(claim(10, tasks=frozenset({"t.a", "t.b", "t.x"})), now=T0) == []
        counts = {(c.task, c.state): c.count for c in await store.job_counts()}
        assert counts[("t.unknown", JobState.QUEUED)] == 1

    async def test_a_queue_named_twice_still_fills_the_batch(self, store: Store) -> None:
        await store.job_enqueue([new_job(), new_job(), new_job()], now=T0)
        assert len(await store.job_claim(claim(2, queues=("default", "default")), now=T0)) == 2

    async def test_claim_across_queues_uses_one_dispatch_order(self, store: Store) -> None:
        a = new_job(queue="a", priority=1)
        b = new_job(queue="b", priority=9)
        await store.job_enqueue([a, b], now=T0)
        assert (await self.claim_one(store, queues=("a", "b"))).id == b.id

    async def test_scheduled_jobs_wait_until_due(self, store: Store) -> None:
        later = new_job(run_at=T0 + 30)
        await store.job_enqueue([later], now=T0)
        assert await store.job_claim(claim(), now=T0 + 29.9) == []
        assert (await self.claim_one(store, now=T0 + 30)).id == later.id

    async def test_due_scheduled_job_competes_by_order(self, store: Store) -> None:
        queued = new_job(run_at=T0, order_at=T0 + 100)
        delayed = new_job(run_at=T0 + 10)
        await store.job_enqueue([queued, delayed], now=T0)
        assert (await self.claim_one(store, now=T0 + 10)).id == delayed.id

    async def test_claim_mints_a_fresh_token_per_attempt(self, store: Store) -> None:
        await store.job_enqueue([new_job(), new_job()], now=T0)
        a, b = await store.job_claim(claim(2), now=T0)
        assert a.lease_token != b.lease_token
        await store.job_ack([outcome(a, Outcome.FAILED, error="E", retry_at=T0)], now=T0)
        again = await self.claim_one(store)
        assert again.id == a.id and again.attempts == 2 and again.lease_token != a.lease_token

    async def test_concurrent_claimers_never_share_a_job(self, store: Store, store_url: str) -> None:
        n = 200
        await store.job_enqueue([new_job() for _ in range(n)], now=T0)
        shared = Capability.MULTI_PROCESS in store.capabilities
        handles = [open_store(store_url) if shared else store for _ in range(4)]
        try:
            for h in handles:
                await h.open()

            async def drain(h: Store, worker: str) -> list[str]:
                got: list[str] = []
                while batch := await h.job_claim(claim(7, worker=worker), now=T0):
                    got += [j.id for j in batch]
                return got

            results = await asyncio.gather(*(drain(h, f"w{i}") for i, h in enumerate(handles)))
        finally:
            if shared:
                for h in handles:
                    await h.close()
        ids = [i for r in results for i in r]
        assert len(ids) == n and len(set(ids)) == n

    # -- heartbeat ---------------------------------------------------------------------

    async def test_heartbeat_extends_held_leases_and_reports_lost_ones(self, store: Store) -> None:
        await store.job_enqueue([new_job(), new_job()], now=T0)
        a, b = await store.job_claim(claim(2, lease=10), now=T0)
        stale = Lease(job_id=b.id, token="not-the-token")
        result = await store.job_heartbeat(
            "w1", [lease_of(a), stale, Lease(job_id="nope", token="x")], lease=10, now=T0 + 5
        )
        assert result.lost == {b.id, "nope"} and result.cancel_requested == frozenset()
        assert (await store.job_get(a.id)).lease_expires_at == T0 + 15
        assert (await store.job_get(b.id)).lease_expires_at == T0 + 10

    async def test_heartbeat_reports_cancel_requests(self, store: Store) -> None:
        await store.job_enqueue([new_job()], now=T0)
        job = await self.claim_one(store)
        cancelled = await store.job_cancel(job.id, now=T0 + 1)
        assert cancelled.state is JobState.RUNNING and cancelled.cancel_requested
        result = await store.job_heartbeat("w1", [lease_of(job)], lease=30, now=T0 + 2)
        assert result.cancel_requested == {job.id} and not result.lost

    # -- ack ---------------------------------------------------------------------------

    async def test_ack_succeeded_stores_result(self, store: Store) -> None:
        await store.job_enqueue([new_job()], now=T0)
        job = await self.claim_one(store)
        assert await store.job_ack([outcome(job, Outcome.SUCCEEDED, result='{"x":1}')], now=T0 + 2) == []
        done = await store.job_get(job.id)
        assert done.state is JobState.SUCCEEDED and done.result == '{"x":1}' and done.finished_at == T0 + 2
        assert done.lease_token is None and done.lease_expires_at is None

    async def test_ack_failed_with_retry_is_scheduled_and_keeps_the_error(self, store: Store) -> None:
        await store.job_enqueue([new_job()], now=T0)
        job = await self.claim_one(store)
        await store.job_ack([outcome(job, Outcome.FAILED, error="E: boom", traceback="tb", retry_at=T0 + 9)], now=T0)
        again = await store.job_get(job.id)
        assert again.state is JobState.SCHEDULED and again.run_at == T0 + 9 and again.error == "E: boom"
        assert again.traceback == "tb" and again.attempts == 1 and again.finished_at is None
        assert await store.job_claim(claim(), now=T0 + 8) == []
        assert (await self.claim_one(store, now=T0 + 9)).attempts == 2

    async def test_ack_failed_without_retry_is_dead(self, store: Store) -> None:
        await store.job_enqueue([new_job()], now=T0)
        job = await self.claim_one(store)
        await store.job_ack([outcome(job, Outcome.FAILED, error="E: last", traceback="tb")], now=T0 + 1)
        dead = await store.job_get(job.id)
        assert dead.state is JobState.DEAD and dead.error == "E: last" and dead.finished_at == T0 + 1

    async def test_ack_snoozed_gives_the_attempt_back(self, store: Store) -> None:
        await store.job_enqueue([new_job()], now=T0)
        job = await self.claim_one(store)
        await store.job_ack([outcome(job, Outcome.SNOOZED, retry_at=T0 + 5)], now=T0)
        snoozed = await store.job_get(job.id)
        assert snoozed.state is JobState.SCHEDULED and snoozed.run_at == T0 + 5 and snoozed.attempts == 0

    async def test_ack_released_requeues_without_counting(self, store: Store) -> None:
        await store.job_enqueue([new_job()], now=T0)
        job = await self.claim_one(store)
        await store.job_ack([outcome(job, Outcome.RELEASED)], now=T0)
        released = await store.job_get(job.id)
        assert released.state is JobState.QUEUED and released.attempts == 0 and released.lease_token is None
        assert (await self.claim_one(store)).id == job.id

    async def test_ack_cancelled(self, store: Store) -> None:
        await store.job_enqueue([new_job()], now=T0)
        job = await self.claim_one(store)
        await store.job_ack([outcome(job, Outcome.CANCELLED)], now=T0 + 1)
        assert (await store.job_get(job.id)).state is JobState.CANCELLED

    async def test_stale_token_is_refused_and_changes_nothing(self, store: Store) -> None:
        await store.job_enqueue([new_job(max_attempts=5)], now=T0)
        first = await self.claim_one(store, lease=5)
        rescued = await store.job_rescue(now=T0 + 6)
        assert [j.id for j in rescued] == [first.id]
        second = await self.claim_one(store, now=T0 + 6, worker="w2")
        late = [outcome(first, kind, result="1", retry_at=T0) for kind in Outcome]
        assert await store.job_ack(late, now=T0 + 7) == [first.id] * len(Outcome)
        assert await store.job_get(first.id) == second
        assert (await store.job_heartbeat("w1", [lease_of(first)], lease=5, now=T0 + 7)).lost == {first.id}
        assert await store.job_ack([outcome(second, Outcome.SUCCEEDED, result="2")], now=T0 + 8) == []
        assert (await store.job_get(first.id)).result == "2"

    async def test_double_ack_is_refused(self, store: Store) -> None:
        await store.job_enqueue([new_job()], now=T0)
        job = await self.claim_one(store)
        assert await store.job_ack([outcome(job, Outcome.SUCCEEDED, result="1")], now=T0) == []
        assert await store.job_ack([outcome(job, Outcome.FAILED, error="late")], now=T0) == [job.id]
        assert (await store.job_get(job.id)).state is JobState.SUCCEEDED

    async def test_batched_ack_applies_each_outcome(self, store: Store) -> None:
        await store.job_enqueue([new_job(), new_job(), new_job()], now=T0)
        a, b, c = await store.job_claim(claim(3), now=T0)
        refused = await store.job_ack(
            [
                outcome(a, Outcome.SUCCEEDED, result="1"),
                outcome(b, Outcome.FAILED, error="E"),
                JobOutcome(lease=Lease(job_id=c.id, token="stale"), outcome=Outcome.SUCCEEDED),
            ],
            now=T0,
        )
        assert refused == [c.id]
        states = [(await store.job_get(j.id)).state for j in (a, b, c)]
        assert states == [JobState.SUCCEEDED, JobState.DEAD, JobState.RUNNING]

    # -- rescue ------------------------------------------------------------------------

    async def test_rescue_requeues_expired_leases_only(self, store: Store) -> None:
        await store.job_enqueue([new_job(), new_job()], now=T0)
        a = await self.claim_one(store, lease=5)
        b = await self.claim_one(store, now=T0 + 3, lease=5)
        rescued = await store.job_rescue(now=T0 + 6)
        assert [j.id for j in rescued] == [a.id]
        again = await store.job_get(a.id)
        assert again.state is JobState.QUEUED and again.attempts == 1 and again.lease_token is None
        assert again.error == LEASE_EXPIRED
        assert (await store.job_get(b.id)).state is JobState.RUNNING

    async def test_rescue_kills_a_job_out_of_attempts(self, store: Store) -> None:
        await store.job_enqueue([new_job(max_attempts=1)], now=T0)
        job = await self.claim_one(store, lease=5)
        [rescued] = await store.job_rescue(now=T0 + 10)
        assert rescued.id == job.id and rescued.state is JobState.DEAD and rescued.finished_at == T0 + 10

    async def test_rescue_finishes_a_cancel_requested_job_as_cancelled(self, store: Store) -> None:
        await store.job_enqueue([new_job()], now=T0)
        job = await self.claim_one(store, lease=5)
        await store.job_cancel(job.id, now=T0 + 1)
        [rescued] = await store.job_rescue(now=T0 + 10)
        assert rescued.state is JobState.CANCELLED

    async def test_heartbeat_keeps_a_long_job_from_rescue(self, store: Store) -> None:
        await store.job_enqueue([new_job()], now=T0)
        job = await self.claim_one(store, lease=5)
        for t in range(4, 40, 4):
            await store.job_heartbeat("w1", [lease_of(job)], lease=5, now=T0 + t)
            assert await store.job_rescue(now=T0 + t + 1) == []

    # -- cancel, retry -----------------------------------------------------------------

    async def test_cancel_pending_and_finished_jobs(self, store: Store) -> None:
        queued, scheduled = new_job(), new_job(run_at=T0 + 100)
        await store.job_enqueue([queued, scheduled], now=T0)
        for new in (queued, scheduled):
            cancelled = await store.job_cancel(new.id, now=T0 + 1)
            assert cancelled.state is JobState.CANCELLED and cancelled.finished_at == T0 + 1
        assert await store.job_claim(claim(), now=T0 + 200) == []
        again = await store.job_cancel(queued.id, now=T0 + 2)
        assert again.finished_at == T0 + 1
        with pytest.raises(JobNotFound):
            await store.job_cancel("missing", now=T0)

    async def test_retry_dead_job(self, store: Store) -> None:
        await store.job_enqueue([new_job(max_attempts=1)], now=T0)
        job = await self.claim_one(store)
        with pytest.raises(InvalidTransition):
            await store.job_retry(job.id, now=T0)
        await store.job_ack([outcome(job, Outcome.FAILED, error="E")], now=T0)
        retried = await store.job_retry(job.id, now=T0 + 50)
        assert retried.state is JobState.QUEUED and retried.attempts == 0 and retried.finished_at is None
        assert (await self.claim_one(store, now=T0 + 50)).id == job.id
        with pytest.raises(JobNotFound):
            await store.job_retry("missing", now=T0)

    async def test_retry_refuses_to_break_dedup(self, store: Store) -> None:
        first = new_job(dedup_key="k")
        await store.job_enqueue([first], now=T0)
        await store.job_cancel(first.id, now=T0)
        await store.job_enqueue([new_job(dedup_key="k")], now=T0)
        with pytest.raises(InvalidTransition):
            await store.job_retry(first.id, now=T0)

    # -- reading -----------------------------------------------------------------------

    async def test_get_unknown_job(self, store: Store) -> None:
        with pytest.raises(JobNotFound):
            await store.job_get("no-such-job")

    async def test_list_filters_and_pages_newest_first(self, store: Store) -> None:
        jobs = [new_job(queue="a" if i % 2 else "b", task="t.a" if i < 4 else "t.b") for i in range(8)]
        await store.job_enqueue(jobs, now=T0)
        ids = [j.id for j in jobs]
        page1 = await store.job_list(JobFilter(limit=3))
        page2 = await store.job_list(JobFilter(limit=3, before=page1[-1].id))
        page3 = await store.job_list(JobFilter(limit=3, before=page2[-1].id))
        assert [j.id for j in page1 + page2 + page3] == ids[::-1]
        assert [j.id for j in await store.job_list(JobFilter(queue="a", task="t.b"))] == [ids[7], ids[5]]
        assert await store.job_list(JobFilter(state=JobState.RUNNING)) == []

    async def test_next_due_counts_and_throughput(self, store: Store) -> None:
        await store.job_enqueue(
            [new_job(run_at=T0 + 30), new_job(run_at=T0 + 20, queue="x"), new_job(), new_job(task="t.b")], now=T0
        )
        assert await store.job_next_due(["default"]) == T0 + 30
        assert await store.job_next_due(["default", "x"]) == T0 + 20
        assert await store.job_next_due(["nothing"]) is None
        job = await self.claim_one(store, tasks=frozenset({"t.a"}))
        await store.job_ack([outcome(job, Outcome.SUCCEEDED, result="null")], now=T0 + 1)
        counts = {(c.queue, c.task, c.state): c.count for c in await store.job_counts()}
        assert counts == {
            ("default", "t.a", JobState.SCHEDULED): 1,
            ("default", "t.a", JobState.SUCCEEDED): 1,
            ("default", "t.b", JobState.QUEUED): 1,
            ("x", "t.a", JobState.SCHEDULED): 1,
        }
        assert await store.job_finished_since(T0 + 1) == {JobState.SUCCEEDED: 1}
        assert await store.job_finished_since(T0 + 2) == {}

    async def test_a_job_finished_again_at_the_same_time_counts_once(self, store: Store) -> None:
        """Cancelled, retried and cancelled again without the clock moving: one job, one count."""
        (job,) = [e.job for e in await store.job_enqueue([new_job()], now=T0)]
        for _ in range(2):
            await store.job_cancel(job.id, now=T0)
            await store.job_retry(job.id, now=T0)
        await store.job_cancel(job.id, now=T0)
        assert await store.job_finished_since(T0) == {JobState.CANCELLED: 1}
        assert [(c.state, c.count) for c in await store.job_counts()] == [(JobState.CANCELLED, 1)]

    async def test_next_due_skips_paused_queues(self, store: Store) -> None:
        await store.job_enqueue([new_job(run_at=T0 + 10), new_job(queue="x", run_at=T0 + 20)], now=T0)
        await store.queue_pause("default", now=T0)
        assert await store.job_next_due(["default", "x"]) == T0 + 20
        assert await store.job_next_due(["default"]) is None
        await store.queue_resume("default")
        assert await store.job_next_due(["default", "x"]) == T0 + 10

    async def test_prune_deletes_old_finished_jobs_only(self, store: Store) -> None:
        await store.job_enqueue([new_job(max_attempts=1) for _ in range(3)] + [new_job()], now=T0)
        a, b, c = await store.job_claim(claim(3, tasks=TASKS), now=T0)
        await store.job_ack([outcome(a, Outcome.SUCCEEDED, result="1")], now=T0 + 10)
        await store.job_ack([outcome(b, Outcome.SUCCEEDED, result="1")], now=T0 + 100)
        await store.job_ack([outcome(c, Outcome.FAILED, error="E")], now=T0 + 10)
        deleted = await store.job_prune({JobState.SUCCEEDED: T0 + 50, JobState.DEAD: T0}, limit=100)
        assert deleted == 1
        with pytest.raises(JobNotFound):
            await store.job_get(a.id)
        assert (await store.job_get(b.id)).state is JobState.SUCCEEDED
        assert (await store.job_get(c.id)).state is JobState.DEAD
        assert len(await store.job_list(JobFilter(state=JobState.RUNNING))) == 0
        assert len(await store.job_list(JobFilter(state=JobState.QUEUED))) == 1

    # -- persistence -------------------------------------------------------------------

    async def test_another_handle_sees_committed_state(self, store: Store, other: Store) -> None:
        if Capability.MULTI_PROCESS not in store.capabilities:
            pytest.skip("store is not shared between processes")
        await store.job_enqueue([new_job()], now=T0)
        job = await self.claim_one(other)
        assert (await store.job_get(job.id)).state is JobState.RUNNING

    async def test_data_survives_reopening(self, store: Store, store_url: str) -> None:
        if Capability.PERSISTENT not in store.capabilities:
            pytest.skip("store keeps nothing after close")
        new = new_job()
        await store.job_enqueue([new], now=T0)
        await store.close()
        reopened = open_store(store_url)
        await reopened.open()
        try:
            assert (await reopened.job_get(new.id)).state is JobState.QUEUED
        finally:
            await reopened.close()

    async def test_server_time_is_none_or_the_servers_clock(self, store: Store) -> None:
        server = await store.server_time()
        assert server is None or abs(server - time.time()) < 300  # a server on this machine
