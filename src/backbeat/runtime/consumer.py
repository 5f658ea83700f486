"""The event consumer: turns events into handler jobs, from the store and from brokers.

Runs inside ``backbeat run`` and ``backbeat scheduler`` (any number at once). Two kinds of
input, one path:

* the store's own ``pending`` events (``Client.emit`` on a store URL, ``POST
  /api/events``): read in batches, dispatched, settled; woken by the store's wake-ups;
* each ``--source`` broker (``backbeat.brokers``): a batch of messages is parsed (a
  malformed one becomes a dead event with the reason), dispatched and settled in one
  store call, and only then acknowledged to the broker.

Dispatch is ``events.Dispatcher``; settling is ``Store.event_settle``, which records each
event once with its jobs, so two consumers racing for one event, or a broker delivering
it again, never double its jobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from backbeat.brokers import Incoming, Source, open_source
from backbeat.errors import EventError, StoreError
from backbeat.events import Dispatcher, dead, parse
from backbeat.secrets import require_keys
from backbeat.signing import signing
from backbeat.store.base import Store
from backbeat.types import EventRecord, EventSettlement, EventState, NewEvent, TaskInfo

if TYPE_CHECKING:
    from backbeat.app import App

log = logging.getLogger("backbeat.events")
BATCH = 200
REGISTRY_TTL = 30.0
"""Seconds the registry of tasks declared by workers (for ``backbeat.enqueue``) is reused."""


class Consumer:
    def __init__(self, app: App, sources: Sequence[str] = (), *, poll: float = 1.0) -> None:
        self.app = app
        self.clock = app.clock
        self.dispatcher = Dispatcher(app)
        self.sources: list[Source] = [open_source(url, app_name=app.name) for url in sources]
        self.poll = poll
        self.signing = signing(app.settings)
        """When set, a broker message becomes an event only if a known key signed it."""
        self.settled = 0
        self._stopping = asyncio.Event()
        self._registry: dict[str, TaskInfo] = {}
        self._registry_at = float("-inf")

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        require_keys((h.task.info for h in self.app.handlers), self.app.settings)
        store = await self.app.client.astore()
        tasks = [asyncio.create_task(self._store_loop(store), name="events:store")]
        tasks += [
            asyncio.create_task(source.run(self.accept, self._stopping), name=f"events:{source.url}")
            for source in self.sources
        ]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        log.info("event consumer stopped after settling %d events", self.settled)

    async def _store_loop(self, store: Store) -> None:
        while not self._stopping.is_set():
            try:
                if await self.drain(store):
                    continue
            except StoreError as exc:
                # wait before the next try: the wake-up below fails at once too while the
                # store is down, and this loop spun, reconnecting as fast as it could
                log.warning("events: store call failed (%s); retrying in %.1f s", exc, self.poll)
                await self.clock.wait(self._stopping, self.poll)
                continue
            woken = asyncio.ensure_future(store.wakeup_wait(self.poll))
            stopped = asyncio.ensure_future(self._stopping.wait())
            await asyncio.wait({woken, stopped}, return_when=asyncio.FIRST_COMPLETED)
            for waiter in (woken, stopped):
                waiter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(woken, stopped, return_exceptions=True)

    async def drain(self, store: Store) -> int:
        """Dispatch the store's pending events until none is left; return how many settled."""
        total = 0
        while True:
            pending = await store.event_pending(limit=BATCH)
            if not pending:
                return total
            total += await self._settle(
                store, [self.dispatcher.settle(_new(e), await self._tasks(store), self.clock.now()) for e in pending]
            )
            if len(pending) < BATCH:
                return total

    async def accept(self, batch: Sequence[Incoming]) -> None:
        """Parse, dispatch and store one batch from a broker; raises if it was not stored."""
        store = await self.app.client.astore()
        now = self.clock.now()
        registry = await self._tasks(store)
        limit = self.app.settings.max_payload_bytes
        settlements = []
        for message in batch:
            try:
                event = parse(
                    message.raw,
                    source=message.source,
                    received=now,
                    limit=limit,
                    default_id=message.fallback_id,
                    signing=self.signing,
                )
            except EventError as exc:
                log.warning("dead-lettered a message from %s: %s", message.source, exc)
                settlements.append(
                    EventSettlement(
                        event=dead(
                            message.raw, str(exc), source=message.source, received=now, event_id=message.fallback_id
                        ),
                        state=EventState.DEAD,
                        reason=str(exc),
                    )
                )
                continue
            settlements.append(self.dispatcher.settle(event, registry, now))
        await self._settle(store, settlements)

    async def _settle(self, store: Store, settlements: list[EventSettlement]) -> int:
        done = await store.event_settle(settlements, now=self.clock.now())
        for s, fresh in zip(settlements, done, strict=True):
            if fresh and s.state is EventState.DEAD:
                log.warning("event %s (%s) is dead: %s", s.event.id, s.event.name, s.reason)
        count = sum(done)
        self.settled += count
        return count

    async def _tasks(self, store: Store) -> dict[str, TaskInfo]:
        now = self.clock.now()
        if now - self._registry_at > REGISTRY_TTL:
            self._registry = {t.name: t for t in await store.task_list()}
            self._registry_at = now
        return self._registry


def _new(record: EventRecord) -> NewEvent:
    return NewEvent(
        id=record.id,
        name=record.name,
        occurred_at=record.occurred_at,
        payload=record.payload,
        key=record.key,
        source=record.source,
    )
