"""Conformance: events (dedup by id, settled once with their handlers' jobs, replay)."""

from __future__ import annotations

import itertools
from dataclasses import replace
from typing import Any

import pytest

from backbeat.errors import EventNotFound, InvalidTransition, StoreError
from backbeat.ids import uuid7
from backbeat.store.base import Store
from backbeat.testing.conformance.helpers import T0, Base, claim, new_job
from backbeat.types import EventFilter, EventSettlement, EventState, NewEvent

_seq = itertools.count()


def new_event(**changes: Any) -> NewEvent:
    fields: dict[str, Any] = {
        "id": uuid7(int(T0 * 1000) + next(_seq)),
        "name": "account.linked",
        "occurred_at": T0 - 1,
        "payload": '{"user_id":123,"token":"abc"}',
    }
    fields.update(changes)
    return NewEvent(**fields)


def settled(
    event: NewEvent, state: EventState = EventState.HANDLED, jobs: int = 2, reason: str | None = None
) -> EventSettlement:
    made = tuple(new_job(task="t.a" if i % 2 == 0 else "t.b") for i in range(jobs))
    return EventSettlement(event=event, state=state, reason=reason, jobs=made)


class EventTests(Base):
    async def test_append_accepts_once_per_id(self, store: Store) -> None:
        a, b = new_event(), new_event(name="order.paid", key="order:1", source="amqp")
        assert await store.event_append([a, b], now=T0) == [True, True]
        assert await store.event_append([a], now=T0 + 1) == [False]
        got = await store.event_get(b.id)
        assert (got.name, got.key, got.source, got.state, got.received_at) == (
            "order.paid",
            "order:1",
            "amqp",
            EventState.PENDING,
            T0,
        )
        assert (got.payload, got.occurred_at) == (b.payload, b.occurred_at)
        assert [e.id for e in await store.event_pending(limit=10)] == [a.id, b.id]
        assert [e.id for e in await store.event_pending(limit=1)] == [a.id]

    async def test_settling_creates_the_jobs_once(self, store: Store) -> None:
        event = new_event()
        assert await store.event_settle([settled(event)], now=T0) == [True]
        got = await store.event_get(event.id)
        assert (got.state, got.jobs, got.settled_at, got.received_at) == (EventState.HANDLED, 2, T0, T0)
        assert len(await store.job_claim(claim(10), now=T0)) == 2
        assert await store.event_settle([settled(event)], now=T0 + 1) == [False]  # a redelivery
        assert await store.job_claim(claim(10), now=T0 + 1) == []

    async def test_a_pending_event_settles_in_place(self, store: Store) -> None:
        event = new_event()
        await store.event_append([event], now=T0)
        assert await store.event_settle([settled(event, jobs=1)], now=T0 + 5) == [True]
        got = await store.event_get(event.id)
        assert (got.state, got.received_at, got.settled_at) == (EventState.HANDLED, T0, T0 + 5)
        assert await store.event_pending(limit=10) == []

    async def test_settling_a_pending_event_stores_the_settled_payload(self, store: Store) -> None:
        event = new_event()
        await store.event_append([event], now=T0)
        sealed = replace(event, payload='{"user_id":123,"token":"bbsecret:1:0123abcd:c2VhbGVk"}')
        assert await store.event_settle([settled(sealed, jobs=1)], now=T0 + 5) == [True]
        assert (await store.event_get(event.id)).payload == sealed.payload
        assert await store.event_settle([settled(event, jobs=1)], now=T0 + 6) == [False]  # settled: kept as is
        assert (await store.event_get(event.id)).payload == sealed.payload

    async def test_unhandled_and_dead_events_are_kept(self, store: Store) -> None:
        lonely, bad = new_event(name="nobody.listens"), new_event(payload='{"raw":"{not json"}')
        await store.event_settle(
            [settled(lonely, EventState.UNHANDLED, jobs=0), settled(bad, EventState.DEAD, jobs=0, reason="not JSON")],
            now=T0,
        )
        assert (await store.event_get(lonely.id)).state is EventState.UNHANDLED
        dead = await store.event_get(bad.id)
        assert (dead.state, dead.reason, dead.jobs) == (EventState.DEAD, "not JSON", 0)
        assert [e.id for e in await store.event_list(EventFilter(state=EventState.DEAD))] == [bad.id]

    async def test_a_batch_settles_each_event_on_its_own(self, store: Store) -> None:
        first, second = new_event(), new_event()
        await store.event_settle([settled(first)], now=T0)
        assert await store.event_settle([settled(first), settled(second, jobs=1)], now=T0) == [False, True]
        assert (await store.event_get(second.id)).jobs == 1

    async def test_a_failed_settlement_leaves_nothing(self, store: Store) -> None:
        taken = new_job()
        await store.job_enqueue([taken], now=T0)
        event = new_event()
        clash = EventSettlement(event=event, state=EventState.HANDLED, jobs=(new_job(), taken))
        with pytest.raises(StoreError):
            await store.event_settle([clash], now=T0)
        with pytest.raises(EventNotFound):
            await store.event_get(event.id)
        assert len(await store.job_claim(claim(10), now=T0)) == 1

    async def test_list_filters_and_pages(self, store: Store) -> None:
        events = [new_event(name="a" if i % 2 else "b") for i in range(6)]
        await store.event_append(events, now=T0)
        ids = [e.id for e in events]
        page = await store.event_list(EventFilter(limit=4))
        assert [e.id for e in page] == ids[::-1][:4]
        assert [e.id for e in await store.event_list(EventFilter(before=page[-1].id))] == ids[::-1][4:]
        assert [e.id for e in await store.event_list(EventFilter(name="a"))] == [ids[5], ids[3], ids[1]]
        with pytest.raises(EventNotFound):
            await store.event_get("nope")

    async def test_replay_sends_dead_events_back(self, store: Store) -> None:
        dead, handled = new_event(), new_event()
        await store.event_settle([settled(dead, EventState.DEAD, jobs=0, reason="schema"), settled(handled)], now=T0)
        replayed = await store.event_replay(dead.id)
        assert replayed.state is EventState.PENDING and replayed.reason is None
        assert [e.id for e in await store.event_pending(limit=10)] == [dead.id]
        assert await store.event_settle([settled(dead, jobs=1)], now=T0 + 1) == [True]
        with pytest.raises(InvalidTransition):
            await store.event_replay(handled.id)
        with pytest.raises(EventNotFound):
            await store.event_replay("nope")

    async def test_settled_events_are_pruned_after_retention(self, store: Store) -> None:
        old, fresh, waiting = new_event(), new_event(), new_event()
        await store.event_settle([settled(old, jobs=0)], now=T0)
        await store.event_settle([settled(fresh, jobs=0)], now=T0 + 100)
        await store.event_append([waiting], now=T0)
        assert await store.history_prune(before=T0 + 50) == 1
        with pytest.raises(EventNotFound):
            await store.event_get(old.id)
        assert (await store.event_get(fresh.id)).state is EventState.HANDLED
        assert (await store.event_get(waiting.id)).state is EventState.PENDING
