"""Schedules with real processes: schedulers, workers and `backbeat run` on one store (SQLite, and Redis:
``@STORES``)."""

from __future__ import annotations

import itertools
import json
import signal
from pathlib import Path

import pytest

from tests.integration.conftest import STORES, Cluster, eventually

pytestmark = pytest.mark.slow

TALK = """\
CancelAbandonedOrders:
  cron: "*/5 * * * *"

clear_leaderboards_contributors:
  cron: "30 6 * * 1"
  class: "ClearLeaderboards"
  queue: low
  args: contributors
  description: "Reset the weekly leaders"
"""


def schedules_json(cluster: Cluster) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = json.loads(cluster.backbeat("schedules", "list", "--json", check=True).stdout)
    return rows


@STORES
def test_the_talks_yaml_loads_and_lists_exactly(cluster: Cluster, tmp_path: Path) -> None:
    path = tmp_path / "resque_schedule.yml"
    path.write_text(TALK)
    refused = cluster.backbeat("schedules", "load", str(path))
    assert refused.returncode == 1 and "unknown task 'CancelAbandonedOrders'" in refused.stderr
    assert schedules_json(cluster) == []  # nothing applied
    loaded = json.loads(cluster.backbeat("schedules", "load", str(path), "--force", "--json", check=True).stdout)
    assert sorted(loaded["added"]) == ["CancelAbandonedOrders", "clear_leaderboards_contributors"]
    rows = {r["key"]: r for r in schedules_json(cluster)}
    assert {k: {f: rows[k][f] for f in ("task", "kind", "cron", "tz", "queue", "args", "kwargs", "description")}
            for k in rows} == {
        "CancelAbandonedOrders": {"task": "CancelAbandonedOrders", "kind": "cron", "cron": "*/5 * * * *",
                                  "tz": "UTC", "queue": "default", "args": [], "kwargs": {}, "description": ""},
        "clear_leaderboards_contributors": {"task": "ClearLeaderboards", "kind": "cron", "cron": "30 6 * * 1",
                                            "tz": "UTC", "queue": "low", "args": ["contributors"], "kwargs": {},
                                            "description": "Reset the weekly leaders"},
    }  # fmt: skip
    assert all(r["origin"] == "file" and r["next_at"] for r in rows.values())
    again = json.loads(cluster.backbeat("schedules", "load", str(path), "--force", "--json", check=True).stdout)
    assert sorted(again["unchanged"]) == ["CancelAbandonedOrders", "clear_leaderboards_contributors"]


@STORES
def test_three_schedulers_fire_each_occurrence_once(cluster: Cluster) -> None:
    cluster.backbeat("schedules", "add", "fast", "--task", "it.tick", "--every", "0.3", "--mode", "rate",
                     "--app", "bbapps:app", check=True)  # fmt: skip
    for _ in range(3):
        cluster.spawn(command="scheduler")
    cluster.spawn("--concurrency", "4")
    eventually(lambda: len(cluster.ledger.ticks()) >= 12, timeout=60, what="a dozen recurring runs")
    fires = [fire_at for _, fire_at, _, _ in cluster.ledger.ticks()]
    assert len(fires) == len(set(fires))  # no occurrence fired twice
    steps = {round(b - a, 6) for a, b in itertools.pairwise(fires)}
    assert all(step > 0 and round(step / 0.3, 6).is_integer() for step in steps)  # on the cadence
    jobs = [j for j in cluster.jobs() if j.schedule_key == "fast"]
    assert len({j.fire_at for j in jobs}) == len(jobs)


@STORES
def test_a_task_that_outlasts_its_interval_never_overlaps(cluster: Cluster) -> None:
    cluster.backbeat("schedules", "add", "slow", "--task", "it.tick", "--every", "0.1", "--mode", "rate",
                     "--kwargs", '{"seconds": 0.4}', "--app", "bbapps:app", check=True)  # fmt: skip
    cluster.spawn(command="scheduler")
    cluster.spawn("--concurrency", "4")
    eventually(lambda: len(cluster.ledger.ticks()) >= 4, timeout=60, what="four slow runs")
    runs = cluster.ledger.ticks()
    for (_, _, _, end), (_, _, start, _) in itertools.pairwise(runs):
        assert start >= end  # each run starts after the previous one ended
    explained = json.loads(cluster.backbeat("explain", "slow", "--json", "--limit", "200", check=True).stdout)
    skips = [e["detail"] for e in explained["timeline"] if e["kind"] == "skipped"]
    assert sum("while a run was still in flight" in d for d in skips) >= 2
    assert all("in flight" in d or "no scheduler running" in d for d in skips)  # (before the scheduler started)


