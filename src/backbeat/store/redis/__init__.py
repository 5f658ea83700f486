"""The Redis store. URL: ``redis://[[user]:password@]host[:port][/db][?prefix=NAME&...]``,
``rediss://`` for TLS; on Redis Cluster, any node (``connection.py``). ``prefix``
(default ``backbeat``) names the store inside the server (``keys.py``); the other query
options are redis-py's (``socket_timeout``, ``health_check_interval``, ``ssl_*``...).
Needs ``pip install 'backbeat[redis]'``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from backbeat.errors import ConfigError

__all__ = ["RedisOptions", "parse_url", "require_redis"]

DEFAULT_PREFIX = "backbeat"
PREFIX_RE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


@dataclass(frozen=True, kw_only=True, slots=True)
class RedisOptions:
    client_url: str
    """The URL without backbeat's own options, as redis-py takes it."""
    prefix: str = DEFAULT_PREFIX


def require_redis() -> None:
    try:
        import redis.asyncio  # noqa: F401
    except ImportError:
        raise ConfigError(
            "a redis:// store needs the Redis client: pip install 'backbeat[redis]' (redis-py with hiredis)"
        ) from None


def parse_url(url: str) -> RedisOptions:
    """Validate ``url`` without connecting; raise ``ConfigError`` naming what is wrong."""
    require_redis()
    from redis.asyncio.connection import URL_QUERY_ARGUMENT_PARSERS
    from redis.asyncio.connection import parse_url as redis_parse_url

    parts = urlsplit(url)
    try:
        query = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        raise ConfigError(f"Redis URL {url!r} has a malformed query string {parts.query!r}") from None
    options = dict(query)
    prefix = options.pop("prefix", DEFAULT_PREFIX)
    if not PREFIX_RE.fullmatch(prefix):
        raise ConfigError(f"Redis URL {url!r}: prefix must be 1-64 of A-Z a-z 0-9 _ . : - (got {prefix!r})")
    unknown = sorted(k for k in options if k not in URL_QUERY_ARGUMENT_PARSERS and not k.startswith("ssl_"))
    if unknown:
        raise ConfigError(
            f"Redis URL {url!r} has unknown option(s) {', '.join(unknown)}; known: prefix, "
            + ", ".join(sorted(URL_QUERY_ARGUMENT_PARSERS))
            + ", ssl_*"
        )
    if parts.path not in ("", "/") and not parts.path[1:].isdigit():
        raise ConfigError(f"Redis URL {url!r}: the path must be a database number, e.g. redis://host:6379/0")
    client_url = urlunsplit(parts._replace(query=urlencode(list(options.items()))))
    try:
        redis_parse_url(client_url)
        _ = parts.port
    except ValueError as exc:
        raise ConfigError(f"Redis URL {url!r}: {exc}") from None
    return RedisOptions(client_url=client_url, prefix=prefix)
