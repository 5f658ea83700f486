"""The autopilot's policy, pure: how many workers a load needs, and which schedules'
intervals to stretch or shrink. ``runtime/autopilot.py`` feeds it measurements from the
store; ``backbeat plan`` feeds it a described workload; ``simulate`` runs the runtime
autopilot on simulated time. One policy, three uses, so their answers agree.

**Capacity.** Demand is busy slot-seconds per second: per task, completions per second
* mean run time (measured as run seconds finished in a window, smoothed by an EWMA).
The slots needed hold that demand at ``target`` utilisation (0.75: queueing delay stays
small next to the run time even with few slots) -- or, when more, carry the demand at
full speed *and* clear the backlog's work within ``horizon`` seconds (at start, after a
spike). While every slot is busy and work waits, the measured demand is only a floor, so
the slots grow by half each round until they are not. Workers needed = slots / slots per
worker. Scaling is by
worker *processes*: each runs ``--concurrency`` slots (async tasks on its loop, sync ones
in threads), which suits I/O-bound work, and a process is also the unit an orchestrator
scales (the desired count maps 1:1 to replicas). Up at once; down one step at a time,
only after ``down_after`` consecutive observations agree (no flapping).

**Intervals.** An every-schedule with ``max_every`` may run less often when its rate
limit or the workers run short, never past its *ceiling*: ``max_every``, and for an SLA
schedule ``sla - run time - margin`` so a stretched schedule still keeps its promise.
A schedule whose runs waited on a rate limit in the last round is stretched (* ``STRETCH``);
when the workers cannot be added (at ``--max-workers`` or a fixed count) the schedules
with the most room are stretched until the demand they shed covers the shortfall. After
two of its own intervals (and ``calm_rounds`` rounds) without a wait an interval shrinks
back (/ ``SHRINK`` a step) to the definition's. Every change carries its reason.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from backbeat.errors import ConfigError
from backbeat.types import IntervalChange, ScheduleKind, ScheduleRecord, TaskStats

PUBLISHED = "autopilot"
"""The name the autopilot publishes its state under (``Store.state_get``)."""
TARGET_UTILISATION = 0.75
SATURATED = 0.9
"""Measured demand this close to the slots in use means they are all busy: the true demand
is at least that, and unknown, so the scaler grows the slots by half each round."""
STRETCH = 1.5
SHRINK = 1.25
MIN_MARGIN = 0.5
"""Seconds always kept between a stretched interval's run and its SLA (at least 10 % of the SLA)."""


