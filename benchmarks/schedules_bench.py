"""How fast one scheduler process fires due schedules, with many keyed schedules stored.

    .venv/bin/python benchmarks/schedules_bench.py --url sqlite:////tmp/s.db --schedules 1000000 --due 50000

Creates ``--schedules`` keyed ``every 300 s`` schedules (``--due`` of them due now, the
rest later), then runs one in-process ``Scheduler`` until nothing is due, and reports
fires per second (each fire: a job enqueued and its schedule advanced, atomically).
"""

from __future__ import annotations

import argparse
import asyncio
import time

from backbeat import App
from backbeat.runtime.scheduler import Scheduler
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


async def main(url: str, schedules: int, due: int) -> None:
    app = App(url)
    app.task(name="bench.poll")(lambda account: None)
    store = await app.client.astore()
    now = time.time()
    started = time.perf_counter()
    for i in range(schedules):
        at = now if i < due else now + 3600 + i % 3600
        await store.schedule_upsert(spec(i), next_tick=at, next_at=at, now=now)
    created = time.perf_counter() - started
    print(f"created {schedules:,} schedules in {created:.1f} s ({schedules / created:,.0f}/s)")
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
    args = parser.parse_args()
    asyncio.run(main(args.url, args.schedules, args.due))
