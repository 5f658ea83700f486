"""backbeat on its own, on SQLite: enqueue rate, drain rate (1 and 2 worker processes),
pickup latency into an idle worker, delayed-job lateness. Run by hand:

    .venv/bin/python benchmarks/sqlite_bench.py [--jobs 10000] [--url-options synchronous=full]

The jobs are true no-ops (no Redis counter as in the shared yardstick), so these figures
are backbeat's own cost. Results go to stdout; record them in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
APP = "bench_app:app"


def url_for(path: Path, options: str) -> str:
    return f"sqlite:///{path}" + (f"?{options}" if options else "")


def fresh(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


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


def count(path: Path, state: str) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM backbeat_jobs WHERE state = ?", (state,)).fetchone()[0])


def workers(url: str, k: int) -> list[subprocess.Popen[bytes]]:
    argv = [sys.executable, "-m", "backbeat", "worker", APP, "--log-level", "warning"]
    return [subprocess.Popen(argv, env=env_for(url), cwd=HERE) for _ in range(k)]


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        p.wait(timeout=60)


def drain_rate(path: Path, url: str, n: int, k: int) -> float:
    fresh(path)
    enqueue_rate(url, n)
    start = time.perf_counter()
    procs = workers(url, k)
    while count(path, "succeeded") < n:
        time.sleep(0.005)
    elapsed = time.perf_counter() - start
    stop(procs)
    return n / elapsed


def latencies(path: Path, url: str, jobs: int, delayed: bool) -> list[float]:
    """Pickup (start - enqueue) or, with ``delayed``, lateness (start - due), in ms."""
    fresh(path)
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
    out = subprocess.run([sys.executable, "-c", code], env=env_for(url), check=True, capture_output=True, text=True)
    stop(procs)
    return sorted(float(x) * 1000 for x in out.stdout.split())


def pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(len(values) * q))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--url-options", default="", help="e.g. synchronous=full")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bb-bench-") as tmp:
        path = Path(tmp) / "bench.db"
        url = url_for(path, args.url_options)
        rates = []
        for _ in range(args.repeats):
            fresh(path)
            rates.append(enqueue_rate(url, args.jobs))
        print(f"enqueue ({args.jobs:,} single calls): median {statistics.median(rates):,.0f} jobs/s  {rates}")
        for k in (1, 2):
            drains = [drain_rate(path, url, args.jobs, k) for _ in range(args.repeats)]
            print(
                f"drain ({args.jobs:,}, {k} worker process(es)): median {statistics.median(drains):,.0f} jobs/s "
                f"from spawn  {[round(d) for d in drains]}"
            )
        pickup = latencies(path, url, 500, delayed=False)
        print(
            f"pickup (500 jobs 10 ms apart, idle worker): p50 {pct(pickup, 0.5):.2f} ms  "
            f"p99 {pct(pickup, 0.99):.2f} ms  max {pickup[-1]:.2f} ms"
        )
        late = latencies(path, url, 200, delayed=True)
        print(
            f"delayed (200 jobs due 1-5 s ahead): lateness p50 {pct(late, 0.5):.2f} ms  "
            f"p99 {pct(late, 0.99):.2f} ms  max {late[-1]:.2f} ms  min {late[0]:.2f} ms"
        )


if __name__ == "__main__":
    main()
