"""Events in one process: the envelope, patterns, handlers and contracts, dispatch."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict

from backbeat import App, Client
from backbeat.config import Settings
from backbeat.errors import EmitError, EventError, InvalidTransition, TaskDefinitionError
from backbeat.events import ENQUEUE_EVENT, Event, contracts, matches, parse
from backbeat.testing import ManualClock, run_until_idle
from backbeat.types import EventFilter, EventRecord, EventState, JobFilter, JobRecord, JobState


class Linked(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user_id: int
    token: str


def events(app: App, state: EventState | None = None) -> list[EventRecord]:
    async def read() -> list[EventRecord]:
        return await (await app.client.astore()).event_list(EventFilter(state=state))

    return app.client.sync(read)


def jobs(app: App) -> list[JobRecord]:
    async def read() -> list[JobRecord]:
        return await (await app.client.astore()).job_list(JobFilter(limit=1000))

    return app.client.sync(read)


@pytest.fixture
def app(request: pytest.FixtureRequest) -> App:
    return App(f"memory://{request.node.name}", clock=ManualClock(1_800_000_000.0), default_retries=1)


# -- the envelope ----------------------------------------------------------------------


def test_parse_a_full_envelope() -> None:
    raw = json.dumps(
        {"name": "account.linked", "id": "e1", "occurred_at": "2026-11-28T10:00:00Z", "payload": {"a": 1}, "key": "k"}
    )
    event = parse(raw, source="test", received=5.0, limit=1000)
    assert (event.id, event.name, event.key, event.source) == ("e1", "account.linked", "k", "test")
    assert event.occurred_at == datetime(2026, 11, 28, 10, tzinfo=UTC).timestamp()
    assert json.loads(event.payload) == {"a": 1}


def test_missing_id_and_time_are_filled_in() -> None:
    event = parse(b'{"name": "a.b", "payload": {}}', source="t", received=7.0, limit=1000, default_id="broker-1")
    assert (event.id, event.occurred_at) == ("broker-1", 7.0)
    assert parse(b'{"name": "a.b", "payload": {}}', source="t", received=7.0, limit=1000).id  # a new UUIDv7


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"payload": {}}', "event name must be dot-separated words"),
        (b'{"name": "a..b", "payload": {}}', "event name must be dot-separated words"),
        (b'{"name": "a.b"}', "payload must be a JSON object, got NoneType"),
        (b'{"name": "a.b", "payload": [1]}', "payload must be a JSON object, got list"),
        (b'{"name": "a.b", "payload": {}, "user": 1}', "unknown field(s) user"),
        (b'{"name": "a.b", "payload": {}, "occurred_at": "yesterday"}', "is not an ISO 8601 time"),
        (b'{"name": "a.b", "payload": {}, "id": 5}', "id and key must be strings"),
        (b'{"name": "a.b", "payload": {"x": "' + b"y" * 2000 + b'"}}', "over the limit of 1,000 bytes"),
    ],
)
def test_a_bad_message_is_refused_with_its_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(EventError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        parse(raw, source="t", received=0.0, limit=1000)


@pytest.mark.parametrize(
    ("pattern", "name", "expected"),
    [
        ("account.linked", "account.linked", True),
        ("account.linked", "account.linked.twice", False),
        ("account.*", "account.linked", True),
        ("account.*", "account.linked.twice", False),
        ("account.*", "account", False),
        ("account.**", "account.linked.twice", True),
        ("*.linked", "account.linked", True),
        ("**", "anything.at.all", True),
        ("account.*", "accounts.linked", False),
    ],
)
def test_patterns(pattern: str, name: str, expected: bool) -> None:
    assert matches(pattern, name) is expected


def test_declaring_a_bad_handler_fails_at_declaration(app: App) -> None:
    with pytest.raises(TaskDefinitionError, match="event pattern"):
        app.on("account..linked")
    with pytest.raises(TaskDefinitionError, match="pydantic model class"):
        app.on("account.linked", schema=dict)


# -- dispatch --------------------------------------------------------------------------


def test_each_handler_gets_its_own_job_and_event_data_is_the_validated_model(app: App) -> None:
    seen: list[Any] = []

    @app.on("account.linked", schema=Linked)
    def start_polling(event: Event) -> None:
        seen.append(("start", event.data, event.payload, event.key))

    @app.on("account.*")
    async def audit(event: Event) -> None:
        seen.append(("audit", event.name, event.data))

    event_id = app.emit("account.linked", {"user_id": 123, "token": "abc"}, key="user:123")
    assert run_until_idle(app) == 2
    assert sorted(seen, key=str) == sorted(
        [
            ("start", Linked(user_id=123, token="abc"), {"user_id": 123, "token": "abc"}, "user:123"),
            ("audit", "account.linked", None),
        ],
        key=str,
    )
    [record] = events(app)
    assert (record.id, record.state, record.jobs) == (event_id, EventState.HANDLED, 2)


def test_a_failing_handler_retries_alone(app: App) -> None:
    calls = {"flaky": 0, "steady": 0}

    @app.on("order.paid", name="flaky", retries=3)
    def flaky(event: Event) -> None:
        calls["flaky"] += 1
        if calls["flaky"] < 3:
            raise RuntimeError("API down")

    @app.on("order.paid", name="steady")
    def steady(event: Event) -> None:
        calls["steady"] += 1

    app.emit("order.paid", {"order": 1})
    run_until_idle(app, advance=True)
    assert calls == {"flaky": 3, "steady": 1}
    assert {j.task: j.state for j in jobs(app)} == {
        "flaky": JobState.SUCCEEDED,
        "steady": JobState.SUCCEEDED,
    }


def test_an_event_without_handlers_is_recorded_unhandled(app: App) -> None:
    app.emit("nobody.listens", {"x": 1})
    assert run_until_idle(app) == 0
    [record] = events(app)
    assert (record.state, record.jobs, record.reason) == (EventState.UNHANDLED, 0, None)


def test_a_duplicate_id_is_processed_once(app: App) -> None:
    ran: list[str] = []

    @app.on("a.b")
    def handle(event: Event) -> None:
        ran.append(event.id)

    app.emit("a.b", {}, id="same")
    run_until_idle(app)
    app.emit("a.b", {}, id="same")
    app.emit("a.b", {}, id="same")
    run_until_idle(app)
    assert ran == ["same"]
    assert len(events(app)) == 1


def test_a_payload_breaking_the_contract_is_dead_with_the_reason_and_replays_once_fixed(request: Any) -> None:
    url = f"memory://{request.node.name}"
    strict = App(url, clock=ManualClock(1_800_000_000.0))

    @strict.on("account.linked", schema=Linked, name="start")
    def start(event: Event) -> None: ...

    strict.emit("account.linked", {"user_id": "not a number", "token": "abc", "scope": "all"})
    strict.emit("account.linked", {"user_id": 1, "token": "abc"})  # the consumer keeps going
    run_until_idle(strict)
    [dead] = events(strict, EventState.DEAD)
    assert dead.reason is not None
    assert dead.reason.startswith("payload breaks the contract of start: ")
    assert "user_id: Input should be a valid integer" in dead.reason
    assert "scope: Extra inputs are not permitted" in dead.reason
    assert dead.jobs == 0
    assert len(events(strict, EventState.HANDLED)) == 1

    class Lenient(BaseModel):  # the fixed contract: a string id and extra fields are fine
        user_id: str
        token: str

    fixed = App(url, clock=strict.clock)
    received: list[Any] = []

    @fixed.on("account.linked", schema=Lenient, name="start")
    def start_again(event: Event) -> None:
        received.append(event.data)

    async def replay() -> EventRecord:
        return await (await fixed.client.astore()).event_replay(dead.id)

    assert fixed.client.sync(replay).state is EventState.PENDING
    assert run_until_idle(fixed) == 1
    assert received == [Lenient(user_id="not a number", token="abc")]
    with pytest.raises(InvalidTransition, match="only dead or unhandled events replay"):
        fixed.client.sync(replay)


def test_enqueue_by_name_as_an_event(app: App) -> None:
    @app.task(name="mail.send")
    def send(to: str) -> str:
        return f"sent to {to}"

    app.emit(ENQUEUE_EVENT, {"task": "mail.send", "kwargs": {"to": "a@example.com"}, "job_id": "job-1"})
    app.emit(ENQUEUE_EVENT, {"task": "mail.send", "kwargs": {"wrong": 1}})
    run_until_idle(app)
    assert app.job("job-1").result() == "sent to a@example.com"
    [dead] = events(app, EventState.DEAD)
    assert dead.reason is not None
    assert dead.reason.startswith("enqueue refused:")


def test_contracts_are_json_schema() -> None:
    app = App("memory://contracts")

    @app.on("account.linked", schema=Linked)
    def start(event: Event) -> None: ...

    data = contracts(app)
    assert data["envelope"]["required"] == ["name", "payload"]
    assert data["events"]["account.linked"]["required"] == ["user_id", "token"]
    assert data["events"]["account.linked"]["additionalProperties"] is False


# -- the client ------------------------------------------------------------------------


def test_emit_refuses_bad_events_before_sending(app: App) -> None:
    with pytest.raises(EventError, match="event name"):
        app.emit("", {})
    with pytest.raises(EventError, match="payload must be a mapping"):
        app.emit("a.b", [1, 2])  # type: ignore[arg-type]
    with pytest.raises(EventError, match="timezone-aware"):
        app.emit("a.b", {}, occurred_at=datetime(2026, 1, 1))
    with pytest.raises(Exception, match="not JSON"):
        app.emit("a.b", {"when": datetime.now(UTC)})
    small = App(app.settings.url, max_payload_bytes=100)
    with pytest.raises(EventError, match="over the limit of 100"):
        small.emit("a.b", {"x": "y" * 200})
    assert events(app) == []


def test_an_unreachable_broker_is_an_error_after_the_send_timeout() -> None:
    client = Client("amqp://guest:guest@127.0.0.1:1/", settings=Settings(send_timeout=0.3))
    try:
        with pytest.raises(EmitError, match=r"could not deliver event a\.b .* within 0\.3 s.*it was not sent"):
            client.emit("a.b", {"x": 1})
    finally:
        client.close()


def test_a_broker_client_cannot_read_job_state() -> None:
    client = Client("nats://127.0.0.1:1", settings=Settings(send_timeout=0.1))
    try:
        with pytest.raises(Exception, match="cannot read the store"):
            client.job("x").status()
    finally:
        client.close()
