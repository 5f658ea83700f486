"""RabbitMQ (aio-pika): a durable queue bound to the events topic exchange.

URL options: ``exchange`` (default ``backbeat.events``), ``queue`` (default
``backbeat.events.<app>``), ``binding`` (routing-key pattern, default ``#``: every event),
``prefetch`` (unacknowledged messages held at once, default 200). For example
``amqp://guest:guest@127.0.0.1/?queue=billing.events&binding=account.*``.

The source stores a batch of deliveries and only then acknowledges them, so a consumer
killed at any point leaves the unacknowledged ones in the queue for the next one (which
recognises any already stored by their id). The publisher sends persistent messages with
``mandatory`` set and waits for the broker's confirmation: a message no queue would take
(the jobs app never declared its queue) is an error, not a silent drop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from backbeat.brokers import Accept, Incoming, Publisher, Source, missing, number_option, redact, split_options
from backbeat.types import NewEvent

if TYPE_CHECKING:
    import aio_pika
    from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractIncomingMessage

log = logging.getLogger("backbeat.events")
EXCHANGE = "backbeat.events"
BATCH = 100


def _aio_pika(url: str) -> Any:
    try:
        import aio_pika
    except ImportError:  # pragma: no cover - part of backbeat[amqp]
        raise missing("aio-pika", "amqp", url) from None
    return aio_pika


def _failure(exc: BaseException) -> bool:
    """Whether ``exc`` is the broker being unreachable or the connection lost."""
    from aio_pika.exceptions import CONNECTION_EXCEPTIONS

    return isinstance(exc, (*CONNECTION_EXCEPTIONS, asyncio.TimeoutError))


class AmqpSource(Source):
    def __init__(self, url: str, *, app_name: str) -> None:
        self._aio_pika = _aio_pika(url)
        defaults = {"exchange": EXCHANGE, "queue": f"{EXCHANGE}.{app_name}", "binding": "#", "prefetch": "200"}
        self._connect_url, self.options = split_options(url, defaults)
        self.prefetch = int(number_option(self.options, "prefetch", url))
        self.url = redact(url)

    async def run(self, accept: Accept, stop: asyncio.Event) -> None:
        backoff = 0.5
        while not stop.is_set():
            try:
                connection = await self._aio_pika.connect_robust(self._connect_url)
            except Exception as exc:
                if not _failure(exc):
                    raise
                log.warning("cannot reach %s (%s); retrying in %.1f s", self.url, exc, backoff)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), backoff)
                backoff = min(backoff * 2, 30.0)
                continue
            backoff = 0.5
            async with connection:
                channel = await connection.channel()
                await channel.set_qos(prefetch_count=self.prefetch)
                await self._consume(channel, accept, stop)

    async def _consume(self, channel: AbstractChannel, accept: Accept, stop: asyncio.Event) -> None:
        o = self.options
        exchange = await channel.declare_exchange(o["exchange"], self._aio_pika.ExchangeType.TOPIC, durable=True)
        queue = await channel.declare_queue(o["queue"], durable=True)
        await queue.bind(exchange, routing_key=o["binding"])
        inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        tag = await queue.consume(inbox.put, no_ack=False)
        log.info("consuming events from %s queue %s", self.url, o["queue"])
        stopped = asyncio.ensure_future(stop.wait())
        try:
            while True:
                first = asyncio.ensure_future(inbox.get())
                await asyncio.wait({first, stopped}, return_when=asyncio.FIRST_COMPLETED)
                if not first.done():
                    first.cancel()
                    return
                batch = [first.result()]
                while len(batch) < BATCH and not inbox.empty():
                    batch.append(inbox.get_nowait())
                await self._settle(batch, accept)
        finally:
            stopped.cancel()
            with contextlib.suppress(Exception):
                await queue.cancel(tag)

    async def _settle(self, batch: list[AbstractIncomingMessage], accept: Accept) -> None:
        try:
            await accept([Incoming(m.body, self.url, m.message_id) for m in batch])
        except Exception:
            log.exception(
                "could not store %d event(s) from %s; the broker will deliver them again", len(batch), self.url
            )
            for message in batch:
                with contextlib.suppress(Exception):
                    await message.nack(requeue=True)
            await asyncio.sleep(1.0)
            return
        for message in batch:
            try:
                await message.ack()
            except Exception as exc:  # the channel went away: stored already, redelivery is deduplicated
                if not _failure(exc):
                    raise
                log.warning("could not acknowledge a stored event to %s (%s)", self.url, exc)
                return


class AmqpPublisher(Publisher):
    def __init__(self, url: str) -> None:
        self._aio_pika = _aio_pika(url)
        self._connect_url, self.options = split_options(url, {"exchange": EXCHANGE})
        self.url = redact(url)
        self._connection: aio_pika.abc.AbstractConnection | None = None
        self._exchange: AbstractExchange | None = None

    async def _open(self) -> AbstractExchange:
        if self._exchange is None or self._connection is None or self._connection.is_closed:
            await self.close()
            self._connection = await self._aio_pika.connect(self._connect_url)
            channel = await self._connection.channel(publisher_confirms=True, on_return_raises=True)
            self._exchange = await channel.declare_exchange(
                self.options["exchange"], self._aio_pika.ExchangeType.TOPIC, durable=True
            )
        return self._exchange

    async def publish(self, events: Sequence[NewEvent]) -> None:
        from aio_pika.exceptions import PublishError

        try:
            exchange = await self._open()
            await asyncio.gather(*(exchange.publish(self._message(e), e.name, mandatory=True) for e in events))
        except PublishError as exc:
            raise ConnectionError(
                f"RabbitMQ could not route the event: no queue is bound to exchange {self.options['exchange']!r} "
                f"for it yet; start the jobs app once (backbeat run APP --source {self.url}) so its durable "
                "queue exists"
            ) from exc
        except Exception as exc:
            if not _failure(exc):
                raise
            await self.close()
            raise ConnectionError(f"{type(exc).__name__}: {exc}") from exc

    def _message(self, event: NewEvent) -> aio_pika.Message:
        return self._aio_pika.Message(  # type: ignore[no-any-return]
            json.dumps(self.body(event), ensure_ascii=False).encode(),
            content_type="application/json",
            message_id=event.id,
            delivery_mode=self._aio_pika.DeliveryMode.PERSISTENT,
        )

    async def close(self) -> None:
        connection, self._connection, self._exchange = self._connection, None, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close()
