"""Ports for the servers the tests start (private Redis, PostgreSQL and cluster nodes, web
and HTTP servers).

A port the OS hands out for ``bind(0)`` comes from the ephemeral range, the one outgoing
connections take their source ports from, and the suite opens thousands of those: one
could take a server's port between the pick and the server's own bind, or while a server
is down for a restart test. So ports are picked below that range, where no connection
takes one, and checked free of listeners when picked."""

from __future__ import annotations

import random
import socket
from pathlib import Path

LOWEST = 20_000
_random = random.Random()


def _ephemeral_floor() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768  # Linux's default


def free_port(*, also: int = 0) -> int:
    """A loopback port nothing listens on, below the ephemeral range; with ``also``, the
    port that many higher is free too (a Redis Cluster node's bus port: 10,000 higher)."""
    highest = _ephemeral_floor() - 1 - also
    if highest < LOWEST + 1_000:  # an unusual range: settle for any port
        highest = 65_535 - also
    while True:
        port = _random.randint(LOWEST, highest)
        try:
            for candidate in {port, port + also}:
                with socket.socket() as s:
                    s.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port
