"""The dashboard in a real headless Chromium (Debian's, driven by Playwright), against a
``backbeat dashboard`` process over a populated SQLite store: the overview shows the
schedule in breach of its SLA and queue depths, and refreshes live; a schedule is paused
from the schedules page, a dead job is retried from the jobs page, a queue is paused from
the queues page (each checked in the store); the events page shows a dead event's
reason; a script in a job's arguments stays text.
It saves screenshots to ``$BACKBEAT_SCREENSHOTS_DIR`` (a temporary directory by default;
``make screenshots`` writes the README's, in docs/screenshots). It waits for selectors,
never for time."""

from __future__ import annotations

import json
import os
import tempfile
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from backbeat import App, Client, JobState, ManualClock
from backbeat.autopilot import PUBLISHED
from backbeat.events import dead
from backbeat.testing import run_for, run_until_idle
from backbeat.types import EventSettlement, EventState
from tests.integration.conftest import eventually
from tests.ports import free_port
from tests.web.conftest import BREACHED, TOKEN, XSS, Store, populate
from tests.web.processes import spawn, stop

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless=new",
    "--no-sandbox",  # needed as root (CI)
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SHOTS = Path(os.environ.get("BACKBEAT_SCREENSHOTS_DIR") or tempfile.mkdtemp(prefix="backbeat-screenshots-"))


def need_chromium() -> None:
    if CHROMIUM.exists():
        return
    message = f"{CHROMIUM} is missing: scripts/chromium.sh (run by `make test`) installs it with apt-get as root"
    if os.geteuid() == 0:
        pytest.fail(message)  # CI runs as root and installs it: missing there is a failure, not a skip
    pytest.skip(message)


def add_history(url: str) -> None:
    """An hour of finished jobs, so the throughput chart has something to show."""
    start = datetime.now(UTC) - timedelta(minutes=58)
    app = App(url, clock=ManualClock(start))

    @app.task(name="report.build", queue="reports")
    def build(n: int) -> int:
        return n

    @app.task(name="report.send", queue="email", retries=0)
    def send(n: int) -> None:
        if n % 7 == 0:
            raise ConnectionError(f"mail server refused message {n}")

    for minute in range(0, 56, 2):
        for n in range(3 + (minute * 7) % 11):
            build.enqueue(n)
            send.enqueue(minute + n)
        run_until_idle(app)
        app.clock.advance(120)  # type: ignore[attr-defined]
    app.close()


def add_schedule_history(url: str) -> None:
    """A schedule that ran for most of the last 50 minutes (its timeline has something to
    show). Written before the other schedules: its scheduler fires every due schedule."""
    app = App(url, clock=ManualClock(datetime.now(UTC) - timedelta(minutes=50)))

    @app.task(name="report.build", queue="reports")
    def build(n: int) -> int:
        return n

    app.every(120, build, key="report:hourly", kwargs={"n": 1}, sla=600, max_every=300)
    run_for(app, 20 * 60)
    app.schedules.update("report:hourly", every=180)
    app.schedules.pause("report:hourly")
    app.clock.advance(60)  # type: ignore[attr-defined]
    app.schedules.resume("report:hourly")
    run_for(app, 28 * 60)
    app.close()


def add_scheduler_and_autopilot_state(url: str) -> None:
    """What a running scheduler and autopilot would have written: breaches opened on time,
    a desired worker count."""
    client = Client(url)
    document = {"desired_workers": 2, "needed_workers": 2, "slots_needed": 1.3, "demand": 0.2,
                "mean_run_time": 0.5, "reason": "demand 0.2 jobs/s x 0.5 s at 75% utilisation"}  # fmt: skip

    async def scheduler_and_autopilot() -> None:
        store = await client.astore()
        now = client.clock.now()
        await store.sla_check(now=now)
        await store.state_set(PUBLISHED, json.dumps(document), now=now)

    try:
        client.sync(scheduler_and_autopilot)
    finally:
        client.close()


