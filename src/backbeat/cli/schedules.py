"""``backbeat schedules list|add|update|pause|resume|remove|load``: schedules as data."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import click

from backbeat import reports, shapes
from backbeat.app import App
from backbeat.cli.loader import app_for
from backbeat.cli.main import cli, json_option, print_json, run_closing, url_option
from backbeat.errors import TaskNotFound
from backbeat.schedule_manager import SyncReport
from backbeat.serialization import parse_json_array, parse_json_object
from backbeat.shapes import run_now as run_now_shape
from backbeat.types import ScheduleOrigin, ScheduleRecord


def app_option(fn: Any) -> Any:
    return click.option(
        "--app",
        "app_ref",
        default=None,
        metavar="APP",
        help="Check the task and its arguments against this app (else: against tasks workers registered).",
    )(fn)


@cli.group()
def schedules() -> None:
    """Schedules as data: list, add, update, pause, resume, remove, load a resque-scheduler file."""


@schedules.command("list")
@click.option("--search", default=None, help="Only keys or task names containing this.")
@click.option("--origin", type=click.Choice([o.value for o in ScheduleOrigin]), default=None)
@click.option(
    "--after",
    default=None,
    metavar="KEY|CURSOR",
    help="Next page: the last key of the previous one (with --worst: the cursor it printed).",
)
@click.option("--limit", type=click.IntRange(1, 10_000), default=100, show_default=True)
@click.option(
    "--worst",
    is_flag=True,
    help="Worst first (SLA breaches, then closest to breach, paused, no SLA) with state, staleness and "
    "SLA compliance: the dashboard's rows (GET /api/schedules).",
)
@url_option
@json_option
def schedules_list(
    search: str | None,
    origin: str | None,
    after: str | None,
    limit: int,
    worst: bool,
    url: str | None,
    as_json: bool,
) -> None:
    """Schedules by key (or --worst first)."""
    if worst:
        _list_worst(search, origin, after, limit, url, as_json)
        return
    app = app_for(None, url)
    records = run_closing(
        app,
        lambda a: a.schedules.alist(
            after=after, limit=limit, search=search, origin=ScheduleOrigin(origin) if origin else None
        ),
    )
    rows = [shapes.schedule(r) for r in records]
    if as_json:
        print_json(rows)
    else:
        from backbeat.cli.render import render_schedules

        render_schedules(rows)


def _list_worst(
    search: str | None, origin: str | None, after: str | None, limit: int, url: str | None, as_json: bool
) -> None:
    if origin is not None:
        raise click.UsageError("--worst lists every origin: drop --origin")
    try:
        cursor = None if after is None else reports.parse_cursor(after)
    except ValueError:
        raise click.BadParameter(
            "with --worst, pass the cursor the previous page printed", param_hint="--after"
        ) from None

    async def read(a: App) -> tuple[list[dict[str, Any]], str | None]:
        store = await a.client.astore()
        return await reports.worst_rows(store, now=a.clock.now(), after=cursor, search=search, limit=limit)

    rows, next_cursor = run_closing(app_for(None, url), read)
    if as_json:
        print_json(rows)
        if next_cursor is not None:
            click.echo(f"next page: --after {next_cursor}", err=True)
        return
    from backbeat.cli.render import render_schedules

    render_schedules(rows)
    if next_cursor is not None:
        click.echo(f"next page: --worst --after {shlex.quote(next_cursor)}")


async def _known_task(app: App, task: str, force: bool) -> None:
    """A task named on the command line must exist: in the app, among those workers registered, or --force."""
    if task in app.tasks or force:
        return
    registered = {t.name for t in await (await app.client.astore()).task_list()}
    if task not in registered:
        raise TaskNotFound(
            f"no worker has registered a task named {task!r} (registered: {', '.join(sorted(registered)) or 'none'}); "
            "pass --app APP to check against the code, or --force"
        )


@schedules.command("add")
@click.argument("key")
@click.option("--task", "task_name", required=True, help="The task name the schedule runs.")
@click.option("--every", default=None, metavar="DURATION", help="e.g. 20, 30s, 5m, 1h30m.")
@click.option("--cron", "cron_expr", default=None, metavar="EXPR", help="e.g. '*/5 * * * *'.")
@click.option("--tz", default="UTC", show_default=True, help="Time zone of a cron schedule.")
@click.option("--kwargs", "kwargs_json", default="{}", metavar="JSON")
@click.option("--args", "args_json", default="[]", metavar="JSON")
@click.option("--sla", default=None, metavar="DURATION", help="Longest allowed gap between successful runs.")
@click.option("--max-every", default=None, metavar="DURATION", help="Let the autopilot stretch --every up to this.")
@click.option("--mode", type=click.Choice(["delay", "rate"]), default="delay", show_default=True)
@click.option("--jitter", default="0", metavar="DURATION")
@click.option("--first-in", default=None, metavar="DURATION")
@click.option("--queue", default=None)
@click.option("--description", default="")
@click.option("--force", is_flag=True, help="Add even if no worker has registered the task.")
@app_option
@url_option
@json_option
def schedules_add(
    key: str,
    task_name: str,
    every: str | None,
    cron_expr: str | None,
    tz: str,
    kwargs_json: str,
    args_json: str,
    sla: str | None,
    max_every: str | None,
    mode: str,
    jitter: str,
    first_in: str | None,
    queue: str | None,
    description: str,
    force: bool,
    app_ref: str | None,
    url: str | None,
    as_json: bool,
) -> None:
    """Add (or replace) the schedule KEY running --task on --every or --cron."""
    if (every is None) == (cron_expr is None):
        raise click.UsageError("pass exactly one of --every or --cron")
    kwargs = parse_json_object(kwargs_json, "--kwargs")
    args = parse_json_array(args_json, "--args")
    app = app_for(app_ref, url)

    async def add(a: App) -> ScheduleRecord:
        await _known_task(a, task_name, force)
        common: dict[str, Any] = {
            "key": key,
            "args": args,
            "kwargs": kwargs,
            "sla": sla,
            "jitter": jitter,
            "queue": queue,
            "description": description,
        }
        if every is not None:
            return await a.aevery(every, task_name, mode=mode, first_in=first_in, max_every=max_every, **common)
        assert cron_expr is not None
        return await a.acron(cron_expr, task_name, tz=tz, **common)

    _show(run_closing(app, add), as_json)


@schedules.command("update")
@click.argument("key")
@click.option("--every", default=None, metavar="DURATION")
@click.option("--cron", "cron_expr", default=None, metavar="EXPR")
@click.option("--tz", default=None)
@click.option("--kwargs", "kwargs_json", default=None, metavar="JSON")
@click.option("--args", "args_json", default=None, metavar="JSON")
@click.option("--sla", default=None, metavar="DURATION")
@click.option("--max-every", default=None, metavar="DURATION")
@click.option("--mode", type=click.Choice(["delay", "rate"]), default=None)
@click.option("--jitter", default=None, metavar="DURATION")
@click.option("--queue", default=None)
@click.option("--description", default=None)
@app_option
@url_option
@json_option
def schedules_update(
    key: str,
    every: str | None,
    cron_expr: str | None,
    tz: str | None,
    kwargs_json: str | None,
    args_json: str | None,
    sla: str | None,
    max_every: str | None,
    mode: str | None,
    jitter: str | None,
    queue: str | None,
    description: str | None,
    app_ref: str | None,
    url: str | None,
    as_json: bool,
) -> None:
    """Change the schedule KEY; takes effect for its next run."""
    changes: dict[str, Any] = {
        name: value
        for name, value in (
            ("every", every),
            ("cron", cron_expr),
            ("tz", tz),
            ("sla", sla),
            ("max_every", max_every),
            ("mode", mode),
            ("jitter", jitter),
            ("queue", queue),
            ("description", description),
        )
        if value is not None
    }
    if kwargs_json is not None:
        changes["kwargs"] = parse_json_object(kwargs_json, "--kwargs")
    if args_json is not None:
        changes["args"] = parse_json_array(args_json, "--args")
    if not changes:
        raise click.UsageError("nothing to update: pass at least one option")
    _show(run_closing(app_for(app_ref, url), lambda a: a.schedules.aupdate(key, **changes)), as_json)


def _show(record: ScheduleRecord, as_json: bool) -> None:
    data = shapes.schedule(record)
    if as_json:
        print_json(data)
    else:
        timing = f"every {data['every']:g} s" if data["every"] is not None else f"cron {data['cron']} {data['tz']}"
        click.echo(f"{data['key']}: {data['task']}, {timing}, next at {data['next_at'] or 'the end of its run'}")


def _act(action: str, keys: tuple[str, ...], url: str | None, as_json: bool) -> None:
    async def apply(a: App) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for key in keys:
            if action == "remove":
                out.append({"key": key, "removed": await a.schedules.aremove(key)})
            elif action == "run":
                out.append(run_now_shape(key, await a.schedules.arun_now(key)))
            else:
                method = a.schedules.apause if action == "pause" else a.schedules.aresume
                out.append({"key": key, "paused": (await method(key)).paused})
        return out

    results = run_closing(app_for(None, url), apply)
    if as_json:
        print_json(results)
        return
    for r in results:
        if "removed" in r:
            click.echo(f"{r['key']}: {'removed' if r['removed'] else 'no such schedule'}")
        elif "job_id" in r:
            click.echo(f"{r['key']}: job {r['job_id']} queued")
        else:
            click.echo(f"{r['key']}: {'paused' if r['paused'] else 'resumed'}")


@schedules.command("pause")
@click.argument("keys", nargs=-1, required=True)
@url_option
@json_option
def schedules_pause(keys: tuple[str, ...], url: str | None, as_json: bool) -> None:
    """Stop firing these schedules (a run in flight goes on)."""
    _act("pause", keys, url, as_json)


@schedules.command("resume")
@click.argument("keys", nargs=-1, required=True)
@url_option
@json_option
def schedules_resume(keys: tuple[str, ...], url: str | None, as_json: bool) -> None:
    """Fire these schedules again (missed occurrences follow each one's misfire policy)."""
    _act("resume", keys, url, as_json)


@schedules.command("remove")
@click.argument("keys", nargs=-1, required=True)
@url_option
@json_option
def schedules_remove(keys: tuple[str, ...], url: str | None, as_json: bool) -> None:
    """Delete these schedules (a run in flight finishes)."""
    _act("remove", keys, url, as_json)


@schedules.command("run")
@click.argument("keys", nargs=-1, required=True)
@url_option
@json_option
def schedules_run(keys: tuple[str, ...], url: str | None, as_json: bool) -> None:
    """Run these schedules once now, outside their cadence (their next occurrences stay);
    refused while one is paused or has a run in flight."""
    _act("run", keys, url, as_json)


@schedules.command("load")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Do not check task names.")
@app_option
@url_option
@json_option
def schedules_load(path: Path, force: bool, app_ref: str | None, url: str | None, as_json: bool) -> None:
    """Load a resque-scheduler YAML file: upsert each entry by name; all or nothing."""
    text = path.read_text(encoding="utf-8")
    app = app_for(app_ref, url)
    tasks = set(app.tasks) if app_ref else None
    checked = (
        "not checked: --force"
        if force
        else f"checked against {app_ref}"
        if app_ref
        else ("checked against the tasks workers registered")
    )
    report: SyncReport = run_closing(app, lambda a: a.schedules.aload(text, str(path), tasks=tasks, force=force))
    data = {
        "added": report.added,
        "changed": report.changed,
        "unchanged": report.unchanged,
        "ignored": report.ignored,
        "tasks": checked,
    }
    if as_json:
        print_json(data)
        return
    click.echo(
        f"{path}: {len(report.added)} added, {len(report.changed)} changed, "
        f"{len(report.unchanged)} unchanged (task names {checked})"
    )
    for name, keys in report.ignored.items():
        click.echo(f"  {name}: ignored {', '.join(keys)} (only meaningful to Resque)")
