"""SLA arithmetic: pure functions of a schedule, its breaches and the time.

A schedule's SLA is the longest allowed gap between successful runs. Staleness is the time
since the last success (since creation before the first, and since the last resume when
that is later). Compliance over a window is the share of the window (from the schedule's
creation if later) spent within the SLA. Paused schedules are reported as paused and left
out of compliance.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from backbeat.types import Breach, ScheduleRecord


@dataclass(frozen=True, kw_only=True, slots=True)
class SlaEvent:
    """What ``@app.on_sla_breach`` hooks receive, when a breach starts and when it ends."""

    kind: str
    """``"started"`` or ``"ended"``."""
    breach: Breach
    at: float

    @property
    def key(self) -> str:
        return self.breach.key

    def describe(self) -> str:
        b = self.breach
        if self.kind == "started":
            return f"SLA breach started: schedule {b.key} has not succeeded for {b.sla:g} s (its SLA)"
        assert b.ended_at is not None
        return (
            f"SLA breach ended: schedule {b.key} succeeded again after {b.ended_at - b.started_at:.1f} s in breach "
            f"(worst staleness {b.staleness(self.at):.1f} s, SLA {b.sla:g} s)"
        )


class SlaStatus(StrEnum):
    OK = "ok"
    BREACH = "breach"
    PAUSED = "paused"


@dataclass(frozen=True, kw_only=True, slots=True)
class SlaReport:
    key: str
    task: str
    sla: float
    status: SlaStatus
    staleness: float
    """Seconds since the last success (or creation/resume)."""
    deadline_at: float | None
    compliance: float | None
    """Share of the window within SLA, 0..1; ``None`` when paused."""
    breaches: int
    """Breaches overlapping the window."""
    worst_staleness: float
    """The worst staleness in the window (of any breach, or now)."""
    last_success_at: float | None


def staleness(record: ScheduleRecord, now: float) -> float:
    return max(0.0, now - record.staleness_base)


def status(record: ScheduleRecord, now: float) -> SlaStatus:
    if record.paused:
        return SlaStatus.PAUSED
    if record.deadline_at is not None and now > record.deadline_at:
        return SlaStatus.BREACH
    return SlaStatus.OK


def compliance(record: ScheduleRecord, breaches: Sequence[Breach], now: float, window: float) -> float | None:
    """Share of ``[now - window, now]`` (from creation, if later) within SLA."""
    if record.paused or record.spec.sla is None:
        return None
    start = max(now - window, record.created_at)
    span = now - start
    if span <= 0:
        return 1.0
    late = sum(_overlap(b, start, now) for b in breaches if b.key == record.key)
    # a lateness not yet opened as a breach (nobody checked since the deadline passed)
    if record.breach_since is None and record.deadline_at is not None and now > record.deadline_at:
        late += now - max(record.deadline_at, start)
    return max(0.0, 1.0 - late / span)


def report(record: ScheduleRecord, breaches: Sequence[Breach], now: float, window: float) -> SlaReport:
    assert record.spec.sla is not None
    mine = [b for b in breaches if b.key == record.key and _overlap(b, now - window, now) > 0]
    current = staleness(record, now)
    return SlaReport(
        key=record.key,
        task=record.spec.task,
        sla=record.spec.sla,
        status=status(record, now),
        staleness=current,
        deadline_at=record.deadline_at,
        compliance=compliance(record, breaches, now, window),
        breaches=len(mine),
        worst_staleness=max([current, *(b.staleness(now) for b in mine)]),
        last_success_at=record.last_success_at,
    )


def overall(schedules: int, paused: int, breach_seconds: float, window: float) -> float | None:
    """Compliance across every active schedule with an SLA (a window-weighted average)."""
    active = schedules - paused
    if active <= 0 or window <= 0:
        return None
    return max(0.0, 1.0 - breach_seconds / (active * window))


def _overlap(breach: Breach, start: float, end: float) -> float:
    stop = breach.ended_at if breach.ended_at is not None else end
    return max(0.0, min(stop, end) - max(breach.started_at, start))
