"""Transactional enqueue and emit on PostgreSQL: ``connection=`` writes the job (or event)
inside the caller's open psycopg transaction, sync or async. Commit: it exists and runs;
rollback: nothing. Nothing is visible to others before the commit."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from backbeat import App, Client, EnqueueError, JobState, ManualClock
from backbeat.errors import EventError, JobNotFound
from backbeat.tasks import Task
from backbeat.testing import run_until_idle
from backbeat.types import EventFilter, JobFilter
from tests.postgres_server import fresh_database, url_of
from tests.postgres_store.conftest import jobs

RAN: list[int] = []


@pytest.fixture
def app(database: str) -> Iterator[App]:
    app = App(url_of(database), clock=ManualClock(datetime(2026, 3, 1, 12, 0, tzinfo=UTC)))

    @app.task(name="orders.confirm")
    def confirm(order_id: int) -> None:
        RAN.append(order_id)

    RAN.clear()
    yield app
    app.close()


def test_enqueue_on_commit_writes_the_job_and_it_runs(app: App, database: str) -> None:
    confirm = app.tasks["orders.confirm"]
    with psycopg.connect(url_of(database)) as conn:
        with conn.transaction():
            conn.execute("CREATE TABLE orders (id int PRIMARY KEY)")
            conn.execute("INSERT INTO orders VALUES (7)")
            job = confirm.enqueue(order_id=7, connection=conn)
            assert jobs(app) == []  # not visible to anyone before the commit
            with pytest.raises(JobNotFound):
                job.status()
        assert jobs(app) == [job.id]
    assert job.status() is JobState.QUEUED
    assert run_until_idle(app) == 1
    assert RAN == [7] and job.status() is JobState.SUCCEEDED


def test_enqueue_many_joins_the_transaction_in_batches(
    app: App, database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    confirm = app.tasks["orders.confirm"]
    store = app.client.sync(app.client.astore)
    monkeypatch.setattr(store, "enqueue_batch", 2)
    batches: list[int] = []
    enqueue_on = store.job_enqueue_on

    async def counted(connection: object, batch: list, *, now: float) -> list:
        batches.append(len(batch))
        return await enqueue_on(connection, batch, now=now)

    monkeypatch.setattr(store, "job_enqueue_on", counted)
    with psycopg.connect(url_of(database)) as conn:
        with conn.transaction():
            written = confirm.enqueue_many([{"order_id": n} for n in range(5)], connection=conn)
            assert jobs(app) == []  # not visible before the commit
        assert sorted(jobs(app)) == sorted(job.id for job in written)

        def declined() -> None:
            with conn.transaction():
                confirm.enqueue_many([(5,), (6,), (7,)], connection=conn)  # two batches, both undone
                raise Declined("payment declined")

        with pytest.raises(Declined):
            declined()
    assert len(jobs(app)) == 5 and batches == [2, 2, 1, 2, 1]
    assert run_until_idle(app) == 5 and sorted(RAN) == [0, 1, 2, 3, 4]


class Declined(Exception):
    pass


def test_enqueue_on_rollback_leaves_nothing(app: App, database: str) -> None:
    confirm = app.tasks["orders.confirm"]

    def place_order(conn: psycopg.Connection) -> None:
        with conn.transaction():
            confirm.enqueue(order_id=8, connection=conn)
            app.enqueue("orders.confirm", kwargs={"order_id": 9}, connection=conn)
            raise Declined("payment declined")

    with psycopg.connect(url_of(database)) as conn, pytest.raises(Declined):
        place_order(conn)
    assert jobs(app) == []
    assert run_until_idle(app) == 0 and RAN == []


def test_client_by_name_commit_and_rollback(app: App, database: str) -> None:
    client = Client(url_of(database))
    try:
        with psycopg.connect(url_of(database)) as conn:
            kept = client.enqueue("orders.confirm", kwargs={"order_id": 1}, connection=conn, dedup_key="o:1")
            again = client.enqueue("orders.confirm", kwargs={"order_id": 1}, connection=conn, dedup_key="o:1")
            assert again.id == kept.id and not again.created  # dedup sees the caller's own transaction
            conn.commit()
            client.enqueue("orders.confirm", kwargs={"order_id": 2}, connection=conn)
            conn.rollback()
        assert jobs(app) == [kept.id]
    finally:
        client.close()


async def aplace(conn: psycopg.AsyncConnection, task: Task[..., None], order_id: int) -> None:
    async with conn.transaction():
        await task.aenqueue(order_id=order_id, connection=conn)
        raise Declined("rolled back")


async def test_async_connection_commit_and_rollback(app: App, database: str) -> None:
    confirm = app.tasks["orders.confirm"]
    async with await psycopg.AsyncConnection.connect(url_of(database)) as conn:
        async with conn.transaction():
            committed = await confirm.aenqueue(order_id=3, connection=conn)
        with pytest.raises(Declined):
            await aplace(conn, confirm, 4)
    store = await app.client.astore()
    assert [j.id for j in await store.job_list(JobFilter())] == [committed.id]
    await app.client.aclose()


async def test_a_commit_wakes_an_idle_worker_and_a_rollback_does_not(app: App, database: str) -> None:
    store = await app.client.astore()
    confirm = app.tasks["orders.confirm"]
    async with await psycopg.AsyncConnection.connect(url_of(database)) as conn:
        waiter = asyncio.ensure_future(store.wakeup_wait(30))
        await asyncio.sleep(0)  # waiting before the commit
        async with conn.transaction():
            await confirm.aenqueue(order_id=5, connection=conn)
            assert not waiter.done()
        assert await asyncio.wait_for(waiter, 10) is True
        waiter = asyncio.ensure_future(store.wakeup_wait(0.5))
        await asyncio.sleep(0)
        with pytest.raises(Declined):
            await aplace(conn, confirm, 6)
        assert await waiter is False
    await app.client.aclose()


def test_emit_on_commit_and_rollback(app: App, database: str) -> None:
    client = Client(url_of(database))

    def emit_then_fail(conn: psycopg.Connection) -> None:
        with conn.transaction():
            client.emit("order.placed", {"id": 2}, connection=conn)
            raise Declined("rolled back")

    try:
        with psycopg.connect(url_of(database)) as conn:
            with conn.transaction():
                kept = client.emit("order.placed", {"id": 1}, connection=conn)
            with pytest.raises(Declined):
                emit_then_fail(conn)

        async def events() -> list[str]:
            return [e.id for e in await (await client.astore()).event_list(EventFilter())]

        assert client.sync(events) == [kept]
    finally:
        client.close()


def test_a_connection_of_the_wrong_kind_or_database_is_refused(app: App, database: str, tmp_path: Path) -> None:
    confirm = app.tasks["orders.confirm"]
    with sqlite3.connect(tmp_path / "x.db") as lite, pytest.raises(EnqueueError, match="cannot write jobs inside"):
        confirm.enqueue(order_id=1, connection=lite)
    with fresh_database(migrated=False) as elsewhere, psycopg.connect(url_of(elsewhere)) as conn:
        with pytest.raises(EnqueueError, match="has no backbeat store"):
            confirm.enqueue(order_id=1, connection=conn)
        with pytest.raises(EventError, match="has no backbeat store"):
            app.emit("order.placed", {}, connection=conn)
    assert jobs(app) == []


def test_the_sqlite_store_refuses_connection_for_jobs(tmp_path: Path) -> None:
    app = App(f"sqlite:///{tmp_path}/s.db")
    task = app.task(name="t")(lambda: None)
    try:
        with sqlite3.connect(tmp_path / "s.db") as conn, pytest.raises(EnqueueError, match="SQLiteStore cannot"):
            task.enqueue(connection=conn)
    finally:
        app.close()


def test_enqueue_with_connection_to_a_broker_client_is_refused() -> None:
    client = Client("http://127.0.0.1:9/api/events")
    with pytest.raises(EnqueueError, match="needs the store's URL"):
        asyncio.run(client.aenqueue("t", connection=object()))
