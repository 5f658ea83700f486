"""Real ``backbeat worker`` processes on one store (SQLite; ``@STORES`` tests on Redis and
PostgreSQL too): what survives what."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import time
from datetime import UTC, datetime, timedelta

import pytest

from backbeat import JobState
from backbeat.store.base import LEASE_EXPIRED
from backbeat.types import WorkerInfo
from tests.integration import bbapps
from tests.integration.conftest import STORES, Cluster, eventually

pytestmark = pytest.mark.slow


def states(cluster: Cluster) -> dict[JobState, int]:
    out: dict[JobState, int] = {}
    for job in cluster.jobs():
        out[job.state] = out.get(job.state, 0) + 1
    return out


@STORES
def test_jobs_complete_each_exactly_once(cluster: Cluster) -> None:
    jobs = [bbapps.record_task.enqueue(n) for n in range(200)]
    async_job = bbapps.async_sleep_task.enqueue(0.01)
    cluster.spawn("--concurrency", "4")
    assert [j.result(timeout=30) for j in jobs] == list(range(200))
    assert async_job.result(timeout=30) == "slept"
    runs = cluster.ledger.runs_per_job()
    assert set(runs) == {j.id for j in jobs} and set(runs.values()) == {1}


@STORES
def test_retries_then_dead_with_the_error_kept(cluster: Cluster) -> None:
    job = bbapps.fail_task.enqueue()
    cluster.spawn()
    eventually(lambda: cluster.job(job.id).state is JobState.DEAD, what="the job to die")
    info = cluster.job(job.id)
    assert info.attempts == 3 and info.error == "RuntimeError: boom (after 3 attempts)"
    assert "raise RuntimeError" in (info.traceback or "")
    assert cluster.ledger.runs_per_job()[job.id] == 3


@STORES
def test_delay_and_at_are_honoured_by_a_plain_worker(cluster: Cluster) -> None:
    cluster.spawn()
    eventually(lambda: cluster.backbeat("status", "--json", check=True).stdout.count('"alive": true'))
    delayed = bbapps.record_task.enqueue(1, delay=1.0)
    at = datetime.now(UTC) + timedelta(seconds=1.5)
    timed = bbapps.record_task.enqueue(2, at=at)
    assert delayed.status() is JobState.SCHEDULED
    assert delayed.result(timeout=30) == 1 and timed.result(timeout=30) == 2
    for job in (delayed, timed):
        info = cluster.job(job.id)
        assert info.started_at is not None and info.started_at >= info.run_at  # never early
    assert cluster.job(timed.id).run_at == at.timestamp()


@STORES
def test_dedup_key_holds_one_live_job(cluster: Cluster) -> None:
    first = bbapps.record_task.enqueue(1, dedup_key="welcome:1")
    second = bbapps.record_task.enqueue(2, dedup_key="welcome:1")
    assert second.id == first.id and not second.created
    cluster.spawn()
    assert first.result(timeout=30) == 1
    assert len(cluster.ledger.events("run")) == 1
    third = bbapps.record_task.enqueue(3, dedup_key="welcome:1")
    assert third.created and third.result(timeout=30) == 3


@STORES
def test_priority_then_fifo_order(cluster: Cluster) -> None:
    plan = [(0, "a"), (5, "b"), (0, "c"), (9, "d"), (5, "e")]
    jobs = {bbapps.record_task.enqueue(i, priority=p).id: name for i, (p, name) in enumerate(plan)}
    cluster.spawn("--concurrency", "1")
    eventually(lambda: len(cluster.ledger.events("run")) == len(plan), what="all jobs to run")
    order = [jobs[line[0]] for line in cluster.ledger.events("run")]
    assert order == ["d", "b", "e", "a", "c"]


@STORES
def test_sigterm_lets_the_running_job_finish_and_hands_back_the_rest(cluster: Cluster) -> None:
    running = bbapps.sleep_task.enqueue(1.0)
    worker = cluster.spawn("--concurrency", "1")
    eventually(lambda: cluster.ledger.events("start"), what="the job to start")
    waiting = [bbapps.record_task.enqueue(n) for n in range(3)]
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0
    assert running.status() is JobState.SUCCEEDED
    assert len(cluster.ledger.events("end")) == 1
    for job in waiting:
        info = cluster.job(job.id)
        assert info.state in (JobState.QUEUED, JobState.SUCCEEDED)
        assert info.lease_token is None
    assert json.loads(cluster.backbeat("status", "--json", check=True).stdout)["workers"] == []


@STORES
def test_sigkill_mid_job_loses_nothing(cluster: Cluster) -> None:
    job = bbapps.sleep_task.enqueue(1.0)
    victim = cluster.spawn("--lease", "1")
    eventually(lambda: cluster.ledger.events("start"), what="the job to start")
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=10)
    assert job.status() is JobState.RUNNING  # the store still thinks it runs: only the lease can tell
    cluster.spawn("--lease", "1")
    assert job.result(timeout=30) == "slept"
    info = cluster.job(job.id)
    assert info.attempts == 2
    assert len(cluster.ledger.events("start")) == 2 and len(cluster.ledger.events("end")) == 1


@STORES
def test_a_late_worker_with_a_stale_lease_is_refused(cluster: Cluster) -> None:
    job = bbapps.sleep_task.enqueue(1.0)
    paused = cluster.spawn("--lease", "1")
    eventually(lambda: cluster.ledger.events("start"), what="the first attempt to start")
    paused.send_signal(signal.SIGSTOP)
    first_pid = cluster.ledger.events("start")[0][2]
    cluster.spawn("--lease", "1")
    eventually(lambda: cluster.job(job.id).state is JobState.SUCCEEDED, what="the second worker to finish the job")
    winner = cluster.job(job.id)
    assert winner.attempts == 2
    paused.send_signal(signal.SIGCONT)
    eventually(lambda: "lease" in cluster.log_of(0) and "lost" in cluster.log_of(0), what="the late worker to give up")
    final = cluster.job(job.id)
    assert final == winner  # nothing the late worker did changed the job
    assert cluster.ledger.events("start")[0][2] == first_pid


@STORES
def test_a_job_no_worker_knows_waits_and_status_names_its_task(cluster: Cluster) -> None:
    job = cluster.client.enqueue("nobody.declares.this")
    cluster.spawn()
    eventually(lambda: json.loads(cluster.backbeat("status", "--json", check=True).stdout)["workers"])
    status = json.loads(cluster.backbeat("status", "--json", check=True).stdout)
    assert status["missing_tasks"] == ["nobody.declares.this"]
    assert job.status() is JobState.QUEUED
    human = cluster.backbeat("status", check=True).stdout
    assert "nobody.declares.this" in human and "no live worker knows" in human


@pytest.mark.parametrize(
    ("cluster", "n"), [("sqlite", 2000), ("redis", 20_000), ("postgres", 20_000)], indirect=["cluster"]
)
def test_four_processes_share_one_store(cluster: Cluster, n: int) -> None:
    for _ in range(4):
        cluster.spawn("--concurrency", "4")
    # all four are up before the work arrives: a worker that started first could otherwise
    # finish it alone, and "shared" would depend on start-up times
    eventually(
        lambda: len(json.loads(cluster.backbeat("status", "--json", check=True).stdout)["workers"]) == 4,
        what="four workers registered",
    )
    ids = cluster.enqueue_many(bbapps.record_task, [{"n": i} for i in range(n)])
    eventually(lambda: cluster.counts() == {JobState.SUCCEEDED: n}, timeout=240, what=f"{n:,} jobs to succeed")
    runs = cluster.ledger.runs_per_job()
    assert len(runs) == n and max(runs.values()) == 1
    assert len({line[2] for line in cluster.ledger.events("run")}) > 1  # the work really was shared
    assert set(ids) == set(runs)


@STORES
def test_a_stuck_sync_task_recycles_its_worker(cluster: Cluster) -> None:
    stuck = bbapps.stuck_task.enqueue()
    worker = cluster.spawn()
    eventually(lambda: cluster.job(stuck.id).state is JobState.DEAD, what="the stuck attempt to be failed")
    assert cluster.job(stuck.id).error == "TimeoutError: task exceeded its timeout of 0.5 s"
    eventually(lambda: "re-executing this worker process" in cluster.log_of(0), what="the recycle")
    after = bbapps.record_task.enqueue(7)
    assert after.result(timeout=30) == 7
    assert worker.poll() is None  # same process, re-executed in place
    assert {line[2] for line in cluster.ledger.events("run")} == {str(worker.pid)}


@STORES
def test_run_keeps_worker_processes_alive(cluster: Cluster) -> None:
    run = cluster.spawn("--workers", "2", "--lease", "1", command="run")

    def live_pids() -> set[int]:
        return {w["pid"] for w in json.loads(cluster.backbeat("status", "--json").stdout or "{}").get("workers", [])}

    def two_pids() -> set[int] | None:
        pids = live_pids()
        return pids if len(pids) == 2 else None

    victim = sorted(eventually(two_pids, what="two workers"))[0]
    os.kill(victim, signal.SIGKILL)
    eventually(lambda: len(live_pids() - {victim}) == 2, timeout=60, what="a replacement worker")
    job = bbapps.record_task.enqueue(5)
    assert job.result(timeout=30) == 5
    run.send_signal(signal.SIGTERM)
    assert run.wait(timeout=30) == 0


def test_rescue_marks_an_exhausted_job_dead(cluster: Cluster) -> None:
    job = cluster.client.enqueue("it.sleep", kwargs={"seconds": 1.0})
    with sqlite3.connect(cluster.url.split(":///", 1)[1]) as conn:  # a job with a single attempt
        conn.execute("UPDATE backbeat_jobs SET max_attempts = 1 WHERE id = ?", (job.id,))
    victim = cluster.spawn("--lease", "1")
    eventually(lambda: cluster.ledger.events("start"), what="the job to start")
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=10)
    cluster.spawn("--lease", "1")
    eventually(lambda: cluster.job(job.id).state is JobState.DEAD, what="the rescue")
    assert cluster.job(job.id).error == LEASE_EXPIRED


@STORES
def test_status_lists_the_workers_of_every_host_and_drops_dead_ones(cluster: Cluster) -> None:
    """Workers on other machines are rows in the shared store: one on worker-host-b that
    keeps heartbeating (as its own process would), and one on worker-host-c whose
    heartbeats stopped an hour ago, which the local worker's maintenance prunes."""

    def remote(worker_id: str, host: str, beat: float) -> WorkerInfo:
        return WorkerInfo(
            id=worker_id,
            host=host,
            pid=4242,
            queues=("default",),
            concurrency=8,
            tasks=(),
            started_at=beat,
            heartbeat_at=beat,
        )

    async def register_dead() -> None:
        await (await cluster.client.astore()).worker_register(remote("gone-1", "worker-host-c", time.time() - 3600))

    async def far_worker_heartbeats() -> None:
        store = await cluster.client.astore()
        if not await store.worker_heartbeat("far-1", in_flight=0, now=time.time()):
            await store.worker_register(remote("far-1", "worker-host-b", time.time()))  # as a pruned worker does

    cluster.client.sync(register_dead)
    cluster.spawn("--lease", "1")

    def hosts() -> set[str]:
        cluster.client.sync(far_worker_heartbeats)
        workers = json.loads(cluster.backbeat("status", "--json", check=True).stdout)["workers"]
        return {w["host"] for w in workers}

    eventually(lambda: hosts() == {socket.gethostname(), "worker-host-b"}, what="the dead worker to be pruned")


