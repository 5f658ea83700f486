"""The JSON API: the CLI's ``--json`` shapes exactly, described by the OpenAPI document,
keyset pages, actions, and user data escaped in HTML and in JSON."""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner
from jsonschema import Draft202012Validator
from starlette.testclient import TestClient

from backbeat.cli import admin, jobs  # noqa: F401 - registers the commands
from backbeat.cli.main import cli
from backbeat.web.openapi import document
from tests.web.conftest import XSS, Store, login

VOLATILE = ("now", "throughput")


def conforms(data: Any, schema: str) -> None:
    """``data`` validates against the OpenAPI document's component ``schema``."""
    doc = document()
    Draft202012Validator({"$ref": f"#/components/schemas/{schema}", "components": doc["components"]}).validate(data)


def cli_json(store: Store, *args: str) -> Any:
    result = CliRunner().invoke(cli, [*args, "--url", store.url, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_api_returns_the_cli_json_shapes(api: TestClient, store: Store) -> None:
    status = api.get("/api/status").json()
    conforms(status, "Status")
    cli_status = cli_json(store, "status")
    assert {k: v for k, v in status.items() if k not in VOLATILE} == {
        k: v for k, v in cli_status.items() if k not in VOLATILE
    }
    assert api.get("/api/jobs?limit=100").json() == cli_json(store, "jobs", "list", "--limit", "100")
    assert api.get("/api/jobs?state=dead").json() == cli_json(store, "jobs", "list", "--state", "dead")
    dead = store.ids["dead"]
    assert api.get(f"/api/jobs/{dead}").json() == cli_json(store, "jobs", "show", dead)
    assert api.get("/api/queues").json() == cli_json(store, "queues", "list")
    retried = api.post(f"/api/jobs/{dead}/retry").json()
    assert [retried] == [{"id": dead, "state": "queued"}]
    cancelled = api.post(f"/api/jobs/{dead}/cancel").json()
    assert [cancelled] == cli_json(store, "jobs", "cancel", dead)  # already cancelled: unchanged, same shape
    assert [api.post("/api/queues/mail/resume").json()] == cli_json(store, "queues", "resume", "mail")
    assert [api.post("/api/queues/mail/pause").json()] == cli_json(store, "queues", "pause", "mail")


def test_every_response_conforms_to_the_openapi_document(api: TestClient, store: Store) -> None:
    for job in api.get("/api/jobs").json():
        conforms(job, "Job")
    for key in store.ids:
        conforms(api.get(f"/api/jobs/{store.ids[key]}").json(), "JobDetail")
    for queue in api.get("/api/queues").json():
        conforms(queue, "Queue")
    workers = api.get("/api/workers").json()
    assert [w["id"] for w in workers] == [store.worker_id] and workers[0]["alive"]
    conforms(workers[0], "Worker")
    conforms(api.get("/api/throughput?minutes=10&buckets=5").json(), "Throughput")
    conforms(api.get("/healthz").json(), "Health")
    conforms(api.post(f"/api/jobs/{store.ids['queued']}/cancel").json(), "JobAction")
    conforms(api.post("/api/queues/default/purge").json(), "QueuePurged")
    conforms(api.get("/api/jobs/nope").json(), "Error")


def test_job_list_is_keyset_paginated_with_a_next_link(api: TestClient) -> None:
    seen: list[str] = []
    url: str | None = "/api/jobs?limit=2"
    while url is not None:
        response = api.get(url)
        seen += [j["id"] for j in response.json()]
        link = response.headers.get("link")
        url = link[1 : link.index(">")] if link else None
    everything = [j["id"] for j in api.get("/api/jobs?limit=500").json()]
    assert seen == everything and len(everything) == 7
    assert everything == sorted(everything, reverse=True)


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("/api/jobs?limit=0", "limit must be an integer from 1 to 500"),
        ("/api/jobs?limit=100000", "limit must be an integer from 1 to 500"),
        ("/api/jobs?state=lost", "state must be one of"),
        ("/api/throughput?minutes=99999", "minutes must be an integer from 1 to 1440"),
        ("/api/throughput?buckets=x", "buckets must be an integer"),
    ],
)
def test_bad_parameters_are_400_with_the_reason(api: TestClient, url: str, fragment: str) -> None:
    response = api.get(url)
    assert response.status_code == 400 and fragment in response.json()["error"]


def test_actions_report_conflicts_and_missing_jobs(api: TestClient, store: Store) -> None:
    running = api.post(f"/api/jobs/{store.ids['queued']}/retry")
    assert running.status_code == 409
    assert api.post("/api/jobs/no-such-job/cancel").status_code == 404
    assert api.post("/api/queues/a,b/pause").status_code == 400
    cancel_running = api.post(f"/api/jobs/{store.ids['running']}/cancel").json()
    assert cancel_running == {"id": store.ids["running"], "state": "running"}  # stops at the next heartbeat


def test_bulk_retry_requeues_dead_jobs_within_the_limit(api: TestClient, store: Store) -> None:
    assert api.post("/api/jobs/retry-dead", json={"queue": "mail"}).json() == []
    assert api.post("/api/jobs/retry-dead", json={"nope": 1}).status_code == 400
    assert api.post("/api/jobs/retry-dead", json={"limit": 0}).status_code == 400
    assert api.post("/api/jobs/retry-dead", content=b"{bad").status_code == 400
    done = api.post("/api/jobs/retry-dead").json()
    assert done == [{"id": store.ids["dead"], "state": "queued"}]
    assert api.get("/api/jobs?state=dead").json() == []


def test_queue_names_with_slashes_and_spaces_round_trip(api: TestClient, web: TestClient) -> None:
    assert api.post("/api/queues/a%2Fb%20c/pause").json() == {"queue": "a/b c", "paused": True}
    paused = {q["name"]: q["paused"] for q in api.get("/api/queues").json()}
    assert paused["a/b c"] is True
    login(web)
    assert 'action="/queues/a%2Fb%20c/resume"' in web.get("/queues").text


def test_a_script_in_arguments_is_text_in_html_and_escaped_in_json(
    api: TestClient, web: TestClient, store: Store
) -> None:
    xss = store.ids["xss"]
    raw = api.get(f"/api/jobs/{xss}").text
    assert "<script>" not in raw and "\\u003cscript\\u003e" in raw
    assert json.loads(raw)["kwargs"] == {"text": XSS}
    assert "<script>" not in api.get("/api/jobs?queue=mail").text
    login(web)
    page = web.get(f"/jobs/{xss}").text
    assert XSS not in page
    assert "&#34;text&#34;: &#34;&lt;script&gt;alert(1)&lt;/script&gt;&#34;" in page
    assert page.count("<script") == 1  # only our own, from /static


def test_healthz_is_503_without_a_live_worker(web: TestClient, store: Store) -> None:
    assert web.get("/healthz").json()["ok"] is True

    async def prune() -> None:
        store_ = await client.astore()
        await store_.worker_prune(dead_before=client.clock.now() + 1)

    client = store.client()
    client.sync(prune)
    client.close()
    response = web.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["ok"] is False and body["message"].startswith("no worker is registered")
