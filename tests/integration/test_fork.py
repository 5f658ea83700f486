"""A process forked after sync calls (a web server that imports the app, enqueues, then
forks its workers) opens its own store connections and leaves its parent's alone: the
child's enqueue works, and so do the parent's, from the forking thread and from another
thread that held a connection, after the child has exited."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from backbeat import App
from backbeat.errors import StoreError
from backbeat.types import JobFilter
from tests.integration.conftest import SHARED_STORES, shared_store


@pytest.fixture(params=SHARED_STORES)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with shared_store(request, tmp_path) as url:
        yield url


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_opens_its_own_store_and_leaves_the_parents(url: str) -> None:
    app = App(url)

    @app.task(name="t.noop")
    def noop(n: int) -> None:
        pass

    noop.enqueue(n=1)
    parents = app.client.sync(app.client.astore)
    held, again = threading.Event(), threading.Event()
    failed: list[StoreError] = []

    def other_thread() -> None:  # holds its own connection across the fork
        noop.enqueue(n=10)
        held.set()
        again.wait(30)
        try:
            noop.enqueue(n=11)
        except StoreError as exc:
            failed.append(exc)

    thread = threading.Thread(target=other_thread)
    thread.start()
    assert held.wait(30)
    pid = os.fork()
    if pid == 0:  # the child: report by exit status only, and never run pytest's exit
        status = 1
        try:
            noop.enqueue(n=2)
            status = 0 if app.client.sync(app.client.astore) is not parents else 2
        finally:
            os._exit(status)
    _, raw = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(raw) == 0, "the child's enqueue failed (1) or used its parent's store (2)"
    noop.enqueue(n=3)
    again.set()
    thread.join(30)
    assert failed == []  # the child did not close the other thread's connection

    async def count() -> int:
        return len(await (await app.client.astore()).job_list(JobFilter()))

    assert app.client.sync(count) == 5
    app.close()
