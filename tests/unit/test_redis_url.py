"""Redis URLs are validated without connecting; the durability advice is pure logic."""

from __future__ import annotations

import re
import sys

import pytest

from backbeat.errors import ConfigError
from backbeat.store import check_url, open_store
from backbeat.store.redis import parse_url
from backbeat.store.redis.server import durability_problems


def test_defaults_and_options() -> None:
    options = parse_url("redis://nowhere.invalid:6379/2")
    assert options.prefix == "backbeat" and options.client_url == "redis://nowhere.invalid:6379/2"
    options = parse_url("rediss://user:pw@nowhere.invalid/0?prefix=app.jobs:v1&socket_timeout=2.5")
    assert options.prefix == "app.jobs:v1"
    assert options.client_url == "rediss://user:pw@nowhere.invalid/0?socket_timeout=2.5"
    check_url("redis://nowhere.invalid")  # never connects: the host does not exist
    assert open_store("redis://nowhere.invalid").loop_bound  # an instance per loop


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis://h/0?prefix={x}", "prefix must be"),
        ("redis://h/0?prefix=", "prefix must be"),
        ("redis://h/0?prefix=a*b", "prefix must be"),
        ("redis://h/0?prefx=a", "unknown option(s) prefx"),
        ("redis://h/zero", "database number"),
        ("redis://h/0?socket_timeout=soon", "socket_timeout"),
        ("redis://h:port/0", "Port"),
        ("redis://h/0?a=1&&", "malformed"),
    ],
)
def test_bad_urls_name_the_problem(url: str, says: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(says)):
        check_url(url)


def test_without_redis_py_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)
    monkeypatch.setitem(sys.modules, "redis.asyncio", None)
    with pytest.raises(ConfigError, match=r"pip install 'backbeat\[redis\]'"):
        check_url("redis://localhost/0")
    with pytest.raises(ConfigError, match=r"pip install 'backbeat\[redis\]'"):
        open_store("redis://localhost/0")


def test_durability_problems() -> None:
    safe = {"maxmemory-policy": "noeviction", "appendonly": "yes", "appendfsync": "everysec"}
    assert durability_problems(safe) == []
    assert durability_problems({**safe, "appendfsync": "always"}) == []
    assert durability_problems({}) == []  # nothing known, nothing judged
    [evicts] = durability_problems({**safe, "maxmemory-policy": "allkeys-lru"})
    assert "allkeys-lru" in evicts and "noeviction" in evicts
    [no_aof] = durability_problems({**safe, "appendonly": "no"})
    assert "appendonly is no" in no_aof
    [lazy] = durability_problems({**safe, "appendfsync": "no"})
    assert "appendfsync is no" in lazy
    assert len(durability_problems({"maxmemory-policy": "volatile-ttl", "appendonly": "no"})) == 2
