"""A SQLite store holding jobs in every state, and the dashboard over it in-process."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from backbeat import App, Client
from backbeat.clock import ManualClock
from backbeat.testing import run_until_idle
from backbeat.types import ClaimRequest, JobState, TaskInfo, WorkerInfo
from backbeat.web import create_app

TOKEN = "test-token-0123456789abcdef"
XSS = "<script>alert(1)</script>"
LOOPBACK = ("127.0.0.1", 50000)


@dataclass
class Store:
    """What ``populate`` wrote: the store URL and one job id per interesting state."""

    url: str
    ids: dict[str, str]
    worker_id: str

    def client(self) -> Client:
        return Client(self.url)


def populate(url: str) -> Store:
    """Jobs in every state (one dead), a paused queue ("mail"), a live worker row, and a
    job whose argument is a script tag."""
    app = App(url)

    @app.task(name="demo.ok")
    def ok(n: int) -> int:
        return n

    @app.task(name="demo.fail", retries=0)
    def fail(n: int) -> None:
        raise RuntimeError(f"boom {n}")

    @app.task(name="demo.report", queue="reports")
    def report(n: int) -> None: ...

    @app.task(name="demo.echo", queue="mail")
    def echo(text: str) -> str:
        return text

    ids = {"succeeded": ok.enqueue(n=1).id, "dead": fail.enqueue(n=2).id}
    run_until_idle(app)
    ids["queued"] = ok.enqueue(n=3).id
    ids["scheduled"] = ok.enqueue(n=4, delay=3600).id
    cancelled = ok.enqueue(n=5)
    cancelled.cancel()
    ids["cancelled"] = cancelled.id
    ids["running"] = report.enqueue(n=6).id
    ids["xss"] = echo.enqueue(text=XSS).id
    worker_id = "testhost.4242.abcdef01"

    async def arrange() -> None:
        store = await app.client.astore()
        now = app.clock.now()
        request = ClaimRequest(
            worker_id=worker_id, queues=("reports",), tasks=frozenset({"demo.report"}), limit=1, lease=3600
        )
        [running] = await store.job_claim(request, now=now)
        assert running.id == ids["running"]
        await store.queue_pause("mail", now=now)
        await store.worker_register(
            WorkerInfo(
                id=worker_id,
                host="testhost",
                pid=4242,
                queues=("default", "reports"),
                concurrency=4,
                tasks=(TaskInfo(name="demo.ok", queue="default", max_attempts=4),),
                started_at=now,
                heartbeat_at=now,
                in_flight=1,
                version="0.1.0",
            )
        )

    app.client.sync(arrange)
    for state in ("succeeded", "dead", "queued", "scheduled", "cancelled", "running"):
        assert app.job(ids[state]).status() is JobState(state), state
    add_schedules(app)
    app.close()
    return Store(url=url, ids=ids, worker_id=worker_id)


BREACHED = "twitter:breached"
SCHEDULES = [BREACHED, "twitter:closest", "twitter:fine", "echo:xss", "paused:sla", "nightly-report"]
"""``add_schedules``' keys, worst first."""


def add_schedules(app: App) -> None:
    """Schedules in every SLA state, none fired (no job is added): one in breach (created an
    hour ago, SLA 30 s), two within their SLA, a paused one, one whose argument is a script
    tag, and a cron schedule without an SLA."""
    past = App(app.settings.url, clock=ManualClock(app.clock.now() - 3600))
    past.task(name="demo.ok")(lambda n: n)
    past.every(20, "demo.ok", key=BREACHED, kwargs={"n": 7}, sla=30)
    past.close()
    app.every(20, "demo.ok", key="twitter:closest", kwargs={"n": 8}, sla=600)
    app.every(60, "demo.ok", key="twitter:fine", kwargs={"n": 9}, sla=3600, max_every=300)
    app.every(60, "demo.ok", key="paused:sla", kwargs={"n": 10}, sla=5)
    app.schedules.pause("paused:sla")
    app.every(3600, "demo.echo", key="echo:xss", kwargs={"text": XSS}, sla=7200, description=XSS)
    app.cron("0 3 * * *", "demo.report", key="nightly-report", kwargs={"n": 11})


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return populate(f"sqlite:///{tmp_path}/store.db")


@pytest.fixture
def web(store: Store) -> Iterator[TestClient]:
    """The dashboard with a token, seen from loopback, not logged in."""
    with TestClient(create_app(store.url, token=TOKEN, metrics_dir=None), client=LOOPBACK) as client:
        yield client


@pytest.fixture
def api(web: TestClient) -> TestClient:
    """``web`` sending the bearer token."""
    web.headers["Authorization"] = f"Bearer {TOKEN}"
    return web


def login(client: TestClient) -> None:
    response = client.post("/login", data={"token": TOKEN, "next": "/"}, follow_redirects=False)
    assert response.status_code == 303, response.text
