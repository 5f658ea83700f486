"""Logging for the long-running commands (worker, run, dashboard): text or JSON lines.

``--log-format json`` (or ``BACKBEAT_LOG_FORMAT=json``) writes one JSON object per line on
stderr, for log shippers: ``time`` (ISO 8601 UTC), ``level``, ``logger``, ``pid``,
``message`` and, when there is one, ``exception``. Only the CLI configures logging; as a
library backbeat only logs.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any, TextIO

import click

from backbeat.clock import iso

LOG_LEVELS = click.Choice(["debug", "info", "warning", "error"])
LOG_FORMATS = click.Choice(["text", "json"])
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": iso(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False, default=str)


def setup_logging(level: str, fmt: str = "text", stream: TextIO | None = None) -> None:
    """Log at ``level`` in ``fmt`` to ``stream`` (default stderr)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level.upper()))


def log_options(fn: Any) -> Any:
    fn = click.option(
        "--log-format",
        type=LOG_FORMATS,
        default="text",
        show_default=True,
        envvar="BACKBEAT_LOG_FORMAT",
        help="text, or json: one JSON object per line (also $BACKBEAT_LOG_FORMAT).",
    )(fn)
    return click.option("--log-level", type=LOG_LEVELS, default="info", show_default=True)(fn)
