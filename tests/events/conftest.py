"""A jobs app (``evapps``) in real processes on one store (a SQLite file; ``@STORES`` tests on
Redis too), fed by real brokers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from backbeat import Client
from backbeat.types import EventFilter, EventRecord, EventState
from tests.integration.conftest import SHARED_STORES, eventually, kill_group, shared_store

HERE = Path(__file__).parent
ROOT = HERE.parent.parent


STORES = pytest.mark.parametrize("jobs_app", SHARED_STORES, indirect=True)
"""Run a test against every store that several processes share (default: SQLite only)."""


class JobsApp:
    def __init__(self, tmp: Path, url: str) -> None:
        self.url = url
        self.ledger = tmp / "ledger.txt"
        self.logs = tmp / "logs"
        self.logs.mkdir()
        self.tag = uuid.uuid4().hex[:10]
        """Unique per test: names its exchange, queue and stream, so tests share no broker state."""
        self.procs: list[subprocess.Popen[bytes]] = []
        self.client = Client(self.url)

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(HERE), str(ROOT / "src"), env.get("PYTHONPATH", "")])
        env["BACKBEAT_URL"] = self.url
        env["BB_LEDGER"] = str(self.ledger)
        env.pop("BACKBEAT_TOKEN", None)
        env.update(extra)
        return env

    def spawn(self, command: str, *args: str, **env: str) -> subprocess.Popen[bytes]:
        """``backbeat worker|scheduler evapps:app ARGS`` (the scheduler runs the consumers)."""
        log = open(self.logs / f"{command}-{len(self.procs)}.log", "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            [sys.executable, "-m", "backbeat", command, "evapps:app", "--log-level", "debug", *args],
            env=self.env(**env),
            cwd=HERE,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop_all ends its children too
        )
        log.close()
        self.procs.append(proc)
        return proc

    def start_script(self, code: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-c", code], env=self.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    def script(self, code: str, *, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run ``code`` as a separate main-app process (it imports only ``backbeat.Client``)."""
        return subprocess.run(
            [sys.executable, "-c", code], env=self.env(), capture_output=True, text=True, timeout=timeout
        )

    def backbeat(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "backbeat", *args], env=self.env(**env), cwd=HERE, capture_output=True, text=True
        )

    def logs_text(self) -> str:
        return "\n".join(f"== {p.name}\n{p.read_text()}" for p in sorted(self.logs.iterdir()))

    def handled(self) -> Counter[tuple[str, str]]:
        """(handler, event id) -> how many times it ran."""
        if not self.ledger.exists():
            return Counter()
        return Counter((h, e) for h, e, _pid in (line.split() for line in self.ledger.read_text().splitlines()))

    def events(self, state: EventState | None = None) -> list[EventRecord]:
        async def read() -> list[EventRecord]:
            store = await self.client.astore()
            out: list[EventRecord] = []
            before = None
            while page := await store.event_list(EventFilter(state=state, before=before, limit=1000)):
                out += page
                before = page[-1].id
            return out

        return self.client.sync(read)

    def stop_all(self) -> None:
        for proc in self.procs:
            kill_group(proc)
        self.client.close()


@pytest.fixture
def jobs_app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[JobsApp]:
    with shared_store(request, tmp_path) as url:
        app = JobsApp(tmp_path, url)
        try:
            yield app
        finally:
            app.stop_all()


PUBLISH = """
from backbeat import Client
client = Client({url!r})
for n in range({start}, {stop}):
    client.emit("account.linked", {{"user_id": n, "token": f"t{{n}}"}}, id=f"ev-{{n}}")
client.close()
"""


def exactly_once_across_a_sigkill(app: JobsApp, source: str, target: str) -> None:
    """The acceptance test of every broker source: a main-app process publishes 1,000
    events while the consumer runs; the consumer is SIGKILLed once a third is stored and
    restarted; then the first 100 are sent again (as a redelivery would be). Each handler
    runs once per event."""
    consumer = app.spawn("scheduler", "--source", source)
    app.spawn("worker", "--concurrency", "20")
    publisher = app.start_script(PUBLISH.format(url=target, start=0, stop=1000))
    eventually(lambda: len(app.events()) >= 300, what="a third of the events stored")
    consumer.send_signal(signal.SIGKILL)
    consumer.wait()
    print(f"consumer killed with {len(app.events())} of 1000 events stored")
    app.spawn("scheduler", "--source", source)
    _, err = publisher.communicate(timeout=120)
    assert publisher.returncode == 0, err
    again = app.script(PUBLISH.format(url=target, start=0, stop=100))
    assert again.returncode == 0, again.stderr

    expected = {(h, f"ev-{n}") for n in range(1000) for h in ("start", "audit")}
    eventually(lambda: set(app.handled()) >= expected, timeout=90, what="every event handled")
    handled = app.handled()
    assert set(handled) == expected
    assert max(handled.values()) == 1, [k for k, v in handled.items() if v > 1][:5]
    records = app.events()
    assert len(records) == 1000
    assert {r.state for r in records} == {EventState.HANDLED}
    assert {r.jobs for r in records} == {2}
