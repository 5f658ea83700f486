"""The dashboard over a big store: 1,000,000 jobs and 1,000,000 schedules, then the time of
the schedules and jobs pages and API (first page, a deep keyset page, searches), the
overview and /metrics. Run by hand:

    .venv/bin/python benchmarks/dashboard_bench.py                       # SQLite, a temporary file
    .venv/bin/python benchmarks/dashboard_bench.py --url sqlite:///big.db --keep
    .venv/bin/python benchmarks/dashboard_bench.py --url postgresql://postgres@127.0.0.1:5432/dashbench

On SQLite the store is filled with SQL directly (executemany into the schema the store
created: a few minutes); on PostgreSQL with server-side SQL (INSERT ... SELECT over
generate_series into the tables the store migrated, then VACUUM ANALYZE); on any other
store through the store protocol (``job_enqueue``
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
FINISHED = (JobState.SUCCEEDED, JobState.DEAD, JobState.CANCELLED)
DAY = 86_400.0  # jobs created over the last day
DELAY = 3600.0  # a scheduled job's delay
WAIT, RUN = 0.1, 0.4  # a finished job: queued for WAIT, ran for RUN
DEAD_ERROR = "ConnectionError: upstream refused"
EVERY, SLA = 20.0, 60.0  # schedules: every 20 s, 90% with an SLA of 60 s, 1% paused
NO_SLA, PAUSED = (10, 9), (100, 42)  # (m, r): schedule i has no SLA / is paused where i % m == r
LATE = 0.01  # the share of schedules last run STALE seconds ago (most: within 2 * EVERY)
STALE = (120.0, 3600.0)
BATCH = 20_000


# -- filling ---------------------------------------------------------------------------


def job_rows(n: int, now: float, rng: random.Random) -> Iterator[tuple[Any, ...]]:
    """Jobs created over the last day, ids in creation order (UUIDv7)."""
    states = rng.choices([s for s, _ in STATES], weights=[w for _, w in STATES], k=n)
    for i, state in enumerate(states):
        created = now - DAY + DAY * i / n
        task = TASKS[i % len(TASKS)]
        queue = QUEUES[i % len(QUEUES)]
        finished = created + WAIT + RUN if state in FINISHED else None
        run_at = created + (DELAY if state is JobState.SCHEDULED else 0)
        payload = json.dumps({"args": [], "kwargs": {"user_id": i}})
        error = DEAD_ERROR if state is JobState.DEAD else None
        yield (uuid7(int(created * 1000)), task, queue, state.value, payload, run_at, run_at, 1, 5, created,
               finished - RUN if finished else None, finished, error)  # fmt: skip


def schedule_rows(n: int, now: float, rng: random.Random) -> Iterator[tuple[Any, ...]]:
    """Schedules: 90% every-20-s polls with an SLA (about 1% in breach, 1% paused), 10%
    without an SLA."""
    for i in range(n):
        key = f"user:{i:07d}"
        sla = None if i % NO_SLA[0] == NO_SLA[1] else SLA
        last = now - rng.uniform(0, 2 * EVERY) if rng.random() > LATE else now - rng.uniform(*STALE)
        paused = 1 if i % PAUSED[0] == PAUSED[1] else 0
        deadline = None if sla is None else last + sla
        payload = json.dumps({"args": [], "kwargs": {"user_id": i}})
        yield (key, TASKS[i % 2], "default", payload, "every", EVERY, None, "UTC", "delay", 0.0, sla, "skip", 0, 0, 5,
               None, "", "runtime", now - DAY, now - DAY, last + EVERY, last + EVERY, paused, now if paused else None,
               last, "succeeded", last, deadline)  # fmt: skip


JOB_COLUMNS = (
    "id, task, queue, state, payload, run_at, order_at, attempts, max_attempts, created_at, started_at, finished_at, "
    "error"
)
SCHEDULE_COLUMNS = (
    "key, task, queue, payload, kind, every, cron, tz, mode, jitter, sla, misfire, catch_up_limit, priority, "
    "max_attempts, timeout, description, origin, created_at, updated_at, next_tick, next_at, paused, paused_at, "
    "last_finished_at, last_state, last_success_at, deadline_at"
)
JOB_SQL = f"INSERT INTO backbeat_jobs ({JOB_COLUMNS}) VALUES ({', '.join('?' * 13)})"
SCHEDULE_SQL = f"INSERT INTO backbeat_schedules ({SCHEDULE_COLUMNS}) VALUES ({', '.join('?' * 28)})"


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


# The same rows made by the PostgreSQL server (generate_series; random() after setseed, so
# the states and staleness are drawn as above but not the same draws). Ids are UUIDv7 text
# of the creation millisecond with md5(i) as the random bits.
PG_JOBS = f"""INSERT INTO backbeat_jobs ({JOB_COLUMNS})
WITH g AS MATERIALIZED (SELECT i, random() AS r FROM generate_series(0, %(n)s - 1) AS i),
j AS (SELECT i, %(now)s - %(day)s + %(day)s * i::float8 / %(n)s AS created, STATE_CASE AS state FROM g),
k AS (SELECT *, CASE WHEN state = ANY(%(finished)s::text[]) THEN created + %(wait)s + %(run)s END AS finished,
             created + CASE WHEN state = %(scheduled)s THEN %(delay)s ELSE 0 END AS run_at,
             lpad(to_hex(floor(created * 1000)::bigint), 12, '0') AS h, md5(i::text) AS m FROM j)
