"""Where an idle Redis worker's pickup time goes, stage by stage (run by hand).

One worker process (`backbeat worker`, CLI defaults) waits, parked, on an empty Redis
store; this process enqueues N jobs 10 ms apart, as the yardstick's W3 does. The worker
loads this file as its app, and the app wraps internal steps of the worker with
timestamps (so this probe follows the code: rename a step and it fails loudly). A job
the catcher's thread receives (an idle worker's) runs on that thread:

    enqueue call       task.enqueue() in the producer, from call to return
    enqueue -> caught  the producer's call to the catcher's XREAD returning the handed job
    caught -> thread   the Attempt made, to Executor.run_in_thread on the same thread
    thread -> task     decoding the arguments, to the task's first line

and one the event loop receives (the watch loop's wake-up: a store without the catcher)
crosses to a task thread:

    enqueue -> wake    the producer's call to the worker's XREAD returning the handed job
    wake -> start      the watch loop, to Worker._start_ready
    start -> submit    admission and the Attempt, to TaskThreads.submit
    submit -> thread   a task thread taking it (Executor.run_in_thread)

    python benchmarks/pickup_stages.py [N] [REDIS_URL]   # default 300, redis://127.0.0.1:6379/12

The store's Redis DB is flushed before and after: give it a DB nothing else uses.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import redis

from backbeat import App, current_job
from backbeat.runtime import catcher, executor, threads, worker
from backbeat.store.redis import jobs

URL = os.environ.setdefault("PICKUP_STAGES_URL", sys.argv[2] if len(sys.argv) > 2 else "redis://127.0.0.1:6379/12")
STAMPS = "pickup-stages"
"""The hash (in the store's DB) where the worker writes each job's timestamps, by tag."""

app = App(URL)
_seen: dict[str, dict[str, float]] = {}
_redis = redis.Redis.from_url(URL, decode_responses=True)


def _stamp(job_id: str, stage: str) -> None:
    _seen.setdefault(job_id, {}).setdefault(stage, time.time())


def _wrap_async(owner: Any, name: str, stamp: Any) -> None:
    original = getattr(owner, name)

    async def wrapped(self: Any, *args: Any) -> Any:
        stamp(self, *args, before=True)
        result = await original(self, *args)
        stamp(self, *args, before=False)
        return result

    setattr(owner, name, wrapped)


def _wrap(owner: Any, name: str, stage: str) -> None:
    original = getattr(owner, name)

    def wrapped(self: Any, attempt: Any) -> Any:
        _stamp(attempt.job.id, stage)
        return original(self, attempt)

    setattr(owner, name, wrapped)


def _woken(store: Any, *args: Any, before: bool) -> None:
    if not before:
        for handed in store._handed.values():
            for job in handed:
                _stamp(job.id, "wake")


def _caught(c: Any, jobs: list[Any]) -> bool:
    for job in jobs:
        _stamp(job.id, "caught")
    return bool(_accept(c, jobs))


_accept = catcher.Catcher._accept


def _starting(w: Any, *args: Any, before: bool) -> None:
    if before:
        for job in w.ready:
            _stamp(job.id, "start")


if os.environ.get("PICKUP_STAGES_WORKER"):  # only in the worker process
    _wrap_async(jobs.JobMethods, "wakeup_wait", _woken)
    _wrap_async(worker.Worker, "_start_ready", _starting)
    _wrap(threads.TaskThreads, "submit", "submit")
    _wrap(executor.Executor, "run_in_thread", "thread")
    catcher.Catcher._accept = _caught  # type: ignore[method-assign]


@app.task(name="bench.pickup")
def pickup(tag: str) -> None:
    stages = _seen.get(current_job().id, {}) | {"task": time.time()}
    _redis.hset(STAMPS, tag, json.dumps(stages))


def _quantiles(values: list[float]) -> str:
    values = sorted(values)
    pick = [values[min(len(values) - 1, int(q * len(values)))] * 1000 for q in (0.5, 0.9, 0.99)]
    return "  ".join(f"{name} {v:6.3f}" for name, v in zip(("p50", "p90", "p99"), pick, strict=True))


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    _redis.flushdb()
    path = os.pathsep.join(p for p in (str(Path(__file__).parent), os.environ.get("PYTHONPATH")) if p)
    env = dict(os.environ, PICKUP_STAGES_WORKER="1", PYTHONPATH=path)
    cli = Path(sys.executable).with_name("backbeat")
    proc = subprocess.Popen([str(cli), "worker", "pickup_stages:app"], env=env, stderr=subprocess.DEVNULL)
    try:
        pickup.enqueue("warm")
        while not _redis.hexists(STAMPS, "warm"):
            time.sleep(0.01)
        time.sleep(0.5)
        calls = {}
        for k in range(n):
            time.sleep(0.01)
            began = time.time()
            pickup.enqueue(f"j{k}")
            calls[f"j{k}"] = (began, time.time())
        deadline = time.time() + 10
        while _redis.hlen(STAMPS) < n + 1 and time.time() < deadline:
            time.sleep(0.05)
        stamps = {k: json.loads(v) for k, v in _redis.hgetall(STAMPS).items()}
    finally:
        proc.terminate()
        proc.wait()
        app.close()
        _redis.flushdb()
    paths = {
        "caught by the catcher's thread": ["caught", "thread", "task"],
        "received by the event loop": ["wake", "start", "submit", "thread", "task"],
    }
    for path, order in paths.items():
        rows: dict[str, list[float]] = {}
        for tag, (began, returned) in calls.items():
            seen = stamps.get(tag, {})
            if set(seen) != set(order):
                continue  # not handed over (the worker was not parked: a claim started it), or the other path
            rows.setdefault("enqueue call", []).append(returned - began)
            points = [began, *(seen[stage] for stage in order)]
            for a, b, x, y in zip(["enqueue", *order], order, points, points[1:], strict=False):
                rows.setdefault(f"{a} -> {b}", []).append(y - x)
            rows.setdefault("total", []).append(seen["task"] - began)
        print(f"{len(rows.get('total', []))} of {n} jobs handed to the parked worker and {path}; ms:")
        for label, values in rows.items():
            print(f"  {label:17} {_quantiles(values)}")


if __name__ == "__main__":
    main()
