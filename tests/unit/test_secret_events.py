"""Secret event fields: declared by handlers (``secret=``, ``SecretStr`` contracts) or by
the sender (``emit(secret=...)``), sealed before the store, opened for the handler only."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import BaseModel, SecretStr

from backbeat import App, Client, Event
from backbeat import secrets as sec
from backbeat.errors import EventError, SecretError, TaskDefinitionError
from backbeat.events import ENQUEUE_EVENT
from backbeat.shapes import event as event_shape
from backbeat.shapes import job as job_shape
from backbeat.testing import ManualClock, run_until_idle
from backbeat.types import EventFilter, EventRecord, EventState, JobState, NewEvent, TaskInfo
from tests.unit.test_secrets import KEY, OLD, TOKEN, make_app, register, stored_jobs


class Linked(BaseModel):
    user_id: int
    token: SecretStr


def stored_events(app: App) -> list[EventRecord]:
    async def read() -> list[EventRecord]:
        return await (await app.client.astore()).event_list(EventFilter())

    return app.client.sync(read)


def append_raw(app: App, name: str, payload: dict[str, Any], event_id: str = "e1") -> None:
    """An event written as a sender that knows nothing of secrets would write it."""

    async def write() -> None:
        event = NewEvent(id=event_id, name=name, occurred_at=app.clock.now(), payload=json.dumps(payload))
        await (await app.client.astore()).event_append([event], now=app.clock.now())

    app.client.sync(write)


def assert_no_plaintext(app: App) -> None:
    for record in stored_events(app):
        assert TOKEN not in record.payload, record
    for job in stored_jobs(app):
        assert TOKEN not in job.payload and TOKEN not in (job.error or "") and TOKEN not in (job.traceback or "")


def test_a_handler_declared_secret_is_sealed_at_emit_and_opened_for_the_handler() -> None:
    app, seen = make_app("declared"), list[Any]()

    @app.on("account.linked", secret=("token",))
    def start(event: Event) -> None:
        seen.append(event.payload)

    assert start.info.secret == ("token",) and start.info.handles == "account.linked"
    app.emit("account.linked", {"user_id": 1, "token": TOKEN})
    run_until_idle(app)
    assert seen == [{"user_id": 1, "token": TOKEN}]
    assert_no_plaintext(app)
    [record] = stored_events(app)
    assert event_shape(record)["payload"] == {"user_id": 1, "token": "***"}
    [job] = stored_jobs(app)
    assert job_shape(job)["kwargs"]["event"]["payload"] == {"user_id": 1, "token": "***"}


def test_secret_str_fields_of_a_contract_are_secret() -> None:
    app, seen = make_app("contract"), list[Any]()

    @app.on("account.linked", schema=Linked)
    def start(event: Event) -> None:
        seen.append(event.data)

    assert start.info.secret == ("token",)
    app.emit("account.linked", {"user_id": 1, "token": TOKEN})
    run_until_idle(app)
    [data] = seen
    assert isinstance(data, Linked) and data.token.get_secret_value() == TOKEN
    assert_no_plaintext(app)


def test_a_declared_secret_must_be_a_field_of_the_contract() -> None:
    app = make_app("contract-names")
    with pytest.raises(TaskDefinitionError, match="secret names 'tokn', which is not a field of its contract Linked"):
        app.on("account.linked", schema=Linked, secret=("tokn",))


def test_a_sender_marks_its_own_secret_fields() -> None:
    app, seen = make_app("sender"), list[Any]()

    @app.on("account.linked")
    def start(event: Event) -> None:
        seen.append(event.payload["token"])

    client = Client(settings=app.settings, clock=app.clock)
    client.emit("account.linked", {"user_id": 1, "token": TOKEN}, secret=("token",))
    with pytest.raises(EventError, match="secret names 'tokn', which is not a field of the payload"):
        client.emit("account.linked", {"user_id": 1, "token": TOKEN}, secret=("tokn",))
    with pytest.raises(EventError, match="secret must be a tuple of names"):
        client.emit("account.linked", {"user_id": 1, "token": TOKEN}, secret="token")
    client.close()
    assert_no_plaintext(app)
    run_until_idle(app)
    assert seen == [TOKEN]  # opened for the handler, though it declared nothing


def test_a_client_on_the_store_seals_what_registered_handlers_declare() -> None:
    app = make_app("registry")
    register(app, TaskInfo(name="on.linked", queue="default", max_attempts=1, secret=("token",), handles="account.*"))
    client = Client(settings=app.settings, clock=app.clock)
    client.emit("account.linked", {"user_id": 1, "token": TOKEN})
    client.emit("order.paid", {"token": "not-a-secret-here"})
    client.close()
    assert_no_plaintext(app)
    [paid] = [e for e in stored_events(app) if e.name == "order.paid"]
    assert "not-a-secret-here" in paid.payload


def test_an_event_stored_in_plain_text_is_sealed_when_it_is_settled() -> None:
    app, seen = make_app("plain"), list[Any]()

    @app.on("account.linked", secret=("token",))
    def start(event: Event) -> None:
        seen.append(event.payload["token"])

    append_raw(app, "account.linked", {"user_id": 1, "token": TOKEN})
    run_until_idle(app)
    assert seen == [TOKEN]
    assert_no_plaintext(app)


def test_an_event_sealed_with_an_unknown_key_is_dead_until_the_key_is_configured() -> None:
    sender = make_app("unknown-key", secret_key=OLD)
    sender.emit("account.linked", {"user_id": 1, "token": TOKEN}, secret=("token",))
    app, seen = make_app("unknown-key"), list[Any]()

    @app.on("account.linked")
    def start(event: Event) -> None:
        seen.append(event.payload["token"])

    run_until_idle(app)
    [record] = stored_events(app)
    assert record.state is EventState.DEAD
    assert record.reason is not None and "which is not configured" in record.reason and TOKEN not in record.payload
    app.configure(secret_key=KEY, previous_secret_keys=(OLD,))
    app.client.sync(lambda: _replay(app, record.id))
    run_until_idle(app)
    assert seen == [TOKEN]


async def _replay(app: App, event_id: str) -> None:
    await (await app.client.astore()).event_replay(event_id)


def test_without_a_key_a_declared_secret_is_never_stored_in_plain_text() -> None:
    app = make_app("no-key", secret_key=None)

    @app.on("account.linked", secret=("token",))
    def start(event: Event) -> None: ...

    with pytest.raises(SecretError, match=r"event account.linked has secret fields \(token\): set BACKBEAT_SECRET_KEY"):
        app.emit("account.linked", {"user_id": 1, "token": TOKEN})
    assert stored_events(app) == []
    append_raw(app, "account.linked", {"user_id": 1, "token": TOKEN})  # a sender that ignored it
    with pytest.raises(SecretError, match=r"event handler '\S+' declares secret payload"):
        run_until_idle(app)  # dispatched first (kept dead, redacted), then the worker refuses to start
    [record] = stored_events(app)
    assert record.state is EventState.DEAD and json.loads(record.payload) == {"user_id": 1, "token": "***"}


def test_an_enqueue_event_keeps_the_task_secrets_sealed() -> None:
    app, seen = make_app("enqueue-event"), list[Any]()

    @app.task(name="twitter.poll", secret=("token",))
    def poll(user_id: int, token: str) -> None:
        seen.append(token)

    append_raw(app, ENQUEUE_EVENT, {"task": "twitter.poll", "kwargs": {"user_id": 1, "token": TOKEN}})
    append_raw(app, ENQUEUE_EVENT, {"task": "twitter.poll", "args": [1], "kwargs": {"token": TOKEN}}, "e2")
    append_raw(app, ENQUEUE_EVENT, {"task": "twitter.poll", "args": [1, 2, 3], "kwargs": {"token": TOKEN}}, "e3")
    run_until_idle(app)
    assert seen == [TOKEN, TOKEN]
    states = {e.id: e.state for e in stored_events(app)}
    assert states == {"e1": EventState.HANDLED, "e2": EventState.HANDLED, "e3": EventState.DEAD}
    assert_no_plaintext(app)


def test_a_handler_error_never_repeats_an_opened_secret() -> None:
    app = make_app("handler-error")

    @app.on("account.linked", secret=("token",))
    def start(event: Event) -> None:
        raise RuntimeError(f"feed engine refused {event.payload['token']}")

    app.emit("account.linked", {"user_id": 1, "token": TOKEN})
    run_until_idle(app)
    [job] = stored_jobs(app)
    assert job.state is JobState.DEAD and job.error == "RuntimeError: feed engine refused ***"
    assert_no_plaintext(app)


def test_a_sealed_field_names_its_event_and_field() -> None:
    sender = App("memory://travel", clock=ManualClock(1.0), secret_key=KEY)
    sender.emit("account.linked", {"token": TOKEN}, secret=("token",))
    payload = json.loads(stored_events(sender)[0].payload)
    assert sec.is_sealed(payload["token"])
    assert sec.keyring(sender.settings).reveal(payload["token"], aad="event:account.linked\x00token", what="t") == TOKEN


def test_an_enqueue_event_that_cannot_be_sealed_is_kept_dead_without_the_secret() -> None:
    app = make_app("enqueue-no-key", secret_key=None)
    register(app, TaskInfo(name="twitter.poll", queue="default", max_attempts=1, secret=("token",)))
    append_raw(app, ENQUEUE_EVENT, {"task": "twitter.poll", "kwargs": {"user_id": 1, "token": TOKEN}})
    run_until_idle(app)
    [record] = stored_events(app)
    assert record.state is EventState.DEAD and record.reason is not None and "set BACKBEAT_SECRET_KEY" in record.reason
    assert json.loads(record.payload)["kwargs"] == {"user_id": 1, "token": "***"}
    assert stored_jobs(app) == []
