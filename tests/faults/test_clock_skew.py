"""Clock skew of ±30 s between worker and scheduler processes (``$BB_SKEW`` shifts a
process's clock; a SQLite store has no server clock, and its processes share a machine's):
nothing fires twice or early, no delayed job starts early, no lease is taken over early.

Judged by the machine's real clock, which the store server shares here: a job's start is
never before its occurrence or due time, each occurrence has one job and each job ran once."""

from __future__ import annotations

import re
import time
from collections import Counter

import pytest

from backbeat import JobState
from tests.faults import fapps
from tests.faults.conftest import FaultCluster
from tests.faults.stores import SERVERS
from tests.faults.test_proxy import overlapping
from tests.integration.conftest import eventually

pytestmark = [pytest.mark.faults, pytest.mark.timeout(300)]
SKEWS = ("30", "-30")
PRECISION = 0.01
"""Seconds a corrected clock may still be off: half a round trip to the server (on
loopback well under a millisecond; allowed ten)."""


def schedules(url: str) -> None:
    fapps.app.configure(url=url)
    try:
        fapps.app.cron("*/2 * * * * *", fapps.tick, key="cron")  # every two seconds
        fapps.app.every(3, fapps.tick, key="rate", mode="rate")
    finally:
        fapps.app.close()


@pytest.mark.parametrize("store_url", SERVERS, indirect=True)
def test_skewed_clocks_fire_nothing_twice_or_early(cluster: FaultCluster) -> None:
    schedules(cluster.url)
    for skew in SKEWS:
        cluster.spawn("scheduler", BB_SKEW=skew)
        cluster.spawn("worker", "--lease", "4", "--concurrency", "8", BB_SKEW=skew)
    delayed = [cluster.client.enqueue("f.work", kwargs={"seconds": 0.01}, delay=1 + n / 4) for n in range(20)]
    long = cluster.enqueue_many(fapps.work, [{"seconds": 6.0}] * 6)  # outlive their 4 s leases
    eventually(lambda: len(cluster.ledger.ticks()) >= 12, timeout=60, what="a dozen scheduled runs")
    ids = {j.id for j in delayed} | set(long)
    eventually(lambda: ids <= cluster.ledger.finished(), timeout=60, what="the delayed and long jobs to run")
    now = time.time()

    jobs = {j.id: j for j in cluster.jobs()}
    occurrences = Counter((j.schedule_key, j.fire_at) for j in jobs.values() if j.schedule_key)
    assert max(occurrences.values()) == 1
    assert max(Counter(job for job, _, _ in cluster.ledger.ticks()).values()) == 1
    runs = cluster.ledger.by_job()
    for job_id in ids:
        assert len(runs[job_id]) == 1, runs[job_id]  # no lease was taken over early
        assert jobs[job_id].state is JobState.SUCCEEDED
        assert runs[job_id][0].start >= jobs[job_id].run_at - PRECISION, job_id  # never early
    assert [pair for execs in runs.values() for pair in overlapping(execs, now)] == []
    assert re.search(r"clock is (29\.9|30\.\d) s ahead of the store server's", cluster.logs_text())


@pytest.mark.parametrize("store_url", SERVERS, indirect=True)
def test_skewed_schedulers_fire_nothing_early(cluster: FaultCluster) -> None:
    """Two schedulers (one 30 s fast, one 30 s slow) race on every occurrence. This found
    the Redis store's due query returning a schedule another scheduler had fired (and whose
    run had ended) between its two reads: it fired the next occurrence one interval early
    (``tests/redis_store``: ``test_a_schedule_that_moved_on_between_the_due_reads_is_not_due``)."""
    schedules(cluster.url)
    for skew in SKEWS:
        cluster.spawn("scheduler", BB_SKEW=skew)
        cluster.spawn("worker", "--lease", "4", BB_SKEW=skew)
    eventually(lambda: len(cluster.ledger.ticks()) >= 16, timeout=60, what="sixteen scheduled runs")
    early = [(job, fire_at, ran) for job, fire_at, ran in cluster.ledger.ticks() if ran < fire_at - PRECISION]
    assert early == [], early[:3]
