"""The Redis store: events (deduplicated by id, settled once with their handlers' jobs)
and rate-limit buckets. Writes are scripts (``event_*.lua``, ``bucket_*.lua``).

Internal module.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from backbeat.errors import EventNotFound, InvalidTransition
from backbeat.store.redis import codec
from backbeat.store.redis.connection import RedisBase
from backbeat.store.redis.jobs import enqueue_items
from backbeat.types import (
    BucketRequest,
    BucketState,
    EventFilter,
    EventRecord,
    EventSettlement,
    EventState,
    NewEvent,
)

CONCURRENCY_RETRY = 1.0
"""Seconds a job denied by a concurrency limit waits before asking again."""


class EventMethods(RedisBase):
    # -- events ------------------------------------------------------------------------

    async def event_append(self, events: Sequence[NewEvent], *, now: float) -> list[bool]:
        if not events:
            return []
        items = [codec.event_item(e) for e in events]
        return [bool(x) for x in await self._run("event_append", [codec.num(now), codec.script_json(items)])]

    async def event_settle(self, settlements: Sequence[EventSettlement], *, now: float) -> list[bool]:
        if not settlements:
            return []
        items = [
            [codec.event_item(s.event), s.state.value, s.reason, enqueue_items(s.jobs)]
            for s in settlements  # ids repeated across settlements are refused by the script
        ]
        return [bool(x) for x in await self._run("event_settle", [codec.num(now), codec.script_json(items)])]

    async def event_pending(self, *, limit: int) -> list[EventRecord]:
        if limit < 1:
            return []
        ids = await self._redis_call("zrange", self.keys.events_pending, 0, limit - 1)
        return await self._events(ids)

    async def _events(self, ids: Sequence[str]) -> list[EventRecord]:
        rows = await self._hashes([self.keys.event(i) for i in ids])
        return [codec.event_record(i, f) for i, f in zip(ids, rows, strict=True) if f]

    async def event_get(self, event_id: str) -> EventRecord:
        fields = await self._redis_call("hgetall", self.keys.event(event_id))
        if not fields:
            raise EventNotFound(f"no event {event_id!r}")
        return codec.event_record(event_id, fields)

    async def event_list(self, filter: EventFilter) -> list[EventRecord]:
        states = [filter.state] if filter.state is not None else list(EventState)
        return await self._newest(
            [self.keys.evids(s) for s in states],
            filter.before,
            filter.limit,
            self._events,
            lambda e: filter.name is None or e.name == filter.name,
        )

    async def event_replay(self, event_id: str) -> EventRecord:
        out = await self._run("event_replay", [event_id])
        match out[0]:
            case "ok":
                return codec.event_record(event_id, codec.pairs(out[1][1]))
            case "missing":
                raise EventNotFound(f"no event {event_id!r}")
        raise InvalidTransition(f"event {event_id} is {out[1]}; only dead or unhandled events replay")

    # -- rate-limit buckets ------------------------------------------------------------

    async def bucket_acquire(self, requests: Sequence[BucketRequest], *, now: float) -> list[float | None]:
        if not requests:
            return []
        items = [_bucket_item(r) for r in requests]
        out = await self._run("bucket_acquire", [codec.num(now), codec.script_json(items)])
        return [_retry_at(reply, r, now) for reply, r in zip(out, requests, strict=True)]

    async def bucket_block(self, bucket: str, *, until: float) -> None:
        await self._run("bucket_block", [bucket, codec.num(until)])

    async def bucket_state(self, bucket: str, *, now: float, per: float | None) -> BucketState:
        since = "-inf" if per is None else f"({codec.num(now - per)}"
        blocked, starts, running = await self._read(
            lambda pipe: [
                pipe.hget(self.keys.blocked, bucket),
                pipe.zcount(self.keys.starts(bucket), since, "+inf"),
                pipe.scard(self.keys.holders(bucket)),
            ],
            transaction=True,
        )
        return BucketState(
            bucket=bucket,
            blocked_until=None if blocked is None else float(blocked),
            starts=int(starts),
            running=int(running),
        )


def _bucket_item(r: BucketRequest) -> list[str | None]:
    limit = None if r.limit is None else str(r.limit)
    concurrency = None if r.concurrency is None else str(r.concurrency)
    return [r.bucket, r.job_id, limit, codec.opt_num(r.per), concurrency]


def _retry_at(reply: list[str], request: BucketRequest, now: float) -> float | None:
    """``bucket_acquire.lua``'s answer as the time to ask again (None: granted)."""
    match reply[0]:
        case "ok":
            return None
        case "blocked":
            return float(reply[1])
        case "window":
            return float(reply[1]) + cast(float, request.per)
    return now + CONCURRENCY_RETRY