# -- capacity -----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class Load:
    """What the store says about the last window."""

    window: float
    stats: Sequence[TaskStats]
    backlog: int
    """Jobs due and waiting for a slot."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Capacity:
    demand: float
    """Busy slot-seconds per second (smoothed)."""
    mean_run: float | None
    slots_needed: float
    desired: int
    """Worker processes wanted now (after hysteresis, within bounds)."""
    wanted: int
    """Worker processes the load needs (before hysteresis and bounds)."""
    reason: str


def slots_needed(demand: float, target: float = TARGET_UTILISATION) -> float:
    """Slots that carry ``demand`` busy slot-seconds per second at ``target`` utilisation."""
    return demand / target


def workers_for(slots: float, concurrency: int) -> int:
    return max(0, math.ceil(slots / concurrency - 1e-9))


class Scaler:
    """Measured load in, desired worker count out, with hysteresis."""

    def __init__(
        self,
        *,
        minimum: int,
        maximum: int,
        concurrency: int,
        target: float = TARGET_UTILISATION,
        horizon: float = 10.0,
        smoothing: float = 0.1,
        down_after: int = 6,
    ) -> None:
        if not 1 <= minimum <= maximum:
            raise ConfigError(f"need 1 <= min workers <= max workers, got {minimum} and {maximum}")
        self.minimum, self.maximum, self.concurrency = minimum, maximum, concurrency
        self.target, self.horizon, self.smoothing, self.down_after = target, horizon, smoothing, down_after
        self.desired = minimum
        self.demand: float | None = None
        self.mean_run: float | None = None
        self._lower = 0

    def observe(self, load: Load) -> Capacity:
        finished = sum(s.finished for s in load.stats)
        seconds = sum(s.run_seconds for s in load.stats)
        measured = seconds / load.window if load.window > 0 else 0.0
        self.demand = measured if self.demand is None else self.demand + self.smoothing * (measured - self.demand)
        if finished:
            self.mean_run = seconds / finished
        catch_up = load.backlog * (self.mean_run or 1.0) / self.horizon
        slots = max(slots_needed(self.demand, self.target), self.demand + catch_up)
        have = self.desired * self.concurrency
        if load.backlog and measured >= SATURATED * have:
            slots = max(slots, have * STRETCH)  # every slot busy and work waiting: demand is unknown, grow
        wanted = workers_for(slots, self.concurrency)
        bounded = min(self.maximum, max(self.minimum, wanted))
        before = self.desired
        if bounded > self.desired:
            self.desired, self._lower = bounded, 0
        elif bounded < self.desired:
            self._lower += 1
            if self._lower >= self.down_after:
                self.desired, self._lower = self.desired - 1, 0
        else:
            self._lower = 0
        reason = (
            f"demand {self.demand:.2f} busy slots at {self.target:.0%} utilisation, or with a backlog of "
            f"{load.backlog} cleared in {self.horizon:g} s -> {slots:.1f} slots = {wanted} worker(s) of "
            f"{self.concurrency} slot(s)"
        )
        if wanted != bounded:
            reason += f", held within {self.minimum}..{self.maximum}"
        if self.desired < bounded or (self.desired > bounded and before == self.desired):
            reason += f"; staying at {self.desired} until {self.down_after} observations agree"
        return Capacity(
            demand=self.demand,
            mean_run=self.mean_run,
            slots_needed=slots,
            desired=self.desired,
            wanted=wanted,
            reason=reason,
        )


# -- intervals ----------------------------------------------------------------------------


def ceiling(record: ScheduleRecord) -> float | None:
    """The longest interval the schedule may run at, or None if it is not adaptive."""
    spec = record.spec
    if spec.kind is not ScheduleKind.EVERY or spec.max_every is None or spec.every is None:
        return None
    top = spec.max_every
    if spec.sla is not None:
        margin = max(MIN_MARGIN, 0.1 * spec.sla)
        top = min(top, spec.sla - (record.run_time or 0.0) - margin)
    return max(spec.every, top)


def interval(record: ScheduleRecord) -> float:
    assert record.spec.every is not None
    return record.every_now or record.spec.every


def share(every: float, run_time: float) -> float:
    """Busy slot-seconds per second one delay-mode schedule asks for."""
    return run_time / (every + run_time) if every + run_time > 0 else 0.0


class Intervals:
    """Decides interval changes round by round; remembers when each key last felt pressure
    (or last shrank), so a schedule shrinks only after ``calm_runs`` of its own intervals
    (and ``calm_rounds`` rounds) without a rate-limit wait."""

    def __init__(self, *, calm_rounds: int = 3, calm_runs: int = 2) -> None:
        self.calm_rounds = calm_rounds
        self.calm_runs = calm_runs
        self._since: dict[str, float] = {}

    def decide(
        self, records: Iterable[ScheduleRecord], waits: Mapping[str, int], shed: float, *, now: float, window: float
    ) -> list[IntervalChange]:
        """Changes for the round ending at ``now``. ``waits``: rate-limit waits per key in
        the round (``window`` seconds); ``shed``: busy slots of demand to remove because
        workers cannot be added."""
        changes: list[IntervalChange] = []
        roomy: list[tuple[float, ScheduleRecord, float]] = []
        for record in records:
            top = ceiling(record)
            if top is None:
                continue
            base = record.spec.every
            assert base is not None  # an adaptive schedule has an interval
            now_every = interval(record)
            waited = waits.get(record.key, 0)
            if waited:
                self._since[record.key] = now
                target = min(top, now_every * STRETCH)
                if target > now_every + 1e-9:
                    reason = f"rate limit: its runs waited {waited} time(s) in the last {window:g} s"
                    changes.append(_change(record, target, reason))
                continue
            if top > now_every + 1e-9:
                roomy.append(((top - now_every) / now_every, record, top))
            calm = now - self._since.setdefault(record.key, now - window)
            if (
                shed <= 0
                and now_every > base + 1e-9
                and calm >= max(self.calm_rounds * window, self.calm_runs * now_every)
            ):
                self._since[record.key] = now
                target = max(base, now_every / SHRINK)
                reason = f"no rate-limit wait for {calm:.0f} s: back towards {base:g} s"
                changes.append(_change(record, target, reason))
        if shed > 0:
            changes += _stretch_for_capacity(roomy, shed)
        return changes


def _stretch_for_capacity(roomy: list[tuple[float, ScheduleRecord, float]], shed: float) -> list[IntervalChange]:
    """Stretch the schedules with the most room first until ``shed`` busy slots are freed."""
    changes = []
    freed = 0.0
    for _, record, top in sorted(roomy, key=lambda r: (-r[0], r[1].key)):
        if freed >= shed:
            break
        now_every = interval(record)
        target = min(top, now_every * STRETCH)
        run = record.run_time or 0.0
        freed += share(now_every, run) - share(target, run)
        changes.append(_change(record, target, f"capacity: the workers are short by {shed:.2f} busy slots"))
    return changes


def _change(record: ScheduleRecord, every: float, reason: str) -> IntervalChange:
    assert record.spec.every is not None
    settled = None if abs(every - record.spec.every) < 1e-9 else round(every, 3)
    return IntervalChange(key=record.key, every=settled, expected=record.every_now, reason=reason)


# -- planning -----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class Plan:
    every: float
    """The interval that meets the SLA (or the one given)."""
    demand: float
    slots: float
    workers: int
    utilisation: float
    feasible: bool
    notes: tuple[str, ...]


def plan(
    *,
    schedules: int,
    sla: float,
    job_time: float,
    p95: float | None = None,
    every: float | None = None,
    limit: int | None = None,
    per: float | None = None,
    concurrency: int = 10,
    target: float = TARGET_UTILISATION,
) -> Plan:
    """What ``schedules`` keyed every-schedules (delay mode) promising ``sla`` need, each
    run taking ``job_time`` on average (``p95`` at the 95th percentile), rate limited to
    ``limit`` runs per ``per`` seconds per key."""
    slow = p95 if p95 is not None else job_time
    margin = max(MIN_MARGIN, 0.1 * sla)
    longest = sla - slow - margin
    notes: list[str] = []
    feasible = True
    if every is None:
        every = longest
        notes.append(f"interval = SLA {sla:g} s - p95 run {slow:g} s - margin {margin:g} s")
    elif every > longest:
        notes.append(f"an interval of {every:g} s cannot keep the SLA: at most {longest:g} s does")
        feasible = False
    if limit is not None and per is not None:
        fastest = per / limit
        if fastest > every + job_time:
            notes.append(f"the rate limit allows a run every {fastest:g} s per key at most")
            if fastest > sla - slow:
                feasible = False
                notes.append(f"no interval keeps a {sla:g} s SLA under a rate limit of {limit} per {per:g} s")
            every = max(every, fastest - job_time)
    if every <= 0:
        feasible = False
        notes.append(f"a run of {slow:g} s cannot fit in an SLA of {sla:g} s")
        every = max(every, 0.0)
    demand = schedules * share(every, job_time)
    slots = slots_needed(demand, target)
    workers = workers_for(slots, concurrency)
    capacity = workers * concurrency
    return Plan(
        every=every,
        demand=demand,
        slots=slots,
        workers=workers,
        utilisation=demand / capacity if capacity else 0.0,
        feasible=feasible,
        notes=tuple(notes),
    )
