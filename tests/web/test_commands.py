"""The commands this part adds: ``status --check``, ``dashboard`` (its refusals, and a real
server answering), and JSON logs from ``$BACKBEAT_LOG_FORMAT``."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from backbeat import Client
from tests.integration.conftest import eventually
from tests.integration.test_cli import assert_one_line_error
from tests.ports import free_port
from tests.web.conftest import TOKEN, Store
from tests.web.processes import backbeat, spawn, stop


def test_status_check_passes_with_a_live_worker(store: Store) -> None:
    result = backbeat(store.url, "status", "--check")
    assert result.returncode == 0 and result.stdout.startswith("ok: 1 live worker(s) of 1 registered"), result
    data = json.loads(backbeat(store.url, "status", "--check", "--json").stdout)
    assert data["ok"] is True and data["live_workers"] == 1


def test_status_check_fails_in_one_line_without_a_live_worker(store: Store, tmp_path: Path) -> None:
    empty = backbeat(f"sqlite:///{tmp_path}/empty.db", "status", "--check")
    assert_one_line_error(empty, "no worker is registered")

    async def age(client: Client) -> None:  # the worker's last heartbeat, far outside the window
        s = await client.astore()
        await s.worker_heartbeat(store.worker_id, in_flight=0, now=client.clock.now() - 3600)

    client = store.client()
    client.sync(age, client)
    client.close()
    stale = backbeat(store.url, "status", "--check")
    assert_one_line_error(stale, "no worker heartbeat within the last 60 s (1 registered, last heartbeat 36")
    assert re.search(r"last heartbeat 36\d\d s ago at ", stale.stderr)  # the seconds the command itself took
    as_json = backbeat(store.url, "status", "--check", "--json")
    assert as_json.returncode == 1 and json.loads(as_json.stdout)["ok"] is False


@pytest.mark.parametrize(
    ("args", "token", "fragment"),
    [
        (["--host", "0.0.0.0"], "", "refusing to listen on 0.0.0.0 without BACKBEAT_TOKEN"),
        (["--host", "192.0.2.1"], "", "refusing to listen on 192.0.2.1 without BACKBEAT_TOKEN"),
        ([], "short", "BACKBEAT_TOKEN must be at least 16 characters"),
    ],
)
def test_dashboard_refuses_to_start_unsafely(tmp_path: Path, args: list[str], token: str, fragment: str) -> None:
    result = backbeat(f"sqlite:///{tmp_path}/d.db", "dashboard", *args, BACKBEAT_TOKEN=token)
    assert_one_line_error(result, fragment)


def test_dashboard_serves_with_json_logs_from_the_environment(store: Store, tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "dashboard.log"
    server = spawn(store.url, log, "dashboard", "--port", str(port), BACKBEAT_TOKEN=TOKEN, BACKBEAT_LOG_FORMAT="json")

    def get(path: str) -> Any:
        request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"Bearer {TOKEN}"})
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return json.loads(response.read())
        except OSError:
            return None

    try:
        status = eventually(lambda: get("/api/status"), timeout=30, what="the dashboard to answer")
        assert [q["name"] for q in status["queues"]] == ["default", "mail", "reports"]
    finally:
        stop(server)
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert any(line["logger"] == "backbeat.web" and "token required" in line["message"] for line in lines)
    assert any(line["logger"] == "uvicorn.access" and "/api/status" in line["message"] for line in lines)
