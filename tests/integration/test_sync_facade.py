"""Sync calls on a loop-bound store (Redis) run on the calling thread's own event loop:
no hop through a background thread per call, one connection per calling thread (two once
it has enqueued again: a sync enqueue on an open store runs on a blocking client, with no
event loop round), closed when the thread ends (or by ``app.close()`` on the thread that
opened it)."""

from __future__ import annotations

import gc
import threading
from urllib.parse import urlsplit, urlunsplit

import redis

from backbeat import App
from backbeat.ids import token
from tests.integration.conftest import eventually
from tests.redis_server import SERVER, require_server

DB = 11  # a database no other test uses, so its client count is this test's alone


def test_sync_calls_use_a_connection_per_thread_closed_with_it() -> None:
    require_server()
    base = urlunsplit(urlsplit(SERVER)._replace(path=f"/{DB}", query=""))
    prefix = f"bbtest-{token()[:12]}"
    app = App(f"{base}?prefix={prefix}")

    @app.task(name="facade.noop")
    def noop(i: int) -> None: ...

    probe = redis.Redis.from_url(base, single_connection_client=True, decode_responses=True)
    me = probe.client_id()

    def ours() -> int:
        return sum(1 for c in probe.client_list() if c["db"] == str(DB) and int(c["id"]) != me)

    try:
        before = ours()
        started, done = threading.Barrier(4), threading.Barrier(4)

        def enqueue_from_a_thread(i: int) -> None:
            noop.enqueue(i=i)
            noop.enqueue(i=i + 100)  # on the blocking client: its second connection
            noop.enqueue(i=i + 200)  # the same connections again
            started.wait()
            done.wait()

        threads = [threading.Thread(target=enqueue_from_a_thread, args=(i,)) for i in range(3)]
        for thread in threads:
            thread.start()
        started.wait()
        assert ours() == before + 6  # two per thread, however many calls each made
        done.wait()
        for thread in threads:
            thread.join()
        gc.collect()
        # Closed as their threads ended. The server notices a closed socket on its next
        # event-loop turn, which may come after our CLIENT LIST: wait for it.
        eventually(lambda: ours() == before, what="the threads' connections to close")

        noop.enqueue(i=7)
        assert ours() == before + 1
        app.close()
        eventually(lambda: ours() == before, what="app.close() to close its connection")
    finally:
        for key in probe.scan_iter(f"{{{prefix}}}:*"):  # the store keys are "{prefix}:..."
            probe.delete(key)
        probe.close()
