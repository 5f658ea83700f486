"""Real worker processes against a store (a SQLite file, a fresh prefix on the test Redis
server, or a fresh database on the test PostgreSQL server), and a ledger of what ran."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from backbeat import Client, JobState
from backbeat.jobs import build_job
from backbeat.store.base import Store
from backbeat.tasks import Task
from backbeat.types import JobFilter, JobRecord
from tests import postgres_server, redis_server
from tests.integration import bbapps

HERE = Path(__file__).parent
ROOT = HERE.parent.parent


def eventually(check: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds.

    The timeout only bounds a broken run: passing never depends on timing."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {value!r})")
        time.sleep(0.02)


class Ledger:
    def __init__(self, path: Path) -> None:
        self.path = path

    def lines(self) -> list[list[str]]:
        if not self.path.exists():
            return []
        return [line.split() for line in self.path.read_text().splitlines() if line]

    def events(self, event: str) -> list[list[str]]:
        return [line for line in self.lines() if line[3] == event]

    def ticks(self) -> list[tuple[str, float, float, float]]:
        """(job id, fire_at, start, end) of each recurring run that ended, by start."""
        starts: dict[str, tuple[float, float]] = {}
        out = []
        for job_id, _attempt, _pid, event, *rest in self.lines():
            if event == "tick-start":
                starts[job_id] = (float(rest[0]), float(rest[1]))
            elif event == "tick-end" and job_id in starts:
                fire_at, began = starts[job_id]
                out.append((job_id, fire_at, began, float(rest[1])))
        return sorted(out, key=lambda t: t[2])

    def runs_per_job(self, event: str = "run") -> Counter[str]:
        return Counter(line[0] for line in self.events(event))


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL a process and, if it was spawned with ``start_new_session``, everything in its
    group (the worker processes of ``backbeat run`` too, which would outlive it otherwise);
    stopped ones included."""
    with contextlib.suppress(ProcessLookupError):  # no such group: not a leader, or all gone
        os.killpg(proc.pid, signal.SIGCONT)
        os.killpg(proc.pid, signal.SIGKILL)
    if proc.poll() is None:
        proc.send_signal(signal.SIGCONT)
        proc.kill()
    proc.wait(timeout=10)


async def every_job(store: Store) -> list[JobRecord]:
    """Every job in ``store``, a page of 1,000 at a time, newest first."""
    out: list[JobRecord] = []
    before = None
    while page := await store.job_list(JobFilter(limit=1000, before=before)):
        out += page
        before = page[-1].id
    return out


class StoreReads:
    """What a test reads and writes through its ``client`` (the store the processes share)."""

    client: Client
    enqueue_batch = 1000

    def jobs(self) -> list[JobRecord]:
        async def read() -> list[JobRecord]:
            return await every_job(await self.client.astore())

        return self.client.sync(read)

    def counts(self) -> dict[JobState, int]:
        """Jobs per state, from the store's counts (cheap however many jobs there are)."""

        async def read() -> dict[JobState, int]:
            out: dict[JobState, int] = {}
            for c in await (await self.client.astore()).job_counts():
                out[c.state] = out.get(c.state, 0) + c.count
            return out

        return self.client.sync(read)

    def enqueue_many(self, task: Task[..., Any], kwargs: Sequence[dict[str, Any]]) -> list[str]:
        """Enqueue one job per kwargs, ``enqueue_batch`` to a store call; return their ids."""

        async def write() -> list[str]:
            store = await self.client.astore()
            ids: list[str] = []
            for start in range(0, len(kwargs), self.enqueue_batch):
                now = self.client.clock.now()
                jobs = [
                    build_job(task.info, (), kw, settings=self.client.settings, now=now)
                    for kw in kwargs[start : start + self.enqueue_batch]
                ]
                ids += [e.job.id for e in await store.job_enqueue(jobs, now=now)]
            return ids

        return self.client.sync(write)


class Cluster(StoreReads):
    """Worker processes for one test, all on one store."""

    def __init__(self, url: str, ledger: Ledger, logs: Path) -> None:
        self.url = url
        self.ledger = ledger
        self.logs = logs
        self.procs: list[subprocess.Popen[bytes]] = []
        self.client = Client(url)
        self.app = bbapps.app
        self.app.configure(url=url)

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(HERE), str(ROOT / "src"), env.get("PYTHONPATH", "")])
        env["BACKBEAT_URL"] = self.url
        env["BB_LEDGER"] = str(self.ledger.path)
        return env

    def backbeat(self, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "backbeat", *args],
            env=self.env(),
            cwd=HERE,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"backbeat {' '.join(args)} failed: {result.stderr}")
        return result

    def spawn(self, *args: str, command: str = "worker", env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = open(self.logs / f"{command}-{len(self.procs)}.log", "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            [sys.executable, "-m", "backbeat", command, "bbapps:app", "--log-level", "debug", *args],
            env={**self.env(), **(env or {})},
            cwd=HERE,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop_all ends its children too
        )
        log.close()
        self.procs.append(proc)
        return proc

    def log_of(self, index: int, command: str = "worker") -> str:
        return (self.logs / f"{command}-{index}.log").read_text()

    def job(self, job_id: str) -> JobRecord:
        return self.client.job(job_id).info()

    def stop_all(self) -> None:
        for proc in self.procs:
            kill_group(proc)
        self.client.close()
        self.app.close()


SHARED_STORES = ("sqlite", "redis", "postgres")
STORES = pytest.mark.parametrize("cluster", SHARED_STORES, indirect=True)
"""Run a test against every store that several processes share (default: SQLite only)."""


@contextmanager
def shared_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh store URL for processes to share: the fixture's parameter names the store
    (``SHARED_STORES``; SQLite when there is none): a file in ``tmp_path``, a key prefix
    of its own on the test Redis, or a database of its own on the test PostgreSQL (both
    deleted afterwards)."""
    store = getattr(request, "param", "sqlite")
    if store in ("redis", "postgres"):
        server = redis_server if store == "redis" else postgres_server
        with server.fresh_url() as url:
            yield url
    else:
        yield f"sqlite:///{tmp_path}/store.db"


@pytest.fixture
def cluster(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cluster]:
    logs = tmp_path / "logs"
    logs.mkdir()
    with shared_store(request, tmp_path) as url:
        c = Cluster(url, Ledger(tmp_path / "ledger.txt"), logs)
        monkeypatch.setenv("BB_LEDGER", str(c.ledger.path))  # for jobs run in this process
        try:
            yield c
        finally:
            c.stop_all()
