"""The command line: data commands, ``--json`` shapes, and one-line errors."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from backbeat import JobState
from backbeat.store.postgres.connection import NEWEST as POSTGRES_VERSION
from backbeat.store.sqlite.connection import migrations
from backbeat.testing import run_until_idle
from tests.integration import bbapps
from tests.integration.conftest import Cluster, eventually

ISO_Z = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z"


def assert_one_line_error(result: subprocess.CompletedProcess[str], fragment: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("backbeat: error: "), result.stderr
    assert fragment in lines[0]


def test_enqueue_with_app_checks_the_task_and_its_arguments(cluster: Cluster) -> None:
    result = cluster.backbeat(
        "enqueue", "it.record", "--kwargs", '{"n": 3}', "--app", "bbapps:app", "--json", check=True
    )
    data = json.loads(result.stdout)
    assert data["created"] and data["checked"] == "checked against bbapps:app"
    info = cluster.job(data["id"])
    assert (info.task, info.state, info.payload) == ("it.record", JobState.QUEUED, '{"args":[],"kwargs":{"n":3}}')
    assert_one_line_error(
        cluster.backbeat("enqueue", "it.record", "--kwargs", '{"m": 3}', "--app", "bbapps:app"),
        "task 'it.record': missing a required argument: 'n'",
    )
    assert_one_line_error(cluster.backbeat("enqueue", "nope", "--app", "bbapps:app"), "declares no task 'nope'")


def test_enqueue_without_app_checks_registered_tasks(cluster: Cluster) -> None:
    assert_one_line_error(
        cluster.backbeat("enqueue", "it.record", "--kwargs", '{"n": 1}'), "no worker has registered a task named"
    )
    forced = cluster.backbeat("enqueue", "it.record", "--kwargs", '{"n": 1}', "--force", check=True)
    assert "not checked: --force" in forced.stdout
    run_until_idle(cluster.app)

    async def register() -> None:
        from backbeat.runtime.worker import Worker

        store = await cluster.app.client.astore()
        await store.worker_register(Worker(cluster.app)._info())

    cluster.app.client.sync(register)
    ok = cluster.backbeat("enqueue", "it.low", "--delay", "60", "--priority", "3", "--json", check=True)
    info = cluster.job(json.loads(ok.stdout)["id"])
    assert (info.queue, info.priority, info.state) == ("low", 3, JobState.SCHEDULED)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["enqueue", "t", "--kwargs", "{bad"], "--kwargs is not valid JSON"),
        (["enqueue", "t", "--kwargs", "[1]"], "--kwargs must be a JSON object"),
        (["enqueue", "t", "--force", "--at", "tomorrow"], "--at 'tomorrow' is not an ISO 8601 time"),
        (["enqueue", "t", "--force", "--at", "2026-01-01T10:00:00"], "has no time zone"),
        (["enqueue", "t", "--force", "--delay", "-3"], "delay cannot be negative"),
        (["status", "--url", "mysql://x"], "unknown scheme 'mysql'"),
        (["status", "--url", "sqlite:///no/such/dir/x.db"], "cannot open SQLite file"),
        (["worker", "no_such_module:app"], "cannot import 'no_such_module'"),
        (["worker", "bbapps:nothing"], "has no attribute 'nothing'"),
        (["worker", "bbapps:record"], "not a backbeat App"),
        (["jobs", "show", "no-such-id"], "no job 'no-such-id'"),
    ],
)
def test_bad_input_is_one_clear_line(cluster: Cluster, args: list[str], fragment: str) -> None:
    assert_one_line_error(cluster.backbeat(*args), fragment)


def test_jobs_list_show_retry_cancel(cluster: Cluster) -> None:
    dead = bbapps.fail_task.enqueue()
    waiting = bbapps.record_task.enqueue(1, delay=3600)
    eventually(lambda: run_until_idle(cluster.app) >= 0 and cluster.job(dead.id).state is JobState.DEAD)

    listed = json.loads(cluster.backbeat("jobs", "list", "--json", check=True).stdout)
    assert [j["id"] for j in listed] == [waiting.id, dead.id]
    row = listed[1]
    assert row["state"] == "dead" and row["task"] == "it.fail" and row["attempts"] == 3
    assert row["error"].startswith("RuntimeError: boom")
    for key in ("run_at", "created_at", "finished_at"):
        assert re.fullmatch(ISO_Z, row[key]), row[key]
    only_dead = json.loads(cluster.backbeat("jobs", "list", "--state", "dead", "--json", check=True).stdout)
    assert [j["id"] for j in only_dead] == [dead.id]
    page2 = json.loads(cluster.backbeat("jobs", "list", "--before", waiting.id, "--json", check=True).stdout)
    assert [j["id"] for j in page2] == [dead.id]

    shown = json.loads(cluster.backbeat("jobs", "show", dead.id, "--json", check=True).stdout)
    assert "raise RuntimeError" in shown["traceback"] and shown["result"] is None
    human = cluster.backbeat("jobs", "show", dead.id, check=True).stdout
    assert "RuntimeError: boom" in human

    retried = json.loads(cluster.backbeat("jobs", "retry", dead.id, "--json", check=True).stdout)
    assert retried == [{"id": dead.id, "state": "queued"}]
    cancelled = json.loads(cluster.backbeat("jobs", "cancel", waiting.id, "--json", check=True).stdout)
    assert cancelled == [{"id": waiting.id, "state": "cancelled"}]
    assert_one_line_error(cluster.backbeat("jobs", "retry", waiting.id, dead.id), "only dead or cancelled")


def test_status_json_shape(cluster: Cluster) -> None:
    bbapps.record_task.enqueue(1)
    bbapps.low_task.enqueue(delay=60)
    data = json.loads(cluster.backbeat("status", "--json", check=True).stdout)
    assert set(data) == {
        "now",
        "queues",
        "tasks",
        "missing_tasks",
        "registered_tasks",
        "workers",
        "throughput",
        "autopilot",
    }
    assert data["autopilot"] is None  # no autopilot has run against this store
    queues = {q["name"]: q["counts"] for q in data["queues"]}
    assert queues["default"]["queued"] == 1 and queues["low"]["scheduled"] == 1
    assert set(queues["default"]) == {s.value for s in JobState}
    assert data["missing_tasks"] == ["it.low", "it.record"]
    assert data["throughput"]["window_seconds"] == 60
    assert cluster.backbeat("--version", check=True).stdout.startswith("backbeat, version")


@pytest.mark.parametrize("cluster", ["sqlite", "postgres"], indirect=True)
def test_queues_pause_resume_purge_and_migrate(cluster: Cluster) -> None:
    low = bbapps.low_task.enqueue()
    bbapps.record_task.enqueue(1, delay=60)
    paused = json.loads(cluster.backbeat("queues", "pause", "low", "--json", check=True).stdout)
    assert paused == [{"queue": "low", "paused": True}]
    listed = {q["name"]: q for q in json.loads(cluster.backbeat("queues", "list", "--json", check=True).stdout)}
    assert listed["low"]["paused"] and re.fullmatch(ISO_Z, listed["low"]["paused_at"])
    assert listed["default"]["counts"]["scheduled"] == 1 and not listed["default"]["paused"]
    assert run_until_idle(cluster.app) == 0  # the paused queue is not claimed from
    cluster.backbeat("queues", "resume", "low", check=True)
    assert run_until_idle(cluster.app) == 1 and low.status() is JobState.SUCCEEDED
    purged = json.loads(cluster.backbeat("queues", "purge", "default", "--yes", "--json", check=True).stdout)
    assert purged == [{"queue": "default", "purged": 1}]
    assert "paused" in cluster.backbeat("queues", "pause", "low", check=True).stdout
    human = cluster.backbeat("queues", "list", check=True).stdout
    assert "low" in human and "paused" in human
    scheme = cluster.url.split(":", 1)[0]
    newest = {"sqlite": migrations()[-1][0], "postgresql": POSTGRES_VERSION}[scheme]
    assert json.loads(cluster.backbeat("migrate", "--json", check=True).stdout) == {"schema_version": newest}