SELECT substr(h, 1, 8) || '-' || substr(h, 9, 4) || '-7' || substr(m, 1, 3) || '-8' || substr(m, 4, 3) || '-'
       || substr(m, 7, 12),
       (%(tasks)s::text[])[1 + mod(i, cardinality(%(tasks)s::text[]))],
       (%(queues)s::text[])[1 + mod(i, cardinality(%(queues)s::text[]))],
       state, '{{"args": [], "kwargs": {{"user_id": ' || i || '}}}}', run_at, run_at, 1, 5, created,
       finished - %(run)s, finished, CASE WHEN state = %(dead)s THEN %(error)s END
FROM k"""
PG_SCHEDULES = f"""INSERT INTO backbeat_schedules ({SCHEDULE_COLUMNS})
WITH g AS MATERIALIZED (SELECT i, random() AS r, random() AS u FROM generate_series(0, %(n)s - 1) AS i),
s AS (SELECT i, CASE WHEN mod(i, %(no_sla_m)s) <> %(no_sla_r)s THEN %(sla)s END AS sla,
             %(now)s - CASE WHEN r > %(late)s THEN u * 2 * %(every)s
                            ELSE %(stale_lo)s + u * (%(stale_hi)s - %(stale_lo)s) END AS last,
             mod(i, %(paused_m)s) = %(paused_r)s AS paused FROM g)
SELECT 'user:' || lpad(i::text, 7, '0'), (%(tasks)s::text[])[1 + mod(i, 2)], 'default',
       '{{"args": [], "kwargs": {{"user_id": ' || i || '}}}}', 'every', %(every)s, NULL::text, 'UTC', 'delay', 0.0,
       sla, 'skip', 0, 0, 5, NULL::float8, '', 'runtime', %(now)s - %(day)s, %(now)s - %(day)s, last + %(every)s,
       last + %(every)s, paused, CASE WHEN paused THEN %(now)s END, last, 'succeeded', last, last + sla
FROM s"""


def state_case(r: str) -> str:
    """SQL: the job state for ``r`` uniform in [0, 1), in the shares of STATES."""
    whens, total = [], 0.0
    for state, share in STATES[:-1]:
        total += share
        whens.append(f"WHEN {r} < {total:.6f} THEN '{state.value}'")
    return f"CASE {' '.join(whens)} ELSE '{STATES[-1][0].value}' END"


def fill_postgres(url: str, jobs: int, schedules: int, now: float) -> None:
    """Fill the tables the store migrated with server-side SQL, then VACUUM ANALYZE."""
    import psycopg

    from backbeat.store.postgres import parse_url
    from backbeat.store.postgres.connection import qualify

    options = parse_url(url)
    params = {
        "now": now, "day": DAY, "delay": DELAY, "wait": WAIT, "run": RUN, "every": EVERY, "sla": SLA, "late": LATE,
        "stale_lo": STALE[0], "stale_hi": STALE[1], "no_sla_m": NO_SLA[0], "no_sla_r": NO_SLA[1],
        "paused_m": PAUSED[0], "paused_r": PAUSED[1], "tasks": list(TASKS), "queues": list(QUEUES),
        "finished": [s.value for s in FINISHED], "scheduled": JobState.SCHEDULED.value, "dead": JobState.DEAD.value,
        "error": DEAD_ERROR,
    }  # fmt: skip
    with psycopg.connect(options.conninfo, autocommit=True) as conn:
        with conn.transaction():
            conn.execute("SELECT setseed(0.7)")
            conn.execute(qualify(PG_JOBS.replace("STATE_CASE", state_case("r")), options.schema), {**params, "n": jobs})
            conn.execute(qualify(PG_SCHEDULES, options.schema), {**params, "n": schedules})
            conn.execute(qualify("INSERT INTO backbeat_queues (name) SELECT unnest(%s::text[]) ON CONFLICT DO NOTHING",
                                 options.schema), (list(QUEUES),))  # fmt: skip
        conn.execute(qualify("VACUUM ANALYZE backbeat_jobs, backbeat_schedules, backbeat_queues", options.schema))


async def _maintain(client: Client, now: float) -> None:
    await (await client.astore()).job_rescue(now=now)


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
        and PostgreSQL found with an OFFSET; elsewhere the rank of the middle key, somewhere
        inside)."""
        store = await client.astore()
        key = f"user:{schedules // 2:07d}"
        sql = "SELECT key FROM backbeat_schedules WHERE sla IS NOT NULL AND NOT paused ORDER BY deadline_at, key"
        if url.startswith("sqlite:///"):
            conn = sqlite3.connect(url.removeprefix("sqlite:///").split("?")[0])
            key = conn.execute(f"{sql} LIMIT 1 OFFSET ?", (schedules // 2,)).fetchone()[0]
            conn.close()
        elif url.startswith(("postgresql://", "postgres://")):
            import psycopg

            from backbeat.store.postgres import parse_url
            from backbeat.store.postgres.connection import qualify

            options = parse_url(url)
            with psycopg.connect(options.conninfo) as pg:
                row = pg.execute(qualify(f"{sql} LIMIT 1 OFFSET %s", options.schema), (schedules // 2,)).fetchone()
                key = row[0] if row else key
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
        elif url.startswith(("postgresql://", "postgres://")):
            fill_postgres(url, args.jobs, args.schedules, now)
        else:
            client.sync(lambda: _fill(client, args.jobs, args.schedules, now))
        # a maintenance round, as a worker makes every few seconds (on PostgreSQL it folds
        # the count deltas the fill's finished jobs appended: migration 5)
        client.sync(lambda: _maintain(client, now))
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
