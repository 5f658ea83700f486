"""Memory per job in the Redis store, by state. Run by hand:

    .venv/bin/python benchmarks/redis_memory.py [--url redis://127.0.0.1:6379/0] [--jobs 100000]

Writes ``--jobs`` jobs under a fresh prefix, as queued, scheduled and (claimed, acked)
succeeded jobs in turn, and reports two figures per state: the sum of ``MEMORY USAGE``
over the store's keys (exact for this store, whatever else the server holds) and the
growth of ``INFO memory`` used_memory (includes allocator overhead; other clients of a
shared server add noise). The keys are deleted afterwards. Payload: a typical
``{"args":[],"kwargs":{"user_id":12345}}``, then a 200-byte one (a hash with a value
over ``hash-max-listpack-value``, 64 bytes by default, is stored as a hashtable).
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import time

import redis

from backbeat.ids import uuid7
from backbeat.store import open_store
from backbeat.store.redis.store import RedisStore
from backbeat.types import ClaimRequest, JobOutcome, Lease, NewJob, Outcome

BATCH = 1000
PAYLOAD = '{"args":[],"kwargs":{"user_id":12345}}'


def footprint(client: redis.Redis, pattern: str) -> tuple[int, int]:
    """(sum of MEMORY USAGE over the keys, number of keys)."""
    keys = list(client.scan_iter(match=pattern, count=1000))
    total = 0
    for start in range(0, len(keys), 1000):
        pipe = client.pipeline(transaction=False)
        for key in keys[start : start + 1000]:
            pipe.memory_usage(key, samples=0)
        total += sum(n or 0 for n in pipe.execute())
    return total, len(keys)


async def fill(store: RedisStore, n: int, now: float, *, delayed: bool, finish: bool, payload: str = PAYLOAD) -> None:
    for start in range(0, n, BATCH):
        jobs = [
            NewJob(
                id=uuid7(),
                task="app.tasks.send_email",
                queue="default",
                payload=payload,
                run_at=now + (3600.0 if delayed else 0.0),
                max_attempts=4,
                timeout=30.0,
            )
            for _ in range(min(BATCH, n - start))
        ]
        await store.job_enqueue(jobs, now=now)
        if finish:
            request = ClaimRequest(
                worker_id="host.1234.abcdef01",
                queues=("default",),
                tasks=frozenset({jobs[0].task}),
                limit=BATCH,
                lease=30.0,
            )
            claimed = await store.job_claim(request, now=now)
            outcomes = [
                JobOutcome(
                    lease=Lease(job_id=j.id, token=j.lease_token or ""), outcome=Outcome.SUCCEEDED, result="null"
                )
                for j in claimed
            ]
            await store.job_ack(outcomes, now=now + 0.01)


async def measure(
    url: str, n: int, label: str, *, delayed: bool = False, finish: bool = False, payload: str = PAYLOAD
) -> None:
    prefix = f"mem-{secrets.token_hex(4)}"
    store = open_store(f"{url}?prefix={prefix}")
    assert isinstance(store, RedisStore)
    await store.open()
    client = redis.Redis.from_url(url)
    try:
        pattern = store.keys.pattern
        before_keys, _ = footprint(client, pattern)
        before_used = int(client.info("memory")["used_memory"])
        started = time.perf_counter()
        await fill(store, n, time.time(), delayed=delayed, finish=finish, payload=payload)
        elapsed = time.perf_counter() - started
        after_used = int(client.info("memory")["used_memory"])
        after_keys, count = footprint(client, pattern)
        sample = next(iter(client.scan_iter(match=store.keys.job("*"), count=100)))
        encoding = client.object("encoding", sample)
        print(
            f"{label:<10} {n:,} jobs: MEMORY USAGE {(after_keys - before_keys) / n:,.0f} B/job "
            f"(job hash {client.memory_usage(sample, samples=0)} B, {encoding!r}), "
            f"used_memory +{(after_used - before_used) / n:,.0f} B/job, {count:,} keys, written in {elapsed:.1f} s"
        )
    finally:
        keys = list(client.scan_iter(match=store.keys.pattern, count=1000))
        for start in range(0, len(keys), 1000):
            client.unlink(*keys[start : start + 1000])
        client.close()
        await store.close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--jobs", type=int, default=100_000)
    args = parser.parse_args()
    await measure(args.url, args.jobs, "queued")
    await measure(args.url, args.jobs, "scheduled", delayed=True)
    await measure(args.url, args.jobs, "succeeded", finish=True)
    big = '{"args":[],"kwargs":{"text":"' + "x" * 170 + '"}}'  # 200 bytes: over hash-max-listpack-value
    await measure(args.url, args.jobs, "queued-200B", payload=big)


if __name__ == "__main__":
    asyncio.run(main())
