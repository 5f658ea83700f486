"""A TCP proxy between one worker and the store that stalls (a black hole) and drops
(resets) its connections, while another worker reaches the store directly: no job runs on
two live workers at once. A worker that cannot renew a lease stops the job before the
lease expires (by its own clock), so the worker that rescues and reruns it never overlaps."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from backbeat import JobState
from tests.faults import fapps
from tests.faults.conftest import FaultCluster
from tests.faults.ledger import Execution
from tests.faults.proxy import Proxy
from tests.faults.servers import PrivateServer
from tests.faults.stores import SERVERS
from tests.integration.conftest import eventually

pytestmark = [pytest.mark.faults, pytest.mark.timeout(300)]
JOBS = 60
LEASE = 3.0
"""Heartbeats every second; a cut-off worker stops its attempts 2.5 s after their last
renewal, half a second before a rescuer may take them (slack for a loaded machine)."""


@pytest.fixture
def proxy(server: PrivateServer) -> Iterator[Proxy]:
    p = Proxy(server.port)
    try:
        yield p
    finally:
        p.close()


def overlapping(executions: list[Execution], now: float) -> list[tuple[Execution, Execution]]:
    """Pairs of executions of one job, by different processes, that ran at the same time."""
    return [
        (a, b) for i, a in enumerate(executions) for b in executions[i + 1 :] if a.pid != b.pid and a.overlaps(b, now)
    ]


@pytest.mark.parametrize("server", SERVERS, indirect=True)
def test_no_job_runs_on_two_live_workers_past_its_lease(
    server: PrivateServer, proxy: Proxy, tmp_path: pytest.TempPathFactory
) -> None:
    cluster = FaultCluster(server.url, tmp_path)  # type: ignore[arg-type]
    try:
        half = JOBS // 2
        cluster.enqueue_many(fapps.work, [{"seconds": 3.0}] * half)
        cluster.enqueue_many(fapps.work_sync, [{"seconds": 3.0}] * half)
        lease = ("--lease", str(LEASE))
        cut_off = cluster.spawn("worker", "--concurrency", "6", *lease, url=server.url_via(proxy.port))
        eventually(lambda: len(cluster.ledger.executions()) >= 6, what="the proxied worker to start six jobs")
        cluster.spawn("worker", "--concurrency", "6", *lease)
        for fault in ("stall", "drop", "stall", "stall"):
            getattr(proxy, fault)()
            time.sleep(LEASE + 2)  # the fault outlasts a lease: the fault's length, not a wait for a state
            proxy.resume()
            time.sleep(1.0)
        eventually(lambda: cluster.counts() == {JobState.SUCCEEDED: JOBS}, timeout=120, what="every job to succeed")
        now = time.time()
        clashes = [pair for execs in cluster.ledger.by_job().values() for pair in overlapping(execs, now)]
        assert clashes == [], clashes[:3]
        proxied = [e for e in cluster.ledger.executions() if e.pid == cut_off.pid]
        assert any(e.finished for e in proxied)  # the proxied worker did run jobs...
        assert any(not e.finished for e in proxied)  # ...and stopped some when its leases ran out
        assert len(cluster.ledger.finished()) == JOBS
    finally:
        cluster.stop_all()
