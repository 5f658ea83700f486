"""The scheduler: fires due schedules. Any number may run at once (``backbeat scheduler``
on several machines, every ``backbeat run``): correctness comes from the store, where a
fire happens only if the schedule's ``next_at`` is still the one the plan was made from
and its (key, fire time) has no job yet. A replica that loses a race just re-reads.

Loop: sync the code's declared schedules once; then fire what is due (plans are pure:
``schedules.plan_fire``), sleep until the earliest ``next_at`` (at most ``poll``), and
every ``repair_interval`` finish runs whose job vanished (``schedule_repair``) so no chain
stops silently.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import TYPE_CHECKING

from backbeat.config import SchedulerSettings
from backbeat.errors import StoreError
from backbeat.schedules import plan_fire
from backbeat.store.base import Store

if TYPE_CHECKING:
    from backbeat.app import App

log = logging.getLogger("backbeat.scheduler")


class Scheduler:
    def __init__(self, app: App, settings: SchedulerSettings | None = None, *, rng: random.Random | None = None):
        self.app = app
        self.settings = settings or app.settings.scheduler
        self.clock = app.clock
        self.rng = rng or random.Random()
        self.fired = 0
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        store = await self.app.client.astore()
        report = await self.app.schedules.async_declared()
        log.info(
            "scheduler started: declared schedules %d added, %d changed, %d unchanged, %d removed",
            len(report.added),
            len(report.changed),
            len(report.unchanged),
            len(report.removed),
        )
        repair_at = self.clock.now()
        while not self._stopping.is_set():
            try:
                if await self.tick(store) >= self.settings.batch:
                    continue
                if self.clock.now() >= repair_at:
                    await self._repair(store)
                    repair_at = self.clock.now() + self.settings.repair_interval
                timeout = await self._timeout(store)
            except StoreError as exc:
                log.warning("scheduler: store call failed (%s); retrying", exc)
                timeout = self.settings.poll
            await self.clock.wait(self._stopping, timeout)
        log.info("scheduler stopped after firing %d runs", self.fired)

    async def tick(self, store: Store | None = None) -> int:
        """Fire every schedule due now (up to one batch); return how many fired."""
        store = store or await self.app.client.astore()
        now = self.clock.now()
        due = await store.schedule_due(now=now, limit=self.settings.batch)
        if not due:
            return 0
        fires = [plan_fire(record, now, self.rng) for record in due]
        results = await store.schedule_fire(fires, now=now)
        for fire, ok in zip(fires, results, strict=True):
            if ok and fire.skipped:
                log.info("schedule %s: %d missed occurrence(s) skipped (misfire policy)", fire.key, fire.skipped)
        count = sum(results)
        self.fired += count
        return count

    async def _timeout(self, store: Store) -> float:
        due = await store.schedule_next_due()
        if due is None:
            return self.settings.poll
        return max(0.0, min(self.settings.poll, due - self.clock.now()))

    async def _repair(self, store: Store) -> None:
        for key in await store.schedule_repair(now=self.clock.now()):
            log.warning("schedule %s: its run's job disappeared (purged or deleted); the run is ended", key)
