"""Workers SIGKILLed every 1-2 s while 2,000 jobs drain: every job ends ``succeeded``, and
only a job whose worker was killed ran more than once."""

from __future__ import annotations

import random
import subprocess
import time

import pytest

from backbeat import JobState
from tests.faults import fapps
from tests.faults.conftest import FaultCluster
from tests.faults.stores import SHARED
from tests.integration.conftest import eventually

pytestmark = [pytest.mark.faults, pytest.mark.timeout(300)]

JOBS = 2000
WORKERS = 3


def spawn(cluster: FaultCluster) -> subprocess.Popen[bytes]:
    # a 3 s lease: a killed worker's jobs come back soon, and a live worker's heartbeats,
    # late on a loaded machine (two cores, SQLite's write lock), do not lose it
    return cluster.spawn("worker", "--concurrency", "8", "--lease", "3")


@pytest.mark.parametrize("store_url", SHARED, indirect=True)
def test_sigkilled_workers_lose_no_job_and_only_their_jobs_rerun(cluster: FaultCluster) -> None:
    rng = random.Random(11)
    ids = cluster.enqueue_many(fapps.work, [{"seconds": 0.2} for _ in range(JOBS)])
    workers = [spawn(cluster) for _ in range(WORKERS)]
    kills = 0

    def drained() -> bool:
        return cluster.counts() == {JobState.SUCCEEDED: JOBS}

    # kill one worker every 1-2 s and start a replacement until the jobs are drained (at
    # 24 slots and 0.2 s a job that takes over 16 s: about ten kills)
    while True:
        time.sleep(rng.uniform(1.0, 2.0))  # the fault's rhythm, not a wait for a state
        if drained():
            break
        victim = workers.pop(rng.randrange(len(workers)))
        cluster.sigkill(victim)
        kills += 1
        workers.append(spawn(cluster))
    eventually(drained, timeout=180, what=f"{JOBS:,} jobs to succeed")
    assert kills >= 5

    runs = cluster.ledger.by_job()
    assert set(runs) == set(ids)
    assert cluster.ledger.finished() == set(ids)  # every job ran to its end at least once
    reruns = {job: execs for job, execs in runs.items() if len(execs) > 1}
    for job, execs in reruns.items():
        # every execution but the last was cut short by a kill (or finished just before
        # its worker died, with its ack unwritten): its process is one this test killed
        assert {e.pid for e in execs[:-1]} <= cluster.killed, (job, execs)
    print(f"{kills} kills, {len(reruns)} jobs ran more than once, all attributed to a kill")


@pytest.mark.parametrize("store_url", SHARED, indirect=True)
def test_jobs_trickling_in_while_workers_are_killed_all_run(cluster: FaultCluster) -> None:
    """Jobs enqueued one at a time reach idle workers as they come (on Redis an idle
    worker is parked and the enqueue leases the job to it directly); workers are
    SIGKILLed meanwhile, some holding a job handed to them that they never received.
    Every job succeeds, and only a killed worker's jobs ran more than once."""
    rng = random.Random(12)
    workers = [spawn(cluster) for _ in range(WORKERS)]
    ids: list[str] = []
    kills = 0
    next_kill = time.monotonic() + rng.uniform(0.5, 1.0)
    for _ in range(400):
        ids += cluster.enqueue_many(fapps.work, [{"seconds": 0.05}])  # one job per store call
        time.sleep(0.01)  # the trickle's rhythm, not a wait for a state
        if time.monotonic() >= next_kill:
            cluster.sigkill(workers.pop(rng.randrange(len(workers))))
            kills += 1
            workers.append(spawn(cluster))
            next_kill = time.monotonic() + rng.uniform(0.5, 1.0)
    eventually(lambda: cluster.counts() == {JobState.SUCCEEDED: len(ids)}, timeout=120, what="every job to succeed")
    assert kills >= 3
    runs = cluster.ledger.by_job()
    assert set(runs) == set(ids) and cluster.ledger.finished() == set(ids)
    for job, execs in runs.items():
        assert {e.pid for e in execs[:-1]} <= cluster.killed, (job, execs)
    print(f"{kills} kills, {sum(len(e) > 1 for e in runs.values())} jobs ran more than once, all attributed to a kill")
