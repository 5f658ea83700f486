"""The reference store: the protocol in plain Python, in one process (``memory://``).

It exists to make the specification executable (it passes the same conformance suite as
every other store) and to run an application's jobs in its own tests
(``backbeat.testing``). Nothing outlives the process.

Layout: ``_jobs`` maps id -> ``JobRecord`` (frozen; every change replaces the record);
``_live_dedup`` maps a dedup key -> the id of the live job holding it; ``_schedules`` maps
key -> ``ScheduleRecord``; ``_fires`` maps (schedule key, fire_at) -> job id, the
uniqueness every store keeps for fired occurrences. One ``threading.Lock`` makes every
method atomic, also across event loops and threads.
"""

from __future__ import annotations

import threading
from typing import ClassVar

from backbeat.store.base import Store
from backbeat.store.memory.buckets import BucketMethods
from backbeat.store.memory.events import EventMethods
from backbeat.store.memory.jobs import JobMethods
from backbeat.store.memory.schedules import ScheduleMethods


class MemoryStore(JobMethods, ScheduleMethods, BucketMethods, EventMethods, Store):
    _named: ClassVar[dict[str, MemoryStore]] = {}
    _named_lock: ClassVar[threading.Lock] = threading.Lock()

    @classmethod
    def named(cls, name: str) -> MemoryStore:
        """``memory://NAME`` is one store per process and name; ``memory://`` a fresh one."""
        if not name:
            return cls()
        with cls._named_lock:
            return cls._named.setdefault(name, cls())

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def migrate(self) -> int:
        return 0


__all__ = ["MemoryStore"]
