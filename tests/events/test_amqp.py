"""RabbitMQ as the event source, against the real server on 127.0.0.1:5672."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import aio_pika
import pytest

from backbeat.types import EventState
from tests.events.conftest import JobsApp, exactly_once_across_a_sigkill
from tests.integration.conftest import eventually

BROKER = "amqp://guest:guest@127.0.0.1:5672/"


def urls(app: JobsApp) -> tuple[str, str]:
    """(the consumer's --source, the main app's Client URL), private to this test."""
    exchange = f"test.events.{app.tag}"
    return f"{BROKER}?exchange={exchange}&queue=test.{app.tag}&prefetch=50", f"{BROKER}?exchange={exchange}"


@pytest.fixture(autouse=True)
def _delete_queue(jobs_app: JobsApp) -> Iterator[None]:
    yield

    async def delete() -> None:
        connection = await aio_pika.connect(BROKER)
        async with connection:
            channel = await connection.channel()
            await channel.queue_delete(f"test.{jobs_app.tag}")
            await channel.exchange_delete(f"test.events.{jobs_app.tag}")

    asyncio.run(delete())


def test_a_thousand_events_are_each_handled_once_by_each_handler_across_a_sigkill(jobs_app: JobsApp) -> None:
    source, target = urls(jobs_app)
    exactly_once_across_a_sigkill(jobs_app, source.replace("prefetch=50", "prefetch=1"), target)


def test_malformed_messages_are_dead_lettered_and_the_consumer_keeps_going(jobs_app: JobsApp) -> None:
    source, _ = urls(jobs_app)
    jobs_app.spawn("scheduler", "--source", source)
    jobs_app.spawn("worker")
    eventually(lambda: "consuming events from" in jobs_app.logs_text(), what="the consumer to declare its queue")
    big = json.dumps({"name": "account.linked", "id": "big", "payload": {"blob": "x" * 10_000_000}})
    bodies: list[tuple[bytes | str, str]] = [
        (b"{this is not json", "bad-json"),
        (json.dumps({"name": "account.linked", "id": "v1", "payload": {"user_id": "x", "token": "t"}}), "schema"),
        (json.dumps({"name": "account.linked", "id": "v2", "payload": {}, "secret": 1}), "extra-envelope"),
        (json.dumps({"name": "account.linked", "id": "v3", "payload": {"user_id": 1, "token": "t", "x": 1}}), "x"),
        (big, "big"),
        (json.dumps({"name": "account.linked", "id": "good", "payload": {"user_id": 7, "token": "t"}}), "good"),
    ]

    async def publish() -> None:
        connection = await aio_pika.connect(BROKER)
        async with connection:
            channel = await connection.channel()
            exchange = await channel.get_exchange(f"test.events.{jobs_app.tag}")
            for body, message_id in bodies:
                raw = body if isinstance(body, bytes) else body.encode()
                await exchange.publish(aio_pika.Message(raw, message_id=message_id), routing_key="account.linked")

    asyncio.run(publish())
    eventually(lambda: ("start", "good") in jobs_app.handled(), what="the good event after the bad ones")
    dead = {e.id: e.reason or "" for e in jobs_app.events(EventState.DEAD)}
    # an envelope that cannot be read is kept under the broker's message id; one that breaks
    # a contract under its own id
    assert set(dead) == {"bad-json", "v1", "extra-envelope", "v3", "big"}
    assert "not valid JSON" in dead["bad-json"]
    assert "user_id: Input should be a valid integer" in dead["v1"]
    assert "unknown field(s) secret" in dead["extra-envelope"]
    assert "x: Extra inputs are not permitted" in dead["v3"]
    assert "over the limit of 1,000,000 bytes" in dead["big"]


def test_a_client_retries_until_the_queue_exists_then_fails_clearly(jobs_app: JobsApp) -> None:
    _, target = urls(jobs_app)
    result = jobs_app.script(
        "from backbeat import Client\nfrom backbeat.config import Settings\n"
        f"Client({target!r}, settings=Settings(send_timeout=0.5)).emit('account.linked', {{'user_id': 1}})"
    )
    assert result.returncode != 0
    assert "EmitError" in result.stderr
    assert "no queue is bound to exchange" in result.stderr
    assert "it was not sent" in result.stderr
