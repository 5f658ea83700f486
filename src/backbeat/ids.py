"""Identifiers: job and event ids are UUIDv7 strings (time-ordered, so keyset pages sort by age)."""

from __future__ import annotations

import hashlib
import itertools
import os
import threading
import time

_RAND = (1 << 74) - 1
_STEP = 1 << 32
"""Within one millisecond, each id is the last one plus a random step below this."""
_lock = threading.Lock()
_last = 0
"""The last id this process made on its own clock, as an integer (0 in a fresh child)."""


def _compose(ms: int, rand: int) -> int:
    """The UUIDv7 integer: 48-bit milliseconds, version 7, 12 + 62 bits of ``rand`` around
    the RFC 4122 variant."""
    value = (ms & 0xFFFF_FFFF_FFFF) << 80 | 0x7 << 76 | (rand >> 62 & 0xFFF) << 64
    return value | 0x2 << 62 | (rand & ((1 << 62) - 1))


def _rand_of(value: int) -> int:
    return (value >> 64 & 0xFFF) << 62 | (value & ((1 << 62) - 1))


def uuid7(unix_ms: int | None = None) -> str:
    """A UUIDv7 (RFC 9562): 48-bit Unix milliseconds, version 7, 74 random bits.

    Ids a process makes on its own clock (no ``unix_ms``) increase strictly (RFC 9562,
    6.2, method 3): within one millisecond, or after the clock stepped back, the next id
    is the last one plus a random step. Jobs enqueued one after another by one process
    then keep their order wherever their other sort keys tie (``order_at`` read from a
    coarse or manual clock)."""
    global _last
    rand = int.from_bytes(os.urandom(10), "big") & _RAND
    if unix_ms is not None:
        return _format(_compose(unix_ms, rand))
    ms = time.time_ns() // 1_000_000
    with _lock:
        value = _compose(ms, rand)
        if value <= _last:
            ms, rand = _last >> 80, _rand_of(_last) + 1 + rand % _STEP
            if rand > _RAND:  # the millisecond is used up: borrow the next one
                ms, rand = ms + 1, rand & (_RAND >> 1)
            value = _compose(ms, rand)
        _last = value
    return _format(value)


def _format(value: int) -> str:
    h = f"{value:032x}"  # str(uuid.UUID(int=value)), without building the object
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_token_key = os.urandom(32)
_token_count = itertools.count()


def _forget_last() -> None:
    """A forked child starts its own sequences: ids (it would otherwise repeat its parent's
    steps from the same last id) and lease tokens (a key of its own)."""
    global _last, _token_key, _token_count
    _last = 0
    _token_key, _token_count = os.urandom(32), itertools.count()


os.register_at_fork(after_in_child=_forget_last)


def token() -> str:
    """A fresh lease token: unguessable, never reused. A keyed hash of a counter, the key
    drawn once per process: no system call per claim (``os.urandom`` releases the GIL, and
    a draining worker's loop then queued behind its busy task threads to take it back: 5%
    of the loop's time in a profile)."""
    count = next(_token_count).to_bytes(8, "big")
    return hashlib.blake2b(count, key=_token_key, digest_size=12).hexdigest()
