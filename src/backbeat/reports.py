"""What the CLI's ``--json`` and the HTTP API read from the store and compute, once: the
SLA summary (``backbeat sla``), a schedule's timeline (``backbeat explain``), and the
worst-first schedule rows (``backbeat schedules list --worst``, ``/api/schedules``).

Each returns plain JSON data in the shapes of ``backbeat.shapes``; both front ends print
or send it as it is, so they always agree.

Internal module.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from backbeat import sla as sla_math
from backbeat.client import Client
from backbeat.clock import iso
from backbeat.explain import timeline
from backbeat.shapes import schedule as schedule_shape
from backbeat.store.base import Store
from backbeat.types import JobFilter, ScheduleRank, ScheduleRecord

SLA_WINDOW = 24 * 3600.0
"""The compliance window of schedule rows (``backbeat sla``'s default ``--window``)."""


def sla_report(r: sla_math.SlaReport) -> dict[str, Any]:
    return {
        "key": r.key,
        "task": r.task,
        "sla": r.sla,
        "status": r.status.value,
        "staleness": round(r.staleness, 3),
        "deadline_at": iso(r.deadline_at),
        "compliance": None if r.compliance is None else round(r.compliance, 6),
        "breaches": r.breaches,
        "worst_staleness": round(r.worst_staleness, 3),
        "last_success_at": iso(r.last_success_at),
    }


async def sla_summary(store: Store, *, now: float, window: float) -> dict[str, Any]:
    """Counts over every schedule with an SLA and the overall compliance in the window."""
    stats = await store.sla_stats(now=now, since=now - window)
    return {
        "schedules": stats.schedules,
        "paused": stats.paused,
        "in_breach": stats.breached,
        "compliance": sla_math.overall(stats.schedules, stats.paused, stats.breach_seconds, window),
    }


async def sla_data(client: Client, window: float, limit: int) -> dict[str, Any]:
    """``backbeat sla --json``: the summary and the ``limit`` worst schedules with an SLA."""
    store = await client.astore()
    now = client.clock.now()
    records = await store.sla_list(limit=limit)
    reports = await _reports(store, records, now, window)
    return {
        "now": iso(now),
        "window_seconds": window,
        "summary": await sla_summary(store, now=now, window=window),
        "schedules": [reports[r.key] for r in records],
    }


async def _reports(
    store: Store, records: Sequence[ScheduleRecord], now: float, window: float
) -> dict[str, dict[str, Any]]:
    """``sla_report`` of each of ``records`` that has an SLA, by key (their breaches read at once)."""
    keys = [r.key for r in records if r.spec.sla is not None]
    breaches = await store.sla_breaches_of(keys, since=now - window) if keys else {}
    return {r.key: sla_report(sla_math.report(r, breaches[r.key], now, window)) for r in records if r.key in breaches}


async def schedule_rows(
    store: Store, records: Sequence[ScheduleRecord], *, now: float, window: float = SLA_WINDOW
) -> list[dict[str, Any]]:
    """Each schedule (``shapes.schedule``) with where it stands: ``state`` (``paused``,
    ``running`` with a run in flight, else ``waiting``), ``staleness`` (seconds since its
    last success, or creation/resume), and ``sla`` (``sla_report`` over ``window``, or
    ``None`` without an SLA)."""
    reports = await _reports(store, records, now, window)
    rows = []
    for record in records:
        report = reports.get(record.key)
        state = "paused" if record.paused else "running" if record.in_flight is not None else "waiting"
        rows.append(
            schedule_shape(record)
            | {
                "state": state,
                "staleness": round(sla_math.staleness(record, now), 3),
                "sla_status": None if report is None else report["status"],
                "sla_report": report,
            }
        )
    return rows


def rank_cursor(record: ScheduleRecord) -> str:
    """The keyset cursor after ``record`` in worst-first order, as text (``group:deadline:key``)."""
    rank = ScheduleRank.of(record)
    return f"{rank.group}:{rank.deadline_at!r}:{rank.key}"


def parse_cursor(text: str) -> ScheduleRank:
    """The inverse of ``rank_cursor``; ``ValueError`` for anything else."""
    group, deadline, key = text.split(":", 2)
    if group not in ("0", "1", "2"):
        raise ValueError(f"bad group {group!r}")
    value = float(deadline)
    if value != value:  # NaN
        raise ValueError("bad deadline")
    return ScheduleRank(group=int(group), deadline_at=value, key=key)


async def worst_rows(
    store: Store, *, now: float, after: ScheduleRank | None = None, search: str | None = None, limit: int
) -> tuple[list[dict[str, Any]], str | None]:
    """``schedule_rows`` of up to ``limit`` schedules worst first, and the cursor of the
    next page (``None`` when this one is not full)."""
    records = await store.schedule_worst(after=after, search=search, limit=limit)
    rows = await schedule_rows(store, records, now=now)
    return rows, (rank_cursor(records[-1]) if records and len(records) == limit else None)


async def explain_data(client: Client, key: str, limit: int) -> dict[str, Any]:
    """``backbeat explain KEY --json``: the schedule (as ``schedule_rows``) and its timeline, newest first."""
    store = await client.astore()
    record = await store.schedule_get(key)
    jobs = await store.job_list(JobFilter(schedule_key=key, limit=limit))
    decisions = await store.decision_list(key, limit=limit)
    entries = timeline(jobs, decisions)[:limit]
    return {
        "schedule": (await schedule_rows(store, [record], now=client.clock.now()))[0],
        "timeline": [{"at": iso(e.at), "kind": e.kind, "detail": e.detail, "job_id": e.job_id} for e in entries],
    }
