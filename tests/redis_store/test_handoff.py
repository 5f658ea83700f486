"""The Redis store's hand-off: a job enqueued for a parked worker is leased to it by the
enqueue itself (``ClaimRequest.park``, ``Store.job_handed``, ``Store.job_unpark``).

A worker and a client are two store instances on one server, as in two processes."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis

from backbeat.errors import StoreError
from backbeat.store import open_store
from backbeat.store.redis.store import RedisStore
from backbeat.testing.conformance import T0, claim, lease_of, new_job, outcome
from backbeat.types import ClaimRequest, JobRecord, JobState, Outcome
from tests.integration.conftest import eventually
from tests.redis_server import SERVER, blocked, fresh_url
from tests.redis_store.layout import check_layout

pytestmark = pytest.mark.asyncio


def parking(limit: int = 10, park: float = 1.0, **kw: Any) -> ClaimRequest:
    return dataclasses.replace(claim(limit, **kw), park=park)


@pytest.fixture
async def stores() -> AsyncIterator[tuple[RedisStore, RedisStore]]:
    with fresh_url() as url:
        worker, client = open_store(url), open_store(url)
        assert isinstance(worker, RedisStore) and isinstance(client, RedisStore)
        await worker.open()
        await client.open()
        try:
            yield worker, client
        finally:
            await worker.close()
            await client.close()
            check_layout(worker.keys.prefix)


async def test_a_parked_worker_is_handed_the_next_job_leased_to_it(stores: tuple[RedisStore, RedisStore]) -> None:
    worker, client = stores
    assert await worker.job_claim(parking(), now=T0) == []
    [done] = await client.job_enqueue([new_job()], now=T0 + 0.5)
    assert await worker.wakeup_wait(5) is True
    [job] = worker.job_handed("w1")
    assert job.id == done.job.id and job.state is JobState.RUNNING
    assert (job.attempts, job.worker_id, job.started_at, job.lease_expires_at) == (1, "w1", T0 + 0.5, T0 + 30.5)
    assert job.lease_token is not None and job.payload == done.job.payload
    assert await client.job_get(job.id) == job
    assert worker.job_handed("w1") == []  # once
    assert await worker.job_ack([outcome(job, Outcome.SUCCEEDED)], now=T0 + 1) == []
    assert (await client.job_get(job.id)).state is JobState.SUCCEEDED


async def test_a_handed_job_carries_every_field_it_was_written_with(stores: tuple[RedisStore, RedisStore]) -> None:
    worker, client = stores
    assert await worker.job_claim(parking(), now=T0) == []
    full = new_job(timeout=12.5, dedup_key="d:1", schedule_key="s:1", fire_at=T0 - 1, deadline=T0 + 60, order_at=T0 - 2)
    await client.job_enqueue([full], now=T0 + 0.5)
    assert await worker.wakeup_wait(5) is True
    [job] = worker.job_handed("w1")
    assert await client.job_get(job.id) == job
    assert (job.timeout, job.dedup_key, job.schedule_key, job.fire_at, job.deadline, job.order_at) == (
        12.5,
        "d:1",
        "s:1",
        T0 - 1,
        T0 + 60,
        T0 - 2,
    )


async def test_the_hand_off_is_single_use(stores: tuple[RedisStore, RedisStore]) -> None:
    worker, client = stores
    await worker.job_claim(parking(), now=T0)
    for _ in range(2):
        await client.job_enqueue([new_job()], now=T0)
    [first, second] = await _states(client)
    assert (first, second) == (JobState.RUNNING, JobState.QUEUED)


async def test_a_batch_is_not_handed_over(stores: tuple[RedisStore, RedisStore]) -> None:
    """In a batch a later job may come first in dispatch order (here by priority)."""
    worker, client = stores
    await worker.job_claim(parking(), now=T0)
    await client.job_enqueue([new_job(), new_job(priority=2)], now=T0)
    assert await _states(client) == [JobState.QUEUED, JobState.QUEUED]


async def test_a_claim_returns_a_handed_job_not_yet_received_once(stores: tuple[RedisStore, RedisStore]) -> None:
    worker, client = stores
    await worker.job_claim(parking(), now=T0)
    [handed] = await client.job_enqueue([new_job()], now=T0)
    [queued] = await client.job_enqueue([new_job()], now=T0)
    jobs = await worker.job_claim(parking(limit=2), now=T0 + 1)  # the handed one first, within the limit
    assert [j.id for j in jobs] == [handed.job.id, queued.job.id]
    await client.job_enqueue([new_job()], now=T0 + 1)  # not handed (not parked): a wake-up only
    assert await worker.wakeup_wait(5) is True
    assert worker.job_handed("w1") == []  # the claim delivered the handed job: the wait does not again


async def test_a_worker_holding_a_job_it_has_not_received_is_not_parked_again(
    stores: tuple[RedisStore, RedisStore],
) -> None:
    """A claim sent before a hand-off runs after it: the job handed over fills the room
    the claim asked for, so the claim neither takes more nor parks the worker again
    (which would hand a second job to a worker with no room for it)."""
    worker, client = stores
    await worker.job_claim(parking(limit=1), now=T0)
    [handed] = await client.job_enqueue([new_job()], now=T0)
    [queued] = await client.job_enqueue([new_job()], now=T0)
    assert [j.id for j in await worker.job_claim(parking(limit=1), now=T0)] == [handed.job.id]
    [later] = await client.job_enqueue([new_job()], now=T0)
    assert (await client.job_get(queued.job.id)).state is JobState.QUEUED
    assert (await client.job_get(later.job.id)).state is JobState.QUEUED


async def test_received_jobs_leave_the_inbox(stores: tuple[RedisStore, RedisStore]) -> None:
    """Each entry holds a copy of a job: once received, the next claim deletes it."""
    worker, client = stores
    for _ in range(3):
        await worker.job_claim(parking(), now=T0)
        await client.job_enqueue([new_job()], now=T0)
        assert await worker.wakeup_wait(5) is True and len(worker.job_handed("w1")) == 1
    await worker.job_claim(parking(), now=T0)
    with redis.Redis.from_url(SERVER, decode_responses=True) as c:
        assert c.xlen(worker.keys.inbox("w1")) == 0


async def test_no_hand_off_while_something_else_is_claimable(stores: tuple[RedisStore, RedisStore]) -> None:
    """Dispatch order holds: a job made claimable by anything but an enqueue (here a
    resumed queue) is claimed before a later one is handed over."""
    worker, client = stores
    await worker.job_claim(parking(), now=T0)
    await client.queue_pause("default", now=T0)
    [paused] = await client.job_enqueue([new_job()], now=T0)  # a paused queue hands nothing over
    await client.queue_resume("default")
    [later] = await client.job_enqueue([new_job()], now=T0)
    assert await _states(client) == [JobState.QUEUED, JobState.QUEUED]
    jobs = await worker.job_claim(parking(), now=T0)
    assert [j.id for j in jobs] == [paused.job.id, later.job.id]


@pytest.mark.parametrize(
    ("job", "request_", "at"),
    [
        pytest.param({"task": "t.unknown"}, {}, T0, id="a task the worker does not know"),
        pytest.param({"queue": "other"}, {}, T0, id="another queue"),
        pytest.param({"run_at": T0 + 5}, {}, T0, id="a delayed job"),
        pytest.param({}, {"park": 1.0}, T0 + 1.5, id="a parking that ran out"),
        pytest.param({}, {"park": 0.0}, T0, id="a claim that did not park"),
    ],
)
async def test_what_is_not_handed_over(
    stores: tuple[RedisStore, RedisStore], job: dict[str, Any], request_: dict[str, Any], at: float
) -> None:
    worker, client = stores
    await worker.job_claim(parking(**request_), now=T0)
    await client.job_enqueue([new_job(**job)], now=at)
    assert set(await _states(client)) <= {JobState.QUEUED, JobState.SCHEDULED}


async def test_a_claim_that_finds_its_limit_does_not_park(stores: tuple[RedisStore, RedisStore]) -> None:
    worker, client = stores
    await client.job_enqueue([new_job()], now=T0)
    assert len(await worker.job_claim(parking(limit=1), now=T0)) == 1
    await client.job_enqueue([new_job()], now=T0)
    assert sorted(await _states(client)) == sorted([JobState.RUNNING, JobState.QUEUED])


async def test_unparking_returns_what_was_not_received(stores: tuple[RedisStore, RedisStore]) -> None:
    worker, client = stores
    await worker.job_claim(parking(), now=T0)
    [handed] = await client.job_enqueue([new_job()], now=T0)
    assert [j.id for j in await worker.job_unpark("w1")] == [handed.job.id]
    assert await worker.job_unpark("w1") == []
    await client.job_enqueue([new_job()], now=T0)  # no longer parked
    assert sorted(await _states(client)) == sorted([JobState.RUNNING, JobState.QUEUED])
    # parked again, the same worker is handed only what is new
    assert len(await worker.job_claim(parking(), now=T0)) == 1  # the queued one; parks
    [again] = await client.job_enqueue([new_job()], now=T0)
    assert [j.id for j in await worker.job_claim(parking(), now=T0)] == [again.job.id]


async def test_a_worker_removed_leaves_no_parking_nor_inbox(stores: tuple[RedisStore, RedisStore]) -> None:
    worker, client = stores
    await worker.job_claim(parking(), now=T0)
    await client.job_enqueue([new_job()], now=T0)
    await worker.job_claim(parking(), now=T0)  # parked again, an entry in its inbox
    await worker.worker_unregister("w1")
    with redis.Redis.from_url(SERVER, decode_responses=True) as c:
        left = [k for k in c.scan_iter(match=worker.keys.pattern) if ":park" in k or ":inbox:" in k]
    assert left == []


async def _states(store: RedisStore) -> list[JobState]:
    """The states of every job, oldest first."""
    with redis.Redis.from_url(SERVER, decode_responses=True) as c:
        keys = list(c.scan_iter(match=f"{store.keys.tag}:job:*"))
    return [j.state for j in sorted([await store.job_get(k.rsplit(":", 1)[1]) for k in keys], key=lambda j: j.id)]


async def test_an_attempt_handed_over_and_never_received_does_not_count(
    stores: tuple[RedisStore, RedisStore],
) -> None:
    """The worker died parked: its job's lease expires, and the job, on its one and only
    attempt, goes back to the queue instead of dying without having run."""
    worker, client = stores
    await worker.job_claim(parking(), now=T0)
    [job] = await client.job_enqueue([new_job(max_attempts=1)], now=T0)
    [rescued] = await client.job_rescue(now=T0 + 31)
    assert (rescued.id, rescued.state, rescued.attempts) == (job.job.id, JobState.QUEUED, 0)
    assert [j.attempts for j in await client.job_claim(claim(worker="w2"), now=T0 + 31)] == [1]


async def test_an_attempt_handed_over_and_received_counts(stores: tuple[RedisStore, RedisStore]) -> None:
    worker, client = stores
    await worker.job_claim(parking(), now=T0)
    [job] = await client.job_enqueue([new_job(max_attempts=1)], now=T0)
    assert await worker.wakeup_wait(5) is True and len(worker.job_handed("w1")) == 1
    await worker.job_claim(parking(), now=T0)  # the next claim tells the server it was received
    [rescued] = await client.job_rescue(now=T0 + 31)
    assert (rescued.id, rescued.state, rescued.attempts) == (job.job.id, JobState.DEAD, 1)


async def test_a_heartbeat_shows_the_worker_has_its_handed_job(stores: tuple[RedisStore, RedisStore]) -> None:
    worker, client = stores
    await worker.job_claim(parking(), now=T0)
    await client.job_enqueue([new_job(max_attempts=1)], now=T0)
    assert await worker.wakeup_wait(5) is True
    [job] = worker.job_handed("w1")
    await worker.job_heartbeat("w1", [lease_of(job)], lease=30.0, now=T0 + 1)
    [rescued] = await client.job_rescue(now=T0 + 32)
    assert (rescued.state, rescued.attempts) == (JobState.DEAD, 1)


async def test_a_thread_receives_a_handed_job_once_if_it_accepts_it(stores: tuple[RedisStore, RedisStore]) -> None:
    """``job_handed_wait`` (the worker's catcher thread) beside the loop's calls: whichever
    takes an entry first has it, and a thread that declines leaves it for the next claim."""
    worker, client = stores
    assert worker.job_handed_to_thread("w1") is True
    await worker.job_claim(parking(), now=T0)
    [first] = await client.job_enqueue([new_job()], now=T0)
    offered: list[list[str]] = []

    def decline(jobs: list[JobRecord]) -> bool:
        offered.append([j.id for j in jobs])
        return False

    assert await asyncio.to_thread(worker.job_handed_wait, "w1", 5.0, decline) == []
    assert offered == [[first.job.id]]
    assert await worker.wakeup_wait(0.05) is False  # the loop's wait no longer watches the inbox
    assert [j.id for j in await worker.job_claim(parking(), now=T0 + 1)] == [first.job.id]  # left for it

    [second] = await client.job_enqueue([new_job()], now=T0 + 1)
    [job] = await asyncio.to_thread(worker.job_handed_wait, "w1", 5.0, lambda jobs: True)
    assert job.id == second.job.id and job.state is JobState.RUNNING and job.worker_id == "w1"
    assert job == await client.job_get(job.id)
    assert await worker.job_claim(parking(), now=T0 + 2) == []  # received: not again
    assert await asyncio.to_thread(worker.job_handed_wait, "w1", 0.05, lambda jobs: True) == []


async def test_a_thread_waiting_for_handed_jobs_is_released_by_close(stores: tuple[RedisStore, RedisStore]) -> None:
    """A stopping worker's catcher is not left blocked on the server."""
    worker, _ = stores
    worker.job_handed_to_thread("w1")
    await worker.job_claim(parking(), now=T0)
    failed: list[StoreError] = []

    def wait() -> None:
        try:
            worker.job_handed_wait("w1", 60.0, lambda jobs: True)
        except StoreError as exc:
            failed.append(exc)

    thread = threading.Thread(target=wait)
    thread.start()

    def waiting() -> bool:
        catcher = worker._catchers.get("w1")
        return catcher is not None and blocked(catcher)

    eventually(waiting, what="the catcher's XREAD")
    await worker.close()
    thread.join(10)
    assert not thread.is_alive() and failed
