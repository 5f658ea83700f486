"""The quickstart: run-once jobs on the embedded SQLite store, run by ``backbeat run``.

    .venv/bin/python examples/quickstart.py

(``make demo`` runs ``backbeat demo``, the talk's recurring-jobs example; this one shows
run-once jobs.)

It starts ``backbeat run examples.quickstart:app --workers 2``, enqueues run-once jobs
(some delayed, some failing once and retried, one deduplicated), shows them draining,
then stops the workers with SIGTERM and prints ``backbeat status``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from backbeat import App, JobState, Retry, current_job

URL = os.environ.get("BACKBEAT_URL", "sqlite:///quickstart.db")
app = App(URL)


@app.task(name="welcome.send", queue="mail")
def send_welcome(user_id: int) -> str:
    """A sync task: runs in one of the worker's threads."""
    time.sleep(0.005)  # talk to the mail API
    return f"welcomed user {user_id}"


@app.task(name="feed.refresh", retries=3)
async def refresh_feed(user_id: int) -> int:
    """An async task: runs on the worker's event loop. Every 7th user's first try fails."""
    await asyncio.sleep(0.01)  # call the feed engine
    if user_id % 7 == 0 and current_job().attempt == 1:
        raise Retry(in_=0.5, reason="feed engine busy")
    return user_id * 10


@app.task(name="report.nightly", timeout=30)
def nightly_report() -> str:
    return "report built"


def main() -> None:
    from rich.console import Console
    from rich.live import Live
    from rich.table import Table

    console = Console()
    path = Path(URL.split(":///", 1)[1]) if URL.startswith("sqlite:///") else None
    if path is not None:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    env = dict(
        os.environ, BACKBEAT_URL=URL, PYTHONPATH=os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")])
    )
    console.print(
        f"[bold]backbeat quickstart[/bold] on {URL}: starting `backbeat run examples.quickstart:app --workers 2`"
    )
    run = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "backbeat",
            "run",
            "examples.quickstart:app",
            "--workers",
            "2",
            "--log-level",
            "warning",
        ],
        env=env,
    )
    try:
        jobs = [send_welcome.enqueue(user_id=u) for u in range(1, 201)]
        jobs += [refresh_feed.enqueue(user_id=u) for u in range(1, 101)]
        jobs += [send_welcome.enqueue(user_id=u, delay=2) for u in range(1000, 1020)]
        first = nightly_report.enqueue(dedup_key="nightly:2026-11-28")
        again = nightly_report.enqueue(dedup_key="nightly:2026-11-28")
        console.print(
            f"enqueued {len(jobs) + 1} jobs (the second nightly report was deduplicated: {not again.created})"
        )
        jobs.append(first)
        started = time.monotonic()
        with Live(console=console, refresh_per_second=8) as live:
            while True:
                counts: dict[str, int] = {}
                for job in jobs:
                    state = job.status()
                    counts[state] = counts.get(state, 0) + 1
                table = Table(title=f"{time.monotonic() - started:4.1f} s")
                for state in JobState:
                    table.add_column(state.value, justify="right")
                table.add_row(*(str(counts.get(s, 0)) for s in JobState))
                live.update(table)
                if counts.get(JobState.SUCCEEDED, 0) == len(jobs):
                    break
                time.sleep(0.25)
        console.print(
            f"all {len(jobs)} jobs succeeded in {time.monotonic() - started:.1f} s; "
            f"feed.refresh for user 7 returned {jobs[206].result()}"
        )
    finally:
        run.send_signal(signal.SIGTERM)
        run.wait(timeout=60)
        app.close()
    subprocess.run([sys.executable, "-m", "backbeat", "status", "--url", URL], env=env, check=False)


if __name__ == "__main__":
    main()
