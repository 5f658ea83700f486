"""Where a Redis drain's time goes: the yardstick's job (one Redis INCR) as a sync task and
as an async task, drained by the same workers, in alternating runs (the VM's speed drifts
by tens of percent within minutes, so only runs side by side compare). Run by hand:

    .venv/bin/python benchmarks/drain_split.py [--url redis://127.0.0.1:6379/12] [--jobs 10000] [--rounds 3]
        [--concurrency N] [--against OTHER_CHECKOUT/src [--kind sync] [--processes 2]]

Each run: a fresh key prefix, N jobs enqueued (enqueue_many), then K `backbeat worker`
processes (CLI defaults: concurrency 10) started; timed from their spawn to the counter
reaching N. Per drained job, while the drain runs (first job to last): CPU of the worker
processes' main threads (the event loop) and of their other threads (the task threads),
their voluntary context switches (Linux /proc), and the Redis server's CPU.

With ``--against``, the same drain (one kind, one process count) runs in pairs: this
checkout and another one's ``src`` directory (put first on ``PYTHONPATH``), in ABBA order
(which goes first alternates), and the ratio of each pair is printed: only runs side by
side compare on a VM whose speed drifts.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import redis

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from store_bench import discard, env_for, fresh, server_cpu  # noqa: E402 - the shared helpers

TICK = os.sysconf("SC_CLK_TCK")


@dataclass
class Usage:
    loop_cpu: float = 0.0
    thread_cpu: float = 0.0
    switches: int = 0

    def __sub__(self, other: Usage) -> Usage:
        return Usage(self.loop_cpu - other.loop_cpu, self.thread_cpu - other.thread_cpu, self.switches - other.switches)


def usage(pids: list[int]) -> Usage:
    """CPU seconds of each process's main thread and of its other threads, and their
    voluntary context switches."""
    total = Usage()
    for pid in pids:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
                status = Path(f"/proc/{pid}/task/{tid}/status").read_text()
            except FileNotFoundError:  # a thread that just ended
                continue
            cpu = (int(stat[11]) + int(stat[12])) / TICK
            if tid == str(pid):
                total.loop_cpu += cpu
            else:
                total.thread_cpu += cpu
            total.switches += int(status.split("voluntary_ctxt_switches:")[1].split()[0])
    return total


@dataclass
class Run:
    from_spawn: float
    steady: float
    loop_us: float
    threads_us: float
    switches: float
    server_us: float


def drain(base: str, kind: str, jobs: int, processes: int, options: list[str], src: str | None = None) -> Run:
    """One drain; ``src``: another checkout's source directory, imported instead of this one."""
    url = fresh(base)
    counter = f"split-done-{secrets.token_hex(4)}"
    env = dict(env_for(url), SPLIT_COUNTER=counter)
    if src is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(HERE), src])
    code = f"import split_app as s\ns.{kind}_incr.enqueue_many([()] * {jobs})\ns.app.close()\n"
    subprocess.run([sys.executable, "-c", code], env=env, check=True, cwd=HERE)
    client = redis.Redis.from_url(urlunsplit(urlsplit(url)._replace(query="")))
    argv = [sys.executable, "-m", "backbeat", "worker", "split_app:app", "--log-level", "error", *options]
    try:
        start = time.perf_counter()
        procs = [subprocess.Popen(argv, env=env, cwd=HERE) for _ in range(processes)]
        while not int(client.get(counter) or 0):
            time.sleep(0.002)
        first, before, server_before = time.perf_counter(), usage([p.pid for p in procs]), server_cpu(url)
        while int(client.get(counter) or 0) < jobs:
            time.sleep(0.005)
        end, used, server_after = time.perf_counter(), usage([p.pid for p in procs]) - before, server_cpu(url)
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait()
    finally:
        client.delete(counter)
        client.close()
        discard(url)
    assert server_before is not None and server_after is not None
    return Run(
        from_spawn=jobs / (end - start),
        steady=jobs / (end - first),
        loop_us=used.loop_cpu / jobs * 1e6,
        threads_us=used.thread_cpu / jobs * 1e6,
        switches=used.switches / jobs,
        server_us=(server_after - server_before) / jobs * 1e6,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default="redis://127.0.0.1:6379/12")
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, help="passed to the workers (default: the CLI's)")
    parser.add_argument("--against", metavar="SRC", help="another checkout's src directory: paired runs")
    parser.add_argument("--kind", choices=("sync", "async"), default="sync", help="with --against")
    parser.add_argument("--processes", type=int, default=2, help="with --against")
    args = parser.parse_args()
    options = [] if args.concurrency is None else ["--concurrency", str(args.concurrency)]
    if args.against is not None:
        compare(args, options)
        return
    runs: dict[tuple[int, str], list[Run]] = {}
    for _ in range(args.rounds):
        for processes in (1, 2):
            for kind in ("sync", "async"):
                runs.setdefault((processes, kind), []).append(drain(args.url, kind, args.jobs, processes, options))
    print(f"{args.jobs:,} jobs, one Redis INCR each; medians of {args.rounds} alternating runs; per job:")
    for (processes, kind), rs in runs.items():

        def med(field: str, rs: list[Run] = rs) -> float:
            return float(statistics.median(getattr(r, field) for r in rs))

        print(f"  {kind:5s} task, {processes} process(es): {med('from_spawn'):6,.0f} jobs/s from spawn "
              f"({med('steady'):,.0f} after the first job; runs {[round(r.from_spawn) for r in rs]}); "
              f"CPU µs: event loop {med('loop_us'):.0f}, other threads {med('threads_us'):.0f}, "
              f"Redis {med('server_us'):.0f}; voluntary switches {med('switches'):.1f}")  # fmt: skip


def compare(args: argparse.Namespace, options: list[str]) -> None:
    src = str(Path(args.against).resolve())
    ratios, ours, theirs = [], [], []
    for round_ in range(args.rounds):
        order: list[str | None] = [None, src] if round_ % 2 == 0 else [src, None]
        pair = {which: drain(args.url, args.kind, args.jobs, args.processes, options, which) for which in order}
        ours.append(pair[None].from_spawn)
        theirs.append(pair[src].from_spawn)
        ratios.append(ours[-1] / theirs[-1])
        print(f"  round {round_ + 1}: this checkout {ours[-1]:,.0f}, {src} {theirs[-1]:,.0f} jobs/s "
              f"from spawn: {ratios[-1]:.2f}x", flush=True)  # fmt: skip
    print(f"{args.jobs:,} {args.kind} jobs, {args.processes} process(es), {args.rounds} rounds: this checkout "
          f"{statistics.median(ours):,.0f} against {statistics.median(theirs):,.0f} jobs/s (medians); "
          f"ratio per round {min(ratios):.2f}-{max(ratios):.2f}, median {statistics.median(ratios):.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
