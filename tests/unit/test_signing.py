"""Signed jobs and events (BACKBEAT_SIGNING_KEY): every job payload and every event sent
over a broker carries an HMAC; a worker or consumer with a key refuses what no known key
signed, whoever wrote it into the store or the broker."""

from __future__ import annotations

import json
from typing import Any

import pytest

from backbeat import App
from backbeat.config import Settings, keys_from_env
from backbeat.errors import EventError, SignatureError
from backbeat.events import envelope, parse
from backbeat.runtime.scheduler import Scheduler
from backbeat.serialization import decode_payload, encode_payload
from backbeat.signing import Signing, sign_payload, signed_by_current, strip_signature
from backbeat.testing import ManualClock, run_until_idle
from backbeat.types import EventState, JobState, NewEvent

KEY = "s" * 16 + "-current-signing-key"
OLD = "p" * 16 + "-previous-signing-key"


def make_app(name: str, **settings: Any) -> App:
    return App(f"memory://{name}", clock=ManualClock(1_800_000_000.0), default_retries=0, **settings)


def test_a_payload_verifies_only_for_its_task_and_unaltered() -> None:
    keys = Signing([KEY])
    plain = encode_payload([1, "é"], {"token": "abc", "n": None}, limit=10_000)
    signed = keys.sign_payload("twitter.poll", plain)
    assert signed.startswith(plain[:-1]) and f'"sig":"bbsig:1:{keys.ids[0]}:' in signed
    assert decode_payload(signed) == decode_payload(plain)  # the task never sees the signature
    assert strip_signature(signed) == plain and strip_signature(plain) == plain
    assert keys.sign_payload("twitter.poll", signed) == signed  # signing twice changes nothing
    keys.verify_payload("twitter.poll", signed, "job")
    with pytest.raises(SignatureError, match="job does not match its signature"):
        keys.verify_payload("other.task", signed, "job")
    with pytest.raises(SignatureError, match="does not match"):
        keys.verify_payload("twitter.poll", signed.replace('"abc"', '"abd"'), "job")
    with pytest.raises(SignatureError, match="job is not signed"):
        keys.verify_payload("twitter.poll", plain, "job")
    with pytest.raises(SignatureError, match=r"signed with key '.*', which this process does not know"):
        Signing([OLD]).verify_payload("twitter.poll", signed, "job")


def test_rotation_signs_with_the_first_key_and_accepts_any() -> None:
    old_signed = Signing([OLD]).sign_payload("t", '{"args":[],"kwargs":{}}')
    rotated = Signing([KEY, OLD])
    rotated.verify_payload("t", old_signed, "job")
    assert rotated.sign_payload("t", '{"args":[],"kwargs":{}}') == Signing([KEY]).sign_payload(
        "t", '{"args":[],"kwargs":{}}'
    )
    settings = Settings.build(env={"BACKBEAT_SIGNING_KEYS": f"{KEY},{OLD}"}, url="memory://")
    assert (settings.signing_key, settings.previous_signing_keys) == (KEY, (OLD,))
    assert not signed_by_current(settings, old_signed)
    assert signed_by_current(settings, sign_payload(settings, "t", old_signed))
    assert keys_from_env({"BACKBEAT_SIGNING_KEY": KEY}, "signing") == {"signing_key": KEY}


def test_bad_keys_are_clear_errors() -> None:
    with pytest.raises(SignatureError, match="BACKBEAT_SIGNING_KEY is 5 characters"):
        Signing(["short"])
    with pytest.raises(SignatureError, match="previous signing key #1 is given twice"):
        Signing([KEY, KEY])


def test_a_worker_with_a_key_runs_signed_jobs_and_refuses_the_rest() -> None:
    seen: list[int] = []
    signed_app = make_app("sign-worker", signing_key=KEY)

    @signed_app.task(name="acct.poll")
    def poll(n: int) -> None:
        seen.append(n)

    good = poll.enqueue(n=1)
    forged = make_app("sign-worker")  # the same store, no key: what an intruder could write
    forged.task(name="acct.poll")(lambda n: None)
    bad = forged.client.enqueue("acct.poll", kwargs={"n": 2})
    run_until_idle(signed_app)
    assert seen == [1] and good.status() is JobState.SUCCEEDED
    record = bad.info()
    assert record.state is JobState.DEAD and record.attempts == 1
    assert record.error is not None and record.error.startswith("SignatureError: job ")
    assert "is not signed, and this process requires signatures" in record.error


