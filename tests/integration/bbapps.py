"""The app the integration tests run in real ``backbeat worker`` processes.

Every task appends a line to the ledger file (``$BB_LEDGER``): ``job_id attempt pid event``.
Appends with O_APPEND are atomic, and the ledger does not depend on the store under test,
so it decides what ran and how often.
"""

import asyncio
import os
import time

from backbeat import App, current_job
from backbeat.config import AutopilotSettings, WorkerSettings
from backbeat.retry import RetryPolicy

app = App(
    retry=RetryPolicy(base=0.05, jitter=0),
    worker=WorkerSettings(timeout_grace=0.5, maintenance_interval=0.25),
    autopilot=AutopilotSettings(period=0.5, window=5.0, down_after=2),
)


def record(event: str) -> None:
    job = current_job()
    fd = os.open(os.environ["BB_LEDGER"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{job.id} {job.attempt} {os.getpid()} {event} {time.time()}\n".encode())
    finally:
        os.close(fd)


@app.task(name="it.record")
def record_task(n: int) -> int:
    record("run")
    return n


@app.task(name="it.sleep")
def sleep_task(seconds: float) -> str:
    record("start")
    time.sleep(seconds)
    record("end")
    return "slept"


@app.task(name="it.async_sleep")
async def async_sleep_task(seconds: float) -> str:
    record("start")
    await asyncio.sleep(seconds)
    record("end")
    return "slept"


@app.task(name="it.fail", retries=2)
def fail_task() -> None:
    record("run")
    raise RuntimeError("boom")


@app.task(name="it.stuck", timeout=0.5, retries=0)
def stuck_task() -> None:
    record("start")
    time.sleep(60)  # a C call: the injected timeout cannot interrupt it


@app.task(name="it.low", queue="low")
def low_task() -> None:
    record("run")


@app.task(name="it.tick")
def tick_task(seconds: float = 0.0) -> None:
    """A recurring job: records its start and end with its occurrence (fire time)."""
    record(f"tick-start {current_job().fire_at}")
    time.sleep(seconds)
    record(f"tick-end {current_job().fire_at}")


if os.environ.get("BB_DECLARE"):

    @app.periodic(every="1h", key="it.declared", first_in="1h")
    def declared_task() -> None:
        record("declared")


app.rate_limit("it", limit=10, per=1.0)


@app.task(name="it.limited", rate_limit="it:{token}")
def limited_task(token: str) -> None:
    record(f"limited {token}")


@app.task(name="it.upstream", retries=0)
def upstream_task() -> None:
    """Fails while the file ``$BB_LEDGER.down`` exists (the upstream is down)."""
    if os.path.exists(os.environ["BB_LEDGER"] + ".down"):
        raise RuntimeError("upstream down")
    record("upstream ok")


@app.on_sla_breach
def breach_hook(event: object) -> None:
    fd = os.open(os.environ["BB_LEDGER"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"- - {os.getpid()} hook-{event.kind} {event.key} {time.time()}\n".encode())  # type: ignore[attr-defined]
    finally:
        os.close(fd)
