"""How fast one scheduler process fires due schedules, with many keyed schedules stored.

    .venv/bin/python benchmarks/schedules_bench.py --url sqlite:////tmp/s.db --schedules 1000000 --due 50000

Creates ``--schedules`` keyed ``every 300 s`` schedules (``--due`` of them due now, the
rest later), then runs one in-process ``Scheduler`` until nothing is due, and reports
fires per second (each fire: a job enqueued and its schedule advanced, atomically).

Creation is not what is measured, but must not take an hour: the schedules are upserted
through the store protocol ``CONCURRENCY`` at a time, except on PostgreSQL, where the first
is upserted and the rest are filled by one ``INSERT ... SELECT ... generate_series`` that
copies its row, changing only what differs between schedules (key, payload, due times):
the rows ``schedule_upsert`` would write (``--check`` compares the two for a few keys).
"""

from __future__ import annotations

import argparse
import asyncio
import time

from backbeat import App
from backbeat.runtime.scheduler import Scheduler
from backbeat.store import Store
from backbeat.store.postgres.schedules import FIELDS
from backbeat.store.postgres.store import PostgresStore
from backbeat.types import ScheduleKind, ScheduleMode, ScheduleSpec


def spec(i: int) -> ScheduleSpec:
    return ScheduleSpec(
        key=f"account:{i:07d}",
        task="bench.poll",
        queue="default",
        payload=f'{{"args":[],"kwargs":{{"account":{i}}}}}',
        kind=ScheduleKind.EVERY,
        every=300.0,
        mode=ScheduleMode.RATE,
        sla=600.0,
        max_attempts=3,
    )


CONCURRENCY = 64  # under redis-py's default pool of 100 connections (PostgreSQL's pool makes callers wait)


def due_at(i: int, due: int, now: float) -> float:
    return now if i < due else now + 3600 + i % 3600


async def upsert(store: Store, i: int, due: int, now: float) -> None:
    at = due_at(i, due, now)
    await store.schedule_upsert(spec(i), next_tick=at, next_at=at, now=now)


async def upsert_all(store: Store, schedules: int, due: int, now: float) -> None:
    pending = iter(range(schedules))

    async def worker() -> None:
        for i in pending:  # one shared iterator: each worker takes the next index
            await upsert(store, i, due, now)

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))


# due_at and spec in SQL: every column copied from the first schedule's row but these
_FILLED = {
    "key": "'account:' || lpad(i::text, 7, '0')",
    "payload": """'{"args":[],"kwargs":{"account":' || i || '}}'""",
    "next_tick": "a.at",
    "next_at": "a.at",
}
_FILL = (
    f"INSERT INTO backbeat_schedules ({', '.join(FIELDS)}) "
    f"SELECT {', '.join(_FILLED.get(f, f't.{f}') for f in FIELDS)} "
    "FROM backbeat_schedules t, generate_series(%(first)s::int, %(last)s::int) i, "
    "LATERAL (SELECT CASE WHEN i < %(due)s THEN %(now)s::float8 "
    "ELSE %(now)s::float8 + 3600 + i %% 3600 END AS at) a "
    "WHERE t.key = %(template)s"
)


async def fill_postgres(store: PostgresStore, first: int, last: int, due: int, now: float) -> None:
    """Schedules ``first``..``last`` as copies of schedule 0's row (which must exist)."""
    params = {"first": first, "last": last, "due": due, "now": now, "template": spec(0).key}
    await store.run(_FILL, params)
    await store.run("ANALYZE backbeat_schedules")  # as autovacuum would, soon after


async def create(store: Store, schedules: int, due: int, now: float) -> None:
    if isinstance(store, PostgresStore):
        await upsert(store, 0, due, now)
        await fill_postgres(store, 1, schedules - 1, due, now)
    else:
        await upsert_all(store, schedules, due, now)


async def check(store: PostgresStore, now: float) -> None:
    """Filled rows equal upserted ones: fill keys 1..3 and 5000, read them, upsert, compare."""
    keys = [1, 2, 3, 5000]
    await upsert(store, 0, 2, now)
    for i in keys:
        await fill_postgres(store, i, i, 2, now)
    filled = {i: await store.schedule_get(spec(i).key) for i in keys}
    for i in keys:
        await store.schedule_remove(spec(i).key)
        await upsert(store, i, 2, now)
        upserted = await store.schedule_get(spec(i).key)
        assert filled[i] == upserted, (filled[i], upserted)
    print(f"filled rows equal upserted rows for keys {keys}")


async def main(url: str, schedules: int, due: int, check_fill: bool) -> None:
    app = App(url)
    app.task(name="bench.poll")(lambda account: None)
    store = await app.client.astore()
    now = time.time()
    if check_fill:
        assert isinstance(store, PostgresStore), "--check compares PostgreSQL's fill with its upsert"
        await check(store, now)
        await app.aclose()
        return
    started = time.perf_counter()
    await create(store, schedules, due, now)
    created = time.perf_counter() - started
    how = "1 upsert + SQL fill" if isinstance(store, PostgresStore) else f"upserts, {CONCURRENCY} in flight"
    print(f"created {schedules:,} schedules in {created:.1f} s ({schedules / created:,.0f}/s; {how})")
    scheduler = Scheduler(app)
    started = time.perf_counter()
    fired = 0
    while count := await scheduler.tick(store):
        fired += count
    elapsed = time.perf_counter() - started
    print(f"fired {fired:,} due schedules in {elapsed:.2f} s: {fired / elapsed:,.0f} fires/s (one scheduler)")
    await app.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--schedules", type=int, default=100_000)
    parser.add_argument("--due", type=int, default=20_000)
    parser.add_argument("--check", action="store_true", help="PostgreSQL: compare filled rows with upserted ones")
    args = parser.parse_args()
    asyncio.run(main(args.url, args.schedules, args.due, args.check))
