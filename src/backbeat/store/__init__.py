"""Store selection by URL: ``sqlite:///file.db`` (default), ``memory://``, ``postgresql://`` (and
``postgres://``), ``redis://`` (and ``rediss://``).

``check_url`` validates a URL without connecting; ``open_store`` builds the store object
(not yet opened). Internal module.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import parse_qsl, urlsplit

from backbeat.errors import ConfigError
from backbeat.store.base import Store

SCHEMES = ("sqlite", "memory", "postgresql", "postgres", "redis", "rediss")


def _scheme(url: object) -> str:
    if not isinstance(url, str) or not url.strip():
        raise ConfigError(f"store URL must be a non-empty string, got {url!r}")
    if "://" not in url:
        raise ConfigError(f"store URL {url!r} is malformed: expected scheme://..., e.g. sqlite:///backbeat.db")
    scheme = url.split("://", 1)[0].lower()
    if scheme not in SCHEMES:
        raise ConfigError(
            f"store URL {url!r} has an unknown scheme {scheme!r}; supported: " + ", ".join(f"{s}://" for s in SCHEMES)
        )
    return scheme


def _sqlite_parts(url: str) -> tuple[str, dict[str, str]]:
    rest = url.split("://", 1)[1]
    if not rest.startswith("/") or rest == "/":
        raise ConfigError(
            f"SQLite URL {url!r} names no file: use sqlite:///relative/path.db or sqlite:////absolute/path.db"
        )
    path, _, query = rest[1:].partition("?")
    if not path or path.startswith(":memory:"):
        raise ConfigError(
            f"SQLite URL {url!r} names no file (workers are separate processes and share a file); "
            "for an in-process store use memory://"
        )
    try:
        options = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)))
    except ValueError:
        raise ConfigError(f"SQLite URL {url!r} has a malformed query string {query!r}") from None
    return path, options


def check_url(url: str) -> None:
    """Raise ``ConfigError`` naming the problem if ``url`` cannot name a store."""
    scheme = _scheme(url)
    if scheme == "sqlite":
        from backbeat.store.sqlite import parse_options

        parse_options(url, _sqlite_parts(url)[1])
    elif scheme == "memory":
        parts = urlsplit(url)
        if parts.path not in ("", "/") or parts.query:
            raise ConfigError(f"memory URL {url!r} takes only a name: memory:// or memory://NAME")
    elif scheme in ("redis", "rediss"):
        from backbeat.store.redis import parse_url

        parse_url(url)
    elif scheme in ("postgresql", "postgres"):
        from backbeat.store.postgres import parse_url as parse_pg_url

        parse_pg_url(url)


def open_store(url: str) -> Store:
    """The store for ``url``, not yet opened."""
    factories: dict[str, Callable[[str], Store]] = {
        "sqlite": _sqlite,
        "memory": _memory,
        "redis": _redis,
        "rediss": _redis,
        "postgresql": _postgres,
        "postgres": _postgres,
    }
    return factories[_scheme(url)](url)


def _sqlite(url: str) -> Store:
    from backbeat.store.sqlite import SQLiteStore, parse_options

    path, options = _sqlite_parts(url)
    return SQLiteStore(path, parse_options(url, options))


def _memory(url: str) -> Store:
    from backbeat.store.memory import MemoryStore

    return MemoryStore.named(urlsplit(url).netloc)


def _redis(url: str) -> Store:
    from backbeat.store.redis import parse_url

    options = parse_url(url)
    from backbeat.store.redis.store import RedisStore

    return RedisStore(options)


def _postgres(url: str) -> Store:
    from backbeat.store.postgres import parse_url

    options = parse_url(url)
    try:
        from backbeat.store.postgres.store import PostgresStore
    except ImportError as exc:
        raise ConfigError(
            f"the PostgreSQL store needs psycopg 3 and psycopg-pool ({exc}): pip install 'backbeat[postgres]'"
        ) from None
    return PostgresStore(options)
