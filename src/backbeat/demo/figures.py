"""What the demo shows, read from the store: one set of figures for the live view, the
plain progress lines and the summary.

Jobs, schedules, SLAs, workers and rate-limit waits come from the store through the store
protocol (so any store URL works), the way ``backbeat status``, ``sla`` and ``explain``
read them: the view shows what an operator would see, not what the demo believes it did.
Only the upstreams' counters (requests, 429s, feed posts) come from the fake APIs, as an
upstream's own dashboard would.

* compliance is ``backbeat sla``'s overall figure over the run (``sla_stats`` since the
  start; ``sla.overall``);
* worst staleness (live) is the largest time since a schedule's last success, now;
* worst gap (summary) is the longest any schedule went without a successful poll during
  the run, from its jobs: creation to first success, between successes, last success to
  the end;
* rate-limit waits are the ``rate_limited`` entries of the schedules' decision logs (a job
  held by its bucket, or told to wait by a 429).

Internal module.
"""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise

from backbeat import sla
from backbeat.demo import jobs
from backbeat.store.base import Store
from backbeat.types import DecisionKind, EventFilter, JobCount, JobFilter, JobState

PAGE = 1000
ALL = 1_000_000
"""Limit for listings the demo reads whole (its store holds only the demo's rows)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Figures:
    """The store's view of the run at ``at``, counted from ``since`` (the demo's start)."""

    since: float
    at: float
    events: Mapping[str, int]
    """``account.linked`` events by state (pending, handled, unhandled, dead)."""
    schedules: int
    polled: int
    """Schedules with at least one successful poll."""
    intervals: tuple[float, float] | None
    """The smallest and largest effective interval of the schedules (the autopilot stretches them)."""
    polls: Mapping[str, int]
    """Poll jobs by state."""
    handlers: Mapping[str, int]
    """Handler jobs (one per event) by state."""
    workers: int
    """Worker processes heartbeating (in the summary: the most seen during the run)."""
    compliance: float | None
    in_breach: int
    breach_seconds: float
    staleness: float
    """The worst staleness now, over every schedule."""
    waits: int
    """Rate-limit waits in the decision logs."""

    @property
    def elapsed(self) -> float:
        return self.at - self.since


@dataclass(frozen=True, kw_only=True, slots=True)
class Breached:
    key: str
    seconds: float
    """Seconds in breach during the run."""
    waits: int
    """Its rate-limit waits."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Record:
    """The exact figures of a whole run, for the summary."""

    worst_gap: float
    worst_key: str | None
    breaches: int
    breached: tuple[Breached, ...]
    """Schedules that breached, longest in breach first."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Upstreams:
    """The fake APIs' own counters: what the upstreams saw."""

    requests: int
    """Requests Twitter received."""
    throttled: int
    """Requests Twitter answered 429."""
    first_limit: str
    limit: str
    tightened_after: float | None
    """Seconds into the run when Twitter tightened its limit."""
    posts: int
    feeds: int
    """Users whose feed received a post."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Run:
    """The demo's own settings and progress."""

    url: str
    users: int
    emitted: int
    """``account.linked`` events the main app emitted so far."""
    duration: float
    auto: bool
    """The autopilot chooses the worker count (``--workers auto``)."""
    workers: int
    """The desired worker count: the autopilot's with ``--workers auto``, else ``--workers``."""
    log: str


@dataclass(frozen=True, kw_only=True, slots=True)
class Snapshot:
    """One frame of the view; with ``record`` set, the summary."""

    run: Run
    figures: Figures
    upstreams: Upstreams
    record: Record | None = None
    interrupted: bool = False
    """Ended by Ctrl-C (or SIGTERM) before ``duration``."""


async def collect(store: Store, *, since: float, now: float, stale_after: float) -> Figures:
    records = await store.sla_list(limit=ALL)
    counts = await store.job_counts()
    stats = await store.sla_stats(now=now, since=since)
    workers = await store.worker_list()
    decisions = await decision_counts(store, [r.key for r in records], since)
    intervals = [r.every_now or r.spec.every for r in records if r.spec.every is not None]
    return Figures(
        since=since,
        at=now,
        events=await event_states(store),
        schedules=len(records),
        polled=sum(1 for r in records if r.last_success_at is not None),
        intervals=(min(intervals), max(intervals)) if intervals else None,
        polls=_by_state(counts, jobs.poll_twitter.name),
        handlers=_by_state(counts, jobs.start_polling.name),
        workers=sum(1 for w in workers if w.heartbeat_at >= now - stale_after),
        compliance=sla.overall(stats.schedules, stats.paused, stats.breach_seconds, now - since),
        in_breach=stats.breached,
        breach_seconds=stats.breach_seconds,
        staleness=max((sla.staleness(r, now) for r in records), default=0.0),
        waits=sum(c[DecisionKind.RATE_LIMITED] for c in decisions.values()),
    )


async def record(store: Store, *, since: float, now: float) -> Record:
    records = await store.sla_list(limit=ALL)
    successes = await success_times(store, jobs.poll_twitter.name)
    gaps = {r.key: longest_gap(r.created_at, successes.get(r.key, []), now) for r in records}
    worst_key = max(gaps, key=lambda k: gaps[k], default=None)
    in_breach: dict[str, float] = defaultdict(float)
    breaches = await store.sla_breaches(key=None, since=since, limit=ALL)
    for b in breaches:
        in_breach[b.key] += max(0.0, min(b.ended_at if b.ended_at is not None else now, now) - max(b.started_at, since))
    waits = await decision_counts(store, list(in_breach), since)
    breached = sorted(
        (Breached(key=k, seconds=s, waits=waits[k][DecisionKind.RATE_LIMITED]) for k, s in in_breach.items()),
        key=lambda b: (-b.seconds, b.key),
    )
    return Record(
        worst_gap=gaps[worst_key] if worst_key is not None else 0.0,
        worst_key=worst_key,
        breaches=len(breaches),
        breached=tuple(breached),
    )


def longest_gap(start: float, successes: Sequence[float], end: float) -> float:
    """The longest stretch of ``[start, end]`` without a success."""
    points = [start, *sorted(s for s in successes if start <= s <= end), end]
    return max(b - a for a, b in pairwise(points))


async def event_states(store: Store) -> dict[str, int]:
    states: Counter[str] = Counter()
    before = None
    while page := await store.event_list(EventFilter(name=jobs.EVENT, limit=PAGE, before=before)):
        states.update(e.state.value for e in page)
        before = page[-1].id
    return dict(states)


async def success_times(store: Store, task: str) -> dict[str, list[float]]:
    """When each schedule's jobs of ``task`` succeeded."""
    times: dict[str, list[float]] = defaultdict(list)
    before = None
    while page := await store.job_list(JobFilter(task=task, state=JobState.SUCCEEDED, limit=PAGE, before=before)):
        for job in page:
            if job.schedule_key is not None and job.finished_at is not None:
                times[job.schedule_key].append(job.finished_at)
        before = page[-1].id
    return times


async def decision_counts(store: Store, keys: Sequence[str], since: float) -> dict[str, Counter[DecisionKind]]:
    """Each schedule's decision-log entries since ``since``, counted by kind."""
    logs = await asyncio.gather(*(store.decision_list(key, limit=ALL) for key in keys))
    return {key: Counter(d.kind for d in log if d.at >= since) for key, log in zip(keys, logs, strict=True)}


def _by_state(counts: Sequence[JobCount], task: str) -> dict[str, int]:
    out: Counter[str] = Counter()
    for c in counts:
        if c.task == task:
            out[c.state.value] += c.count
    return dict(out)
