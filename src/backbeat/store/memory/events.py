"""The reference store: events (dedup by id, settled once with their handlers' jobs)."""

from __future__ import annotations

from collections.abc import Sequence

from backbeat.errors import EventNotFound, InvalidTransition, StoreError
from backbeat.store.memory.state import MemoryState
from backbeat.store.rules import new_record
from backbeat.types import EventFilter, EventRecord, EventSettlement, EventState, NewEvent, evolve


class EventMethods(MemoryState):
    async def event_append(self, events: Sequence[NewEvent], *, now: float) -> list[bool]:
        with self._lock:
            out = []
            for event in events:
                fresh = event.id not in self._events
                if fresh:
                    self._events[event.id] = _record(event, EventState.PENDING, now)
                out.append(fresh)
            self._notify()
            return out

    async def event_settle(self, settlements: Sequence[EventSettlement], *, now: float) -> list[bool]:
        with self._lock:
            out = []
            for s in settlements:
                if any(job.id in self._jobs for job in s.jobs) or len({j.id for j in s.jobs}) < len(s.jobs):
                    raise StoreError(f"event {s.event.id}: a handler job id already exists")
                current = self._events.get(s.event.id)
                if current is not None and current.state is not EventState.PENDING:
                    out.append(False)
                    continue
                base = current or _record(s.event, s.state, now)
                self._events[s.event.id] = evolve(
                    base, state=s.state, reason=s.reason, jobs=len(s.jobs), settled_at=now, payload=s.event.payload
                )
                for job in s.jobs:
                    self._put(new_record(job, now))
                out.append(True)
            self._notify()
            return out

    async def event_pending(self, *, limit: int) -> list[EventRecord]:
        with self._lock:
            pending = [e for e in self._events.values() if e.state is EventState.PENDING]
        pending.sort(key=lambda e: (e.received_at, e.id))
        return pending[:limit]

    async def event_get(self, event_id: str) -> EventRecord:
        with self._lock:
            try:
                return self._events[event_id]
            except KeyError:
                raise EventNotFound(f"no event {event_id!r}") from None

    async def event_list(self, filter: EventFilter) -> list[EventRecord]:
        with self._lock:
            found = [
                e
                for e in self._events.values()
                if (filter.state is None or e.state is filter.state)
                and (filter.name is None or e.name == filter.name)
                and (filter.before is None or e.id < filter.before)
            ]
        found.sort(key=lambda e: e.id, reverse=True)
        return found[: filter.limit]

    async def event_replay(self, event_id: str) -> EventRecord:
        with self._lock:
            event = self._events.get(event_id)
            if event is None:
                raise EventNotFound(f"no event {event_id!r}")
            if event.state not in (EventState.DEAD, EventState.UNHANDLED):
                raise InvalidTransition(f"event {event_id} is {event.state}; only dead or unhandled events replay")
            event = self._events[event_id] = evolve(event, state=EventState.PENDING, reason=None, settled_at=None)
            self._notify()
            return event


def _record(event: NewEvent, state: EventState, now: float) -> EventRecord:
    return EventRecord(
        id=event.id,
        name=event.name,
        occurred_at=event.occurred_at,
        payload=event.payload,
        received_at=now,
        state=state,
        key=event.key,
        source=event.source,
    )
