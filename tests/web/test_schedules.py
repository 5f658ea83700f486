"""Schedules in the API and on the pages: worst first, keyset pages, search, the CLI's
shapes, every action, and user data escaped."""

from __future__ import annotations

import json
from typing import Any

from click.testing import CliRunner
from starlette.testclient import TestClient

from backbeat.autopilot import PUBLISHED
from backbeat.cli import schedules, sla  # noqa: F401 - registers the commands
from backbeat.cli.main import cli
from backbeat.types import DecisionKind
from tests.web.conftest import BREACHED, SCHEDULES, XSS, Store, login
from tests.web.test_api import conforms

VOLATILE = ("staleness", "sla_report", "now")


def cli_json(store: Store, *args: str) -> Any:
    result = CliRunner().invoke(cli, [*args, "--url", store.url, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def steady(row: dict[str, Any]) -> dict[str, Any]:
    """A row without what moves with the clock between two reads."""
    return {k: v for k, v in row.items() if k not in VOLATILE}


def stored(store: Store, key: str) -> dict[str, Any]:
    data: dict[str, Any] = cli_json(store, "explain", key)
    return data


def test_schedules_are_worst_first_in_the_cli_shapes(api: TestClient, store: Store) -> None:
    rows = api.get("/api/schedules").json()
    assert [r["key"] for r in rows] == SCHEDULES
    for row in rows:
        conforms(row, "ScheduleRow")
    breached = rows[0]
    assert breached["sla_status"] == "breach" and breached["staleness"] >= 3600
    assert breached["sla_report"]["compliance"] < 1
    assert [r["sla_status"] for r in rows] == ["breach", "ok", "ok", "ok", "paused", None]
    assert rows[4]["state"] == "paused"
    cli_rows = cli_json(store, "schedules", "list", "--worst")
    assert [steady(r) for r in rows] == [steady(r) for r in cli_rows]
    explained = api.get(f"/api/schedules/{BREACHED}").json()
    conforms(explained, "Explain")
    assert steady(explained["schedule"]) == steady(stored(store, BREACHED)["schedule"])
    report = api.get("/api/sla").json()
    conforms(report, "Sla")
    assert report["summary"]["in_breach"] == 1 and report["schedules"][0]["key"] == BREACHED


def test_schedule_pages_follow_the_next_link_and_search_narrows(api: TestClient) -> None:
    seen: list[str] = []
    url: str | None = "/api/schedules?limit=2"
    while url is not None:
        response = api.get(url)
        seen += [r["key"] for r in response.json()]
        link = response.headers.get("link")
        url = link[1 : link.index(">")] if link else None
    assert seen == SCHEDULES
    assert [r["key"] for r in api.get("/api/schedules?search=twitter").json()] == SCHEDULES[:3]
    assert [r["key"] for r in api.get("/api/schedules?search=demo.report").json()] == ["nightly-report"]
    assert api.get("/api/schedules?after=nonsense").status_code == 400


def test_schedule_actions_through_the_api(api: TestClient, store: Store) -> None:
    assert api.post("/api/schedules/twitter:fine/pause").json() == {"key": "twitter:fine", "paused": True}
    assert api.post("/api/schedules/twitter:fine/run").status_code == 409  # paused
    assert api.post("/api/schedules/twitter:fine/resume").json() == {"key": "twitter:fine", "paused": False}
    run = api.post("/api/schedules/twitter:fine/run").json()
    conforms(run, "ScheduleRun")
    explained = api.get("/api/schedules/twitter:fine").json()
    assert explained["schedule"]["in_flight"] == run["job_id"] and explained["schedule"]["state"] == "running"
    kinds = [e["kind"] for e in explained["timeline"]]
    assert DecisionKind.RUN_NOW.value in kinds
    assert api.post("/api/schedules/twitter:fine/run").status_code == 409  # a run in flight
    changed = api.post("/api/schedules/twitter:closest/every", json={"every": 45}).json()
    conforms(changed, "Schedule")
    assert changed["every"] == 45 and stored(store, "twitter:closest")["schedule"]["every"] == 45
    assert api.post("/api/schedules/twitter:closest/every", json={"every": -1}).status_code == 400
    assert api.post("/api/schedules/twitter:closest/every", json={"every": "45s"}).status_code == 400
    assert api.post("/api/schedules/nightly-report/every", json={"every": 5}).status_code == 409
    assert api.post("/api/schedules/twitter:closest/every", json={"nope": 1}).status_code == 400
    assert api.delete("/api/schedules/nightly-report").json() == {"key": "nightly-report", "removed": True}
    assert api.delete("/api/schedules/nightly-report").json() == {"key": "nightly-report", "removed": False}
    assert api.get("/api/schedules/nightly-report").status_code == 404
    assert api.post("/api/schedules/nope/pause").status_code == 404


def test_schedule_writes_need_the_token(web: TestClient) -> None:
    assert web.post("/api/schedules/twitter:fine/pause").status_code == 401
    assert web.delete("/api/schedules/twitter:fine").status_code == 401


def test_schedules_page_acts_and_escapes(web: TestClient, store: Store) -> None:
    login(web)
    page = web.get("/schedules").text
    assert page.index(BREACHED) < page.index("nightly-report")
    assert XSS not in page and page.count("<script") == 1
    form = web.get("/schedules").text
    action = "/schedules/twitter%3Afine/pause"
    csrf = form.split(f'action="{action}"', 1)[1].split('name="csrf" value="', 1)[1].split('"', 1)[0]
    response = web.post(action, data={"csrf": csrf, "next": "/schedules"}, follow_redirects=False)
    assert response.status_code == 303
    assert stored(store, "twitter:fine")["schedule"]["paused"] is True
    raw = web.get("/api/schedules/echo:xss").text
    assert "<script>" not in raw and "\\u003cscript\\u003e" in raw
    detail = web.get("/schedules/echo:xss").text
    assert XSS not in detail and "&lt;script&gt;" in detail
    assert "paused" in web.get("/schedules/twitter:fine").text
    remove = "/schedules/nightly-report/remove"
    page = web.get("/schedules/nightly-report").text
    csrf = page.split(f'action="{remove}"', 1)[1].split('name="csrf" value="', 1)[1].split('"', 1)[0]
    refused = web.post(remove, data={"csrf": csrf, "next": "/schedules"}, follow_redirects=False)
    assert refused.status_code == 400  # the box was not ticked
    done = web.post(remove, data={"csrf": csrf, "next": "/schedules", "confirm": "yes"}, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == "/schedules"
    assert web.get("/schedules/nightly-report").status_code == 404


def test_overview_shows_sla_compliance_at_a_glance(api: TestClient) -> None:
    page = api.get("/").text
    assert "data-sla-breached>1<" in page
    assert f'href="/schedules/{BREACHED.replace(":", "%3A")}"' in page
    assert "workers alive / desired" in page
    assert api.get("/api/sla?limit=2").json()["schedules"][0]["key"] == BREACHED


def test_overview_shows_workers_alive_against_the_autopilots_desired_count(api: TestClient, store: Store) -> None:
    assert "data-desired>\u2013<" in api.get("/").text  # no autopilot has published yet
    document = {"desired_workers": 3, "needed_workers": 3, "slots_needed": 2.2, "demand": 0.4,
                "mean_run_time": 5.5, "reason": "demand 0.4 jobs/s x 5.5 s at 75% utilisation"}  # fmt: skip
    client = store.client()

    async def publish() -> None:
        await (await client.astore()).state_set(PUBLISHED, json.dumps(document), now=client.clock.now())

    client.sync(publish)
    client.close()
    page = api.get("/").text
    assert "<span data-alive>1</span> / <span data-desired>3</span>" in page
    assert "demand 0.4 jobs/s" in page


def test_run_now_on_the_command_line_has_the_api_shape(store: Store) -> None:
    [run] = cli_json(store, "schedules", "run", "twitter:fine")
    conforms(run, "ScheduleRun")
    assert stored(store, "twitter:fine")["schedule"]["in_flight"] == run["job_id"]
    result = CliRunner().invoke(cli, ["schedules", "run", "twitter:fine", "--url", store.url])
    assert result.exit_code != 0 and "has a run in flight" in result.output
