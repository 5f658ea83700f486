"""The autopilot at run time: every ``period`` seconds, measure, decide (``autopilot.py``,
pure), act.

Measure (from the store, so every process agrees): run seconds and completions per task
in the last ``window`` (``job_stats``), the backlog of due jobs (``job_backlog``), the
rate-limit waits of the round (``decision_since``), the adaptive schedules.

Act: worker processes (a callback: ``backbeat run --workers auto`` resizes its supervisor;
``simulate`` its slots), interval changes (``schedule_set_every``, a compare-and-set, each
logged as an ``interval`` decision for ``explain``), and the published state
(``state_set("autopilot")``: desired workers, demand, backlog, why), which
``backbeat status`` shows and the dashboard's ``/metrics`` exports
(``backbeat_autopilot_desired_workers``) for an orchestrator when workers run on many
machines.

Runs in ``backbeat run`` (with its supervisor) and in ``backbeat scheduler`` (intervals
only: workers elsewhere are someone else's to scale, from the published count).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from backbeat.autopilot import PUBLISHED, Capacity, Intervals, Load, Scaler
from backbeat.errors import StoreError
from backbeat.store.base import Store
from backbeat.types import Decision, DecisionKind, ScheduleFilter, ScheduleRecord

if TYPE_CHECKING:
    from backbeat.app import App

log = logging.getLogger("backbeat.autopilot")


@dataclass(frozen=True, kw_only=True, slots=True)
class Round:
    at: float
    capacity: Capacity | None
    changed: int


def scaler(app: App, *, minimum: int, maximum: int, concurrency: int) -> Scaler:
    """The app's scaler (its ``AutopilotSettings``) for that many workers of that many slots."""
    s = app.settings.autopilot
    return Scaler(
        minimum=minimum,
        maximum=maximum,
        concurrency=concurrency,
        target=s.target_utilisation,
        down_after=s.down_after,
    )


class Autopilot:
    def __init__(
        self,
        app: App,
        *,
        scaler: Scaler | None = None,
        resize: Callable[[int], None] | None = None,
        slots: Callable[[], int] | None = None,
    ) -> None:
        """``scaler``/``resize``: scale workers (``resize(n)`` applies a desired count);
        ``slots``: the job slots running now (for the capacity shortfall; default: the
        scaler's desired count times its concurrency, or unknown)."""
        self.app = app
        self.clock = app.clock
        self.scaler = scaler
        self.resize = resize
        self.slots = slots
        self.period = app.settings.autopilot.period
        self.window = app.settings.autopilot.window
        self.intervals = Intervals()
        self.rounds = 0
        self._started = self.clock.now()
        self._since = self._started
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        store = await self.app.client.astore()
        while not self._stopping.is_set():
            try:
                await self.step(store)
            except StoreError as exc:
                log.warning("autopilot: store call failed (%s); retrying", exc)
            await self.clock.wait(self._stopping, self.period)

    async def step(self, store: Store) -> Round:
        now = self.clock.now()
        window = max(min(self.window, now - self._started), 1e-9)
        capacity = None
        if self.scaler is not None:
            queues = sorted({t.info.queue for t in self.app.tasks.values()} | set(self.app.settings.worker.queues))
            load = Load(
                window=window,
                stats=await store.job_stats(now - window),
                backlog=(await store.job_backlog(queues, now=now)).count,
            )
            capacity = self.scaler.observe(load)
            if self.resize is not None:
                self.resize(capacity.desired)
        waits = Counter(
            d.key for d in await store.decision_since([DecisionKind.RATE_LIMITED], since=self._since, limit=100_000)
        )
        self._since = now
        changed = await self._intervals(store, waits, self._shed(capacity), now)
        await self._publish(store, capacity, now)
        self.rounds += 1
        return Round(at=now, capacity=capacity, changed=changed)

    def _shed(self, capacity: Capacity | None) -> float:
        """Busy slots of demand the workers cannot carry (0 when they can, or when unknown)."""
        if capacity is None or self.scaler is None:
            return 0.0
        available = self.slots() if self.slots is not None else capacity.desired * self.scaler.concurrency
        return max(0.0, capacity.slots_needed - available) * self.scaler.target

    async def _intervals(self, store: Store, waits: Counter[str], shed: float, now: float) -> int:
        changes = self.intervals.decide(await _adaptive(store), waits, shed, now=now, window=self.period)
        if not changes:
            return 0
        applied = await store.schedule_set_every(changes, now=now)
        decisions = [
            Decision(
                key=c.key,
                at=now,
                kind=DecisionKind.INTERVAL,
                detail=f"interval {'back to the definition' if c.every is None else f'{c.every:g} s'}: {c.reason}",
            )
            for c, ok in zip(changes, applied, strict=True)
            if ok
        ]
        if decisions:
            await store.decision_append(decisions)
            log.info(
                "autopilot: %d interval change(s), e.g. %s %s", len(decisions), decisions[0].key, decisions[0].detail
            )
        return len(decisions)

    async def _publish(self, store: Store, capacity: Capacity | None, now: float) -> None:
        if capacity is None:
            return
        document = {
            "desired_workers": capacity.desired,
            "needed_workers": capacity.wanted,
            "slots_needed": round(capacity.slots_needed, 2),
            "demand": round(capacity.demand, 3),
            "mean_run_time": None if capacity.mean_run is None else round(capacity.mean_run, 4),
            "reason": capacity.reason,
        }
        await store.state_set(PUBLISHED, json.dumps(document), now=now)


async def _adaptive(store: Store) -> list[ScheduleRecord]:
    """The schedules that declare a range (``max_every``)."""
    found: list[ScheduleRecord] = []
    after = None
    while page := await store.schedule_list(ScheduleFilter(adaptive=True, after=after, limit=1000)):
        found += page
        after = page[-1].key
    return found
