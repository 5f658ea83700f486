"""Discrete-event simulation of a workload under backbeat's real dispatch policy.

What is real: the store (the in-memory reference store), the scheduler (``Scheduler.tick``:
planning, misfires, deadline ordering), the claim order (``Store.job_claim``), the end of
runs (``job_ack`` re-arming schedules) and SLA accounting. What is simulated: execution —
``workers`` slots, each job holding one for a sampled service time of simulated time on a
``ManualClock``. So ``simulate`` answers "what would backbeat do with this load" with the
code that will do it, not a model of it.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from backbeat.app import App
from backbeat.clock import ManualClock
from backbeat.config import AutopilotSettings, SchedulerSettings
from backbeat.ids import uuid7
from backbeat.runtime.autopilot import Autopilot, scaler
from backbeat.runtime.scheduler import Scheduler
from backbeat.store.base import Store
from backbeat.types import (
    ClaimRequest,
    JobOutcome,
    JobState,
    Lease,
    Outcome,
    ScheduleFilter,
    ScheduleKind,
    ScheduleMode,
    ScheduleRecord,
    ScheduleSpec,
)

TASK = "simulate.poll"
START = 1_800_000_000.0


@dataclass(frozen=True, kw_only=True, slots=True)
class Group:
    """``count`` keyed schedules alike: every ``every`` s, promising ``sla`` s, jobs taking
    ``job_time`` s on average (``p95`` shapes a log-normal spread; ``None``: always the mean)."""

    count: int
    every: float
    sla: float | None
    job_time: float
    p95: float | None = None
    max_every: float | None = None
    """Let the autopilot stretch the interval up to this."""
    name: str = "g"

    def sampler(self, rng: random.Random) -> ServiceTime:
        return ServiceTime(self.job_time, self.p95, rng)


class ServiceTime:
    """Log-normal service times with the given mean and 95th percentile."""

    def __init__(self, mean: float, p95: float | None, rng: random.Random) -> None:
        self.mean, self.rng = mean, rng
        self.sigma = 0.0
        if p95 is not None and p95 > mean > 0:
            # mean = exp(mu + s^2/2), p95 = exp(mu + 1.645 s): solve for s
            a = math.log(p95 / mean)
            self.sigma = 1.645 - math.sqrt(max(0.0, 1.645**2 - 2 * a))
        self.mu = math.log(mean) - self.sigma**2 / 2 if mean > 0 else 0.0

    def __call__(self) -> float:
        if self.sigma == 0.0:
            return self.mean
        return self.rng.lognormvariate(self.mu, self.sigma)


@dataclass(frozen=True, kw_only=True, slots=True)
class Sample:
    at: float
    """Seconds since the start."""
    compliance: float | None
    """Share of schedules with an SLA within it at this instant."""
    mean_staleness: float
    p99_staleness: float
    max_staleness: float
    worst_ratio: float
    """The largest staleness / SLA across schedules."""
    mean_ratio: float
    busy: int
    slots: int
    workers: int
    """Worker processes (``slots`` / concurrency)."""
    mean_every: float
    """The schedules' mean effective interval (the autopilot may stretch them)."""


@dataclass(kw_only=True)
class Result:
    samples: list[Sample] = field(default_factory=list)
    runs: int = 0
    fired: int = 0
    worst: dict[str, float] = field(default_factory=dict)
    """Each schedule's worst staleness seen at a sample after the warm-up."""

    def after(self, warmup: float) -> list[Sample]:
        return [s for s in self.samples if s.at >= warmup]


@dataclass(kw_only=True)
class _Slot:
    end: float
    lease: Lease
    group: str


@dataclass(kw_only=True)
class Workers:
    """The simulated worker processes: a fixed count, or sized by the autopilot."""

    count: int | None = None
    """Fixed; ``None`` for the autopilot (``--workers auto``)."""
    concurrency: int = 1
    minimum: int = 1
    maximum: int = 1000


