"""HTTP as the event source: a main app in another process sends to ``backbeat dashboard``'s
``POST /api/events`` with ``Client("http://...")``; the jobs app's consumer handles them."""

from __future__ import annotations

import subprocess
import sys
import urllib.request

from backbeat.types import EventState
from tests.events.conftest import STORES, JobsApp
from tests.integration.conftest import eventually
from tests.ports import free_port

TOKEN = "http-events-token-0123456789"


@STORES
def test_events_over_http_are_handled_once(jobs_app: JobsApp) -> None:
    port = free_port()
    jobs_app.spawn("scheduler")
    jobs_app.spawn("worker")
    log = open(jobs_app.logs / "dashboard.log", "ab")  # noqa: SIM115 - closed right after
    server = subprocess.Popen(
        [sys.executable, "-m", "backbeat", "dashboard", "--port", str(port)],
        env=jobs_app.env(BACKBEAT_TOKEN=TOKEN),
        stdout=log,
        stderr=log,
    )
    log.close()
    jobs_app.procs.append(server)
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=2):
                return True
        except OSError as exc:
            return getattr(exc, "code", None) == 503  # answering, just no worker seen yet

    eventually(up, what="the dashboard to answer")
    sent = jobs_app.script(
        "from backbeat import Client\n"
        f"client = Client({base!r}, token={TOKEN!r})\n"
        "for n in range(200):\n"
        "    client.emit('account.linked', {'user_id': n, 'token': 't'}, id=f'h-{n}')\n"
        "client.emit('account.linked', {'user_id': 0, 'token': 't'}, id='h-0')\n"
    )
    assert sent.returncode == 0, sent.stderr
    expected = {(h, f"h-{n}") for n in range(200) for h in ("start", "audit")}
    eventually(lambda: set(jobs_app.handled()) >= expected, what="every event handled")
    assert max(jobs_app.handled().values()) == 1
    assert {e.state for e in jobs_app.events()} == {EventState.HANDLED}

    refused = jobs_app.script(
        f"from backbeat import Client\nClient({base!r}, token='wrong').emit('account.linked', {{'user_id': 1}})"
    )
    assert refused.returncode != 0
    assert "refused the event(s) (401)" in refused.stderr
