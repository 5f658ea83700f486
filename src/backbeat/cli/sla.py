"""``backbeat sla`` (are we meeting the SLA?) and ``backbeat explain KEY`` (why didn't it run?)."""

from __future__ import annotations

import sys

import click

from backbeat.cli.main import cli, json_option, print_json, run, url_option
from backbeat.reports import explain_data, sla_data, sla_report
from backbeat.schedules import parse_duration

__all__ = ["explain", "explain_data", "sla", "sla_data", "sla_report"]


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
