"""The dashboard over a big store: 1,000,000 jobs and 1,000,000 schedules, then the time of
the schedules and jobs pages and API (first page, a deep keyset page, searches), the
overview and /metrics. Run by hand:

    .venv/bin/python benchmarks/dashboard_bench.py                       # SQLite, a temporary file
    .venv/bin/python benchmarks/dashboard_bench.py --url sqlite:///big.db --keep
    .venv/bin/python benchmarks/dashboard_bench.py --url postgresql://... # when the PostgreSQL store lands

On SQLite the store is filled with SQL directly (executemany into the schema the store
created: about a minute); on any other store through the store protocol (``job_enqueue``
in batches, ``schedule_upsert`` one by one: slow at this size, use ``--jobs``/``--schedules``
to scale down, or ``--no-fill`` to time a store filled before). Requests go through the
ASGI app in-process (Starlette's test client): the figures are the dashboard's and the
store's own cost, without a network. Each is timed ``--repeat`` times after one warm-up;
median and worst are printed in milliseconds. Record them in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

from starlette.testclient import TestClient

from backbeat import Client
from backbeat.ids import uuid7
from backbeat.reports import rank_cursor
from backbeat.store.base import Store
from backbeat.types import JobState, NewJob, ScheduleKind, ScheduleMode, ScheduleSpec
from backbeat.web import create_app

TASKS = ("twitter.poll", "feed.push", "email.send", "report.build")
QUEUES = ("default", "mail", "reports")
STATES = [  # a store that has run for a while: mostly finished jobs
    (JobState.SUCCEEDED, 0.90),
    (JobState.DEAD, 0.04),
    (JobState.QUEUED, 0.03),
    (JobState.SCHEDULED, 0.02),
    (JobState.CANCELLED, 0.01),
]
BATCH = 20_000


# -- filling ---------------------------------------------------------------------------


def job_rows(n: int, now: float, rng: random.Random) -> Iterator[tuple[Any, ...]]:
    """Jobs created over the last day, ids in creation order (UUIDv7)."""
    states = rng.choices([s for s, _ in STATES], weights=[w for _, w in STATES], k=n)
    for i, state in enumerate(states):
        created = now - 86_400 + 86_400 * i / n
        task = TASKS[i % len(TASKS)]
        queue = QUEUES[i % len(QUEUES)]
        finished = created + 0.5 if state in (JobState.SUCCEEDED, JobState.DEAD, JobState.CANCELLED) else None
        run_at = created + (3600 if state is JobState.SCHEDULED else 0)
        payload = json.dumps({"args": [], "kwargs": {"user_id": i}})
        error = "ConnectionError: upstream refused" if state is JobState.DEAD else None
        yield (uuid7(int(created * 1000)), task, queue, state.value, payload, run_at, run_at, 1, 5, created,
               finished - 0.4 if finished else None, finished, error)  # fmt: skip


def schedule_rows(n: int, now: float, rng: random.Random) -> Iterator[tuple[Any, ...]]:
    """Schedules: 90% every-20-s polls with an SLA (about 1% in breach, 1% paused), 10%
    without an SLA."""
    for i in range(n):
        key = f"user:{i:07d}"
        sla = None if i % 10 == 9 else 60.0
        last = now - rng.uniform(0, 40) if rng.random() > 0.01 else now - rng.uniform(120, 3600)
        paused = 1 if i % 100 == 42 else 0
        deadline = None if sla is None else last + sla
        payload = json.dumps({"args": [], "kwargs": {"user_id": i}})
        yield (key, TASKS[i % 2], "default", payload, "every", 20.0, None, "UTC", "delay", 0.0, sla, "skip", 0, 0, 5,
               None, "", "runtime", now - 86_400, now - 86_400, last + 20, last + 20, paused, now if paused else None,
               last, "succeeded", last, deadline)  # fmt: skip


JOB_SQL = (
    "INSERT INTO backbeat_jobs (id, task, queue, state, payload, run_at, order_at, attempts, max_attempts, "
    "created_at, started_at, finished_at, error) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)"
)
SCHEDULE_SQL = (
    "INSERT INTO backbeat_schedules (key, task, queue, payload, kind, every, cron, tz, mode, jitter, sla, misfire, "
    "catch_up_limit, priority, max_attempts, timeout, description, origin, created_at, updated_at, next_tick, "
    "next_at, paused, paused_at, last_finished_at, last_state, last_success_at, deadline_at) "
    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)


def fill_sqlite(path: str, jobs: int, schedules: int, now: float) -> None:
    rng = random.Random(7)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    for sql, rows in ((JOB_SQL, job_rows(jobs, now, rng)), (SCHEDULE_SQL, schedule_rows(schedules, now, rng))):
        batch: list[tuple[Any, ...]] = []
        conn.execute("BEGIN")
        for row in rows:
            batch.append(row)
            if len(batch) == BATCH:
                conn.executemany(sql, batch)
                batch.clear()
        conn.executemany(sql, batch)
        conn.execute("COMMIT")
    conn.execute("INSERT OR IGNORE INTO backbeat_queues (name, paused) SELECT DISTINCT queue, 0 FROM backbeat_jobs")
    conn.execute("ANALYZE")
    conn.close()


async def fill_protocol(store: Store, jobs: int, schedules: int, now: float) -> None:
    """Any store, through the protocol (slow: for stores without a SQL fill here)."""
    batch: list[NewJob] = []
    for i in range(jobs):
        payload = json.dumps({"args": [], "kwargs": {"user_id": i}})
        batch.append(NewJob(id=uuid7(), task=TASKS[i % 4], queue=QUEUES[i % 3], payload=payload, run_at=now,
                            max_attempts=5))  # fmt: skip
        if len(batch) == 5000:
            await store.job_enqueue(batch, now=now)
            batch.clear()
    if batch:
        await store.job_enqueue(batch, now=now)

    async def upsert(i: int) -> None:
        payload = json.dumps({"args": [], "kwargs": {"user_id": i}})
        spec = ScheduleSpec(key=f"user:{i:07d}", task=TASKS[i % 2], queue="default", payload=payload,
                            kind=ScheduleKind.EVERY, every=20.0, mode=ScheduleMode.DELAY, max_attempts=5,
                            sla=None if i % 10 == 9 else 60.0)  # fmt: skip
        await store.schedule_upsert(spec, next_tick=now + 20, next_at=now + 20, now=now - random.uniform(0, 120))

    for start in range(0, schedules, 200):  # 200 at a time: a pooled store runs them side by side
        await asyncio.gather(*(upsert(i) for i in range(start, min(start + 200, schedules))))


# -- timing ----------------------------------------------------------------------------


def timed(client: TestClient, path: str, repeat: int) -> tuple[float, float, int]:
    """(median ms, worst ms, rows) of ``repeat`` GETs after one warm-up."""
    response = client.get(path)
    assert response.status_code == 200, (path, response.status_code, response.text[:300])
    rows = len(response.json()) if response.headers["content-type"].startswith("application/json") else 0
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        response = client.get(path)
        times.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200
    return statistics.median(times), max(times), rows


def probes(client: Client, url: str, schedules: int) -> list[tuple[str, str]]:
    """The requests timed: first pages, deep keyset pages (half way in), searches."""

    async def middle() -> str:
        """The cursor after the schedule half way through the worst-first order (on SQLite
        found with an OFFSET; elsewhere the rank of the middle key, somewhere inside)."""
        store = await client.astore()
        key = f"user:{schedules // 2:07d}"
        if url.startswith("sqlite:///"):
            conn = sqlite3.connect(url.removeprefix("sqlite:///").split("?")[0])
            sql = "SELECT key FROM backbeat_schedules WHERE sla IS NOT NULL AND paused = 0 ORDER BY deadline_at, key"
            key = conn.execute(f"{sql} LIMIT 1 OFFSET ?", (schedules // 2,)).fetchone()[0]
            conn.close()
        return rank_cursor(await store.schedule_get(key))

    cursor = client.sync(middle)
    # the job id half way back: UUIDv7 sorts by time, so an id of 12 hours ago
    half = uuid7(int((client.clock.now() - 43_200) * 1000))
    mid = quote(cursor, safe="")
    return [
        ("schedules API, first page (50, worst first)", "/api/schedules"),
        ("schedules API, deep keyset page (after the 500,000th)", f"/api/schedules?after={mid}"),
        ("schedules API, search by key (1 match)", f"/api/schedules?search=user:{schedules // 3:07d}"),
        ("schedules API, search by task (half match)", "/api/schedules?search=feed.push"),
        ("schedules page (HTML), first page", "/schedules"),
        ("schedules page (HTML), deep keyset page", f"/schedules?after={mid}"),
        ("schedule page with its timeline", f"/schedules/{quote(f'user:{schedules // 2:07d}', safe='')}"),
        ("jobs API, first page (50, newest first)", "/api/jobs"),
        ("jobs API, deep keyset page (12 h back)", f"/api/jobs?before={half}"),
        ("jobs API, state=dead", "/api/jobs?state=dead"),
        ("jobs API, state=dead, deep (12 h back)", f"/api/jobs?state=dead&before={half}"),
        ("jobs API, task=email.send", "/api/jobs?task=email.send"),
        ("jobs API, queue=mail&state=queued", "/api/jobs?queue=mail&state=queued"),
        ("jobs page (HTML), first page", "/jobs"),
        ("jobs page (HTML), state=dead", "/jobs?state=dead"),
        ("SLA API (summary + 5 worst)", "/api/sla?limit=5"),
        ("overview page (HTML)", "/"),
        ("/metrics", "/metrics"),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=None, help="store URL (default: a temporary SQLite file)")
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--schedules", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--no-fill", action="store_true", help="time the store as it is")
    parser.add_argument("--keep", action="store_true", help="keep the temporary SQLite file")
    args = parser.parse_args(argv)
    tmp = None
    url = args.url
    if url is None:
        tmp = tempfile.mkdtemp(prefix="backbeat-dashboard-bench-")
        url = f"sqlite:///{tmp}/big.db"
    client = Client(url)
    now = client.clock.now()
    client.sync(client.astore)  # creates the schema
    if not args.no_fill:
        start = time.perf_counter()
        if url.startswith("sqlite:///"):
            fill_sqlite(url.removeprefix("sqlite:///").split("?")[0], args.jobs, args.schedules, now)
        else:
            client.sync(lambda: _fill(client, args.jobs, args.schedules, now))
        print(f"filled {args.jobs:,} jobs and {args.schedules:,} schedules in {time.perf_counter() - start:.0f} s")
    print(f"{platform.node()}: {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"SQLite {sqlite3.sqlite_version}, {url.split('://')[0]}")  # fmt: skip
    web = create_app(client, token=None, metrics_dir=None)
    with TestClient(web, client=("127.0.0.1", 50000)) as http:
        print(f"{'request':58} {'median':>8} {'worst':>8}  rows")
        for name, path in probes(client, url, args.schedules):
            median, worst, rows = timed(http, path, args.repeat)
            print(f"{name:58} {median:7.1f}ms {worst:7.1f}ms  {rows or ''}", flush=True)
    client.close()
    if tmp is not None and not args.keep:
        for name in os.listdir(tmp):
            os.unlink(os.path.join(tmp, name))
        os.rmdir(tmp)
    return 0


async def _fill(client: Client, jobs: int, schedules: int, now: float) -> None:
    await fill_protocol(await client.astore(), jobs, schedules, now)


if __name__ == "__main__":
    sys.exit(main())
