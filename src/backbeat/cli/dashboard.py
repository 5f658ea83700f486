"""``backbeat dashboard``: the web dashboard, JSON API, ``/metrics`` and ``/healthz``.

The web stack (starlette, uvicorn, prometheus-client) is imported only here, when the
command runs, so the rest of the CLI works without the ``web`` extra.
"""

from __future__ import annotations

import logging
import os

import click

from backbeat.cli.loader import load_app
from backbeat.cli.logs import log_options, setup_logging
from backbeat.cli.main import cli, url_option
from backbeat.client import Client
from backbeat.config import Settings
from backbeat.errors import ConfigError


@cli.command()
@click.argument("app_ref", metavar="[APP]", required=False)
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Address to listen on (non-loopback needs a token)."
)
@click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True)
@click.option("--read-only", is_flag=True, help="Hide and refuse every action (retry, cancel, pause, purge).")
@click.option(
    "--poll", type=click.FloatRange(min=1.0), default=5.0, show_default=True, help="Seconds between live refreshes."
)
@log_options
@url_option
def dashboard(
    app_ref: str | None,
    host: str,
    port: int,
    read_only: bool,
    poll: float,
    log_level: str,
    log_format: str,
    url: str | None,
) -> None:
    """Serve the dashboard for APP (module:attribute) or the store of --url / $BACKBEAT_URL.

    Every write needs $BACKBEAT_TOKEN (reads too, once it is set); without it the dashboard
    serves this machine only, view-only, and refuses a non-loopback --host."""
    setup_logging(log_level, log_format)
    try:
        import uvicorn

        from backbeat.web import create_app
        from backbeat.web.security import check_bind
        from backbeat.web.settings import check_token
    except ImportError as exc:
        raise ConfigError(
            f"the dashboard needs the web extra ({exc.name} is missing): pip install 'backbeat[web]'"
        ) from None
    token = check_token(os.environ.get("BACKBEAT_TOKEN"))
    check_bind(host, token)
    target = load_app(app_ref, url) if app_ref else Client(settings=Settings.build(url))
    web = create_app(target, token=token, read_only=read_only, poll_seconds=poll)
    logging.getLogger("backbeat.web").info(
        "dashboard for %s on http://%s:%d/ (%s%s)",
        target.settings.url,
        host if ":" not in host else f"[{host}]",
        port,
        "token required" if token else "no token: view-only, this machine only",
        ", read-only" if read_only else "",
    )
    config = uvicorn.Config(web, host=host, port=port, log_config=None, server_header=False, lifespan="on")
    try:
        uvicorn.Server(config).run()
    finally:
        target.close()
