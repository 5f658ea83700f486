"""Identifiers: job and event ids are UUIDv7 strings (time-ordered, so keyset pages sort by age)."""

from __future__ import annotations

import os
import secrets
import time


def uuid7(unix_ms: int | None = None) -> str:
    """A UUIDv7 (RFC 9562): 48-bit Unix milliseconds, version 7, 74 random bits."""
    ms = time.time_ns() // 1_000_000 if unix_ms is None else unix_ms
    value = (ms & 0xFFFF_FFFF_FFFF) << 80
    value |= 0x7 << 76  # version
    value |= int.from_bytes(os.urandom(10), "big") & ((1 << 76) - 1)
    value &= ~(0x3 << 62)
    value |= 0x2 << 62  # RFC 4122 variant
    h = f"{value:032x}"  # str(uuid.UUID(int=value)), without building the object
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def token() -> str:
    """A fresh lease token: unguessable, never reused."""
    return secrets.token_hex(12)
