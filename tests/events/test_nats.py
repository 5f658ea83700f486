"""NATS JetStream as the event source, against the real server on 127.0.0.1:4222."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import nats
import pytest

from backbeat.types import EventState
from tests.events.conftest import STORES, JobsApp, exactly_once_across_a_sigkill
from tests.integration.conftest import eventually

SERVER = "nats://127.0.0.1:4222"


def urls(app: JobsApp) -> tuple[str, str]:
    """(the consumer's --source, the main app's Client URL), private to this test."""
    common = f"{SERVER}?stream=T_{app.tag}&prefix=t{app.tag}"
    return f"{common}&durable=d{app.tag}&ack_wait=2", common


@pytest.fixture(autouse=True)
def _delete_stream(jobs_app: JobsApp) -> Iterator[None]:
    yield

    async def delete() -> None:
        client = await nats.connect(SERVER)
        try:
            await client.jetstream().delete_stream(f"T_{jobs_app.tag}")
        finally:
            await client.close()

    asyncio.run(delete())


@STORES
def test_a_thousand_events_are_each_handled_once_by_each_handler_across_a_sigkill(jobs_app: JobsApp) -> None:
    exactly_once_across_a_sigkill(jobs_app, *urls(jobs_app))


def test_malformed_messages_are_dead_lettered_and_the_consumer_keeps_going(jobs_app: JobsApp) -> None:
    source, target = urls(jobs_app)
    jobs_app.spawn("scheduler", "--source", source)
    jobs_app.spawn("worker")
    eventually(lambda: "consuming events from" in jobs_app.logs_text(), what="the consumer to subscribe")
    bodies: list[tuple[bytes | str, str]] = [
        (b"{this is not json", "bad-json"),
        (json.dumps({"name": "account.linked", "id": "v1", "payload": {"user_id": "x", "token": "t"}}), "m1"),
        (json.dumps({"name": "account.linked", "id": "v2", "payload": {}, "secret": 1}), "extra-envelope"),
        (json.dumps({"name": "account.linked", "id": "v3", "payload": {"user_id": 1, "token": "t", "x": 1}}), "m3"),
        (json.dumps({"name": "account.linked", "id": "good", "payload": {"user_id": 7, "token": "t"}}), "m4"),
    ]

    async def publish() -> None:
        client = await nats.connect(SERVER)
        try:
            js = client.jetstream()
            for body, msg_id in bodies:
                raw = body if isinstance(body, bytes) else body.encode()
                await js.publish(f"t{jobs_app.tag}.account.linked", raw, headers={"Nats-Msg-Id": msg_id})
        finally:
            await client.close()

    asyncio.run(publish())
    eventually(lambda: ("start", "good") in jobs_app.handled(), what="the good event after the bad ones")
    dead = {e.id: e.reason or "" for e in jobs_app.events(EventState.DEAD)}
    assert set(dead) == {"bad-json", "v1", "extra-envelope", "v3"}
    assert "not valid JSON" in dead["bad-json"]
    assert "user_id: Input should be a valid integer" in dead["v1"]
    assert "unknown field(s) secret" in dead["extra-envelope"]
    assert "x: Extra inputs are not permitted" in dead["v3"]

    replay = jobs_app.backbeat("events", "replay", "v1")
    assert replay.returncode == 0, replay.stderr
    assert target  # the consumer, not the client, decides: the old contract still refuses it
    eventually(lambda: jobs_app.client.sync(_state, jobs_app, "v1") == EventState.DEAD, what="v1 dead again")


async def _state(app: JobsApp, event_id: str) -> EventState:
    return (await (await app.client.astore()).event_get(event_id)).state


def test_replay_after_fixing_the_contract(jobs_app: JobsApp) -> None:
    source, target = urls(jobs_app)
    consumer = jobs_app.spawn("scheduler", "--source", source)
    sent = jobs_app.script(
        f"from backbeat import Client\nClient({target!r}).emit('account.linked', {{'user_id': 'u-42', 'token': 't'}},"
        " id='strict')"
    )
    assert sent.returncode == 0, sent.stderr
    eventually(lambda: [e.id for e in jobs_app.events(EventState.DEAD)] == ["strict"], what="the event dead")

    consumer.terminate()
    consumer.wait(timeout=30)
    # the fix is deployed: the contract takes string ids now
    jobs_app.spawn("scheduler", "--source", source, BB_LENIENT="1")
    jobs_app.spawn("worker", BB_LENIENT="1")
    replay = jobs_app.backbeat("events", "replay", "strict")
    assert replay.returncode == 0, replay.stderr
    eventually(lambda: ("start", "strict") in jobs_app.handled(), what="the replayed event handled")
    assert jobs_app.handled()[("start", "strict")] == 1
