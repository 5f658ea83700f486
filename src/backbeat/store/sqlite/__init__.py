"""The SQLite store. URL: ``sqlite:///path.db?synchronous=full&busy_timeout_ms=10000&poll_ms=5``."""

from __future__ import annotations

from collections.abc import Mapping

from backbeat.errors import ConfigError
from backbeat.store.sqlite.connection import SQLiteOptions
from backbeat.store.sqlite.store import SQLiteStore

__all__ = ["SQLiteOptions", "SQLiteStore", "parse_options"]


def parse_options(url: str, options: Mapping[str, str]) -> SQLiteOptions:
    known = {"synchronous", "busy_timeout_ms", "poll_ms"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigError(
            f"SQLite URL {url!r} has unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    result = SQLiteOptions()
    synchronous = options.get("synchronous", result.synchronous).lower()
    if synchronous not in ("full", "normal"):
        raise ConfigError(f"SQLite URL {url!r}: synchronous must be 'full' or 'normal', got {synchronous!r}")
    try:
        busy = int(options.get("busy_timeout_ms", result.busy_timeout_ms))
        poll = float(options.get("poll_ms", result.poll_ms))
    except ValueError as exc:
        raise ConfigError(f"SQLite URL {url!r}: {exc}") from None
    if busy < 0 or not 0 < poll <= 1000:
        raise ConfigError(f"SQLite URL {url!r}: busy_timeout_ms must be >= 0 and poll_ms in (0, 1000]")
    return SQLiteOptions(synchronous=synchronous, busy_timeout_ms=busy, poll_ms=poll)
