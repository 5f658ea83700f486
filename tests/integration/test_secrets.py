"""A secret end to end: written by a main app's client, the CLI and a handler's schedule,
run by the task, and then looked for everywhere: the raw bytes of a SQLite database and
its WAL, a ``sqlite3`` dump, every value under a Redis store's prefix, a ``pg_dump`` of a
PostgreSQL store, the CLI, the HTTP API and the dashboard."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import pytest
from starlette.testclient import TestClient

from backbeat import Client, JobState
from backbeat.runtime.scheduler import Scheduler
from backbeat.runtime.worker import Worker
from backbeat.testing import run_until_idle
from backbeat.web import create_app
from tests.integration import secretapp
from tests.integration.conftest import Cluster
from tests.web.conftest import LOOPBACK, login
from tests.web.conftest import TOKEN as API_TOKEN

KEY = "integration-secret-key-0123456789"
NEW = "integration-next-key-9876543210"
TOKEN = "tw-token-SECRET-0001"
TOKEN2 = "tw-token-SECRET-0002"


def store_bytes(url: str) -> bytes:
    path = Path(url.removeprefix("sqlite:///"))
    return b"".join(p.read_bytes() for p in sorted(path.parent.glob(path.name + "*")))


@pytest.fixture
def written(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The talk's example with secrets, through every way in; returns the interesting ids."""
    monkeypatch.setenv("BACKBEAT_SECRET_KEY", KEY)
    app = secretapp.app
    app.configure(url=cluster.url, secret_key=KEY)
    secretapp.polled.clear()

    async def register() -> None:  # what `backbeat worker secretapp:app` does when it starts
        await (await app.client.astore()).worker_register(Worker(app)._info())

    app.client.sync(register)
    main_app = Client(cluster.url)  # imports no job code: the registry says what is secret
    main_app.emit("account.linked", {"user_id": 1, "token": TOKEN}, id="linked:1")
    main_app.close()
    enqueued = cluster.backbeat(
        "enqueue", "twitter.poll", "--kwargs", json.dumps({"user_id": 0, "token": TOKEN}), "--json", check=True
    )
    cluster.backbeat(
        "emit",
        "account.linked",
        "--payload",
        json.dumps({"user_id": 2, "token": TOKEN2}),
        "--secret",
        "token",
        check=True,
    )
    cluster.backbeat(
        "schedules", "add", "twitter:3", "--task", "twitter.poll", "--every", "60",
        "--kwargs", json.dumps({"user_id": 3, "token": TOKEN}), check=True,
    )  # fmt: skip
    run_until_idle(app)  # events -> handlers -> schedules twitter:1 and twitter:2; the CLI's job fails
    assert app.client.sync(Scheduler(app).tick) == 3
    run_until_idle(app)
    assert sorted(secretapp.polled) == [(1, TOKEN), (2, TOKEN2), (3, TOKEN)]
    dead = app.job(json.loads(enqueued.stdout)["id"]).info()
    assert dead.state is JobState.DEAD and dead.error == "PermissionError: twitter refused token ***"
    app.close()
    return {"dead": dead.id, "event": "linked:1"}


def test_a_secret_cannot_be_read_anywhere_in_the_store_file(cluster: Cluster, written: dict[str, Any]) -> None:
    raw = store_bytes(cluster.url)
    assert b"bbsecret:1:" in raw  # the sealed values are there...
    for token in (TOKEN, TOKEN2):
        assert token.encode() not in raw  # ...and the plain ones nowhere, WAL included
    path = cluster.url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        dump = "\n".join(conn.iterdump())
    assert "bbsecret:1:" in dump and TOKEN not in dump and TOKEN2 not in dump
    raw = store_bytes(cluster.url)
    assert TOKEN.encode() not in raw and TOKEN2.encode() not in raw


def test_the_cli_shows_secrets_as_stars(cluster: Cluster, written: dict[str, Any]) -> None:
    outputs = [
        cluster.backbeat(*command, check=True).stdout
        for command in (
            ("jobs", "list", "--json", "--limit", "100"),
            ("jobs", "list", "--limit", "100"),
            ("jobs", "show", written["dead"], "--json"),
            ("jobs", "show", written["dead"]),
            ("schedules", "list", "--json"),
            ("schedules", "list"),
            ("events", "list", "--json"),
            ("events", "show", written["event"], "--json"),
            ("events", "show", written["event"]),
            ("explain", "twitter:3", "--json"),
        )
    ]
    for out in outputs:
        assert TOKEN not in out and TOKEN2 not in out and "bbsecret" not in out, out
    shown = json.loads(outputs[2])
    assert shown["kwargs"] == {"user_id": 0, "token": "***"} and shown["error"].endswith("token ***")
    assert {s["key"]: s["kwargs"]["token"] for s in json.loads(outputs[4])} == dict.fromkeys(
        ["twitter:1", "twitter:2", "twitter:3"], "***"
    )
    assert json.loads(outputs[7])["payload"] == {"user_id": 1, "token": "***"}


