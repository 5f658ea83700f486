"""NATS JetStream (nats-py): a durable pull consumer on the events stream.

URL options: ``stream`` (default ``BACKBEAT_EVENTS``), ``prefix`` (subject prefix, default
``events``: an event ``account.linked`` is published on ``events.account.linked``),
``durable`` (consumer name, default ``backbeat-<app>``), ``ack_wait`` (seconds before an
unacknowledged message is delivered again, default 30). The stream is created (subjects
``<prefix>.>``) by whichever side connects first.

The source fetches a batch, stores it, then acknowledges each message; a consumer killed
in between leaves them unacknowledged and JetStream delivers them again after
``ack_wait``, when their ids show they are stored already. The publisher sets
``Nats-Msg-Id`` to the event id, so JetStream itself drops a re-sent duplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from backbeat.brokers import Accept, Incoming, Publisher, Source, missing, number_option, redact, split_options
from backbeat.errors import EventError
from backbeat.types import NewEvent

if TYPE_CHECKING:
    from nats.aio.client import Client as NatsClient
    from nats.js import JetStreamContext

log = logging.getLogger("backbeat.events")
STREAM = "BACKBEAT_EVENTS"
PREFIX = "events"
BATCH = 100


def _nats(url: str) -> Any:
    try:
        import nats
    except ImportError:  # pragma: no cover - part of backbeat[nats]
        raise missing("nats-py", "nats", url) from None
    return nats


async def _quiet(exc: Exception) -> None:
    log.debug("nats: %s", exc)


class _Connection:
    """The connection and stream both sides need."""

    def __init__(self, url: str, defaults: dict[str, str]) -> None:
        self._nats = _nats(url)
        self._connect_url, self.options = split_options(url, {"stream": STREAM, "prefix": PREFIX, **defaults})
        self.url = redact(url)
        self.client: NatsClient | None = None

    async def jetstream(self, **connect: Any) -> JetStreamContext:
        from nats.js.errors import NotFoundError

        if self.client is None or self.client.is_closed:
            self.client = await self._nats.connect(
                servers=[self._connect_url], error_cb=_quiet, connect_timeout=2, **connect
            )
        js = self.client.jetstream()
        stream, prefix = self.options["stream"], self.options["prefix"]
        try:
            await js.stream_info(stream)
        except NotFoundError:
            await js.add_stream(name=stream, subjects=[f"{prefix}.>"])
        return js

    async def close(self) -> None:
        client, self.client = self.client, None
        if client is not None and not client.is_closed:
            with contextlib.suppress(Exception):
                await client.close()


def _failure(exc: BaseException) -> bool:
    import nats.errors

    return isinstance(exc, nats.errors.Error | OSError | asyncio.TimeoutError)


class NatsSource(Source):
    def __init__(self, url: str, *, app_name: str) -> None:
        durable = "backbeat-" + re.sub(r"[^A-Za-z0-9_-]", "-", app_name)
        self._conn = _Connection(url, {"durable": durable, "ack_wait": "30"})
        self.ack_wait = number_option(self._conn.options, "ack_wait", url)
        self.url = self._conn.url

    async def run(self, accept: Accept, stop: asyncio.Event) -> None:
        backoff = 0.5
        while not stop.is_set():
            try:
                await self._consume(accept, stop)
            except Exception as exc:
                if not _failure(exc):
                    raise
                log.warning("lost %s (%s); reconnecting in %.1f s", self.url, exc, backoff)
                await self._conn.close()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), backoff)
                backoff = min(backoff * 2, 30.0)
            else:
                backoff = 0.5
        await self._conn.close()

    async def _consume(self, accept: Accept, stop: asyncio.Event) -> None:
        from nats.errors import TimeoutError as FetchTimeout
        from nats.js.api import AckPolicy, ConsumerConfig

        js = await self._conn.jetstream(max_reconnect_attempts=-1)
        o = self._conn.options
        config = ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, ack_wait=self.ack_wait, max_ack_pending=10 * BATCH)
        sub = await js.pull_subscribe(f"{o['prefix']}.>", durable=o["durable"], stream=o["stream"], config=config)
        log.info("consuming events from %s stream %s as %s", self.url, o["stream"], o["durable"])
        while not stop.is_set():
            try:
                messages = await sub.fetch(batch=BATCH, timeout=1.0)
            except FetchTimeout:
                continue
            await accept([Incoming(m.data, self.url, self._id(m)) for m in messages])
            for message in messages:
                await message.ack()

    def _id(self, message: Any) -> str | None:
        given = (message.headers or {}).get("Nats-Msg-Id")
        if given:
            return str(given)
        return f"nats:{self._conn.options['stream']}:{message.metadata.sequence.stream}"


class NatsPublisher(Publisher):
    def __init__(self, url: str) -> None:
        self._conn = _Connection(url, {})
        self.url = self._conn.url

    async def publish(self, events: Sequence[NewEvent]) -> None:
        from nats.errors import MaxPayloadError

        prefix = self._conn.options["prefix"]
        try:
            js = await self._conn.jetstream(max_reconnect_attempts=0, allow_reconnect=False)
            for e in events:
                body = json.dumps(self.body(e), ensure_ascii=False).encode()
                await js.publish(f"{prefix}.{e.name}", body, headers={"Nats-Msg-Id": e.id})
        except MaxPayloadError:
            raise EventError(f"an event is over the max_payload of the NATS server at {self.url}") from None
        except Exception as exc:
            if not _failure(exc):
                raise
            await self._conn.close()
            raise ConnectionError(f"{type(exc).__name__}: {exc}") from exc

    async def close(self) -> None:
        await self._conn.close()
