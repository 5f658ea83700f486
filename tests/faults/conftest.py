"""Fault tests: real worker and scheduler processes (``fapps``), private servers to crash
(``servers``), and the fsynced ledger that decides lost and duplicate (``ledger``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from backbeat import Client
from tests.faults import fapps
from tests.faults.ledger import Ledger
from tests.faults.servers import SERVERS, PrivateServer
from tests.integration.conftest import StoreReads, kill_group
from tests.redis_server import fresh_url

HERE = Path(__file__).parent
ROOT = HERE.parent.parent


class FaultCluster(StoreReads):
    """Processes of the fault app on one store; they can be killed and replaced."""

    enqueue_batch = 500

    def __init__(self, url: str, tmp: Path) -> None:
        self.url = url
        self.ledger = Ledger(tmp / "ledger.txt")
        self.logs = tmp / "logs"
        self.logs.mkdir(exist_ok=True)
        self.procs: list[subprocess.Popen[bytes]] = []
        self.killed: set[int] = set()
        """Pids this test SIGKILLed."""
        self.client = Client(url)

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(HERE), str(ROOT / "src"), env.get("PYTHONPATH", "")])
        env["BACKBEAT_URL"] = self.url
        env["BB_LEDGER"] = str(self.ledger.path)
        env.update(extra)
        return env

    def spawn(self, command: str, *args: str, url: str | None = None, **env: str) -> subprocess.Popen[bytes]:
        """``backbeat COMMAND fapps:app ARGS`` in its own process group, logging to logs/."""
        log = open(self.logs / f"{command}-{len(self.procs)}.log", "ab")  # noqa: SIM115 - closed with the process
        argv = [sys.executable, "-m", "backbeat", command, "fapps:app", "--log-level", "debug", *args]
        if url is not None:
            argv += ["--url", url]
        proc = subprocess.Popen(
            argv, env=self.env(**env), cwd=HERE, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        self.procs.append(proc)
        return proc

    def sigkill(self, proc: subprocess.Popen[bytes]) -> None:
        self.killed.add(proc.pid)
        kill_group(proc)

    def logs_text(self) -> str:
        return "\n".join(f"== {p.name}\n{p.read_text()}" for p in sorted(self.logs.iterdir()))

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
            kill_group(proc)
        self.client.close()


@pytest.fixture
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[PrivateServer]:
    """A private server of the store named by the parameter (``stores.SERVERS``)."""
    directory = tmp_path / "server"
    directory.mkdir()
    instance = SERVERS[request.param](directory)
    instance.start()
    try:
        yield instance
    finally:
        instance.close()


@pytest.fixture
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh store for processes to share: a SQLite file, a key prefix on the test Redis,
    or a private PostgreSQL (``STORE_PARAMS``)."""
    name = request.param
    if name == "sqlite":
        yield f"sqlite:///{tmp_path}/store.db"
    elif name == "redis":
        with fresh_url() as url:
            yield url
    else:
        directory = tmp_path / "server"
        directory.mkdir()
        instance = SERVERS[name](directory)
        instance.start()
        try:
            yield instance.url
        finally:
            instance.close()


@pytest.fixture
def cluster(store_url: str, tmp_path: Path) -> Iterator[FaultCluster]:
    c = FaultCluster(store_url, tmp_path)
    try:
        yield c
    finally:
        c.stop_all()


__all__ = ["FaultCluster", "fapps"]