# -- Redis: hand-off to a parked worker (store/redis/keys.py) ---------------------------

REDIS = pytest.mark.parametrize("cluster", ["redis"], indirect=True)


def _redis_keys(cluster: Cluster, kind: str) -> list[str]:
    import redis

    from tests.redis_server import SERVER

    prefix = cluster.url.split("prefix=", 1)[1].split("&", 1)[0]
    with redis.Redis.from_url(SERVER, decode_responses=True) as client:
        return list(client.scan_iter(match="{" + prefix + "}:" + kind + ":*"))


@REDIS
def test_an_idle_worker_parks_and_is_handed_the_next_job(cluster: Cluster) -> None:
    cluster.spawn()
    eventually(lambda: _redis_keys(cluster, "park"), what="the idle worker to park")
    job = bbapps.record_task.enqueue(7)
    assert job.result(timeout=30) == 7
    assert _redis_keys(cluster, "inbox")  # it came through the worker's inbox, not a claim
    assert cluster.job(job.id).attempts == 1


@REDIS
def test_a_job_handed_to_a_worker_that_died_parked_runs_after_its_lease(cluster: Cluster) -> None:
    """A worker killed while parked (here a parking made through the store, by a worker
    that then never comes back) is handed one job, which runs once its lease expires;
    the attempt it never began does not count."""
    import asyncio
    import dataclasses

    from backbeat.store import open_store
    from backbeat.testing.conformance import claim

    async def park_a_ghost() -> None:
        store = open_store(cluster.url)
        request = claim(worker="ghost", tasks=frozenset({"it.record"}), lease=1.0)
        assert await store.job_claim(dataclasses.replace(request, park=600.0), now=time.time()) == []
        await store.close()

    asyncio.run(park_a_ghost())
    handed = bbapps.record_task.enqueue(1)
    assert cluster.job(handed.id).state is JobState.RUNNING and cluster.job(handed.id).worker_id == "ghost"
    after = bbapps.record_task.enqueue(2)  # the hand-off was single use
    assert cluster.job(after.id).state is JobState.QUEUED
    cluster.spawn("--lease", "1")
    assert after.result(timeout=30) == 2
    assert handed.result(timeout=30) == 1
    assert cluster.job(handed.id).attempts == 1