def test_the_api_and_dashboard_show_secrets_as_stars(cluster: Cluster, written: dict[str, Any]) -> None:
    with TestClient(create_app(cluster.url, token=API_TOKEN, metrics_dir=None), client=LOOPBACK) as web:
        login(web)
        pages = [web.get(path) for path in ("/jobs?limit=100", f"/jobs/{written['dead']}", "/")]
        web.headers["Authorization"] = f"Bearer {API_TOKEN}"
        api = [
            web.get(path)
            for path in ("/api/jobs?limit=100", f"/api/jobs/{written['dead']}", "/api/events", "/api/events/linked:1")
        ]
    for response in pages + api:
        assert response.status_code == 200, response.text
        assert TOKEN not in response.text and TOKEN2 not in response.text and "bbsecret" not in response.text
    assert "***" in pages[1].text
    assert api[1].json()["kwargs"]["token"] == "***"
    assert api[3].json()["payload"]["token"] == "***"


def test_after_a_rotation_reseal_moves_schedules_to_the_new_key(
    cluster: Cluster, written: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BACKBEAT_SECRET_KEY")
    monkeypatch.setenv("BACKBEAT_SECRET_KEYS", f"{NEW},{KEY}")
    ids = json.loads(cluster.backbeat("secrets", "check", "--json", check=True).stdout)["ids"]
    resealed = json.loads(cluster.backbeat("secrets", "reseal", "--json", check=True).stdout)
    assert resealed == {"resealed": ["twitter:1", "twitter:2", "twitter:3"]}
    assert json.loads(cluster.backbeat("secrets", "reseal", "--json", check=True).stdout) == {"resealed": []}
    with sqlite3.connect(cluster.url.removeprefix("sqlite:///")) as conn:
        payloads = [r[0] for r in conn.execute("SELECT payload FROM backbeat_schedules")]
    assert all(f"bbsecret:1:{ids[0]}:" in p and TOKEN not in p for p in payloads)
    monkeypatch.setenv("BACKBEAT_SECRET_KEYS", NEW)  # the retired key is no longer needed by schedules
    cluster.backbeat("schedules", "update", "twitter:3", "--every", "30", check=True)
    monkeypatch.setenv("BACKBEAT_SECRET_KEYS", KEY)  # without the key that sealed them: a clear error
    failed = cluster.backbeat("schedules", "update", "twitter:3", "--every", "40")
    assert failed.returncode == 1 and "which is not configured" in failed.stderr and TOKEN not in failed.stderr


def _redis_values(url: str) -> str:
    """Every value under the store's key prefix, read as ``redis-cli`` would show it."""
    import redis

    parts = urlsplit(url)
    prefix = dict(parse_qsl(parts.query))["prefix"]
    client = redis.Redis.from_url(urlunsplit(parts._replace(query="")), decode_responses=True)
    out: list[str] = []
    try:
        for key in client.scan_iter(f"*{prefix}*"):
            kind = client.type(key)
            if kind == "string":
                out.append(str(client.get(key)))
            elif kind == "hash":
                out.append(json.dumps(client.hgetall(key)))
            elif kind == "zset":
                out.append(json.dumps(client.zrange(key, 0, -1, withscores=True)))
            elif kind == "set":
                out.append(json.dumps(sorted(client.smembers(key))))
            elif kind == "list":
                out.append(json.dumps(client.lrange(key, 0, -1)))
            elif kind == "stream":
                out.append(json.dumps(client.xrange(key)))
            else:
                raise AssertionError(f"a key of type {kind!r} the test cannot read: {key}")
    finally:
        client.close()
    return "\n".join(out)


@pytest.mark.parametrize("cluster", ["redis", "postgres"], indirect=True)
def test_a_secret_cannot_be_read_with_the_servers_own_tools(cluster: Cluster, written: dict[str, Any]) -> None:
    if cluster.url.startswith("redis"):
        seen = _redis_values(cluster.url)
    else:
        dump = subprocess.run(["pg_dump", "--data-only", cluster.url], capture_output=True, text=True, check=True)
        seen = dump.stdout
    assert "bbsecret:1:" in seen  # the sealed values are there...
    assert TOKEN not in seen and TOKEN2 not in seen  # ...and the plain ones nowhere
