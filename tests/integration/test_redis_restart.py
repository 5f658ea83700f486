"""A private Redis with AOF (``appendfsync everysec``) killed with SIGKILL in the middle of
a drain and started again: workers reconnect (the function library of the scripts comes
back with the AOF, or is loaded again), and every job enqueued before the crash runs and succeeds."""

from __future__ import annotations

import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from backbeat import JobState
from backbeat.errors import StoreError
from tests.integration import bbapps
from tests.integration.conftest import Cluster, Ledger, eventually
from tests.ports import free_port

pytestmark = pytest.mark.slow


class PrivateRedis:
    """redis-server on a free loopback port, data in ``directory`` (AOF, no RDB)."""

    def __init__(self, directory: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed: run scripts/services.sh")
        self.port = free_port()
        self.argv = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(directory)]
        self.argv += [
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--save",
            "",
            "--maxmemory-policy",
            "noeviction",
        ]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        eventually(self.answers, what=f"redis-server on port {self.port}")

    def answers(self) -> bool:
        try:
            with redis.Redis(port=self.port, socket_timeout=1) as client:
                return bool(client.ping())
        except redis.RedisError:
            return False

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    (tmp_path / "redis").mkdir()
    server = PrivateRedis(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_a_redis_crash_mid_drain_loses_no_job(
    private_redis: PrivateRedis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    cluster = Cluster(f"redis://127.0.0.1:{private_redis.port}/0", Ledger(tmp_path / "ledger.txt"), logs)
    monkeypatch.setenv("BB_LEDGER", str(cluster.ledger.path))
    try:
        n = 2000
        ids = cluster.enqueue_many(bbapps.sleep_task, [{"seconds": 0.002} for _ in range(n)])
        for _ in range(2):
            cluster.spawn("--concurrency", "4", "--lease", "2")
        eventually(lambda: len(cluster.ledger.events("end")) >= n // 4, what="a quarter of the jobs to run")
        private_redis.kill()
        private_redis.start()  # replays the AOF

        def all_succeeded() -> bool:
            try:
                return cluster.counts() == {JobState.SUCCEEDED: n}
            except StoreError:  # this test's own client reconnects too
                return False

        eventually(all_succeeded, timeout=120, what=f"{n:,} jobs to succeed after the restart")
        ran = cluster.ledger.runs_per_job("end")
        assert set(ran) == set(ids)  # each ran to its end at least once; a rerun is allowed
        assert "can lose jobs" not in cluster.log_of(0)  # AOF + noeviction: no durability warning
    finally:
        cluster.stop_all()
