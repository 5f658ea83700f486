"""The store server restarted (crashed with SIGKILL twice, shut down cleanly once) while a
producer enqueues, workers drain and a scheduler fires: no enqueue that returned is lost,
every job succeeds, and the workers, the scheduler and the producer reconnect by
themselves, without a connection storm while the server is gone."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from backbeat import JobState
from tests.faults import fapps
from tests.faults.conftest import FaultCluster
from tests.faults.servers import PrivateServer, Refuser
from tests.faults.stores import SERVERS
from tests.integration.conftest import eventually

pytestmark = [pytest.mark.faults, pytest.mark.timeout(300)]

PRODUCER = """
import os, sys, time
from backbeat import Client
from backbeat.errors import BackbeatError
client = Client({url!r})
out = os.open({ledger!r}, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
n = 0
while not os.path.exists({stop!r}):
    try:
        job = client.enqueue("f.work", kwargs={{"seconds": 0.01}})
    except BackbeatError as exc:  # the store is down: try again (a new job; the first may exist too)
        time.sleep(0.05)
        continue
    os.write(out, (job.id + "\\n").encode())
    os.fsync(out)  # recorded only after the enqueue returned
    n += 1
    time.sleep(0.01)
client.close()
"""
DOWNTIME = 3.0
"""Seconds the server stays down each time (a refuser counts knocks on its port meanwhile)."""


def start_producer(cluster: FaultCluster, tmp: Path) -> tuple[subprocess.Popen[bytes], Path, Path]:
    ledger, stop = tmp / "enqueued.txt", tmp / "stop-producing"
    code = PRODUCER.format(url=cluster.url, ledger=str(ledger), stop=str(stop))
    with open(cluster.logs / "producer.log", "ab") as log:
        proc = subprocess.Popen([sys.executable, "-c", code], env=cluster.env(), stdout=log, stderr=subprocess.STDOUT)
    return proc, ledger, stop


def enqueued(ledger: Path) -> list[str]:
    return ledger.read_text().split() if ledger.exists() else []


def more_enqueued(ledger: Path, n: int) -> Callable[[], bool]:
    """A check: ``n`` more enqueues returned than now."""
    before = len(enqueued(ledger))
    return lambda: len(enqueued(ledger)) >= before + n


@pytest.mark.parametrize("server", SERVERS, indirect=True)
def test_a_restarted_store_loses_no_acknowledged_enqueue(server: PrivateServer, tmp_path: Path) -> None:
    cluster = FaultCluster(server.url, tmp_path)
    producer = None
    try:
        every_second(cluster.url)
        processes = [cluster.spawn("worker", "--concurrency", "4", "--lease", "2") for _ in range(2)]
        processes.append(cluster.spawn("scheduler"))
        producer, produced, stop = start_producer(cluster, tmp_path)
        knocks: list[int] = []
        restarted_at = 0.0
        for how in ("kill", "stop", "kill"):
            grown = more_enqueued(produced, 100)
            eventually(grown, what="100 more enqueues")
            getattr(server, how)()
            refuser = Refuser(server.port)
            time.sleep(DOWNTIME)  # the outage's length, not a wait for a state
            knocks.append(refuser.close())
            server.start()
            restarted_at = time.time()
        eventually(more_enqueued(produced, 100), what="enqueues to resume")
        stop.touch()
        assert producer.wait(timeout=60) == 0, cluster.logs_text()

        ids = set(enqueued(produced))
        eventually(lambda: ids <= cluster.ledger.finished(), timeout=120, what="every acknowledged enqueue to run")
        eventually(lambda: set(cluster.counts()) == {JobState.SUCCEEDED}, what="every job to succeed")
        # the scheduler came back by itself: its schedule fires again after the last restart
        eventually(lambda: [t for t in cluster.ledger.ticks() if t[1] > restarted_at + 1], what="a fire after it")
        fires = [j.fire_at for j in cluster.jobs() if j.schedule_key == "tick"]
        assert len(fires) == len(set(fires))  # one job per occurrence
        since = server.connections_received()  # since the last restart, recovery included
        print(f"{len(ids)} enqueues, all ran; knocks per outage {knocks}; {len(fires)} fires; {since} connections")
        assert since <= 100  # reconnected once each and stayed: no churn once the server is back
        # 3 processes knock (+ the producer): a client that retried in a tight loop would
        # knock thousands of times in an outage; with backoff it is a few a second each
        assert max(knocks) <= 4 * 10 * DOWNTIME, knocks
    finally:
        if producer is not None and producer.poll() is None:
            producer.kill()
            producer.wait()
        cluster.stop_all()


def every_second(url: str) -> None:
    """A schedule firing ``f.tick`` every second on the store at ``url``."""
    fapps.app.configure(url=url)
    try:
        fapps.app.every(1, fapps.tick, key="tick")
    finally:
        fapps.app.close()
