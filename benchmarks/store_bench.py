"""backbeat on any store: enqueue rate, drain rate (1 and 2 worker processes) with the CPU
each drained job cost (the worker processes', and the Redis server's), pickup latency into
an idle worker, delayed-job lateness. Run by hand:

    .venv/bin/python benchmarks/store_bench.py --url redis://127.0.0.1:6379/0 [--jobs 10000]
    .venv/bin/python benchmarks/store_bench.py --url sqlite:///tmp/bench.db

Each measurement gets a fresh store: a new key prefix on Redis (deleted afterwards), a new
file for SQLite. The jobs are true no-ops, as in sqlite_bench.py, so the figures are
backbeat's own cost. Results go to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from sqlite_bench import APP, pct  # noqa: E402 - the shared helpers of the SQLite benchmark


def fresh(url: str) -> str:
    """A URL naming an empty store like ``url``."""
    parts = urlsplit(url)
    if parts.scheme.startswith("redis"):
        query = dict(parse_qsl(parts.query))
        query["prefix"] = f"bench-{secrets.token_hex(4)}"
        return urlunsplit(parts._replace(query=urlencode(query)))
    path = Path(parts.path)
    stem = path.with_name(f"{path.stem}-{secrets.token_hex(4)}{path.suffix}")
    return urlunsplit(parts._replace(path=str(stem)))


def discard(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme.startswith("redis"):
        import redis

        prefix = dict(parse_qsl(parts.query))["prefix"]
        with redis.Redis.from_url(urlunsplit(parts._replace(query=""))) as client:
            keys = list(client.scan_iter(match="{" + prefix + "}:*", count=1000))
            for start in range(0, len(keys), 1000):
                client.unlink(*keys[start : start + 1000])
    else:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{parts.path}{suffix}").unlink(missing_ok=True)


def env_for(url: str) -> dict[str, str]:
    return dict(os.environ, BACKBEAT_URL=url, PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))


def enqueue_rate(url: str, n: int) -> float:
    code = (
        "import time, bench_app as b\n"
        f"t = time.perf_counter()\nfor _ in range({n}): b.noop.enqueue()\n"
        "print(time.perf_counter() - t)\nb.app.close()\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env_for(url), check=True, capture_output=True, text=True)
    return n / float(out.stdout.strip())


def succeeded(url: str) -> int:
    from backbeat import Client, JobState

    async def read() -> int:
        client = Client(url)
        try:
            store = await client.astore()
            return sum(c.count for c in await store.job_counts() if c.state is JobState.SUCCEEDED)
        finally:
            await client.aclose()

    return asyncio.run(read())


def workers(url: str, k: int) -> list[subprocess.Popen[bytes]]:
    argv = [sys.executable, "-m", "backbeat", "worker", APP, "--log-level", "error"]
    return [subprocess.Popen(argv, env=env_for(url), cwd=HERE) for _ in range(k)]


def stop(procs: list[subprocess.Popen[bytes]]) -> float:
    """Stop the workers; the CPU seconds (user + system) they used in all."""
    for p in procs:
        p.send_signal(signal.SIGTERM)
    used = 0.0
    for p in procs:
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)  # reaped here, so Popen does not wait again
        used += usage.ru_utime + usage.ru_stime
    return used


def server_cpu(url: str) -> float | None:
    """The Redis server's CPU seconds so far (``INFO cpu``); None for other stores."""
    parts = urlsplit(url)
    if not parts.scheme.startswith("redis"):
        return None
    import redis

    with redis.Redis.from_url(urlunsplit(parts._replace(query=""))) as client:
        info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def drain_rate(base: str, n: int, k: int) -> tuple[float, float, float | None]:
    """(jobs/s from spawn, worker CPU µs per job (start-up included), server CPU µs per job)."""
    url = fresh(base)
    try:
        enqueue_rate(url, n)
        before = server_cpu(url)
        start = time.perf_counter()
        procs = workers(url, k)
        while succeeded(url) < n:
            time.sleep(0.005)
        elapsed = time.perf_counter() - start
        after = server_cpu(url)
        used = stop(procs)
        server = None if before is None or after is None else (after - before) / n * 1e6
        return n / elapsed, used / n * 1e6, server
    finally:
        discard(url)


def latencies(base: str, jobs: int, delayed: bool) -> list[float]:
    """Pickup (start - enqueue) or, with ``delayed``, lateness (start - due), in ms."""
    url = fresh(base)
    procs = workers(url, 1)
    code = (
        "import time, datetime, bench_app as b\n"
        "b.stamp.enqueue(time.time()).result(timeout=30)\ntime.sleep(1.0)\njobs = []\n"
        f"for i in range({jobs}):\n"
        + (
            f"    due = time.time() + 1 + 4 * i / max(1, {jobs} - 1)\n"
            "    jobs.append(b.stamp.enqueue(due, at=datetime.datetime.fromtimestamp(due, datetime.UTC)))\n"
            if delayed
            else "    jobs.append(b.stamp.enqueue(time.time()))\n    time.sleep(0.01)\n"
        )
        + "print(' '.join(str(j.result(timeout=60)) for j in jobs))\nb.app.close()\n"
    )
    try:
        out = subprocess.run([sys.executable, "-c", code], env=env_for(url), check=True, capture_output=True, text=True)
    finally:
        stop(procs)
        discard(url)
    return sorted(float(x) * 1000 for x in out.stdout.split())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True, help="redis://host:port/db or sqlite:///path.db")
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rates = []
    for _ in range(args.repeats):
        url = fresh(args.url)
        try:
            rates.append(enqueue_rate(url, args.jobs))
        finally:
            discard(url)
    median = statistics.median(rates)
    print(f"enqueue ({args.jobs:,} single calls): median {median:,.0f} jobs/s  {[round(r) for r in rates]}")
    for k in (1, 2):
        runs = [drain_rate(args.url, args.jobs, k) for _ in range(args.repeats)]
        drains = [r[0] for r in runs]
        servers = [r[2] for r in runs if r[2] is not None]
        server = f", server {statistics.median(servers):,.0f} µs" if servers else ""
        print(f"drain ({args.jobs:,}, {k} worker process(es)): median {statistics.median(drains):,.0f} jobs/s "
              f"from spawn  {[round(d) for d in drains]}; CPU per job: workers "
              f"{statistics.median(r[1] for r in runs):,.0f} µs (start-up included){server}")  # fmt: skip
    pickup = latencies(args.url, 500, delayed=False)
    print(f"pickup (500 jobs 10 ms apart, idle worker): p50 {pct(pickup, .5):.2f} ms  "
          f"p99 {pct(pickup, .99):.2f} ms  max {pickup[-1]:.2f} ms")  # fmt: skip
    late = latencies(args.url, 200, delayed=True)
    print(f"delayed (200 jobs due 1-5 s ahead): lateness p50 {pct(late, .5):.2f} ms  "
          f"p99 {pct(late, .99):.2f} ms  max {late[-1]:.2f} ms  min {late[0]:.2f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