def add_events(url: str) -> None:
    """Events as a main app sends them, and one refused (dead, with its reason)."""
    client = Client(url)

    async def bury() -> None:
        store = await client.astore()
        now = client.clock.now()
        reason = "payload: user_id is required (contract account.linked)"
        malformed = dead('{"name": "account.linked", "payload": {}}', reason, source="http", received=now)
        await store.event_settle([EventSettlement(event=malformed, state=EventState.DEAD, reason=reason)], now=now)

    try:
        for n in range(3):
            client.emit("account.linked", {"user_id": n, "token": f"t{n}"})
        client.sync(bury)
    finally:
        client.close()


def store_state(url: str, job_id: str) -> JobState:
    client = Client(url)
    try:
        return client.job(job_id).status()
    finally:
        client.close()


def schedule_paused(url: str, key: str) -> bool:
    async def read(client: Client) -> bool:
        return (await (await client.astore()).schedule_get(key)).paused

    client = Client(url)
    try:
        return client.sync(read, client)
    finally:
        client.close()


def paused_queues(url: str) -> set[str]:
    async def read(client: Client) -> set[str]:
        return {q.name for q in await (await client.astore()).queue_list() if q.paused}

    client = Client(url)
    try:
        return client.sync(read, client)
    finally:
        client.close()


@pytest.fixture
def store(tmp_path: Path) -> Store:
    url = f"sqlite:///{tmp_path}/store.db"
    add_schedule_history(url)
    return populate(url)


@pytest.fixture
def dashboard(store: Store, tmp_path: Path) -> Iterator[str]:
    add_history(store.url)
    add_scheduler_and_autopilot_state(store.url)
    add_events(store.url)
    port = free_port()
    server = spawn(store.url, tmp_path / "dashboard.log", "dashboard", "--port", str(port), "--poll", "1",
                   BACKBEAT_TOKEN=TOKEN)  # fmt: skip
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            with urllib.request.urlopen(base + "/api/openapi.json", timeout=5):
                return True
        except OSError:
            return False

    try:
        eventually(up, timeout=30, what="the dashboard to answer")
        yield base
    finally:
        stop(server)


