"""``backbeat queues list|pause|resume|purge`` and ``backbeat migrate``."""

from __future__ import annotations

from typing import Any

import click

from backbeat import shapes
from backbeat.cli.main import cli, json_option, print_json, run, url_option
from backbeat.client import Client


@cli.group()
def queues() -> None:
    """Queues as things you operate: counts, pause, resume, purge."""


@queues.command("list")
@url_option
@json_option
def queues_list(url: str | None, as_json: bool) -> None:
    """Every queue with its pause state and job counts."""

    async def fetch(client: Client) -> list[dict[str, Any]]:
        store = await client.astore()
        return shapes.queues(await store.queue_list(), await store.job_counts())

    rows = run(fetch, url)
    if as_json:
        print_json(rows)
    else:
        from backbeat.cli.render import render_queues

        render_queues(rows)


def _queue_action(action: str, names: tuple[str, ...], url: str | None, as_json: bool) -> None:
    async def apply(client: Client) -> list[dict[str, Any]]:
        store = await client.astore()
        out: list[dict[str, Any]] = []
        for name in names:
            if action == "pause":
                await store.queue_pause(name, now=client.clock.now())
                out.append(shapes.queue_paused(name, True))
            elif action == "resume":
                await store.queue_resume(name)
                out.append(shapes.queue_paused(name, False))
            else:
                out.append(shapes.queue_purged(name, await store.queue_purge(name)))
        return out

    results = run(apply, url)
    if as_json:
        print_json(results)
        return
    for r in results:
        if "purged" in r:
            click.echo(f"{r['queue']}: deleted {r['purged']} pending jobs")
        else:
            click.echo(f"{r['queue']}: {'paused' if r['paused'] else 'resumed'}")


@queues.command("pause")
@click.argument("names", nargs=-1, required=True)
@url_option
@json_option
def queues_pause(names: tuple[str, ...], url: str | None, as_json: bool) -> None:
    """Stop workers taking jobs from these queues (running jobs go on; enqueueing works)."""
    _queue_action("pause", names, url, as_json)


@queues.command("resume")
@click.argument("names", nargs=-1, required=True)
@url_option
@json_option
def queues_resume(names: tuple[str, ...], url: str | None, as_json: bool) -> None:
    """Let workers take jobs from these queues again."""
    _queue_action("resume", names, url, as_json)


@queues.command("purge")
@click.argument("names", nargs=-1, required=True)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@url_option
@json_option
def queues_purge(names: tuple[str, ...], yes: bool, url: str | None, as_json: bool) -> None:
    """Delete every queued and scheduled job of these queues (running and finished jobs stay)."""
    if not yes:
        click.confirm(f"Delete every pending job of {', '.join(names)}?", abort=True, err=True)
    _queue_action("purge", names, url, as_json)


@cli.command()
@url_option
@json_option
def migrate(url: str | None, as_json: bool) -> None:
    """Bring the store's schema up to date (safe to run from many processes at once)."""

    async def apply(client: Client) -> int:
        store = await client.astore()
        return await store.migrate()

    version = run(apply, url)
    if as_json:
        print_json({"schema_version": version})
    else:
        click.echo(f"schema is at version {version}")
