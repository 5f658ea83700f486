"""Conformance: rate-limit buckets (sliding-window starts, blocks, concurrency)."""

from __future__ import annotations

from backbeat.store.base import Store
from backbeat.testing.conformance.helpers import T0, Base, claim, new_job, outcome
from backbeat.types import BucketRequest, Outcome


def req(
    job_id: str, bucket: str = "b", limit: int | None = 3, per: float | None = 10.0, concurrency: int | None = None
) -> BucketRequest:
    return BucketRequest(bucket=bucket, job_id=job_id, limit=limit, per=per, concurrency=concurrency)


class BucketTests(Base):
    async def test_at_most_limit_starts_in_any_window(self, store: Store) -> None:
        assert await store.bucket_acquire([req("j1"), req("j2")], now=T0) == [None, None]
        assert await store.bucket_acquire([req("j3"), req("j4")], now=T0 + 4) == [None, T0 + 10]
        assert await store.bucket_acquire([req("j5")], now=T0 + 9.9) == [T0 + 10]
        # at T0+10 the two starts of T0 leave the window: two more fit, the next waits for T0+4's
        assert await store.bucket_acquire([req("j6"), req("j7"), req("x")], now=T0 + 10) == [None, None, T0 + 14]
        assert await store.bucket_acquire([req("j8")], now=T0 + 14) == [None]  # T0+4 left the window
        state = await store.bucket_state("b", now=T0 + 14, per=10.0)
        assert state.starts == 3 and state.blocked_until is None

    async def test_buckets_are_independent(self, store: Store) -> None:
        full = [req(f"j{i}", bucket="x", limit=1) for i in range(2)]
        assert await store.bucket_acquire(full, now=T0) == [None, T0 + 10]
        assert await store.bucket_acquire([req("k", bucket="y", limit=1)], now=T0) == [None]

    async def test_a_block_holds_the_bucket_and_only_extends(self, store: Store) -> None:
        await store.bucket_block("b", until=T0 + 5)
        await store.bucket_block("b", until=T0 + 3)
        assert await store.bucket_acquire([req("j1")], now=T0 + 4) == [T0 + 5]
        await store.bucket_block("b", until=T0 + 8)
        assert await store.bucket_acquire([req("j1")], now=T0 + 6) == [T0 + 8]
        assert await store.bucket_acquire([req("j1")], now=T0 + 8) == [None]
        assert (await store.bucket_state("b", now=T0 + 8, per=10)).blocked_until == T0 + 8

    async def test_concurrency_counts_running_holders(self, store: Store) -> None:
        await store.job_enqueue([new_job(), new_job(), new_job()], now=T0)
        a, b, c = await store.job_claim(claim(3), now=T0)
        only = {"limit": None, "per": None, "concurrency": 2}
        grants = await store.bucket_acquire([req(j.id, **only) for j in (a, b, c)], now=T0)  # type: ignore[arg-type]
        assert grants == [None, None, T0 + 1]
        assert (await store.bucket_state("b", now=T0, per=None)).running == 2
        await store.job_ack([outcome(a, Outcome.SUCCEEDED, result="null")], now=T0 + 1)
        assert await store.bucket_acquire([req(c.id, **only)], now=T0 + 1) == [None]  # type: ignore[arg-type]
        await store.job_ack([outcome(b, Outcome.SNOOZED, retry_at=T0 + 1)], now=T0 + 1)
        again = await self.claim_one(store, now=T0 + 1)
        assert again.id == b.id  # reclaimed, not holding until it asks again
        assert (await store.bucket_state("b", now=T0 + 1, per=None)).running == 1

    async def test_a_dead_workers_job_does_not_leak_its_slot(self, store: Store) -> None:
        await store.job_enqueue([new_job()], now=T0)
        job = await self.claim_one(store, lease=5)
        only = {"limit": None, "per": None, "concurrency": 1}
        assert await store.bucket_acquire([req(job.id, **only)], now=T0) == [None]  # type: ignore[arg-type]
        await store.job_rescue(now=T0 + 10)
        assert await store.bucket_acquire([req("other", **only)], now=T0 + 10) == [None]  # type: ignore[arg-type]
