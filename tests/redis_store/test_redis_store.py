"""What the Redis store does beyond the conformance suite: the durability check at start-up,
wake-ups, cancellation, and keys that share one Cluster slot."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
import redis
from redis.crc import key_slot
from redis.exceptions import ResponseError

from backbeat.errors import StoreError
from backbeat.schedules import plan_fire
from backbeat.store import open_store
from backbeat.store.base import Store
from backbeat.store.redis import connection
from backbeat.store.redis.connection import translated
from backbeat.store.redis.server import check_durability
from backbeat.store.redis.store import RedisStore
from backbeat.testing.conformance import T0, claim, new_job, outcome
from backbeat.testing.conformance.schedules import spec
from backbeat.types import JobState, Outcome, ScheduleMode, ScheduleRecord
from tests.redis_server import SERVER, fresh_url

pytestmark = pytest.mark.asyncio


@pytest.fixture
async def store() -> AsyncIterator[Store]:
    with fresh_url() as url:
        s = open_store(url)
        await s.open()
        try:
            yield s
        finally:
            await s.close()


async def test_an_unreachable_server_is_a_store_error_naming_it() -> None:
    s = open_store("redis://127.0.0.1:1/0")  # nothing listens on port 1
    with pytest.raises(StoreError, match=r"127\.0\.0\.1:1\b"):
        await s.open()
    await s.close()


# -- durability ------------------------------------------------------------------------


async def test_a_server_that_can_lose_data_gets_one_warning_line(caplog: pytest.LogCaptureFixture) -> None:
    with redis.Redis.from_url(SERVER, decode_responses=True) as client:
        settings = client.config_get("appendonly", "maxmemory-policy")
    if settings == {"appendonly": "yes", "maxmemory-policy": "noeviction"}:
        pytest.fail("this test expects the CI server (appendonly no): run it against scripts/services.sh's Redis")
    caplog.set_level(logging.INFO, logger="backbeat.store.redis")
    with fresh_url() as url:
        for _ in range(2):  # two stores on one loop, as a worker and its client share one: one line
            s = open_store(url)
            await s.open()
            await s.close()
    lines = [r for r in caplog.records if r.name == "backbeat.store.redis"]
    assert len(lines) == 1 and lines[0].levelno == logging.WARNING
    assert "appendonly is no" in lines[0].getMessage() and "Redis durability" in lines[0].getMessage()


class _NoConfig:
    """A managed server that disabled CONFIG: only INFO answers."""

    async def config_get(self, *patterns: str) -> dict[str, str]:
        raise ResponseError("unknown command 'CONFIG'")

    async def info(self, section: str) -> dict[str, Any]:
        sections: dict[str, dict[str, Any]] = {
            "memory": {"maxmemory_policy": "allkeys-lru"},
            "persistence": {"aof_enabled": 1},
        }
        return sections[section]


async def test_without_config_the_check_reads_info(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="backbeat.store.redis")
    await check_durability(_NoConfig(), "managed:6379 (test)")  # type: ignore[arg-type]
    [line] = [r.getMessage() for r in caplog.records if r.name == "backbeat.store.redis"]
    assert "allkeys-lru" in line and "appendonly" not in line


# -- wake-ups --------------------------------------------------------------------------


async def test_a_write_between_a_claim_and_the_wait_is_not_missed(store: Store) -> None:
    assert await store.job_claim(claim(), now=T0) == []  # the worker saw nothing...
    await store.job_enqueue([new_job()], now=T0)  # ...then a write lands before it waits
    assert await store.wakeup_wait(30) is True
    assert len(await store.job_claim(claim(), now=T0)) == 1
    assert await store.wakeup_wait(0.05) is False  # the claim accounted for that write


async def test_waits_outlast_a_socket_timeout_set_in_the_url() -> None:
    with fresh_url(socket_timeout="0.1") as url:
        s = open_store(url)
        await s.open()
        try:
            assert await s.wakeup_wait(0.4) is False  # no TimeoutError after 0.1 s
            await s.job_enqueue([new_job()], now=T0)  # ordinary calls still work under it
        finally:
            await s.close()


# -- cancellation ----------------------------------------------------------------------


async def test_a_swallowed_cancellation_is_raised_again() -> None:
    async def call_that_swallows_its_cancellation() -> str:
        with translated():
            asyncio.current_task().cancel()  # type: ignore[union-attr]
            with contextlib.suppress(asyncio.CancelledError):  # as 3.11's wait_for may, when done just then
                await asyncio.sleep(0)
        return "returned"

    with pytest.raises(asyncio.CancelledError):
        await asyncio.create_task(call_that_swallows_its_cancellation())


async def test_cancelling_calls_on_new_connections_always_cancels() -> None:
    """A task cancelled while its call opens a connection ends cancelled (redis-py's
    handshake uses wait_for under a socket timeout, which loses cancellations on 3.11)."""
    rng = random.Random(7)
    lost = 0
    with fresh_url(socket_timeout="5") as url:
        for _ in range(150):
            s = open_store(url)
            await s.open()
            await s._client.connection_pool.disconnect()  # type: ignore[attr-defined] # the call connects anew
            task = asyncio.create_task(s.job_counts())
            await asyncio.sleep(rng.uniform(0, 0.002))
            requested = task.cancel()
            try:
                await task
                lost += requested
            except asyncio.CancelledError:
                pass
            await s.close()
    assert lost == 0


# -- schedules ------------------------------------------------------------------------


async def test_a_schedule_that_moved_on_between_the_due_reads_is_not_due(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``schedule_due`` reads the due index, then the records. Another scheduler fired the
    occurrence in between and its run ended: the record is due only in 10 s, and firing it
    would run that next occurrence now (its compare-and-set on ``next_at`` still holds).
    Found by tests/faults/test_clock_skew.py (an occurrence ran one interval early)."""
    await store.schedule_upsert(spec("s", every=10.0, mode=ScheduleMode.RATE), next_tick=T0, next_at=T0, now=T0)
    assert isinstance(store, RedisStore)
    read = store._schedules

    async def another_scheduler_fires_first(keys: Sequence[str]) -> list[ScheduleRecord]:
        [record] = await read(keys)
        assert await store.schedule_fire([plan_fire(record, T0, random.Random(0))], now=T0) == [True]
        [job] = await store.job_claim(claim(), now=T0)
        await store.job_ack([outcome(job, Outcome.SUCCEEDED)], now=T0 + 0.1)
        return await read(keys)

    monkeypatch.setattr(store, "_schedules", another_scheduler_fires_first)
    assert await store.schedule_due(now=T0 + 0.2, limit=10) == []
    assert (await store.schedule_get("s")).next_at == T0 + 10


