"""SLAs and rate limits with real processes on one store (SQLite, and Redis: ``@STORES``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.conftest import STORES, Cluster, eventually

pytestmark = pytest.mark.slow


def sla_json(cluster: Cluster, *args: str) -> tuple[int, dict[str, object]]:
    result = cluster.backbeat("sla", "--json", *args)
    return result.returncode, json.loads(result.stdout)


@STORES
def test_a_breach_is_seen_alerted_and_ended(cluster: Cluster) -> None:
    down = Path(str(cluster.ledger.path) + ".down")
    down.touch()
    cluster.backbeat(
        "schedules",
        "add",
        "upstream",
        "--task",
        "it.upstream",
        "--every",
        "0.2",
        "--sla",
        "1",
        "--app",
        "bbapps:app",
        check=True,
    )
    cluster.spawn(command="scheduler")
    cluster.spawn()
    eventually(lambda: cluster.ledger.events("hook-started"), what="the breach hook")
    code, data = sla_json(cluster, "--check")
    assert code == 1
    assert data["summary"]["in_breach"] == 1  # type: ignore[index]
    assert data["schedules"][0]["status"] == "breach"  # type: ignore[index]
    human = cluster.backbeat("sla", "--check")
    assert human.returncode == 1 and "1 schedule(s) in breach" in human.stderr and "upstream" in human.stdout
    down.unlink()
    eventually(lambda: cluster.ledger.events("hook-ended"), what="the breach to end")
    code, data = sla_json(cluster, "--check")
    assert code == 0 and data["summary"]["in_breach"] == 0  # type: ignore[index]
    explained = json.loads(cluster.backbeat("explain", "upstream", "--json", "--limit", "500", check=True).stdout)
    kinds = [e["kind"] for e in explained["timeline"]]
    assert "breach_started" in kinds and "breach_ended" in kinds and "dead" in kinds and "succeeded" in kinds
    assert explained["schedule"]["key"] == "upstream"


@STORES
def test_a_rate_limit_holds_across_two_worker_processes(cluster: Cluster) -> None:
    jobs = [cluster.app.enqueue("it.limited", kwargs={"token": "t1"}) for _ in range(40)]
    others = [cluster.app.enqueue("it.limited", kwargs={"token": "t2"}) for _ in range(10)]
    cluster.spawn("--concurrency", "4")
    cluster.spawn("--concurrency", "4")
    for job in jobs + others:
        job.result(timeout=60)
    starts = sorted(float(line[-1]) for line in cluster.ledger.lines() if line[3:5] == ["limited", "t1"])
    assert len(starts) == 40
    busiest = max(sum(1 for u in starts if t <= u < t + 1.0) for t in starts)
    assert busiest <= 10  # the limit: 10 starts per token in any 1 s window
    assert len({line[2] for line in cluster.ledger.lines() if line[3] == "limited"}) == 2  # both processes ran them
