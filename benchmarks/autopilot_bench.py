"""The autopilot in real time next to ``simulate``'s prediction of the same workload.

    .venv/bin/python benchmarks/autopilot_bench.py --schedules 40 --sla 3 --job-time 0.5 --duration 600 --warmup 120

Creates ``--schedules`` keyed every-schedules at ``plan``'s interval on a fresh SQLite
store, runs ``backbeat run benchmarks/autopilot_app:app --workers auto --concurrency 1``
for ``--duration`` seconds of real time, and samples every second the share of
schedules within their SLA (as ``simulate`` does); then simulates the same workload.
Prints both compliance figures (after the warm-up) and the worker counts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from backbeat import App
from backbeat.autopilot import PUBLISHED, plan
from backbeat.simulate import Group, Workers, simulate
from backbeat.types import ScheduleFilter

HERE = Path(__file__).parent


async def _compliance(app: App) -> float:
    store = await app.client.astore()
    records = await store.schedule_list(ScheduleFilter(limit=100_000))
    now = app.clock.now()
    within = [now - r.staleness_base <= (r.spec.sla or 0) for r in records]
    return sum(within) / len(within)


async def _desired(app: App) -> int | None:
    published = await (await app.client.astore()).state_get(PUBLISHED)
    return None if published is None else int(json.loads(published.value)["desired_workers"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--schedules", type=int, default=40)
    parser.add_argument("--sla", type=float, default=3.0)
    parser.add_argument("--job-time", type=float, default=0.5)
    parser.add_argument("--duration", type=float, default=600.0)
    parser.add_argument("--warmup", type=float, default=120.0)
    parser.add_argument("--max-workers", type=int, default=40)
    args = parser.parse_args()
    p = plan(schedules=args.schedules, sla=args.sla, job_time=args.job_time, concurrency=1)
    url = f"sqlite:///{tempfile.mkdtemp(prefix='autopilot-bench-')}/store.db"
    app = App(url)
    for i in range(args.schedules):
        app.every(
            p.every,
            "bench.poll",
            key=f"account:{i}",
            kwargs={"account": i},
            sla=args.sla,
            first_in=i * p.every / args.schedules,
        )
    env = {
        **os.environ,
        "PYTHONPATH": f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "BB_JOB_TIME": str(args.job_time),
    }
    command = [
        sys.executable,
        "-m",
        "backbeat",
        "run",
        "autopilot_app:app",
        "--url",
        url,
        "--workers",
        "auto",
        "--concurrency",
        "1",
        "--max-workers",
        str(args.max_workers),
        "--log-level",
        "warning",
    ]
    run = subprocess.Popen(command, env=env, cwd=HERE)
    samples: list[tuple[float, float, int | None]] = []
    start = time.monotonic()
    try:
        while (elapsed := time.monotonic() - start) < args.duration:
            samples.append((elapsed, app.client.sync(_compliance, app), app.client.sync(_desired, app)))
            time.sleep(max(0.0, 1.0 - (time.monotonic() - start - elapsed)))
    finally:
        run.send_signal(signal.SIGTERM)
        run.wait(timeout=60)
    real = [c for t, c, _ in samples if t >= args.warmup]
    workers = [w for t, _, w in samples if t >= args.warmup and w is not None]
    print(
        f"real: compliance {sum(real) / len(real):.4f}, workers mean {sum(workers) / max(1, len(workers)):.2f}",
        flush=True,
    )
    group = Group(count=args.schedules, every=p.every, sla=args.sla, job_time=args.job_time)
    sim = asyncio.run(
        simulate(
            [group],
            workers=Workers(concurrency=1, maximum=args.max_workers),
            duration=args.duration,
            sample_every=1.0,
            warmup=args.warmup,
        )
    )
    predicted = [s.compliance or 0.0 for s in sim.after(args.warmup)]
    result = {
        "workload": vars(args) | {"every": p.every, "planned_workers": p.workers},
        "real": {
            "compliance": sum(real) / len(real),
            "workers_mean": sum(workers) / max(1, len(workers)),
            "workers_max": max(workers, default=0),
        },
        "simulated": {
            "compliance": sum(predicted) / len(predicted),
            "workers_mean": sum(s.workers for s in sim.after(args.warmup)) / len(predicted),
        },
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
