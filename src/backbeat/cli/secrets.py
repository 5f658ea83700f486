"""``backbeat secrets keygen|check|reseal``: keys for sealing secret arguments and event fields."""

from __future__ import annotations

import click

from backbeat.cli.loader import app_for
from backbeat.cli.main import cli, json_option, print_json, run_closing, url_option
from backbeat.cli.schedules import app_option
from backbeat.config import Settings
from backbeat.secrets import keygen, keyring


@cli.group()
def secrets() -> None:
    """Keys that seal secret arguments and event fields (docs/secrets.md)."""


@secrets.command("keygen")
def secrets_keygen() -> None:
    """Print a new random key, for BACKBEAT_SECRET_KEY (or the front of BACKBEAT_SECRET_KEYS)."""
    click.echo(keygen())


@secrets.command("check")
@json_option
def secrets_check(as_json: bool) -> None:
    """Check the configured keys and print their ids (never the keys): the first seals,
    every one opens what it sealed."""
    keys = keyring(Settings.build())
    keys.require("no key to check")
    if as_json:
        print_json({"current": keys.current, "ids": list(keys.ids)})
        return
    for position, key_id in enumerate(keys.ids):
        click.echo(f"{key_id}  {'seals and opens' if position == 0 else 'opens only'}")


@secrets.command("reseal")
@app_option
@url_option
@json_option
def secrets_reseal(app_ref: str | None, url: str | None, as_json: bool) -> None:
    """Seal the secret arguments of every schedule with the current key (run it after a
    rotation; then the previous key can go once older jobs and events are pruned), and
    seal plain values of parameters their tasks now declare secret."""
    app = app_for(app_ref, url)
    keys = run_closing(app, lambda a: a.schedules.areseal())
    if as_json:
        print_json({"resealed": keys})
    else:
        click.echo(f"resealed {len(keys)} schedule(s){': ' + ', '.join(keys) if keys else ''}")
