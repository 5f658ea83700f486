"""The stores each fault case runs on: one entry per store, skipped while its URL scheme is
not registered (PostgreSQL, being built)."""

from __future__ import annotations

import pytest

from backbeat.store import SCHEMES


def _param(name: str) -> object:
    return pytest.param(name, id=name, marks=pytest.mark.skipif(name not in SCHEMES, reason=f"no {name} store yet"))


SHARED = [_param(name) for name in ("sqlite", "redis", "postgresql")]
"""Stores several processes share: ``@pytest.mark.parametrize("store_url", SHARED, indirect=True)``."""

SERVERS = [_param(name) for name in ("redis", "postgresql")]
"""Stores with a server of their own (and its clock)."""
