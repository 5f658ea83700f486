"""``backbeat demo`` as a real process (worker processes, scheduler, consumer, fake APIs):
its summary's figures checked against the store it leaves behind; Ctrl-C; bad input."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import backbeat.cli.demo  # noqa: F401 - registers the command
from backbeat import Client, sla
from backbeat.cli.main import cli
from backbeat.demo import figures
from backbeat.demo.jobs import POLL_SLA
from backbeat.types import DecisionKind, EventFilter, JobFilter, JobState, ScheduleFilter
from tests.integration.conftest import eventually

pytestmark = pytest.mark.slow


def demo_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "backbeat", "demo", "--json", *args]


def env(tmp_path: Path) -> dict[str, str]:
    """The demo's own temporary directory (its log) goes under the test's."""
    out = dict(os.environ, TMPDIR=str(tmp_path))
    out.pop("BACKBEAT_URL", None)
    return out


def timestamp(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


class Store:
    """What the demo left in its store, read independently of the demo's own code."""

    def __init__(self, url: str) -> None:
        self.client = Client(url)

    def close(self) -> None:
        self.client.close()

    def read(self, since: float, now: float) -> dict[str, Any]:
        async def read() -> dict[str, Any]:
            store = await self.client.astore()
            schedules = await store.schedule_list(ScheduleFilter(limit=10_000))
            stats = await store.sla_stats(now=now, since=since)
            polls = await store.job_list(JobFilter(task="demo.poll", limit=10_000))
            waits = 0
            for schedule in schedules:
                for d in await store.decision_list(schedule.key, limit=10_000):
                    waits += d.kind is DecisionKind.RATE_LIMITED and d.at >= since
            return {
                "events": Counter(e.state.value for e in await store.event_list(EventFilter(limit=10_000))),
                "schedules": schedules,
                "counts": {(c.task, c.state.value): c.count for c in await store.job_counts()},
                "compliance": sla.overall(stats.schedules, stats.paused, stats.breach_seconds, now - since),
                "breach_seconds": stats.breach_seconds,
                "polls": polls,
                "waits": waits,
                "breaches": await store.sla_breaches(key=None, since=since, limit=10_000),
            }

        return self.client.sync(read)


def check_against_store(summary: dict[str, Any], url: str) -> dict[str, Any]:
    """Every figure of the summary is what the store says at the summary's end time."""
    since, now = timestamp(summary["started_at"]), timestamp(summary["ended_at"])
    store = Store(url)
    try:
        data = store.read(since, now)
    finally:
        store.close()
    events = summary["events"]
    assert {state: events[state] for state in ("pending", "handled", "unhandled", "dead")} == {
        state: data["events"][state] for state in ("pending", "handled", "unhandled", "dead")
    }
    schedules = data["schedules"]
    assert summary["schedules"]["count"] == len(schedules)
    assert summary["schedules"]["polled"] == sum(s.last_success_at is not None for s in schedules)
    for task, states in (("demo.poll", summary["jobs"]["polls"]), ("demo.start_polling", summary["jobs"]["handlers"])):
        assert {s: n for s, n in states.items() if n} == {s: n for (t, s), n in data["counts"].items() if t == task}
    got = summary["sla"]
    assert got["compliance"] == pytest.approx(data["compliance"], abs=1e-5)
    assert got["breach_seconds"] == pytest.approx(data["breach_seconds"], abs=1e-2)
    assert got["breaches"] == len(data["breaches"])
    assert summary["rate_limits"]["waits"] == data["waits"]
    successes: dict[str, list[float]] = {}
    for job in data["polls"]:
        if job.state is JobState.SUCCEEDED:
            successes.setdefault(job.schedule_key, []).append(job.finished_at)
    worst = max(
        (figures.longest_gap(s.created_at, successes.get(s.key, []), now) for s in schedules),
        default=0.0,
    )
    assert got["worst_gap_seconds"] == pytest.approx(worst, abs=1e-2)
    return data


def test_a_short_run_ends_by_itself_with_a_summary_the_store_confirms(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/demo.db"
    done = subprocess.run(
        demo_argv("--users", "5", "--duration", "3", "--url", url),
        env=env(tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["url"] == url and summary["users"] == 5 and not summary["interrupted"]
    assert summary["events"]["emitted"] == 5  # the main app links every account in the first quarter
    assert 1 <= summary["workers"]["desired"] <= 4  # the autopilot's choice, within --max-workers
    assert summary["rate_limits"]["twitter"]["tightened_after_seconds"] is not None  # halfway
    assert "[0 s of 3 s]" in done.stderr  # progress lines go to stderr with --json
    check_against_store(summary, url)


def test_ctrl_c_once_every_account_is_polled_ends_with_the_summary(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/demo.db"
    users = 10
    proc = subprocess.Popen(
        demo_argv("--users", str(users), "--duration", "10m", "--workers", "2", "--url", url),
        env=env(tmp_path),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    store = Store(url)
    try:

        def all_polled() -> bool:
            async def read() -> bool:
                schedules = await (await store.client.astore()).schedule_list(ScheduleFilter(limit=100))
                return len(schedules) == users and all(s.last_success_at is not None for s in schedules)

            return store.client.sync(read)

        eventually(all_polled, timeout=90, what="every account polled")
    finally:
        store.close()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=90)
    assert proc.returncode == 0, err
    summary = json.loads(out)
    assert summary["interrupted"] is True
    assert summary["events"]["emitted"] == users and summary["events"]["handled"] == users
    assert summary["schedules"]["count"] == users and summary["schedules"]["polled"] == users
    assert summary["schedules"]["interval_seconds"] == {"min": 20.0, "max": 20.0}
    assert summary["jobs"]["handlers"]["succeeded"] == users
    assert summary["jobs"]["polls"]["succeeded"] >= users
    assert summary["feed"]["feeds"] == users and summary["feed"]["posts"] >= summary["jobs"]["polls"]["succeeded"]
    assert summary["workers"] == {"most_seen": 2, "desired": 2}
    data = check_against_store(summary, url)
    assert all(s.spec.sla == POLL_SLA and s.spec.every == 20.0 for s in data["schedules"])


def run_demo(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "backbeat", "demo", *args],
        env=env(tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_bad_input_is_refused_with_the_reason(tmp_path: Path) -> None:
    memory = run_demo(tmp_path, "--url", "memory://")
    assert memory.returncode == 1 and "cannot be shared between processes" in memory.stderr
    zero = run_demo(tmp_path, "--duration", "0")
    assert zero.returncode == 1 and "--duration must be > 0" in zero.stderr
    bad = run_demo(tmp_path, "--duration", "soon")
    assert bad.returncode == 1 and "--duration 'soon' is not a duration" in bad.stderr
    scheme = run_demo(tmp_path, "--url", "mysql://x")
    assert scheme.returncode == 1 and "unknown scheme" in scheme.stderr
    users = run_demo(tmp_path, "--users", "0")
    assert users.returncode == 2 and "--users" in users.stderr
    used = tmp_path / "used.db"
    Client(f"sqlite:///{used}").emit("something.happened", {})
    busy = run_demo(tmp_path, "--url", f"sqlite:///{used}")
    assert busy.returncode == 1 and "already holds schedules, jobs or events" in busy.stderr


def test_without_pydantic_the_demo_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pydantic" else real(name, *a))
    result = CliRunner().invoke(cli, ["demo"])
    assert result.exit_code == 1
    assert "pip install 'backbeat[contracts]'" in result.output
