"""Time, from one injected place.

Every component asks its ``Clock`` for the time and sleeps through it; store methods take
``now`` from the caller and never read the wall clock. Tests drive time with
``ManualClock`` instead of sleeping.

The production clock (``SystemClock``) follows the store server's clock where the store has
one (``Store.server_time``: Redis ``TIME``): measured when a client opens its store, on
every worker heartbeat and every scheduler repair round (``correct``). So workers and
schedulers on machines whose clocks disagree still agree on due times and leases: a
scheduler 30 s fast would fire every occurrence 30 s early, a worker 30 s fast would claim
delayed jobs early and rescue other workers' leases before they expire (both found by
``tests/faults/test_clock_skew.py``). The correction is as good as half a round trip.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import threading
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from backbeat.store.base import Store

log = logging.getLogger("backbeat.clock")
SAMPLES = 5
"""Readings of the server's clock per correction (after one to warm a connection); the one
with the shortest round trip counts: a reading whose request waited (a busy loop, a new
connection's handshake) would set the clock fast by half the wait."""
SKEW_WARNING = 5.0
"""Seconds of disagreement with the store server that are logged as a warning."""


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the Unix epoch (UTC)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of this clock's time."""
        ...

    async def wait(self, event: asyncio.Event, timeout: float) -> bool:
        """Wait until ``event`` is set or ``timeout`` of this clock's time passed; True if set."""
        ...


class SystemClock:
    """The wall clock, corrected by ``offset`` (the store server's clock minus this machine's)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> float:
        return time.time() + self.offset

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    async def wait(self, event: asyncio.Event, timeout: float) -> bool:
        if event.is_set():
            return True
        try:
            async with asyncio.timeout(max(0.0, timeout)):
                await event.wait()
        except TimeoutError:
            return False
        return True


class ManualClock:
    """A clock that moves only when a test calls ``advance`` or ``set``.

    Sleepers on any event loop wake when the time passes their deadline. Thread-safe.
    """

    def __init__(self, start: float | datetime = 1_800_000_000.0) -> None:
        self._now = start.timestamp() if isinstance(start, datetime) else float(start)
        self._lock = threading.Lock()
        self._sleepers: list[tuple[float, int, asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self._now

    def now_datetime(self) -> datetime:
        return datetime.fromtimestamp(self._now, UTC)

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock cannot go backwards; use set() to jump")
        self.set(self._now + seconds)

    def set(self, when: float | datetime) -> None:
        with self._lock:
            self._now = when.timestamp() if isinstance(when, datetime) else float(when)
            due: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
            while self._sleepers and self._sleepers[0][0] <= self._now:
                _, _, loop, fut = heapq.heappop(self._sleepers)
                due.append((loop, fut))
        for loop, fut in due:
            if not loop.is_closed():
                loop.call_soon_threadsafe(_resolve, fut)

    def next_deadline(self) -> float | None:
        """The earliest time a sleeper waits for (lets a test jump straight to it)."""
        with self._lock:
            live = [s for s in self._sleepers if not s[3].done()]
            return min(s[0] for s in live) if live else None

    async def sleep(self, seconds: float) -> None:
        fut = self._register(seconds)
        if fut is not None:
            await fut

    async def wait(self, event: asyncio.Event, timeout: float) -> bool:
        if event.is_set():
            return True
        fut = self._register(timeout)
        if fut is None:
            return False
        waiter: asyncio.Future[Any] = asyncio.ensure_future(event.wait())
        pending: set[asyncio.Future[Any]] = {waiter, fut}
        try:
            await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            fut.cancel()
        return event.is_set()

    def _register(self, seconds: float) -> asyncio.Future[None] | None:
        loop = asyncio.get_running_loop()
        with self._lock:
            deadline = self._now + max(0.0, seconds)
            if deadline <= self._now and seconds <= 0:
                return None
            fut: asyncio.Future[None] = loop.create_future()
            heapq.heappush(self._sleepers, (deadline, next(self._seq), loop, fut))
            return fut


async def correct(clock: Clock, store: Store) -> float | None:
    """Set a ``SystemClock``'s offset to the store server's clock (read a few times, each
    reading placed halfway through its round trip); return the offset, or ``None`` if nothing was corrected (any
    other clock, a store without a clock). A change smaller than the round trip is noise
    and left alone, so the clock does not wobble."""
    if not isinstance(clock, SystemClock):
        return None
    # the offset is measured whole (server minus this machine), never added to, so calls
    # that overlap (a scheduler's parts opening the store at once) agree instead of adding up
    if await store.server_time() is None:  # also warms a connection: no handshake in a sample
        return None
    samples: list[tuple[float, float]] = []  # (round trip, server minus this machine)
    for _ in range(SAMPLES):
        before = clock.now() - clock.offset
        server = await store.server_time()
        after = clock.now() - clock.offset
        if server is None:
            return None
        samples.append((after - before, server - (before + after) / 2))
    round_trip, offset = min(samples)  # the quickest answer says the most (as NTP does)
    change = offset - clock.offset
    if abs(change) > max(round_trip, 0.001):
        first = clock.offset == 0.0
        clock.offset = offset
        if abs(clock.offset) >= SKEW_WARNING and (first or abs(change) >= SKEW_WARNING):
            side = "behind" if clock.offset > 0 else "ahead of"
            log.warning(
                "this machine's clock is %.1f s %s the store server's; backbeat uses the server's time "
                "(fix the clock: NTP)",
                abs(clock.offset),
                side,
            )
    return clock.offset


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def to_datetime(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def iso(ts: float | None) -> str | None:
    """ISO 8601 in UTC, the format of every timestamp in ``--json`` output and the API."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")
