"""``backbeat enqueue``, ``status`` and ``jobs list|show|retry|cancel``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import click

from backbeat import shapes
from backbeat.autopilot import PUBLISHED
from backbeat.cli.loader import load_app
from backbeat.cli.main import cli, fail, json_option, print_json, run, settings_for, url_option
from backbeat.client import Client
from backbeat.errors import EnqueueError, TaskNotFound
from backbeat.jobs import Job
from backbeat.serialization import parse_json_array, parse_json_object
from backbeat.types import JobFilter, JobState

STATE_CHOICE = click.Choice([s.value for s in JobState])


def _parse_at(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise EnqueueError(f"--at {value!r} is not an ISO 8601 time (e.g. 2026-11-28T10:00:00Z)") from None
    if at.tzinfo is None:
        raise EnqueueError(f"--at {value!r} has no time zone: add Z or an offset such as +01:00")
    return at


@cli.command()
@click.argument("task")
@click.option("--kwargs", "kwargs_json", default="{}", metavar="JSON", help="Keyword arguments, a JSON object.")
@click.option("--args", "args_json", default="[]", metavar="JSON", help="Positional arguments, a JSON array.")
@click.option("--app", "app_ref", default=None, metavar="APP", help="Check TASK and its arguments against this app.")
@click.option("--delay", type=float, default=None, help="Seconds from now.")
@click.option("--at", "at_text", default=None, metavar="TIME", help="ISO 8601 time with a zone.")
@click.option("--dedup-key", default=None, help="At most one live job per key.")
@click.option("--priority", type=int, default=None, help="Higher runs first.")
@click.option("--queue", default=None, help="Queue (default: the task's).")
@click.option("--force", is_flag=True, help="Enqueue even if no worker has registered TASK.")
@url_option
@json_option
def enqueue(
    task: str,
    kwargs_json: str,
    args_json: str,
    app_ref: str | None,
    delay: float | None,
    at_text: str | None,
    dedup_key: str | None,
    priority: int | None,
    queue: str | None,
    force: bool,
    url: str | None,
    as_json: bool,
) -> None:
    """Enqueue a job of TASK (a task name)."""
    kwargs = parse_json_object(kwargs_json, "--kwargs")
    args = parse_json_array(args_json, "--args")
    options: dict[str, Any] = {
        "delay": delay,
        "at": _parse_at(at_text),
        "dedup_key": dedup_key,
        "priority": priority,
        "queue": queue,
    }
    if app_ref is not None:
        app = load_app(app_ref, url)
        if task not in app.tasks:
            raise TaskNotFound(
                f"app {app_ref!r} declares no task {task!r}; it declares: {', '.join(sorted(app.tasks))}"
            )
        job = app.enqueue(task, args=args, kwargs=kwargs, **options)
        checked = f"checked against {app_ref}"
        app.close()
    else:
        job, checked = run(lambda c: _enqueue_checked(c, task, args, kwargs, options, force), url)
    if as_json:
        print_json({"id": job.id, "created": job.created, "task": task, "checked": checked})
    else:
        verb = "enqueued" if job.created else "already live (dedup key)"
        click.echo(f"{verb}: {job.id}  ({checked})")


async def _enqueue_checked(
    client: Client, task: str, args: list[Any], kwargs: dict[str, Any], options: dict[str, Any], force: bool
) -> tuple[Job, str]:
    store = await client.astore()
    registered = {t.name for t in await store.task_list()}
    if task in registered:
        checked = "checked against the tasks workers registered"
    elif force:
        checked = "not checked: --force"
    else:
        known = ", ".join(sorted(registered)) or "none yet"
        raise TaskNotFound(
            f"no worker has registered a task named {task!r} (registered: {known}); "
            "pass --app APP to check against the code, or --force to enqueue anyway"
        )
    return await client.aenqueue(task, args=args, kwargs=kwargs, **options), checked


@cli.command()
@click.option(
    "--check",
    is_flag=True,
    help="Only check health: exit 1 with one line when no worker heartbeated within the staleness window.",
)
@url_option
@json_option
def status(check: bool, url: str | None, as_json: bool) -> None:
    """Queues, job counts by state, workers, throughput, and tasks no live worker knows."""
    settings = settings_for(url)
    window = 60.0
    stale_after = 2 * settings.worker.lease

    async def gather(client: Client) -> dict[str, Any]:
        store = await client.astore()
        now = client.clock.now()
        if check:
            return shapes.health(await store.worker_list(), now=now, stale_after=stale_after)
        return shapes.status(
            await store.job_counts(),
            await store.worker_list(),
            await store.task_list(),
            await store.job_finished_since(now - window),
            now=now,
            window=window,
            stale_after=stale_after,
            autopilot=await store.state_get(PUBLISHED),
        )

    data = run(gather, url)
    if check:
        if as_json:
            print_json(data)
        if not data["ok"]:
            fail(data["message"])
        if not as_json:
            click.echo(f"ok: {data['message']}")
    elif as_json:
        print_json(data)
    else:
        from backbeat.cli.render import render_status

        render_status(data)


@cli.group()
def jobs() -> None:
    """Inspect and act on jobs."""


@jobs.command("list")
@click.option("--state", type=STATE_CHOICE, default=None)
@click.option("--queue", default=None)
@click.option("--task", default=None)
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option("--before", default=None, metavar="ID", help="Next page: the last id of the previous one.")
@url_option
@json_option
def jobs_list(
    state: str | None,
    queue: str | None,
    task: str | None,
    limit: int,
    before: str | None,
    url: str | None,
    as_json: bool,
) -> None:
    """Jobs, newest first."""
    flt = JobFilter(state=JobState(state) if state else None, queue=queue, task=task, limit=limit, before=before)

    async def fetch(client: Client) -> list[dict[str, Any]]:
        store = await client.astore()
        return [shapes.job(j) for j in await store.job_list(flt)]

    rows = run(fetch, url)
    if as_json:
        print_json(rows)
    else:
        from backbeat.cli.render import render_jobs

        render_jobs(rows)


@jobs.command("show")
@click.argument("job_id")
@url_option
@json_option
def jobs_show(job_id: str, url: str | None, as_json: bool) -> None:
    """One job in full: arguments, attempts, error and traceback."""

    async def fetch(client: Client) -> dict[str, Any]:
        return shapes.job(await client.job(job_id).ainfo(), detail=True)

    data = run(fetch, url)
    if as_json:
        print_json(data)
    else:
        from backbeat.cli.render import render_job

        render_job(data)


def _act(action: str, job_ids: tuple[str, ...], url: str | None, as_json: bool) -> None:
    async def apply(client: Client) -> list[dict[str, Any]]:
        out = []
        for job_id in job_ids:
            job = client.job(job_id)
            state = await (job.aretry() if action == "retry" else job.acancel())
            out.append(shapes.job_action(job_id, state))
        return out

    results = run(apply, url)
    if as_json:
        print_json(results)
    else:
        for r in results:
            click.echo(f"{r['id']}: {r['state']}")


@jobs.command("retry")
@click.argument("job_ids", nargs=-1, required=True)
@url_option
@json_option
def jobs_retry(job_ids: tuple[str, ...], url: str | None, as_json: bool) -> None:
    """Requeue dead or cancelled jobs."""
    _act("retry", job_ids, url, as_json)


@jobs.command("cancel")
@click.argument("job_ids", nargs=-1, required=True)
@url_option
@json_option
def jobs_cancel(job_ids: tuple[str, ...], url: str | None, as_json: bool) -> None:
    """Cancel jobs (running ones stop at their worker's next heartbeat)."""
    _act("cancel", job_ids, url, as_json)


__all__ = ["enqueue", "fail", "jobs", "status"]