def test_schedules_are_signed_and_their_jobs_run() -> None:
    seen: list[int] = []
    app = make_app("sign-schedules")

    @app.task(name="acct.poll")
    def poll(n: int) -> None:
        seen.append(n)

    unsigned = app.every(20, poll, key="acct:1", kwargs={"n": 1})
    app.configure(signing_key=KEY)
    # the same definition written again with a key is signed (the unsigned payload is not kept)
    signed = app.every(20, poll, key="acct:1", kwargs={"n": 1})
    assert '"sig":"bbsig:1:' not in unsigned.spec.payload and '"sig":"bbsig:1:' in signed.spec.payload
    assert app.client.sync(Scheduler(app).tick) == 1
    run_until_idle(app)
    assert seen == [1]


def test_reseal_signs_schedules_with_the_current_key() -> None:
    app = make_app("sign-reseal", signing_key=OLD)
    poll = app.task(name="acct.poll")(lambda n: None)
    app.every(20, poll, key="acct:1", kwargs={"n": 1})
    app.configure(signing_key=KEY, previous_signing_keys=(OLD,))
    assert app.schedules.reseal() == ["acct:1"]
    [record] = app.schedules.list()
    assert signed_by_current(app.settings, record.spec.payload)
    assert app.schedules.reseal() == []


def test_events_are_signed_on_the_wire_and_checked_by_the_consumer() -> None:
    keys = Signing([KEY])
    event = NewEvent(id="ev-1", name="account.linked", occurred_at=1.0, payload='{"user":1,"b":"é"}', source="t")
    wire = json.dumps(envelope(event, keys))
    parsed = parse(wire, source="amqp", received=2.0, limit=10_000, signing=keys)
    assert (parsed.id, json.loads(parsed.payload)) == ("ev-1", {"user": 1, "b": "é"})
    assert parse(wire, source="amqp", received=2.0, limit=10_000).id == "ev-1"  # sig is a known field
    tampered = wire.replace('"user": 1', '"user": 2')
    with pytest.raises(EventError, match=r"event account.linked \(ev-1\) does not match its signature"):
        parse(tampered, source="amqp", received=2.0, limit=10_000, signing=keys)
    with pytest.raises(EventError, match="is not signed"):
        parse(json.dumps(envelope(event)), source="amqp", received=2.0, limit=10_000, signing=keys)


def test_the_consumer_dead_letters_what_no_known_key_signed_and_signs_the_jobs_it_makes() -> None:
    from backbeat.brokers import Incoming
    from backbeat.runtime.consumer import Consumer
    from backbeat.types import EventFilter

    app = make_app("sign-consumer", signing_key=KEY)
    seen: list[int] = []

    @app.on("account.linked")
    def linked(event: Any) -> None:
        seen.append(event.payload["user"])

    def message(n: int, keys: Signing | None) -> Incoming:
        event = NewEvent(id=f"ev-{n}", name="account.linked", occurred_at=1.0, payload=f'{{"user":{n}}}', source="t")
        return Incoming(raw=json.dumps(envelope(event, keys)).encode(), source="amqp://test")

    consumer = Consumer(app)
    app.client.sync(consumer.accept, [message(1, Signing([KEY])), message(2, None), message(3, Signing([OLD]))])
    run_until_idle(app)
    assert seen == [1]

    async def events() -> dict[str, Any]:
        store = await app.client.astore()
        return {e.id: e for e in await store.event_list(EventFilter(limit=10))}

    stored = app.client.sync(events)
    assert stored["ev-1"].state is EventState.HANDLED
    dead = [e for e in stored.values() if e.state is EventState.DEAD]
    reasons = sorted(json.loads(e.payload)["reason"] for e in dead)
    assert (
        reasons[0]
        == "event account.linked (ev-2) is not signed, and this process requires signatures (BACKBEAT_SIGNING_KEY)"
    )
    assert reasons[1].startswith("event account.linked (ev-3) is signed with key ")
