"""Sync calls on PostgreSQL (``task.enqueue()`` in plain code) run in the calling thread
on a blocking connection of that thread's own: no background loop is started, each
thread that calls holds one connection, closed when the thread ends, and a connection
the server dropped is replaced on the next call."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import psycopg
import pytest

from backbeat import App
from backbeat.errors import StoreError
from tests.integration.conftest import eventually
from tests.postgres_server import admin, url_of
from tests.postgres_store.conftest import jobs


@pytest.fixture
def app(database: str) -> Iterator[App]:
    app = App(url_of(database))

    @app.task(name="t.noop")
    def noop(n: int) -> None:
        pass

    yield app
    app.close()


def backends(database: str) -> list[int]:
    """The pids of the client connections open on ``database``."""
    with admin() as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND backend_type = 'client backend'", (database,)
        ).fetchall()
    return sorted(r[0] for r in rows)


def settled(database: str, count: int) -> list[int]:
    """The backends once ``count`` are left: a closed connection's backend leaves
    ``pg_stat_activity`` as it exits, a moment after the client has gone."""

    def left() -> list[int] | None:
        pids = backends(database)
        return pids if len(pids) == count else None

    pids: list[int] = eventually(left, what=f"{count} backends on {database}")
    return pids


def test_a_sync_call_runs_in_its_thread_on_one_connection(app: App, database: str) -> None:
    noop = app.tasks["t.noop"]
    noop.enqueue(n=1)
    held = settled(database, 1)  # migrations ran on a connection of their own, closed since
    assert not app.client._portal.started  # no background loop or thread was needed
    for n in range(2, 6):
        noop.enqueue(n=n)
    assert backends(database) == held  # the same connection, reused
    assert len(jobs(app)) == 5


def test_each_calling_thread_holds_a_connection_until_it_ends(app: App, database: str) -> None:
    noop = app.tasks["t.noop"]
    noop.enqueue(n=0)
    mine = settled(database, 1)
    called, release = threading.Event(), threading.Event()
    seen: list[list[int]] = []

    def caller() -> None:
        noop.enqueue(n=1)
        called.set()
        release.wait(10)

    thread = threading.Thread(target=caller)
    thread.start()
    assert called.wait(10)
    seen.append(backends(database))
    release.set()
    thread.join(10)
    assert len(seen[0]) == 2 and set(mine) < set(seen[0]), seen
    assert settled(database, 1) == mine  # the thread's connection closed with it


def test_a_connection_the_server_dropped_is_replaced(app: App, database: str) -> None:
    noop = app.tasks["t.noop"]
    noop.enqueue(n=1)
    [pid] = settled(database, 1)
    with admin() as conn:
        conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
    with pytest.raises(StoreError, match="PostgreSQL at"):
        noop.enqueue(n=2)  # the dropped connection is found only by using it
    noop.enqueue(n=3)
    assert backends(database) != [pid]
    assert len(jobs(app)) == 2


def test_a_caller_connection_in_a_sync_call_runs_inline(app: App, database: str) -> None:
    noop = app.tasks["t.noop"]
    with psycopg.connect(url_of(database)) as conn, conn.transaction():
        noop.enqueue(n=1, connection=conn)
        noop.enqueue(n=2, connection=conn)
    assert not app.client._portal.started
    assert len(jobs(app)) == 2
