"""``/api/events``: ingestion over HTTP (in-process), and the list/show/replay reads."""

from __future__ import annotations

import json
from typing import Any

from starlette.testclient import TestClient

from backbeat import Client
from backbeat.types import EventState
from tests.web.conftest import Store, login


def event(n: int, **changes: Any) -> dict[str, Any]:
    return {"name": "account.linked", "id": f"ev-{n}", "payload": {"user_id": n}, **changes}


def state_of(store: Store, event_id: str) -> EventState:
    client = Client(store.url)

    async def read() -> EventState:
        return (await (await client.astore()).event_get(event_id)).state

    try:
        return client.sync(read)
    finally:
        client.close()


def test_posting_needs_the_token(web: TestClient) -> None:
    response = web.post("/api/events", json=event(1))
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_events_are_stored_pending_and_a_repeated_id_is_a_duplicate(api: TestClient, store: Store) -> None:
    response = api.post("/api/events", json=event(1))
    assert response.status_code == 202, response.text
    assert response.json() == {"events": [{"id": "ev-1", "duplicate": False}]}
    response = api.post("/api/events", json=[event(1), event(2, key="user:2")])
    assert response.json() == {"events": [{"id": "ev-1", "duplicate": True}, {"id": "ev-2", "duplicate": False}]}
    assert state_of(store, "ev-2") is EventState.PENDING
    listed = api.get("/api/events", params={"state": "pending"}).json()
    assert [e["id"] for e in listed] == ["ev-2", "ev-1"]
    assert api.get("/api/events/ev-2").json()["key"] == "user:2"


def test_a_malformed_event_is_400_with_the_reason_and_kept_dead(api: TestClient, store: Store) -> None:
    response = api.post("/api/events", json=[event(1), event(2, secret="x")])
    assert response.status_code == 400
    message = response.json()["error"]
    assert message.startswith("event 1: envelope has unknown field(s) secret")
    assert "nothing else was stored" in message
    dead = api.get("/api/events", params={"state": "dead"}).json()
    assert len(dead) == 1
    assert "unknown field(s) secret" in dead[0]["reason"]
    assert json.loads(dead[0]["payload"]["raw"])["secret"] == "x"
    assert api.get("/api/events/ev-1").status_code == 404  # the batch is stored whole or not at all

    response = api.post("/api/events", content=b"{oops", headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]


def test_a_10_mb_payload_is_413(api: TestClient) -> None:
    body = json.dumps(event(1, payload={"blob": "x" * 10_000_000})).encode()
    response = api.post("/api/events", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert "over the limit" in response.json()["error"]
    assert api.get("/api/events").json() == []


def test_replay_of_a_dead_event_and_409_for_another(api: TestClient) -> None:
    api.post("/api/events", json=event(1, payload=[]))
    [dead] = api.get("/api/events", params={"state": "dead"}).json()
    response = api.post(f"/api/events/{dead['id']}/replay")
    assert response.status_code == 200
    assert response.json()["state"] == "pending"
    assert api.post(f"/api/events/{dead['id']}/replay").status_code == 409
    assert api.post("/api/events/nope/replay").status_code == 404


def test_events_page_shows_the_reason_and_replays(api: TestClient, web: TestClient, store: Store) -> None:
    api.post("/api/events", json=event(1, payload=[]))  # a payload must be an object: dead
    api.post("/api/events", json=event(2, payload={"note": "<script>alert(1)</script>"}))
    [dead] = api.get("/api/events", params={"state": "dead"}).json()
    login(web)
    page = web.get("/events").text
    assert dead["id"] in page and "ev-2" in page
    assert "payload" in page and "<script>alert" not in page
    assert "&lt;script&gt;" in web.get("/events/ev-2").text
    assert web.get("/events?state=dead").text.count('data-event="') == 1
    action = f"/events/{dead['id']}/replay"
    detail = web.get(f"/events/{dead['id']}").text
    csrf = detail.split(f'action="{action}"', 1)[1].split('name="csrf" value="', 1)[1].split('"', 1)[0]
    response = web.post(action, data={"csrf": csrf, "next": "/events"}, follow_redirects=False)
    assert response.status_code == 303
    assert state_of(store, dead["id"]) is EventState.PENDING
    assert web.get("/events?state=lost").status_code == 400
