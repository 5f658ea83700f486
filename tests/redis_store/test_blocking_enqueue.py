"""Sync enqueue on Redis without an event loop (``Store.job_enqueue_blocking``): the same
script on a blocking client, once the store instance is open; the same records, the same
dedup and duplicate rules, the same errors."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis

from backbeat import App
from backbeat.errors import StoreError
from backbeat.store import open_store
from backbeat.store.redis.store import RedisStore
from backbeat.testing.conformance import T0, new_job
from backbeat.types import Enqueued, JobState
from tests.faults.proxy import Proxy
from tests.integration.conftest import eventually
from tests.redis_server import fresh_url
from tests.redis_store.layout import checked_store
from tests.threads import on_a_thread


@pytest.fixture
async def store() -> AsyncIterator[RedisStore]:
    async with checked_store() as s:
        yield s


@pytest.mark.asyncio
async def test_a_blocking_enqueue_writes_what_the_async_one_writes(store: RedisStore) -> None:
    a, b = new_job(priority=3), new_job(priority=3)
    [async_written] = await store.job_enqueue([a], now=T0)
    [written] = store.job_enqueue_blocking([b], now=T0) or []
    assert written.created and written.job.id == b.id and written.job.state is JobState.QUEUED
    assert await store.job_get(b.id) == dataclasses.replace(await store.job_get(a.id), id=b.id)
    assert written.job == dataclasses.replace(async_written.job, id=b.id)
    later = new_job(run_at=T0 + 60)
    assert store.job_enqueue_blocking([later], now=T0) is not None
    assert (await store.job_get(later.id)).state is JobState.SCHEDULED


@pytest.mark.asyncio
async def test_dedup_and_a_taken_id_as_in_the_async_enqueue(store: RedisStore) -> None:
    first = new_job(dedup_key="poll:1")
    store.job_enqueue_blocking([first], now=T0)
    [again] = store.job_enqueue_blocking([new_job(dedup_key="poll:1")], now=T0) or []
    assert not again.created and again.job.id == first.id
    with pytest.raises(StoreError, match=f"already exists: {first.id}"):
        store.job_enqueue_blocking([first], now=T0)


@pytest.mark.asyncio
async def test_a_server_that_lost_its_scripts_is_sent_them_again(store: RedisStore) -> None:
    assert store.job_enqueue_blocking([new_job()], now=T0) is not None  # the blocking client is open
    with redis.Redis.from_url(store.options.client_url) as admin:
        admin.function_flush()
    job = new_job()
    [written] = store.job_enqueue_blocking([job], now=T0) or []
    assert written.created and (await store.job_get(job.id)).state is JobState.QUEUED


@pytest.mark.asyncio
async def test_a_connection_the_server_closed_is_opened_again(store: RedisStore) -> None:
    assert store.job_enqueue_blocking([new_job()], now=T0) is not None
    assert store._sync is not None
    connection_id = store._sync.client.client_id()
    with redis.Redis.from_url(store.options.client_url) as admin:
        assert admin.client_kill_filter(_id=connection_id) == 1
    job = new_job()
    [written] = store.job_enqueue_blocking([job], now=T0) or []
    assert written.created and (await store.job_get(job.id)).state is JobState.QUEUED


@pytest.mark.asyncio
async def test_an_instance_not_open_declines() -> None:
    with fresh_url() as url:
        s = open_store(url)
        assert s.job_enqueue_blocking([new_job()], now=T0) is None
        await s.close()


@pytest.mark.asyncio
@pytest.mark.parametrize("connected", [True, False], ids=["after-a-write", "at-its-first-connection"])
async def test_an_unreachable_server_is_a_store_error(connected: bool) -> None:
    proxy = Proxy(6379)
    with fresh_url() as url:
        s = open_store(url.replace(":6379/", f":{proxy.port}/", 1))
        await s.open()
        try:
            if connected:
                assert s.job_enqueue_blocking([new_job()], now=T0) is not None
        finally:
            proxy.close()
        with pytest.raises(StoreError, match="Redis"):
            s.job_enqueue_blocking([new_job()], now=T0)
        await s.close()


def test_task_enqueue_takes_the_blocking_path_once_its_thread_s_store_is_open() -> None:
    with fresh_url() as url:
        app = App(url)

        @app.task(name="t.poll")
        def poll(account: int) -> None: ...

        def enqueue_twice() -> tuple[Any, ...]:
            first = poll.enqueue(1)  # opens this thread's store, through its private loop
            [store] = app.client._per_loop.values()
            assert isinstance(store, RedisStore) and store._sync is None
            second = poll.enqueue(2, dedup_key="a")
            again = poll.enqueue(3, dedup_key="a")
            assert store._sync is not None and not app.client._portal.started

            async def from_a_coroutine() -> Any:
                return poll.enqueue(4)  # a loop runs on this thread now: the portal's thread writes it

            in_a_loop = asyncio.run(from_a_coroutine())
            assert app.client._portal.started
            return first, second, again, in_a_loop

        first, second, again, in_a_loop = on_a_thread(enqueue_twice)
        assert first.status() is JobState.QUEUED and second.status() is JobState.QUEUED
        assert second.created and not again.created and again.id == second.id
        assert in_a_loop.status() is JobState.QUEUED
        app.close()


def test_enqueue_many_takes_the_blocking_path_in_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    with fresh_url() as url:
        app = App(url)

        @app.task(name="t.poll")
        def poll(account: int) -> None: ...

        def enqueue_many() -> tuple[list[Any], list[int]]:
            poll.enqueue(0)  # opens this thread's store
            [store] = app.client._per_loop.values()
            batches: list[int] = []
            blocking = store.job_enqueue_blocking

            def counted(jobs: Any, *, now: float) -> Any:
                batches.append(len(jobs))
                return blocking(jobs, now=now)

            monkeypatch.setattr(store, "job_enqueue_blocking", counted)
            monkeypatch.setattr(store, "enqueue_batch", 4)
            jobs = poll.enqueue_many([{"account": n, "dedup_key": f"a{n % 9}"} for n in range(1, 11)])
            assert not app.client._portal.started
            return jobs, batches

        jobs, batches = on_a_thread(enqueue_many)
        assert batches == [4, 4, 2]
        assert [job.created for job in jobs] == [True] * 9 + [False]
        assert jobs[9].id == jobs[0].id and all(job.status() is JobState.QUEUED for job in jobs)
        app.close()


@pytest.mark.asyncio
async def test_an_enqueue_from_a_signal_handler_mid_enqueue_does_not_share_its_connection() -> None:
    """A handler that enqueues while this thread waits on its blocking connection is told
    to take another path (``None``): the reply reaches the call that asked for it. The
    proxy holds the reply until the handler has run. (Were they to share it, one call would
    read the other's reply and the other wait for one that never comes: the socket
    timeout turns that into a failure.)"""
    proxy = Proxy(6379)
    with fresh_url(socket_timeout="5") as url:
        store = open_store(url.replace(":6379/", f":{proxy.port}/", 1))
        assert isinstance(store, RedisStore)
        await store.open()
        held = new_job(dedup_key="held")
        store.job_enqueue_blocking([held], now=T0)  # the blocking connection is made
        from_handler: list[list[Enqueued] | None] = []
        handled = threading.Event()

        def handler(*_: object) -> None:
            from_handler.append(store.job_enqueue_blocking([new_job()], now=T0))
            handled.set()

        def interrupt_the_waiting_call() -> None:
            # the call below is waiting once it is busy: its reply is held by the stall
            eventually(lambda: store._sync_busy, timeout=10, what="the enqueue to start")
            os.kill(os.getpid(), signal.SIGALRM)
            handled.wait(10)
            proxy.resume()

        previous = signal.signal(signal.SIGALRM, handler)
        proxy.stall()
        helper = threading.Thread(target=interrupt_the_waiting_call)
        helper.start()
        try:
            [again] = store.job_enqueue_blocking([new_job(dedup_key="held")], now=T0) or []
        finally:
            helper.join(10)
            signal.signal(signal.SIGALRM, previous)
            proxy.close()
        assert from_handler == [None]
        assert not again.created and again.job.id == held.id
        await store.close()


def test_client_enqueue_by_name_takes_the_blocking_path_for_a_task_it_knows() -> None:
    from backbeat import Client
    from backbeat.runtime.worker import Worker

    with fresh_url() as url:
        app = App(url)

        @app.task(name="t.known", queue="q1", retries=0)
        def known(account: int) -> None: ...

        async def register() -> None:
            await (await app.client.astore()).worker_register(Worker(app)._info())

        app.client.sync(register)
        client = Client(url)

        def enqueue_by_name() -> tuple[Any, ...]:
            first = client.enqueue("t.known", kwargs={"account": 1})  # reads the registry, opens the store
            second = client.enqueue("t.known", kwargs={"account": 2})
            unknown = client.enqueue("t.unknown")
            [store] = client._per_loop.values()
            assert isinstance(store, RedisStore)
            return first.info(), second.info(), unknown.info(), store._sync is not None

        first, second, unknown, blocking = on_a_thread(enqueue_by_name)
        assert blocking
        assert (second.queue, second.max_attempts, second.state) == ("q1", 1, JobState.QUEUED)
        assert (first.queue, first.max_attempts) == (second.queue, second.max_attempts)
        assert unknown.queue == "default"
        client.close()
        app.close()
