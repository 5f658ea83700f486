"""``backbeat emit`` and ``backbeat events list|show|replay|schema``."""

from __future__ import annotations

import json
from typing import Any

import click

from backbeat import shapes
from backbeat.cli.loader import load_app
from backbeat.cli.main import cli, json_option, print_json, run
from backbeat.client import Client
from backbeat.events import contracts
from backbeat.serialization import parse_json_object
from backbeat.types import EventFilter, EventState

STATE_CHOICE = click.Choice([s.value for s in EventState])
TARGET_HELP = (
    "Where to send it: a store URL, or a broker the jobs app consumes (amqp://, nats://, http(s)://); "
    "default $BACKBEAT_URL, else sqlite:///backbeat.db."
)


@cli.command()
@click.argument("name")
@click.option("--payload", "payload_json", default="{}", metavar="JSON", help="The payload, a JSON object.")
@click.option("--id", "event_id", default=None, help="Event id (a repeat of an id is processed once).")
@click.option("--key", default=None, help="Optional key (e.g. user:123).")
@click.option(
    "--secret",
    "secret",
    multiple=True,
    metavar="FIELD",
    help="A payload field to seal before sending (repeatable; needs BACKBEAT_SECRET_KEY).",
)
@click.option("--url", default=None, metavar="URL", help=TARGET_HELP)
@json_option
def emit(
    name: str,
    payload_json: str,
    event_id: str | None,
    key: str | None,
    secret: tuple[str, ...],
    url: str | None,
    as_json: bool,
) -> None:
    """Emit the event NAME (e.g. account.linked)."""
    payload = parse_json_object(payload_json, "--payload")
    client = Client(url)
    try:
        sent = client.emit(name, payload, id=event_id, key=key, secret=secret)
    finally:
        client.close()
    if as_json:
        print_json({"id": sent, "name": name, "to": client.url})
    else:
        click.echo(f"emitted: {sent}  ({name} to {client.url})")


@cli.group()
def events() -> None:
    """Inspect events, replay dead ones, print the contracts."""


@events.command("list")
@click.option("--dead", is_flag=True, help="Only dead events (same as --state dead).")
@click.option("--state", type=STATE_CHOICE, default=None)
@click.option("--name", default=None, help="Only events of this name.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option("--before", default=None, metavar="ID", help="Next page: the last id of the previous one.")
@click.option("--url", default=None, metavar="URL", help="Store URL (default: $BACKBEAT_URL).")
@json_option
def events_list(
    dead: bool, state: str | None, name: str | None, limit: int, before: str | None, url: str | None, as_json: bool
) -> None:
    """Events, newest first, with their state (and why, when dead)."""
    chosen = EventState.DEAD if dead else EventState(state) if state else None
    flt = EventFilter(state=chosen, name=name, before=before, limit=limit)

    async def fetch(client: Client) -> list[dict[str, Any]]:
        store = await client.astore()
        return [shapes.event(e) for e in await store.event_list(flt)]

    rows = run(fetch, url)
    if as_json:
        print_json(rows)
    else:
        from backbeat.cli.render import render_events

        render_events(rows)


@events.command("show")
@click.argument("event_id")
@click.option("--url", default=None, metavar="URL", help="Store URL (default: $BACKBEAT_URL).")
@json_option
def events_show(event_id: str, url: str | None, as_json: bool) -> None:
    """One event in full: payload, state, reason, handler jobs."""

    async def fetch(client: Client) -> dict[str, Any]:
        return shapes.event(await (await client.astore()).event_get(event_id))

    data = run(fetch, url)
    if as_json:
        print_json(data)
    else:
        from backbeat.cli.render import render_job

        render_job(data)


@events.command("replay")
@click.argument("event_ids", nargs=-1, required=True, metavar="ID...")
@click.option("--url", default=None, metavar="URL", help="Store URL (default: $BACKBEAT_URL).")
@json_option
def events_replay(event_ids: tuple[str, ...], url: str | None, as_json: bool) -> None:
    """Dispatch dead or unhandled events again, with today's handlers and contracts."""

    async def replay(client: Client) -> list[dict[str, Any]]:
        store = await client.astore()
        return [shapes.event(await store.event_replay(i)) for i in event_ids]

    rows = run(replay, url)
    if as_json:
        print_json(rows)
    else:
        for row in rows:
            click.echo(f"replaying: {row['id']}  ({row['name']}; a running consumer dispatches it now)")


@events.command("schema")
@click.argument("app_ref", metavar="APP")
def events_schema(app_ref: str) -> None:
    """The JSON Schema of the envelope and of every event contract APP declares."""
    click.echo(json.dumps(contracts(load_app(app_ref, None)), indent=2, ensure_ascii=False))
