"""``backbeat plan`` and ``backbeat simulate``: before deploying, how many workers a
workload of keyed schedules needs, computed (``autopilot.plan``) and simulated
(``simulate.simulate``, the real dispatch and autopilot code on simulated time)."""

from __future__ import annotations

import asyncio
import gc
import html
import time
from pathlib import Path
from typing import Any

import click

from backbeat.autopilot import TARGET_UTILISATION, plan
from backbeat.cli.main import cli, json_option, print_json
from backbeat.errors import ConfigError
from backbeat.schedules import parse_duration
from backbeat.simulate import Group, Result, Sample, Workers, simulate


def workload_options(fn: Any) -> Any:
    for option in reversed(
        [
            click.option("--schedules", type=click.IntRange(min=1), required=True, help="Keyed schedules, e.g. 10000."),
            click.option("--sla", required=True, metavar="DURATION", help="Longest allowed gap between successes."),
            click.option("--job-time", required=True, metavar="DURATION", help="Mean run time of one job."),
            click.option(
                "--p95", default=None, metavar="DURATION", help="95th percentile run time (default: the mean)."
            ),
            click.option(
                "--every", default=None, metavar="DURATION", help="Interval (default: the longest that keeps the SLA)."
            ),
            click.option("--rate-limit", default=None, metavar="N/DURATION", help="Runs allowed per key, e.g. 1/15s."),
            click.option(
                "--concurrency", type=click.IntRange(min=1), default=10, show_default=True, help="Job slots per worker."
            ),
        ]
    ):
        fn = option(fn)
    return fn


def _seconds(value: str | None, what: str) -> float | None:
    return None if value is None else parse_duration(value, what)


def _rate(value: str | None) -> tuple[int | None, float | None]:
    if value is None:
        return None, None
    count, _, per = value.partition("/")
    if not count.isdigit() or int(count) < 1 or not per:
        raise ConfigError(f"--rate-limit must look like 1/15s (runs per duration), got {value!r}")
    return int(count), parse_duration(per, "--rate-limit period")


def _plan(
    schedules: int, sla: str, job_time: str, p95: str | None, every: str | None, rate: str | None, concurrency: int
) -> Any:
    limit, per = _rate(rate)
    return plan(
        schedules=schedules,
        sla=parse_duration(sla, "--sla"),
        job_time=parse_duration(job_time, "--job-time"),
        p95=_seconds(p95, "--p95"),
        every=_seconds(every, "--every"),
        limit=limit,
        per=per,
        concurrency=concurrency,
    )


@cli.command("plan")
@workload_options
@json_option
def plan_cmd(
    schedules: int,
    sla: str,
    job_time: str,
    p95: str | None,
    every: str | None,
    rate_limit: str | None,
    concurrency: int,
    as_json: bool,
) -> None:
    """Workers needed to keep --sla for --schedules keyed schedules (the autopilot's policy)."""
    p = _plan(schedules, sla, job_time, p95, every, rate_limit, concurrency)
    data = {
        "every": round(p.every, 3),
        "demand": round(p.demand, 2),
        "slots": round(p.slots, 2),
        "workers": p.workers,
        "concurrency": concurrency,
        "utilisation": round(p.utilisation, 3),
        "target_utilisation": TARGET_UTILISATION,
        "feasible": p.feasible,
        "notes": list(p.notes),
    }
    if as_json:
        print_json(data)
        return
    click.echo(f"interval:     {p.every:g} s" + ("" if every else "  (the longest that keeps the SLA)"))
    click.echo(f"demand:       {p.demand:,.1f} busy job slots ({schedules:,} schedules x run / (interval + run))")
    click.echo(f"workers:      {p.workers:,} of {concurrency} slots ({p.slots:,.0f} slots at {TARGET_UTILISATION:.0%})")
    click.echo(f"utilisation:  {p.utilisation:.0%}")
    click.echo(f"feasible:     {'yes' if p.feasible else 'NO'}")
    for note in p.notes:
        click.echo(f"  - {note}")