@STORES
def test_killing_the_worker_mid_run_does_not_end_the_chain(cluster: Cluster) -> None:
    cluster.backbeat("schedules", "add", "chain", "--task", "it.tick", "--every", "0.2",
                     "--kwargs", '{"seconds": 1.0}', "--app", "bbapps:app", check=True)  # fmt: skip
    cluster.spawn(command="scheduler")
    victim = cluster.spawn("--lease", "1")
    eventually(lambda: cluster.ledger.events("tick-start"), what="the first run to start")
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=10)
    cluster.spawn("--lease", "1")
    eventually(lambda: len(cluster.ledger.ticks()) >= 3, timeout=60, what="the chain to go on")
    first_fire = float(cluster.ledger.events("tick-start")[0][4])
    assert cluster.ledger.ticks()[0][1] == first_fire  # the killed run ran again, then the chain went on


@STORES
def test_run_serves_schedules_and_they_change_while_it_runs(cluster: Cluster) -> None:
    cluster.backbeat("schedules", "add", "live", "--task", "it.tick", "--every", "0.2",
                     "--app", "bbapps:app", check=True)  # fmt: skip
    run = cluster.spawn("--workers", "1", command="run")
    eventually(lambda: len(cluster.ledger.ticks()) >= 2, timeout=60, what="runs under backbeat run")
    cluster.backbeat("schedules", "pause", "live", check=True)
    paused_count = len(cluster.ledger.ticks())
    eventually(lambda: not [j for j in cluster.jobs() if j.schedule_key == "live" and not j.state.is_final])
    settled = len(cluster.ledger.ticks())
    assert settled <= paused_count + 1  # at most the run in flight when paused
    cluster.backbeat("schedules", "update", "live", "--every", "0.5", check=True)
    assert {r["key"]: r for r in schedules_json(cluster)}["live"]["every"] == 0.5
    cluster.backbeat("schedules", "resume", "live", check=True)
    eventually(lambda: len(cluster.ledger.ticks()) >= settled + 2, timeout=60, what="runs after resume")
    removed = json.loads(cluster.backbeat("schedules", "remove", "live", "--json", check=True).stdout)
    assert removed == [{"key": "live", "removed": True}]
    assert schedules_json(cluster) == []
    run.send_signal(signal.SIGTERM)
    assert run.wait(timeout=30) == 0


@STORES
def test_declared_schedules_removed_from_the_code_go_at_the_next_scheduler_start(cluster: Cluster) -> None:
    declaring = cluster.spawn(command="scheduler", env={"BB_DECLARE": "1"})
    eventually(lambda: [r["key"] for r in schedules_json(cluster)] == ["it.declared"], what="the declared schedule")
    assert schedules_json(cluster)[0]["origin"] == "code"
    declaring.send_signal(signal.SIGTERM)
    assert declaring.wait(timeout=30) == 0
    cluster.spawn(command="scheduler")
    eventually(lambda: schedules_json(cluster) == [], what="the schedule the code no longer declares to go")


@STORES
def test_bad_schedule_input_is_one_clear_line(cluster: Cluster) -> None:
    cases = [
        (["schedules", "add", "k", "--task", "it.tick", "--cron", "61 * * * *", "--app", "bbapps:app"], "Bad minute"),
        (["schedules", "add", "k", "--task", "it.tick", "--every", "soon", "--app", "bbapps:app"], "not a duration"),
        (["schedules", "add", "k", "--task", "nope", "--every", "5"], "no worker has registered a task named 'nope'"),
        (["schedules", "pause", "missing"], "no schedule 'missing'"),
        (["schedules", "update", "missing", "--every", "5"], "no schedule 'missing'"),
    ]
    for args, fragment in cases:
        result = cluster.backbeat(*args)
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
        assert fragment in result.stderr, result.stderr