# -- pruning ---------------------------------------------------------------------------


async def test_prune_works_in_chunks_up_to_the_limit(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connection, "PRUNE_CHUNK", 7)
    await store.job_enqueue([new_job() for _ in range(20)], now=T0)
    claimed = await store.job_claim(claim(20), now=T0)
    await store.job_ack([outcome(j, Outcome.SUCCEEDED, result="1") for j in claimed], now=T0 + 1)
    assert await store.job_prune({JobState.SUCCEEDED: T0 + 2}, limit=16) == 16
    assert await store.job_prune({JobState.SUCCEEDED: T0 + 2, JobState.DEAD: T0 + 2}) == 4
    assert await store.job_counts() == []


# -- layout ----------------------------------------------------------------------------


async def test_every_key_is_in_the_slot_of_the_prefix() -> None:
    with fresh_url() as url:
        s = open_store(url)
        assert isinstance(s, RedisStore)
        await s.open()
        try:
            jobs = [new_job(queue=q, task=t, priority=p) for q in ("a", "b") for t in ("t.a", "t.b") for p in (0, 3)]
            await s.job_enqueue([*jobs, new_job(run_at=T0 + 5, dedup_key="k")], now=T0)
            [first, *_] = await s.job_claim(claim(3, queues=("a", "b")), now=T0)
            await s.queue_pause("b", now=T0)
            await s.job_ack([], now=T0)
            await s.job_cancel(first.id, now=T0)
            with redis.Redis.from_url(SERVER, decode_responses=True) as client:
                mine = list(client.scan_iter(match=f"*{s.keys.prefix}*", count=1000))
                tagged = set(client.scan_iter(match=s.keys.pattern, count=1000))
        finally:
            await s.close()
    assert set(mine) == tagged and len(tagged) > 10
    assert {key_slot(k.encode()) for k in tagged} == {key_slot(s.keys.meta.encode())}


async def test_run_until_idle_writes_every_outcome() -> None:
    """A worker stopping (here: ``run_until_idle``'s, once idle) waits for the batch of
    outcomes it is writing; it cancelled the write, which on Redis is then not made (the
    job stayed ``running``). Found by tests/faults/test_scheduler_replicas.py."""
    from backbeat import App
    from backbeat.clock import ManualClock

    with fresh_url() as url:
        app = App(url, clock=ManualClock())

        @app.task(name="t.sync")
        def sync_task(n: int) -> int:
            return n

        try:
            for n in range(10):
                job = await sync_task.aenqueue(n)
                assert await app.arun_until_idle() == 1
                assert (await job.ainfo()).state is JobState.SUCCEEDED, n
        finally:
            await app.aclose()


async def test_a_skewed_system_clock_follows_the_servers(store: Store, caplog: pytest.LogCaptureFixture) -> None:
    from backbeat.clock import SystemClock, correct

    class Fast(SystemClock):
        def now(self) -> float:
            return super().now() + 30

    clock = Fast()
    with caplog.at_level(logging.WARNING, logger="backbeat.clock"):
        # overlapping corrections (a scheduler's parts opening the store at once) agree
        offset, again = await asyncio.gather(correct(clock, store), correct(clock, store))
        assert offset is not None and again is not None and abs(offset - again) < 1
    assert offset is not None and abs(offset + 30) < 1
    server = await store.server_time()
    assert server is not None and abs(clock.now() - server) < 1
    assert "30.0 s ahead of the store server's" in caplog.text
    assert await correct(clock, store) == pytest.approx(offset, abs=0.5)  # stays put
    assert len(caplog.records) == 1
