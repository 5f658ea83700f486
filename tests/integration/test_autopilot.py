"""The autopilot's commands: ``plan``, ``simulate``, and ``run --workers auto``."""

from __future__ import annotations

import json
import signal
from pathlib import Path

from tests.integration import bbapps
from tests.integration.conftest import Cluster, eventually


def test_plan_the_talks_example(cluster: Cluster) -> None:
    out = cluster.backbeat("plan", "--schedules", "10000", "--sla", "30s", "--job-time", "5s", "--json", check=True)
    data = json.loads(out.stdout)
    assert (data["every"], data["workers"], data["feasible"]) == (22.0, 247, True)
    text = cluster.backbeat("plan", "--schedules", "10", "--sla", "30", "--job-time", "5", "--rate-limit", "1/60s")
    assert "feasible:     NO" in text.stdout and "no interval keeps a 30 s SLA" in text.stdout
    bad = cluster.backbeat("plan", "--schedules", "10", "--sla", "30", "--job-time", "5", "--rate-limit", "often")
    assert bad.returncode == 1 and "--rate-limit must look like 1/15s" in bad.stderr


def test_simulate_reports_and_charts(cluster: Cluster, tmp_path: Path) -> None:
    chart = tmp_path / "sim.html"
    args = [
        "--schedules",
        "40",
        "--sla",
        "3",
        "--job-time",
        "0.5",
        "--duration",
        "5m",
        "--warmup",
        "90s",
        "--concurrency",
        "1",
    ]
    out = cluster.backbeat("simulate", *args, "--chart", str(chart), "--json", check=True)
    data = json.loads(out.stdout)
    assert data["compliance"] >= 0.99
    assert data["workers_planned"] == 11 and abs(data["workers_mean"] - 11) <= 1.5
    assert data["samples"][0]["at"] == 0
    page = chart.read_text()
    assert page.count("<svg") == 3 and "SLA compliance" in page


def test_run_with_auto_workers_scales_up_under_a_backlog_and_back_down(cluster: Cluster) -> None:
    for _ in range(60):
        bbapps.sleep_task.enqueue(0.2)
    run = cluster.spawn("--workers", "auto", "--max-workers", "3", "--concurrency", "1", command="run")
    eventually(lambda: "resizing from 1 to" in cluster.log_of(0, "run"), what="the autopilot to add workers")

    def published() -> dict[str, object] | None:
        status = json.loads(cluster.backbeat("status", "--json").stdout or "{}")
        pilot: dict[str, object] | None = status.get("autopilot")
        return pilot

    pilot = eventually(published, what="the autopilot's published state")
    assert isinstance(pilot["desired_workers"], int) and 1 <= pilot["desired_workers"] <= 3
    eventually(lambda: len(cluster.ledger.events("end")) == 60, timeout=90, what="the backlog to drain")
    eventually(lambda: "resizing from 3 to 2" in cluster.log_of(0, "run"), timeout=60, what="a step down when idle")
    run.send_signal(signal.SIGTERM)
    assert run.wait(timeout=30) == 0