async def simulate(
    groups: Sequence[Group],
    *,
    workers: Workers,
    duration: float,
    sample_every: float = 5.0,
    warmup: float = 0.0,
    seed: int = 1,
    deadline_dispatch: bool = True,
    resolution: float = 0.05,
    autopilot: AutopilotSettings | None = None,
) -> Result:
    """Run the workload for ``duration`` simulated seconds.

    Time advances to the next thing that happens, rounded up to ``resolution`` seconds (a
    scheduler's and a worker's reaction time), so simultaneous work is done in batches.
    The autopilot (``runtime.autopilot.Autopilot``, the one ``backbeat run`` uses) runs
    every ``autopilot.period`` and sizes the slots, and stretches schedules with a range."""
    rng = random.Random(seed)
    clock = ManualClock(START)
    app = App(
        f"memory://simulate-{uuid7()}",
        clock=clock,
        scheduler=SchedulerSettings(deadline_dispatch=deadline_dispatch, batch=10_000),
        autopilot=autopilot or AutopilotSettings(),
    )
    app.task(name=TASK)(lambda: None)
    store = await app.client.astore()
    samplers = {g.name: g.sampler(rng) for g in groups}
    await _create(store, groups, rng)
    scheduler = Scheduler(app, rng=rng)
    fleet = _Fleet(app, workers)
    request = ClaimRequest(worker_id="simulate", queues=("default",), tasks=frozenset({TASK}), limit=1, lease=1e12)
    running: list[tuple[float, int, _Slot]] = []
    seq = 0
    result = Result()
    next_sample = START
    next_round = START
    end = START + duration
    while (now := clock.now()) <= end:
        finished = []
        while running and running[0][0] <= now:
            finished.append(heapq.heappop(running)[2])
        if finished:
            await store.job_ack([JobOutcome(lease=s.lease, outcome=Outcome.SUCCEEDED) for s in finished], now=now)
            result.runs += len(finished)
        if now >= next_round:
            await fleet.round(store, now)
            next_round = now + fleet.autopilot.period
        result.fired += await scheduler.tick(store)
        free = fleet.slots - len(running)
        if free > 0:
            for job in await store.job_claim(_limit(request, free), now=now):
                assert job.lease_token is not None and job.schedule_key is not None
                group = job.schedule_key.split(":", 1)[0]
                slot = _Slot(
                    end=now + samplers[group](), lease=Lease(job_id=job.id, token=job.lease_token), group=group
                )
                seq += 1
                heapq.heappush(running, (slot.end, seq, slot))
        if now >= next_sample:
            sample, stale = await _sample(store, now, len(running), fleet)
            result.samples.append(sample)
            if sample.at >= warmup:
                for key, value in stale.items():
                    result.worst[key] = max(value, result.worst.get(key, 0.0))
            next_sample = now + sample_every
        upcoming = [
            t
            for t in (next_sample, next_round, await store.schedule_next_due(), running[0][0] if running else None)
            if t is not None and t > now
        ]
        step = min([*upcoming, end + 1])
        clock.set(max(step, math.ceil((step - START) / resolution) * resolution + START))
    await app.aclose()
    return result


class _Fleet:
    """The slots the simulation runs, and the autopilot that sizes them."""

    def __init__(self, app: App, workers: Workers) -> None:
        self.workers = workers
        self.count = workers.count if workers.count is not None else workers.minimum
        fixed = workers.count is not None
        self.autopilot = Autopilot(
            app,
            scaler=scaler(
                app,
                minimum=self.count if fixed else workers.minimum,
                maximum=self.count if fixed else workers.maximum,
                concurrency=workers.concurrency,
            ),
            resize=None if fixed else self.resize,
            slots=lambda: self.slots,
        )
        self._pruned = START

    @property
    def slots(self) -> int:
        return self.count * self.workers.concurrency

    def resize(self, count: int) -> None:
        self.count = count

    async def round(self, store: Store, now: float) -> None:
        await self.autopilot.step(store)
        if now - self._pruned >= 60.0:  # keep only the window the autopilot reads
            await store.job_prune({JobState.SUCCEEDED: now - 2 * self.autopilot.window}, limit=10_000_000)
            self._pruned = now


def _limit(request: ClaimRequest, n: int) -> ClaimRequest:
    return ClaimRequest(
        worker_id=request.worker_id, queues=request.queues, tasks=request.tasks, limit=n, lease=request.lease
    )


async def _create(store: Store, groups: Sequence[Group], rng: random.Random) -> None:
    """The schedules, first runs spread over one interval (as keys are added over time)."""
    for g in groups:
        for i in range(g.count):
            spec = ScheduleSpec(
                key=f"{g.name}:{i}",
                task=TASK,
                queue="default",
                payload='{"args":[],"kwargs":{}}',
                kind=ScheduleKind.EVERY,
                every=g.every,
                mode=ScheduleMode.DELAY,
                sla=g.sla,
                max_every=g.max_every,
                max_attempts=1,
            )
            first = START + rng.uniform(0, g.every)
            await store.schedule_upsert(spec, next_tick=first, next_at=first, now=START)


async def _sample(store: Store, now: float, busy: int, fleet: _Fleet) -> tuple[Sample, dict[str, float]]:
    records: list[ScheduleRecord] = []
    after = None
    while page := await store.schedule_list(ScheduleFilter(after=after, limit=10_000)):
        records += page
        after = page[-1].key
    by_key = {r.key: now - r.staleness_base for r in records}
    stale = sorted(by_key.values())
    ratios = [(now - r.staleness_base) / r.spec.sla for r in records if r.spec.sla]
    within = [r for r in ratios if r <= 1.0]
    sample = Sample(
        at=now - START,
        compliance=len(within) / len(ratios) if ratios else None,
        mean_staleness=sum(stale) / len(stale),
        p99_staleness=stale[min(len(stale) - 1, int(len(stale) * 0.99))],
        max_staleness=stale[-1],
        worst_ratio=max(ratios) if ratios else 0.0,
        mean_ratio=sum(ratios) / len(ratios) if ratios else 0.0,
        busy=busy,
        slots=fleet.slots,
        workers=fleet.count,
        mean_every=sum(r.every_now or r.spec.every or 0.0 for r in records) / len(records),
    )
    return sample, by_key
