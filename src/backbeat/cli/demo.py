"""``backbeat demo``: the talk's example end to end, on a laptop, with no servers
(``backbeat.demo``; ``docs/tutorial.md`` walks through its code)."""

from __future__ import annotations

import asyncio
import importlib.util
import tempfile
from pathlib import Path

import click

from backbeat.cli.logs import setup_logging
from backbeat.cli.main import cli, json_option, print_json
from backbeat.errors import ConfigError
from backbeat.schedules import parse_duration


@cli.command()
@click.option(
    "--users", type=click.IntRange(min=1), default=200, show_default=True, help="Accounts the main app links."
)
@click.option(
    "--duration",
    default="60s",
    show_default=True,
    help="How long to run (seconds, or e.g. '2m'); Ctrl-C ends it early, with the summary.",
)
@click.option(
    "--workers",
    "-w",
    default="auto",
    show_default=True,
    metavar="N|auto",
    help="Worker processes, or 'auto': the autopilot sizes them to the load.",
)
@click.option("--max-workers", type=click.IntRange(min=1), default=4, show_default=True, help="With --workers auto.")
@click.option(
    "--url",
    default=None,
    metavar="URL",
    help="An empty store (default: a fresh SQLite file in a new temporary directory).",
)
@json_option
def demo(users: int, duration: str, workers: str, max_workers: int, url: str | None, as_json: bool) -> None:
    """The talk's example end to end: a main app links Twitter accounts and emits events; a
    jobs app polls each account every 20 s (SLA 30 s, rate-limited per token) against a
    local fake Twitter, which tightens its limit halfway, and posts to a fake feed engine.
    A live view while it runs, a summary at the end."""
    if importlib.util.find_spec("pydantic") is None:
        raise ConfigError("backbeat demo needs pydantic for its event contract: pip install 'backbeat[contracts]'")
    from rich.console import Console

    from backbeat.demo import view
    from backbeat.demo.figures import Snapshot
    from backbeat.demo.runner import Demo, DemoOptions, install_signals

    if workers != "auto" and not workers.isdigit():
        raise ConfigError(f"--workers must be a whole number >= 1 or 'auto', got {workers!r}")
    options = DemoOptions(
        url=url,
        users=users,
        duration=parse_duration(duration, "--duration"),
        workers=None if workers == "auto" else int(workers),
        max_workers=max_workers,
    )
    workdir = Path(tempfile.mkdtemp(prefix="backbeat-demo-"))
    options = options.in_dir(workdir)
    console = Console()
    with open(workdir / "demo.log", "a", buffering=1, encoding="utf-8") as log_file:
        setup_logging("info", "text", stream=log_file)
        display: view.Display
        if as_json:
            display = view.PlainLines(lambda text: click.echo(text, err=True))
        elif console.is_terminal:
            display = view.LiveView(console)
        else:
            display = view.PlainLines(click.echo)
        runner = Demo(options, display, log_file=log_file)

        async def main() -> Snapshot:
            install_signals(runner)
            return await runner.run()

        summary = asyncio.run(main())
    if as_json:
        print_json(view.summary_json(summary))
    else:
        console.print(view.summary(summary))
