"""The shared Redis server the tests use (``scripts/services.sh`` starts it), one fresh key
prefix per test. The server is never assumed empty and never flushed: a test's keys all
carry its own prefix and are deleted afterwards."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import redis

from backbeat.ids import token

SERVER = os.environ.get("BACKBEAT_TEST_REDIS", "redis://127.0.0.1:6379/0")


def _client() -> redis.Redis:
    return redis.Redis.from_url(SERVER, decode_responses=True)


def require_server() -> None:
    try:
        with _client() as client:
            client.ping()
    except redis.RedisError as exc:
        pytest.fail(f"Redis at {SERVER} does not answer ({exc}): run scripts/services.sh (or set BACKBEAT_TEST_REDIS)")


def blocked(client: redis.Redis) -> bool:
    """Whether a connection of ``client`` waits in a blocking command on the server."""
    pool = client.connection_pool
    socks = [getattr(c, "_sock", None) for c in [client.connection, *getattr(pool, "_in_use_connections", ())]]
    addrs = {"{}:{}".format(*s.getsockname()[:2]) for s in socks if s is not None}
    with _client() as probe:
        return any(c["addr"] in addrs and "b" in c["flags"] for c in probe.client_list())


@contextmanager
def fresh_url(**options: str) -> Iterator[str]:
    """A store URL with a prefix no one else uses; its keys are deleted on exit."""
    require_server()
    prefix = f"bbtest-{token()[:12]}"
    query = "&".join(f"{k}={v}" for k, v in {"prefix": prefix, **options}.items())
    try:
        yield f"{SERVER}?{query}"
    finally:
        with _client() as client:
            keys = list(client.scan_iter(match="{" + prefix + "}:*", count=1000))
            for start in range(0, len(keys), 500):
                client.unlink(*keys[start : start + 500])
