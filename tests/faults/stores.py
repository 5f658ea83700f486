"""The stores each fault case runs on, one test parameter per store."""

from __future__ import annotations

SHARED = ["sqlite", "redis", "postgresql"]
"""Stores several processes share: ``@pytest.mark.parametrize("store_url", SHARED, indirect=True)``."""

SERVERS = ["redis", "postgresql"]
"""Stores with a server of their own (and its clock): ``@pytest.mark.parametrize("server",
SERVERS, indirect=True)``, or ``"store_url"`` for a store on a private server."""
