"""Scheduler replicas killed and restarted through a day of simulated time: every cron and
fixed-rate occurrence fires exactly once.

In one process, on a manual clock: three replicas (each its own ``App``, store connection
and ``Scheduler``) race to fire at each instant something is due; a kill is a replica's
step cancelled at a random moment mid-call (mid-transaction, mid-script), after which the
replica is thrown away and a new one started, sometimes only some instants later. Jobs are
run in-process as they come due, so runs end and the next occurrence may fire. The store's
own jobs are the ledger: one job per (schedule, occurrence), checked against the cron
expression walked independently (cronsim)."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from cronsim import CronSim

from backbeat import App
from backbeat.clock import ManualClock
from backbeat.runtime.scheduler import Scheduler
from backbeat.types import JobRecord
from tests.faults.stores import SHARED
from tests.integration.conftest import every_job

pytestmark = [pytest.mark.faults, pytest.mark.timeout(300)]

START = datetime(2026, 3, 28, 0, 0, 30, tzinfo=UTC)
DAY = timedelta(days=1)
CRONS = {"every-5-min": "*/5 * * * *", "hourly": "0 * * * *", "daily": "17 3 * * *"}
RATE = ("every-10-min", 600.0)
REPLICAS = 3


def build(url: str, clock: ManualClock) -> App:
    app = App(url, clock=clock)
    app.task(name="s.tick")(_tick)
    return app


def _tick() -> None:
    """The scheduled work: nothing (the store records each occurrence's job)."""


class Replica:
    """One scheduler replica: its own app (and store connection) and scheduler."""

    def __init__(self, url: str, clock: ManualClock, rng: random.Random) -> None:
        self.app = build(url, clock)
        self.scheduler = Scheduler(self.app, rng=random.Random(rng.random()))

    async def step(self) -> int:
        return await self.scheduler.tick(await self.app.client.astore())

    async def close(self) -> None:
        await self.app.aclose()


def expected(expr: str) -> list[float]:
    out: list[float] = []
    for when in CronSim(expr, START):
        if when >= START + DAY:
            return out
        out.append(when.timestamp())
    return out


async def race(replicas: list[Replica | None], url: str, clock: ManualClock, rng: random.Random) -> int:
    """All live replicas fire at this instant; some are killed mid-step (and replaced now or
    later). Returns how many were killed."""
    steps = {i: asyncio.create_task(r.step()) for i, r in enumerate(replicas) if r is not None}
    killed = 0
    for i, task in steps.items():
        if rng.random() < 0.25:
            await asyncio.sleep(rng.choice([0, 0, 0.0005, 0.002]))  # where in its step the kill lands
            task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            killed += 1
            dead = replicas[i]
            assert dead is not None
            await dead.close()
            replicas[i] = None
    for i, r in enumerate(replicas):
        if r is None and rng.random() < 0.5:  # restarted now, or at a later instant
            replicas[i] = Replica(url, clock, rng)
    return killed


async def a_day_of_kills(url: str) -> tuple[list[JobRecord], int]:
    rng = random.Random(7)
    clock = ManualClock(START)
    runner = build(url, clock)  # runs the jobs in-process, as a worker would
    for key, expr in CRONS.items():
        await runner.acron(expr, "s.tick", key=key)
    await runner.aevery(RATE[1], "s.tick", key=RATE[0], mode="rate")
    replicas: list[Replica | None] = [Replica(url, clock, rng) for _ in range(REPLICAS)]
    store = await runner.client.astore()
    killed = 0
    try:
        while clock.now() < (START + DAY).timestamp():
            killed += await race(replicas, url, clock, rng)
            if all(r is None for r in replicas):
                replicas[0] = Replica(url, clock, rng)
            # one clean step at this instant, as some replica makes sooner or later
            survivor = next(r for r in replicas if r is not None)
            await survivor.step()
            await runner.arun_until_idle()
            due = await store.schedule_next_due()
            assert due is not None
            clock.set(max(due, clock.now()))
        return await every_job(store), killed
    finally:
        for r in replicas:
            if r is not None:
                await r.close()
        await runner.aclose()


# A kill abandons the replica's connection mid-call, as a real process kill would; psycopg
# warns when the garbage collector meets such a connection still open (PostgreSQL only).
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("store_url", SHARED, indirect=True)
async def test_every_occurrence_fires_exactly_once_across_replica_kills(store_url: str) -> None:
    jobs, killed = await a_day_of_kills(store_url)
    end = (START + DAY).timestamp()
    fired = Counter((j.schedule_key, j.fire_at) for j in jobs if j.fire_at is not None and j.fire_at < end)
    assert max(fired.values()) == 1, [k for k, n in fired.items() if n > 1][:5]
    for key, expr in CRONS.items():
        assert sorted(t for k, t in fired if k == key) == expected(expr), key
    rate = sorted(t for k, t in fired if k == RATE[0])
    assert rate == [START.timestamp() + RATE[1] * n for n in range(len(rate))] and len(rate) == 144
    assert killed >= 100  # the kills did land, mid-step
