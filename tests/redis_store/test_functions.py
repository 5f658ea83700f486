"""The scripts as one Redis function library (``store/redis/scripts.py``): loaded again by
a server that lost it, shared by every prefix (its keys set per call), and named by its
code, so two versions of backbeat on one server each call their own."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import redis

from backbeat.store.redis import scripts
from backbeat.store.redis.store import RedisStore
from backbeat.testing.conformance import T0, new_job
from backbeat.types import JobFilter, JobState
from tests.redis_server import SERVER
from tests.redis_store.layout import checked_store


@pytest.fixture
def admin() -> Iterator[redis.Redis]:
    with redis.Redis.from_url(SERVER) as client:
        yield client


@pytest.fixture
async def store() -> AsyncIterator[RedisStore]:
    async with checked_store() as s:
        yield s


@pytest.fixture
async def other() -> AsyncIterator[RedisStore]:
    async with checked_store() as s:
        yield s


@pytest.mark.asyncio
async def test_a_server_that_lost_the_library_is_sent_it_again(store: RedisStore, admin: redis.Redis) -> None:
    await store.job_enqueue([new_job()], now=T0)
    admin.function_flush()
    job = new_job()
    [written] = await store.job_enqueue([job], now=T0)
    assert written.created and (await store.job_get(job.id)).state is JobState.QUEUED
    assert len(admin.function_list(library=scripts.library().name)) == 1


@pytest.mark.asyncio
async def test_calls_for_two_prefixes_interleaved_each_write_their_own(store: RedisStore, other: RedisStore) -> None:
    """One library serves every prefix: each call sets its keys (and a call for the same
    prefix as the last one keeps them)."""
    mine, theirs = [], []
    for _ in range(3):
        mine.append(new_job())
        await store.job_enqueue([mine[-1]], now=T0)
        theirs.append(new_job())
        await other.job_enqueue([theirs[-1]], now=T0)
    assert {j.id for j in await store.job_list(JobFilter())} == {j.id for j in mine}
    assert {j.id for j in await other.job_list(JobFilter())} == {j.id for j in theirs}
    assert sum(c.count for c in await store.job_counts() if c.state is JobState.QUEUED) == 3


def test_the_library_is_named_by_its_code(monkeypatch: pytest.MonkeyPatch) -> None:
    name, code, functions = scripts.library()
    assert name.startswith("backbeat_") and code.startswith(f"#!lua name={name}\n")
    assert functions["enqueue"] == f"{name}_enqueue" and f"redis.register_function('{name}_enqueue'," in code
    scripts.library.cache_clear()
    read = scripts._read
    monkeypatch.setattr(scripts, "_read", lambda n: read(n) + ("\n-- changed" if n == "ack" else ""))
    try:
        changed = scripts.library().name
    finally:
        scripts.library.cache_clear()
    assert changed != name
