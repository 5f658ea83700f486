"""The app the fault tests run in real ``backbeat worker`` / ``backbeat scheduler`` processes.

Every execution writes to the ledger (``$BB_LEDGER``) when it starts and when it stops,
however it stops (returned, raised, cancelled, stopped in its thread): one line each, written
with O_APPEND and fsynced before the task goes on, so the ledger survives the SIGKILL of its
writer and does not depend on the store under test. It decides what ran, how often, where
and when. ``$BB_SKEW`` shifts this process's clock by that many seconds (clock skew between
machines, simulated per process).
"""

import asyncio
import os
import time

from backbeat import App, current_job
from backbeat.clock import SystemClock
from backbeat.config import SchedulerSettings, WorkerSettings
from backbeat.retry import RetryPolicy


class SkewedClock(SystemClock):
    """The wall clock of a machine whose clock is ``skew`` seconds off."""

    def __init__(self, skew: float) -> None:
        super().__init__()
        self.skew = skew

    def now(self) -> float:
        return super().now() + self.skew


app = App(
    clock=SkewedClock(float(os.environ.get("BB_SKEW", "0"))),
    retry=RetryPolicy(base=0.05, jitter=0),
    worker=WorkerSettings(timeout_grace=0.5, maintenance_interval=0.25, idle_poll=0.5),
    scheduler=SchedulerSettings(poll=0.25),
)


def write(line: str) -> None:
    """Append one line to the ledger, on disk before this returns."""
    fd = os.open(os.environ["BB_LEDGER"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def record(event: str, extra: str = "-") -> None:
    """``event job attempt pid wall-time extra``: the wall time is the machine's real clock
    (every process of a test shares it), never the skewed one."""
    job = current_job()
    write(f"{event} {job.id} {job.attempt} {os.getpid()} {time.time():.6f} {extra}")


@app.task(name="f.work", retries=20)
async def work(seconds: float) -> None:
    """Runs ``seconds``; a stop (lease lost, cancel, shutdown) ends it early, recorded as such."""
    record("start")
    ended = "stop"
    try:
        await asyncio.sleep(seconds)
        ended = "end"
    finally:
        record(ended)


@app.task(name="f.work_sync", retries=20)
def work_sync(seconds: float) -> None:
    """The sync twin of ``work``: Python-level sleeps, so a stop raised in its thread lands."""
    record("start")
    ended = "stop"
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            time.sleep(0.005)
        ended = "end"
    finally:
        record(ended)


@app.task(name="f.tick", retries=20)
def tick() -> None:
    """A scheduled run: records the occurrence it runs for and the skewed clock's time."""
    job = current_job()
    record("tick", f"{job.fire_at}:{app.clock.now():.6f}")
