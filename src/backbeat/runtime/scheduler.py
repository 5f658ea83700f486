"""The scheduler: fires due schedules. Any number may run at once (``backbeat scheduler``
on several machines, every ``backbeat run``): correctness comes from the store, where a
fire happens only if the schedule's ``next_at`` is still the one the plan was made from
and its (key, fire time) has no job yet. A replica that loses a race just re-reads.

Loop: sync the code's declared schedules once; then fire what is due (plans are pure:
``schedules.plan_fire``), watch SLAs (open breaches on time, announce ended ones: each
exactly once across replicas, through the store), sleep until the earliest ``next_at`` (at
most ``poll``), and every ``repair_interval`` finish runs whose job vanished
(``schedule_repair``) and prune old history.

Every decision that is not a routine fire goes to the schedule's decision log
(``backbeat explain``): occurrences skipped and why, breaches started and ended, repairs.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
from typing import TYPE_CHECKING

from backbeat.clock import correct
from backbeat.config import SchedulerSettings
from backbeat.errors import StoreError
from backbeat.metrics import job_metrics
from backbeat.schedules import plan_fire
from backbeat.sla import SlaEvent
from backbeat.store.base import Store
from backbeat.types import Breach, Decision, DecisionKind, Fire, ScheduleRecord

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
                await self.watch_sla(store)
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
        fires = [plan_fire(r, now, self.rng, deadline_dispatch=self.settings.deadline_dispatch) for r in due]
        results = await store.schedule_fire(fires, now=now)
        skipped = [
            _skipped(record, fire, now)
            for record, fire, ok in zip(due, fires, results, strict=True)
            if ok and fire.skipped
        ]
        if skipped:
            await store.decision_append(skipped)
            for decision in skipped:
                log.info("schedule %s: %s", decision.key, decision.detail)
        count = sum(results)
        self.fired += count
        return count

    async def _timeout(self, store: Store) -> float:
        due = await store.schedule_next_due()
        if due is None:
            return self.settings.poll
        return max(0.0, min(self.settings.poll, due - self.clock.now()))

    async def watch_sla(self, store: Store) -> None:
        """Open breaches that are due (alerting on them) and announce breaches that ended."""
        now = self.clock.now()
        events = [SlaEvent(kind="started", breach=b, at=now) for b in await store.sla_check(now=now)]
        for _ in events:
            job_metrics().breach_started()
        events += [SlaEvent(kind="ended", breach=b, at=now) for b in await store.sla_ended()]
        if not events:
            return
        await store.decision_append([_breach_decision(e) for e in events])
        for event in events:
            log.log(logging.WARNING if event.kind == "started" else logging.INFO, "%s", event.describe())
            await self._call_hooks(event)

    async def _call_hooks(self, event: SlaEvent) -> None:
        for hook in self.app.sla_hooks:
            try:
                result = hook(event)
                if inspect.isawaitable(result):
                    await result
            except Exception:  # a hook's failure is the hook's: log it and go on
                log.exception("on_sla_breach hook %r failed for schedule %s", hook, event.key)

    async def _repair(self, store: Store) -> None:
        await correct(self.clock, store)  # follow the store server's clock (due times)
        now = self.clock.now()
        repaired = await store.schedule_repair(now=now)
        if repaired:
            detail = "its run's job disappeared (purged or deleted); the run was ended and the schedule re-armed"
            await store.decision_append(
                [Decision(key=k, at=now, kind=DecisionKind.REPAIRED, detail=detail) for k in repaired]
            )
            for key in repaired:
                log.warning("schedule %s: %s", key, detail)
        await store.history_prune(before=now - self.app.settings.retention.history)


def _skipped(record: ScheduleRecord, fire: Fire, now: float) -> Decision:
    """Why occurrences were passed over, for the decision log."""
    first = record.next_tick or now
    if record.resumed_at is not None and record.resumed_at >= first:
        why = "while the schedule was paused"
    elif record.last_finished_at is not None and record.last_finished_at > first:
        why = "while a run was still in flight (runs never overlap)"
    else:
        why = "while nothing could fire them (no scheduler running)"
    detail = f"{fire.skipped} occurrence(s) passed {why}; misfire policy {record.spec.misfire.value}"
    return Decision(key=record.key, at=now, kind=DecisionKind.SKIPPED, detail=detail, job_id=fire.job.id)


def _breach_decision(event: SlaEvent) -> Decision:
    b: Breach = event.breach
    kind = DecisionKind.BREACH_STARTED if event.kind == "started" else DecisionKind.BREACH_ENDED
    at = b.started_at if event.kind == "started" else (b.ended_at or event.at)
    return Decision(key=b.key, at=at, kind=kind, detail=event.describe())
