"""The app benchmarks/sqlite_bench.py runs: a true no-op, and a task reporting its own lateness."""

import time

from backbeat import App

app = App()


@app.task(name="bench.noop")
def noop() -> None:
    return None


@app.task(name="bench.stamp")
def stamp(reference: float) -> float:
    """Seconds between ``reference`` (enqueue time, or due time) and the start of the job."""
    return time.time() - reference