@cli.command("simulate")
@workload_options
@click.option("--workers", "-w", default="auto", show_default=True, metavar="N|auto", help="Worker processes.")
@click.option("--min-workers", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--max-workers", type=click.IntRange(min=1), default=10_000, show_default=True)
@click.option("--max-every", default=None, metavar="DURATION", help="Let the autopilot stretch intervals up to this.")
@click.option("--duration", default="1h", show_default=True, metavar="DURATION", help="Simulated time.")
@click.option("--warmup", default=None, metavar="DURATION", help="Left out of the figures (default: a fifth).")
@click.option("--seed", type=int, default=1, show_default=True)
@click.option(
    "--chart", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Write an HTML chart here."
)
@json_option
def simulate_cmd(
    schedules: int,
    sla: str,
    job_time: str,
    p95: str | None,
    every: str | None,
    rate_limit: str | None,
    concurrency: int,
    workers: str,
    min_workers: int,
    max_workers: int,
    max_every: str | None,
    duration: str,
    warmup: str | None,
    seed: int,
    chart: Path | None,
    as_json: bool,
) -> None:
    """Run a workload in simulated time under the real dispatch and autopilot code:
    compliance, staleness and workers over time."""
    p = _plan(schedules, sla, job_time, p95, every, rate_limit, concurrency)
    if workers != "auto" and (not workers.isdigit() or int(workers) < 1):
        raise ConfigError(f"--workers must be a number >= 1 or 'auto', got {workers!r}")
    fleet = Workers(
        count=None if workers == "auto" else int(workers),
        concurrency=concurrency,
        minimum=min_workers,
        maximum=max_workers,
    )
    length = parse_duration(duration, "--duration")
    skip = _seconds(warmup, "--warmup") or length / 5
    group = Group(
        count=schedules,
        every=p.every,
        sla=parse_duration(sla, "--sla"),
        job_time=parse_duration(job_time, "--job-time"),
        p95=_seconds(p95, "--p95"),
        max_every=_seconds(max_every, "--max-every"),
    )
    began = time.perf_counter()
    gc.disable()  # millions of short-lived records and no cycles among them: the collector only costs time
    try:
        result = asyncio.run(
            simulate(
                [group], workers=fleet, duration=length, sample_every=max(1.0, length / 180), warmup=skip, seed=seed
            )
        )
    finally:
        gc.enable()
    summary = _summary(result, skip, time.perf_counter() - began, planned=p.workers)
    if chart is not None:
        chart.write_text(_html(result, group, summary))
    if as_json:
        print_json(summary | {"samples": [_sample(s) for s in result.samples]})
        return
    _print(summary, result, skip)
    if chart is not None:
        click.echo(f"chart: {chart}")


def _summary(result: Result, warmup: float, elapsed: float, *, planned: int) -> dict[str, Any]:
    after = result.after(warmup) or result.samples
    compliance = [s.compliance for s in after if s.compliance is not None]
    stale = sorted(s.p99_staleness for s in after)
    return {
        "compliance": round(sum(compliance) / len(compliance), 4) if compliance else None,
        "p99_staleness": round(stale[min(len(stale) - 1, int(len(stale) * 0.99))], 3) if stale else None,
        "workers_mean": round(sum(s.workers for s in after) / len(after), 2),
        "workers_max": max(s.workers for s in after),
        "workers_planned": planned,
        "runs": result.runs,
        "simulated_seconds": result.samples[-1].at if result.samples else 0.0,
        "wall_seconds": round(elapsed, 2),
    }


def _sample(s: Sample) -> dict[str, Any]:
    return {
        "at": s.at,
        "compliance": s.compliance,
        "p99_staleness": round(s.p99_staleness, 3),
        "workers": s.workers,
        "busy": s.busy,
        "mean_every": round(s.mean_every, 3),
    }


def _print(summary: dict[str, Any], result: Result, warmup: float) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="over time (simulated)")
    for column in ("t", "workers", "busy slots", "compliance", "p99 staleness", "mean interval"):
        table.add_column(column, justify="right")
    step = max(1, len(result.samples) // 12)
    for s in result.samples[::step]:
        table.add_row(
            f"{s.at:,.0f} s",
            str(s.workers),
            str(s.busy),
            "-" if s.compliance is None else f"{s.compliance:.1%}",
            f"{s.p99_staleness:.1f} s",
            f"{s.mean_every:.1f} s",
        )
    Console().print(table)
    compliance = summary["compliance"]
    click.echo(f"after the first {warmup:g} s:")
    click.echo(f"  compliance:     {'-' if compliance is None else f'{compliance:.2%}'}")
    click.echo(f"  p99 staleness:  {summary['p99_staleness']} s")
    workers = f"mean {summary['workers_mean']}, max {summary['workers_max']} (plan: {summary['workers_planned']})"
    click.echo(f"  workers:        {workers}")
    click.echo(
        f"simulated {summary['simulated_seconds']:,.0f} s ({summary['runs']:,} runs) in {summary['wall_seconds']} s"
    )


def _html(result: Result, group: Group, summary: dict[str, Any]) -> str:
    """A self-contained page: three line charts (compliance, p99 staleness, workers)."""
    samples = result.samples
    end = max(1.0, samples[-1].at if samples else 1.0)
    panels = [
        ("SLA compliance (%)", [100 * (s.compliance or 0) for s in samples], 100.0, None),
        ("p99 staleness (s)", [s.p99_staleness for s in samples], None, group.sla),
        ("workers", [float(s.workers) for s in samples], None, None),
    ]
    svgs = []
    for title, values, top, line in panels:
        peak = top or max([*values, line or 0.0, 1.0]) * 1.1
        points = " ".join(
            f"{600 * s.at / end:.1f},{150 - 150 * v / peak:.1f}" for s, v in zip(samples, values, strict=True)
        )
        y = 0.0 if line is None else 150 - 150 * line / peak
        guide = (
            ""
            if line is None
            else f'<line x1="0" x2="600" y1="{y:.1f}" y2="{y:.1f}" stroke="#c33" stroke-dasharray="4"/>'
        )
        svgs.append(
            f'<h2>{html.escape(title)}</h2><svg viewBox="0 -5 600 160" width="600" height="160">'
            f'<rect width="600" height="150" fill="#f6f6f6"/>{guide}'
            f'<polyline fill="none" stroke="#2266aa" stroke-width="1.5" points="{points}"/>'
            f'<text x="2" y="10" font-size="10">{peak:,.1f}</text></svg>'
        )
    facts = "".join(f"<li>{html.escape(k)}: {html.escape(str(v))}</li>" for k, v in summary.items())
    return (
        "<!doctype html><meta charset=utf-8><title>backbeat simulate</title>"
        "<style>body{font:14px sans-serif;margin:2em}h2{font-size:14px;margin:1em 0 .2em}</style>"
        f"<h1>backbeat simulate: {group.count:,} schedules every {group.every:g} s, SLA {group.sla} s, "
        f"jobs {group.job_time:g} s</h1><ul>{facts}</ul>{''.join(svgs)}"
    )
