"""The store as the event source: ``emit`` writes the event (inside the caller's
transaction if asked), ``backbeat run`` dispatches it; the events CLI."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from backbeat import Client, EventError
from backbeat.types import EventFilter, EventState
from tests.events.conftest import STORES, JobsApp
from tests.integration.conftest import eventually


def test_emit_joins_the_callers_sqlite_transaction(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    client = Client(f"sqlite:///{path}")
    client.emit("warm.up", {})  # creates the schema
    conn = sqlite3.connect(path)
    try:
        conn.execute("CREATE TABLE orders (id INTEGER)")
        conn.execute("INSERT INTO orders VALUES (1)")
        client.emit("order.placed", {"order": 1}, id="rolled-back", connection=conn)
        conn.rollback()
        conn.execute("INSERT INTO orders VALUES (2)")
        client.emit("order.placed", {"order": 2}, id="committed", connection=conn)
        conn.commit()
    finally:
        conn.close()

    async def ids() -> set[str]:
        return {e.id for e in await (await client.astore()).event_list(EventFilter())}

    stored = client.sync(ids)
    assert "committed" in stored
    assert "rolled-back" not in stored

    other = sqlite3.connect(tmp_path / "other.db")
    with pytest.raises(EventError, match="must be written to the store's database"):
        client.emit("order.placed", {}, connection=other)
    with pytest.raises(EventError, match="cannot write events inside your transaction"):
        client.emit("order.placed", {}, connection=object())
    other.close()
    client.close()


@STORES
def test_emit_from_the_cli_is_handled_by_backbeat_run(jobs_app: JobsApp) -> None:
    jobs_app.spawn("run")
    emitted = jobs_app.backbeat(
        "emit", "account.linked", "--payload", '{"user_id": 5, "token": "t"}', "--id", "cli-1", "--json"
    )
    assert emitted.returncode == 0, emitted.stderr
    assert json.loads(emitted.stdout)["id"] == "cli-1"
    bad = jobs_app.backbeat("emit", "account.linked", "--payload", '{"user_id": "five", "token": "t"}', "--id", "c2")
    assert bad.returncode == 0, bad.stderr  # accepted: the jobs app's contract decides, and dead-letters it
    eventually(lambda: ("start", "cli-1") in jobs_app.handled(), what="the event handled")

    dead = jobs_app.backbeat("events", "list", "--dead", "--json")
    assert [e["id"] for e in json.loads(dead.stdout)] == ["c2"]
    shown = json.loads(jobs_app.backbeat("events", "show", "cli-1", "--json").stdout)
    assert (shown["state"], shown["jobs"], shown["payload"]) == ("handled", 2, {"user_id": 5, "token": "t"})
    table = jobs_app.backbeat("events", "list", COLUMNS="300")
    assert "c2" in table.stdout
    assert "user_id: Input should be a valid integer" in table.stdout

    schema = json.loads(jobs_app.backbeat("events", "schema", "evapps:app").stdout)
    assert schema["events"]["account.linked"]["properties"]["user_id"]["type"] == "integer"
    assert schema["envelope"]["required"] == ["name", "payload"]

    missing = jobs_app.backbeat("events", "replay", "nope")
    assert missing.returncode == 1
    assert "no event 'nope'" in missing.stderr
    handled = jobs_app.backbeat("events", "replay", "cli-1")
    assert handled.returncode == 1
    assert "only dead or unhandled events replay" in handled.stderr
    assert {e.id: e.state for e in jobs_app.events()}["cli-1"] is EventState.HANDLED
