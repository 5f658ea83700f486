"""The PostgreSQL store. URL: ``postgresql://user:password@host:5432/dbname?schema=backbeat&pool_size=10``
(``postgres://`` too).

``schema`` (default ``public``) names the PostgreSQL schema that holds backbeat's tables,
so one database can hold several backbeat stores, or backbeat beside an application's own
tables; ``pool_size`` caps the pooled connections of one store object on an event loop
(plus one that listens for wake-ups; a sync call uses its thread's one blocking
connection). Every other query parameter is passed to libpq as it is (``sslmode``,
``connect_timeout``, ``application_name``, ...).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from backbeat.errors import ConfigError

__all__ = ["PostgresOptions", "parse_url"]

SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
OWN_OPTIONS = ("schema", "pool_size")


@dataclass(frozen=True, kw_only=True, slots=True)
class PostgresOptions:
    conninfo: str
    """The URL libpq connects with (backbeat's own options removed)."""
    schema: str = "public"
    pool_size: int = 10

    @property
    def database(self) -> str:
        """The database named in the URL ('' when libpq's default applies)."""
        return urlsplit(self.conninfo).path.lstrip("/")

    @property
    def where(self) -> str:
        """The server and database, without credentials, for messages."""
        parts = urlsplit(self.conninfo)
        host = parts.hostname or "localhost"
        port = f":{parts.port}" if parts.port else ""
        return f"{host}{port}{parts.path or '/'} (schema {self.schema})"


def parse_url(url: str) -> PostgresOptions:
    """Validate a ``postgresql://`` URL and split off backbeat's options; ``ConfigError`` if bad."""
    try:
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
        _ = parts.port
    except ValueError as exc:
        raise ConfigError(f"PostgreSQL URL {url!r} is malformed: {exc}") from None
    own = {k: v for k, v in query if k in OWN_OPTIONS}
    rest = [(k, v) for k, v in query if k not in OWN_OPTIONS]
    schema = own.get("schema", "public")
    if not SCHEMA_NAME.fullmatch(schema):
        raise ConfigError(
            f"PostgreSQL URL {url!r}: schema must be a plain identifier (letters, digits, _; at most 63), "
            f"got {schema!r}"
        )
    try:
        pool_size = int(own.get("pool_size", "10"))
    except ValueError:
        raise ConfigError(f"PostgreSQL URL {url!r}: pool_size must be an integer") from None
    if not 1 <= pool_size <= 1000:
        raise ConfigError(f"PostgreSQL URL {url!r}: pool_size must be between 1 and 1000, got {pool_size}")
    conninfo = urlunsplit(("postgresql", parts.netloc, parts.path, urlencode(rest), parts.fragment))
    return PostgresOptions(conninfo=conninfo, schema=schema, pool_size=pool_size)
