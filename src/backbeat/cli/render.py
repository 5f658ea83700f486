"""Human-readable output (rich), from the same shapes ``--json`` prints."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from backbeat.shapes import STATES

console = Console()


def t(value: Any) -> Text:
    """User data as plain text: never interpreted as rich markup."""
    return Text("" if value is None else str(value))


def render_status(data: dict[str, Any]) -> None:
    queues = Table(title="Queues", title_justify="left")
    queues.add_column("queue")
    for state in STATES:
        queues.add_column(state, justify="right")
    for q in data["queues"]:
        queues.add_row(t(q["name"]), *(str(q["counts"][s]) for s in STATES))
    if not data["queues"]:
        queues.add_row("(no jobs)", *("" for _ in STATES))
    console.print(queues)

    workers = Table(title="Workers", title_justify="left")
    for column in ("id", "queues", "concurrency", "in flight", "heartbeat", "alive"):
        workers.add_column(column)
    for w in data["workers"]:
        workers.add_row(
            t(w["id"]),
            t(",".join(w["queues"])),
            str(w["concurrency"]),
            str(w["in_flight"]),
            w["heartbeat_at"],
            "yes" if w["alive"] else "[red]no[/red]",
        )
    if not data["workers"]:
        workers.add_row("(none registered)", "", "", "", "", "")
    console.print(workers)

    rate = data["throughput"]
    finished = ", ".join(f"{n} {s}" for s, n in rate["finished"].items())
    console.print(f"Throughput (last {rate['window_seconds']:.0f} s): {rate['per_second']:.2f} jobs/s ({finished})")
    if data["missing_tasks"]:
        console.print(
            Text("Jobs are waiting for tasks no live worker knows: ", style="bold red")
            + t(", ".join(data["missing_tasks"]))
            + Text(" (start a worker whose app declares them)")
        )
    pilot = data.get("autopilot")
    if pilot:
        console.print(f"Autopilot ({pilot['at']}): {pilot['desired_workers']} worker(s) wanted; ", t(pilot["reason"]))


def render_jobs(rows: list[dict[str, Any]]) -> None:
    table = Table()
    table.add_column("id", no_wrap=True)
    for column in ("task", "queue", "state", "attempts", "run at", "error"):
        table.add_column(column, overflow="fold")
    for r in rows:
        table.add_row(
            t(r["id"]),
            t(r["task"]),
            t(r["queue"]),
            r["state"],
            f"{r['attempts']}/{r['max_attempts']}",
            r["run_at"],
            t((r["error"] or "")[:80]),
        )
    console.print(table)
    if rows:
        console.print(f"next page: --before {rows[-1]['id']}", style="dim")


def render_job(data: dict[str, Any]) -> None:
    table = Table(show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key, value in data.items():
        if key != "traceback":
            table.add_row(key, t(value))
    console.print(table)
    if data.get("traceback"):
        console.print(data["traceback"], style="red", markup=False, highlight=False)


def render_queues(rows: list[dict[str, Any]]) -> None:
    table = Table()
    table.add_column("queue")
    table.add_column("state")
    for state in STATES:
        table.add_column(state, justify="right")
    for r in rows:
        paused = Text("paused", style="bold yellow") if r["paused"] else Text("active")
        table.add_row(t(r["name"]), paused, *(str(r["counts"][state]) for state in STATES))
    console.print(table)


def render_schedules(rows: list[dict[str, Any]]) -> None:
    table = Table()
    table.add_column("key", no_wrap=True)
    for column in ("task", "timing", "sla", "state", "next at", "last run"):
        table.add_column(column, overflow="fold")
    for r in rows:
        timing = f"every {r['every']:g}s {r['mode']}" if r["every"] is not None else f"{r['cron']} {r['tz']}"
        if r["every_now"] is not None:
            timing += f", now {r['every_now']:g}s ({r['every_reason']})"
        elif r["max_every"] is not None:
            timing += f" (up to {r['max_every']:g}s)"
        state = "paused" if r["paused"] else "running" if r["in_flight"] else "waiting"
        sla = "" if r["sla"] is None else f"{r['sla']:g}s"
        if r.get("sla_report"):  # --worst rows: where each stands
            report = r["sla_report"]
            sla += f" {report['status']}, stale {report['staleness']:.0f}s, {_pct(report['compliance'])}"
        last = f"{r['last_state']} {r['last_finished_at']}" if r["last_state"] else ""
        table.add_row(t(r["key"]), t(r["task"]), t(timing), sla, state, r["next_at"] or "", last)
    console.print(table)
    if rows and "sla_report" not in rows[0]:
        console.print(f"next page: --after {rows[-1]['key']}", style="dim")


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.2f}%"


def render_sla(data: dict[str, Any]) -> None:
    s = data["summary"]
    console.print(
        f"{s['schedules']} schedules with an SLA, {s['paused']} paused, "
        f"[{'bold red' if s['in_breach'] else 'green'}]{s['in_breach']} in breach[/]; "
        f"compliance over {data['window_seconds'] / 3600:g} h: {_pct(s['compliance'])}"
    )
    table = Table()
    table.add_column("key", no_wrap=True)
    for column in ("task", "sla", "staleness", "status", "compliance", "breaches", "worst", "last success"):
        table.add_column(column, justify="right" if column in ("sla", "staleness", "breaches", "worst") else "left")
    styles = {"breach": "bold red", "paused": "yellow", "ok": "green"}
    for r in data["schedules"]:
        table.add_row(
            t(r["key"]),
            t(r["task"]),
            f"{r['sla']:g}s",
            f"{r['staleness']:.1f}s",
            Text(r["status"], style=styles[r["status"]]),
            _pct(r["compliance"]),
            str(r["breaches"]),
            f"{r['worst_staleness']:.1f}s",
            r["last_success_at"] or "never",
        )
    console.print(table)


def render_explain(data: dict[str, Any]) -> None:
    s = data["schedule"]
    timing = f"every {s['every']:g}s ({s['mode']})" if s["every"] is not None else f"cron {s['cron']} {s['tz']}"
    console.print(Text(f"{s['key']}: {s['task']}, {timing}", style="bold"))
    console.print(f"next at {s['next_at'] or 'the end of the run in flight'}; last state {s['last_state'] or '-'}")
    table = Table()
    for column in ("at", "what", "detail", "job"):
        table.add_column(column, overflow="fold")
    for e in data["timeline"]:
        table.add_row(e["at"], e["kind"], t(e["detail"]), t(e["job_id"]))
    console.print(table)


def render_events(rows: list[dict[str, Any]]) -> None:
    table = Table()
    table.add_column("id", no_wrap=True)
    for column in ("name", "state", "jobs", "received", "source", "reason"):
        table.add_column(column, overflow="fold")
    for r in rows:
        table.add_row(
            t(r["id"]),
            t(r["name"]),
            r["state"],
            str(r["jobs"]),
            r["received_at"],
            t(r["source"]),
            t((r["reason"] or "")[:120]),
        )
    console.print(table)
    if rows:
        console.print(f"next page: --before {rows[-1]['id']}", style="dim")
