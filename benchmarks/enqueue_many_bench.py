"""`task.enqueue_many` against a loop of `task.enqueue`, on one store (run by hand).

    python benchmarks/enqueue_many_bench.py URL [N]

URL is a store nothing else uses (a Redis URL's DB is flushed first and after; a SQLite
file or PostgreSQL database is used as it is). Prints jobs/s for single calls and for
`enqueue_many` at the store's own batch size and at 100, 500 and 1,000 jobs per store
call (median of 3 runs each); on Redis, also how long one batch's script held the server.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable

import redis

from backbeat import App
from backbeat.tasks import Task


def measure(noop: Task[..., None], server: redis.Redis | None, n: int, write: Callable[[], object]) -> str:
    """Median jobs/s of 3 runs of ``write`` (and, on Redis, the median script time)."""
    rates, holds = [], []
    for _ in range(3):
        if server is not None:
            server.flushdb()
        noop.enqueue(tag="warm")  # opens this thread's store
        if server is not None:
            server.config_resetstat()
        began = time.perf_counter()
        write()
        rates.append(n / (time.perf_counter() - began))
        if server is not None:
            holds.append(server.info("commandstats")["cmdstat_fcall"]["usec_per_call"] / 1000)
    held = f"; one script held Redis {statistics.median(holds):.2f} ms" if holds else ""
    return f"{statistics.median(rates):9,.0f} jobs/s{held}"


def main() -> None:
    url = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 10_000
    server = redis.Redis.from_url(url) if url.startswith("redis") else None
    app = App(url)

    @app.task(name="bench.noop")
    def noop(tag: str | None = None) -> None: ...

    print(f"{'single calls':32} {measure(noop, server, n, lambda: [noop.enqueue(tag=f't{i}') for i in range(n)])}")
    store = app.client.sync(app.client.astore)  # the instance this thread's sync calls use
    for size in dict.fromkeys([store.enqueue_batch, 100, 500, 1000]):
        store.enqueue_batch = size
        many = measure(noop, server, n, lambda: noop.enqueue_many({"tag": f"t{i}"} for i in range(n)))
        print(f"{f'enqueue_many, {size} per call':32} {many}")
    app.close()
    if server is not None:
        server.flushdb()


if __name__ == "__main__":
    main()
