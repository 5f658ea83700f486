"""Prometheus: the store gauges of ``/metrics`` and the worker-side counters and
histograms, counted in real worker processes and parsed with prometheus-client's parser."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from backbeat import App, Client, ManualClock, RateLimited
from backbeat.runtime.scheduler import Scheduler
from backbeat.testing import run_until_idle
from backbeat.web import create_app
from tests.integration.conftest import eventually
from tests.ports import free_port
from tests.web import webapps
from tests.web.conftest import LOOPBACK, TOKEN, Store
from tests.web.processes import spawn, stop


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of an exposition text, by (name, labels)."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float | None:
    return found.get((name, frozenset(labels.items())))


def test_store_gauges_count_jobs_by_queue_and_state(api: TestClient) -> None:
    response = api.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    found = samples(response.text)
    expected = {
        ("default", "succeeded"): 1,
        ("default", "dead"): 1,
        ("default", "queued"): 1,
        ("default", "scheduled"): 1,
        ("default", "cancelled"): 1,
        ("default", "running"): 0,
        ("reports", "running"): 1,
        ("mail", "queued"): 1,
    }
    for (queue, state), n in expected.items():
        assert value(found, "backbeat_jobs", queue=queue, state=state) == n, (queue, state)
    assert value(found, "backbeat_queue_paused", queue="mail") == 1
    assert value(found, "backbeat_queue_paused", queue="default") == 0
    assert value(found, "backbeat_workers", status="alive") == 1
    assert value(found, "backbeat_worker_slots") == 4
    assert value(found, "backbeat_worker_jobs_in_flight") == 1
    assert value(found, "backbeat_healthy") == 1
    assert value(found, "backbeat_store_up") == 1


def test_sla_gauges_and_a_staleness_histogram_without_a_series_per_key(api: TestClient, store: Store) -> None:
    client = store.client()

    async def check() -> None:  # what a running scheduler does: open the breach on time
        await (await client.astore()).sla_check(now=client.clock.now())

    client.sync(check)
    client.close()
    families = {f.name: f for f in text_string_to_metric_families(api.get("/metrics").text)}
    found = samples(api.get("/metrics").text)
    assert value(found, "backbeat_sla_schedules", status="breach") == 1
    assert value(found, "backbeat_sla_schedules", status="paused") == 1
    assert value(found, "backbeat_sla_schedules", status="ok") == 3
    ratio = value(found, "backbeat_sla_compliance_ratio")
    assert ratio is not None and 0 < ratio < 1  # the breached schedule has been late for most of an hour
    staleness = families["backbeat_schedule_staleness_seconds"]
    assert staleness.type == "histogram"
    assert {frozenset(s.labels) - {"le"} for s in staleness.samples} == {frozenset()}  # no key, no task
    active = value(found, "backbeat_schedule_staleness_seconds_count")
    assert active == 4  # the paused one is left out
    assert value(found, "backbeat_schedule_staleness_seconds_bucket", le="60.0") == 3  # made just now
    assert value(found, "backbeat_schedule_staleness_seconds_bucket", le="1800.0") == 3
    assert value(found, "backbeat_schedule_staleness_seconds_bucket", le="+Inf") == 4


def test_breaches_and_rate_limit_waits_are_counted_where_they_happen() -> None:
    clock = ManualClock()
    app = App("memory://metrics-sla", clock=clock)

    @app.task(name="m.poll")
    def poll() -> None: ...

    breaches = REGISTRY.get_sample_value("backbeat_sla_breaches_total") or 0.0
    app.every(20, poll, key="m:poll", sla=30)
    clock.advance(31)
    app.client.sync(lambda: Scheduler(app).watch_sla(app.client.sync(app.client.astore)))
    assert (REGISTRY.get_sample_value("backbeat_sla_breaches_total") or 0.0) - breaches == 1
    app.close()


def test_counters_and_histograms_in_process() -> None:
    app = App("memory://metrics-in-process", clock=ManualClock())
    calls = {"limited": 0}

    @app.task(name="m.ok")
    def ok() -> None: ...

    @app.task(name="m.flaky", retries=1)
    def flaky() -> None:
        raise RuntimeError("no")

    @app.task(name="m.limited")
    def limited() -> None:
        calls["limited"] += 1
        if calls["limited"] == 1:
            raise RateLimited(retry_after=5)

    def get(name: str, task: str) -> float:
        return REGISTRY.get_sample_value(name, {"queue": "default", "task": task}) or 0.0

    names = ("enqueued_total", "succeeded_total", "failed_total", "retried_total", "dead_total", "rate_limited_total")
    before = {(n, t): get(f"backbeat_jobs_{n}", t) for n in names for t in ("m.ok", "m.flaky", "m.limited")}
    runs_before = get("backbeat_job_run_seconds_count", "m.ok")
    waits_before = REGISTRY.get_sample_value("backbeat_rate_limit_wait_seconds_count", {"limiter": "task:m.limited"})
    waits_before = waits_before or 0.0
    ok.enqueue(), ok.enqueue(), flaky.enqueue(), limited.enqueue()
    run_until_idle(app, advance=True)
    delta = {key: get(f"backbeat_jobs_{key[0]}", key[1]) - was for key, was in before.items()}
    assert delta[("enqueued_total", "m.ok")] == 2 and delta[("succeeded_total", "m.ok")] == 2
    assert delta[("failed_total", "m.flaky")] == 2  # the first attempt is retried, the second is final
    assert delta[("retried_total", "m.flaky")] == 1 and delta[("dead_total", "m.flaky")] == 1
    assert delta[("rate_limited_total", "m.limited")] == 1 and delta[("failed_total", "m.limited")] == 0
    assert delta[("succeeded_total", "m.limited")] == 1
    assert get("backbeat_job_run_seconds_count", "m.ok") - runs_before == 2
    assert get("backbeat_job_pickup_latency_seconds_count", "m.flaky") >= 2
    waits = {"limiter": "task:m.limited"}
    assert (REGISTRY.get_sample_value("backbeat_rate_limit_wait_seconds_count", waits) or 0) - waits_before == 1
    assert (REGISTRY.get_sample_value("backbeat_rate_limit_wait_seconds_bucket", waits | {"le": "5.0"}) or 0) >= 1
    app.close()


def test_worker_processes_counters_reach_the_dashboard_metrics(tmp_path: Path) -> None:
    """Workers write multiprocess files; /metrics sums them beside the store gauges."""
    url = f"sqlite:///{tmp_path}/m.db"
    metrics_dir = tmp_path / "prom"
    metrics_dir.mkdir()
    app = webapps.app
    app.configure(url=url)  # the app's own task options (web.fail: no retries)
    for n in range(5):
        webapps.ok.enqueue(n)
    webapps.fail.enqueue(9)
    log = tmp_path / "worker.log"
    for _ in range(2):  # two processes, one after the other: their counts add up
        worker = spawn(url, log, "worker", "webapps:app", "--burst", "--log-format", "json",
                       PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))  # fmt: skip
        assert worker.wait(timeout=60) == 0, log.read_text()
        webapps.ok.enqueue(100)
    app.close()
    lines = [json.loads(line) for line in log.read_text().splitlines()]  # --log-format json: every line
    assert {"time", "level", "logger", "pid", "message"} <= set(lines[0])
    assert any("web.fail" in line["message"] and line["level"] == "error" for line in lines)

    with TestClient(create_app(url, token=TOKEN, metrics_dir=str(metrics_dir)), client=LOOPBACK) as web:
        found = samples(web.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).text)
    assert value(found, "backbeat_jobs_succeeded_total", queue="default", task="web.ok") == 6
    assert value(found, "backbeat_jobs_dead_total", queue="default", task="web.fail") == 1
    assert value(found, "backbeat_job_run_seconds_count", queue="default", task="web.ok") == 6
    assert value(found, "backbeat_job_pickup_latency_seconds_bucket", queue="default", task="web.ok", le="+Inf") == 6
    assert value(found, "backbeat_jobs", queue="default", state="succeeded") == 6
    assert value(found, "backbeat_jobs", queue="default", state="queued") == 1  # enqueued after the last run


def test_backbeat_run_serves_the_sum_of_its_workers(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/run.db"
    port = free_port()
    run = spawn(url, tmp_path / "run.log", "run", "webapps:app", "--workers", "2", "--metrics-port", str(port))
    client = Client(url)
    try:
        for n in range(20):
            client.enqueue("web.ok", kwargs={"n": n})

        def scraped() -> Any:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
                    text = response.read().decode()
            except OSError:
                return None
            total = value(samples(text), "backbeat_jobs_succeeded_total", queue="default", task="web.ok")
            return total if total == 20 else None

        assert eventually(scraped, timeout=60, what="20 successes summed over both workers") == 20
    finally:
        client.close()
        stop(run)
    assert run.returncode == 0, (tmp_path / "run.log").read_text()
