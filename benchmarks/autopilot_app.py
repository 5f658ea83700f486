"""The app ``autopilot_bench.py`` runs with ``backbeat run --workers auto``: one async task
that takes ``BB_JOB_TIME`` seconds (an I/O wait, so the machine's CPU load barely matters)."""

import asyncio
import os

from backbeat import App

app = App(name="autopilot-bench")


@app.task(name="bench.poll")
async def poll(account: int) -> None:
    await asyncio.sleep(float(os.environ.get("BB_JOB_TIME", "0.5")))
