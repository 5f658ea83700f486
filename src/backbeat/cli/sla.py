"""``backbeat sla`` (are we meeting the SLA?) and ``backbeat explain KEY`` (why didn't it run?)."""

from __future__ import annotations

import sys
from typing import Any

import click

from backbeat import sla as sla_math
from backbeat.cli.main import cli, json_option, print_json, run, url_option
from backbeat.client import Client
from backbeat.clock import iso
from backbeat.explain import timeline
from backbeat.schedules import parse_duration
from backbeat.shapes import schedule as schedule_shape
from backbeat.types import JobFilter


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


async def sla_data(client: Client, window: float, limit: int) -> dict[str, Any]:
    store = await client.astore()
    now = client.clock.now()
    since = now - window
    reports = []
    for record in await store.sla_list(limit=limit):
        breaches = await store.sla_breaches(key=record.key, since=since, limit=10_000)
        reports.append(sla_math.report(record, breaches, now, window))
    stats = await store.sla_stats(now=now, since=since)
    return {
        "now": iso(now),
        "window_seconds": window,
        "summary": {
            "schedules": stats.schedules,
            "paused": stats.paused,
            "in_breach": stats.breached,
            "compliance": sla_math.overall(stats.schedules, stats.paused, stats.breach_seconds, window),
        },
        "schedules": [sla_report(r) for r in reports],
    }


@cli.command()
@click.option("--check", is_flag=True, help="Exit 1 when any schedule is in breach (for cron and monitoring).")
@click.option("--window", default="24h", show_default=True, help="Compliance window.")
@click.option("--limit", type=click.IntRange(1, 100_000), default=50, show_default=True, help="Worst schedules shown.")
@url_option
@json_option
def sla(check: bool, window: str, limit: int, url: str | None, as_json: bool) -> None:
    """Every schedule's SLA, staleness and compliance, worst first."""
    seconds = parse_duration(window, "--window")
    data = run(lambda client: sla_data(client, seconds, limit), url)
    if as_json:
        print_json(data)
    else:
        from backbeat.cli.render import render_sla

        render_sla(data)
    breached = data["summary"]["in_breach"]
    if check and breached:
        click.echo(f"backbeat: {breached} schedule(s) in breach of their SLA", err=True)
        sys.exit(1)


async def explain_data(client: Client, key: str, limit: int) -> dict[str, Any]:
    store = await client.astore()
    record = await store.schedule_get(key)
    jobs = await store.job_list(JobFilter(schedule_key=key, limit=limit))
    decisions = await store.decision_list(key, limit=limit)
    entries = timeline(jobs, decisions)[:limit]
    return {
        "schedule": schedule_shape(record),
        "timeline": [{"at": iso(e.at), "kind": e.kind, "detail": e.detail, "job_id": e.job_id} for e in entries],
    }


@cli.command()
@click.argument("key")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@url_option
@json_option
def explain(key: str, limit: int, url: str | None, as_json: bool) -> None:
    """The decision timeline of schedule KEY: fired, skipped and why, rate-limited, paused,
    changed, lease lost, breaches — "why didn't KEY run at T?"."""
    data = run(lambda client: explain_data(client, key, limit), url)
    if as_json:
        print_json(data)
    else:
        from backbeat.cli.render import render_explain

        render_explain(data)