def test_dashboard_in_headless_chromium(dashboard: str, store: Store) -> None:
    need_chromium()
    from playwright.sync_api import Dialog, Error, expect, sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})

        def on_dialog(dialog: Dialog) -> None:  # an alert() would mean a script from job data ran
            problems.append(f"dialog: {dialog.message}")
            dialog.dismiss()

        def on_error(error: Error) -> None:
            problems.append(f"page error: {error}")

        page.on("dialog", on_dialog)
        page.on("pageerror", on_error)

        # a token is configured: the overview sends us to log in first
        page.goto(dashboard + "/")
        page.fill("input[name=token]", TOKEN)
        page.click("button[type=submit]")

        # the overview shows queue depths, and refreshes them live
        default = page.locator('tr[data-queue="default"]')
        expect(default.locator('td[data-state="dead"]')).to_have_text("1")
        expect(default.locator('td[data-state="queued"]')).to_have_text("1")
        expect(page.locator('tr[data-queue="reports"] td[data-state="running"]')).to_have_text("1")
        expect(page.locator('tr[data-queue="mail"] [data-paused]')).to_be_visible()
        expect(page.locator('tr[data-queue="reports"] [data-paused]')).to_be_hidden()
        # SLA compliance at a glance: the breached schedule is named, first, and links to its page
        expect(page.locator("[data-sla-card] [data-sla-breached]")).to_have_text("1")
        breached = page.locator(f'tr[data-sla-row="{BREACHED}"]')
        expect(breached.locator("[data-sla-status]")).to_have_text("breach")
        expect(page.locator("tr[data-sla-row]").first).to_have_attribute("data-sla-row", BREACHED)
        Client(store.url).enqueue("demo.ok", kwargs={"n": 7})  # another client writes...
        expect(default.locator('td[data-state="queued"]')).to_have_text("2")  # ...and the page follows
        page.screenshot(path=str(SHOTS / "overview.png"), full_page=True)

        # the breached schedule's page: its SLA and its explain timeline
        breached.locator("a").click()
        expect(page.locator("h1")).to_have_text(BREACHED)
        expect(page.locator("dl.fields [data-sla-status]")).to_have_text("breach")
        page.screenshot(path=str(SHOTS / "schedule.png"), full_page=True)
        page.goto(dashboard + "/schedules/report%3Ahourly")
        expect(page.locator("[data-timeline]")).to_contain_text("succeeded")
        expect(page.locator("[data-timeline]")).to_contain_text("paused")
        page.screenshot(path=str(SHOTS / "explain.png"))  # the first screenful: the timeline is long

        # the schedules page: worst first; pause one and see it in the store
        page.click("header nav >> text=Schedules")
        expect(page.locator("tr[data-schedule]").first).to_have_attribute("data-schedule", BREACHED)
        fine = page.locator('tr[data-schedule="twitter:fine"]')
        expect(fine.locator("[data-schedule-state]")).to_have_text("waiting")
        fine.locator("button", has_text="Pause").click()
        expect(page.locator("[data-flash]")).to_contain_text("Schedule twitter:fine is paused")
        expect(fine.locator("[data-schedule-state]")).to_have_text("paused")
        expect(fine.locator("[data-sla-status]")).to_have_text("paused")
        assert schedule_paused(store.url, "twitter:fine")
        page.fill("input[name=search]", "twitter")
        page.click("form.filters button[type=submit]")
        expect(page.locator("tr[data-schedule]")).to_have_count(3)
        page.goto(dashboard + "/schedules")
        page.screenshot(path=str(SHOTS / "schedules.png"), full_page=True)

        # the jobs page: filter by state, retry the dead job, see it in the store
        page.click("header nav >> text=Jobs")
        page.select_option("select[name=state]", "dead")
        page.click("form.filters button[type=submit]")
        dead = page.locator(f'tr[data-job="{store.ids["dead"]}"]')
        expect(dead.locator("[data-state-badge]")).to_have_text("dead")
        page.screenshot(path=str(SHOTS / "jobs.png"))  # the first screenful: the list is long
        dead.locator("button", has_text="Retry").click()
        expect(page.locator("[data-flash]")).to_contain_text(f"Job {store.ids['dead']} is queued again.")
        assert store_state(store.url, store.ids["dead"]) is JobState.QUEUED

        # a job's arguments are user data: the script is shown as text, never run
        page.goto(f"{dashboard}/jobs/{store.ids['xss']}")
        expect(page.locator("[data-args]")).to_contain_text(f'"text": "{XSS}"')
        page.screenshot(path=str(SHOTS / "job.png"), full_page=True)

        # the queues page: pause a queue, see it in the store
        page.click("header nav >> text=Queues")
        row = page.locator('tr[data-queue="default"]')
        row.locator("button", has_text="Pause").click()
        expect(page.locator("[data-flash]")).to_contain_text("Queue default is paused")
        expect(row.locator("[data-paused]")).to_be_visible()
        assert "default" in paused_queues(store.url)
        page.screenshot(path=str(SHOTS / "queues.png"), full_page=True)

        # the events page: the dead event with its reason
        page.click("header nav >> text=Events")
        expect(page.locator("tr[data-event]")).to_have_count(4)
        page.select_option("select[name=state]", "dead")
        page.click("form.filters button[type=submit]")
        expect(page.locator("tr[data-event] [data-reason]")).to_contain_text("user_id is required")
        page.goto(dashboard + "/events")
        page.screenshot(path=str(SHOTS / "events.png"), full_page=True)

        page.click("header nav >> text=Workers")
        expect(page.locator("tbody[data-workers-full] tr").first).to_contain_text("testhost")
        page.screenshot(path=str(SHOTS / "workers.png"), full_page=True)
        browser.close()
    assert problems == []
    for name in ("overview", "schedule", "explain", "schedules", "jobs", "job", "events", "queues", "workers"):
        assert (SHOTS / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
