"""Checks the Redis store's key layout (``store/redis/keys.py``) against its job, schedule and
breach hashes."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import cast

import redis

from backbeat.store import open_store
from backbeat.store.redis.store import RedisStore
from backbeat.types import FINAL_STATES, LIVE_STATES, JobState
from tests.redis_server import SERVER, fresh_url

Jobs = dict[str, dict[str, str]]


@asynccontextmanager
async def checked_store() -> AsyncIterator[RedisStore]:
    """An open store on a fresh prefix; closed, and its layout checked, on exit."""
    with fresh_url() as url:
        store = open_store(url)
        assert isinstance(store, RedisStore)
        await store.open()
        try:
            yield store
        finally:
            await store.close()
            check_layout(store.keys.prefix)


def check_layout(prefix: str) -> int:
    """Assert every index, counter and dedup entry agrees with the job hashes; return the
    number of jobs."""
    tag = "{" + prefix + "}"
    with redis.Redis.from_url(SERVER, decode_responses=True) as c:
        jobs: Jobs = {k.split(":job:", 1)[1]: c.hgetall(k) for k in c.scan_iter(match=f"{tag}:job:*", count=1000)}
        members = _each_job_is_where_its_state_says(c, tag, jobs)
        _no_entry_without_its_job(c, tag, jobs, members)
        counted = Counter(f"{f['state']},{f['queue']},{f['task']}" for f in jobs.values())
        assert {k: int(v) for k, v in c.hgetall(f"{tag}:counts").items()} == dict(counted)
        _dedup_is_held_by_live_jobs(c.hgetall(f"{tag}:dedup"), jobs)
        _job_side_indexes(c, tag, jobs)
        _schedule_indexes(c, tag)
        _breach_indexes(c, tag)
    return len(jobs)


def scored(c: redis.Redis, key: str) -> dict[str, float]:
    """A sorted set as member -> score."""
    return dict(cast(list[tuple[str, float]], c.zrange(key, 0, -1, withscores=True)))


def _job_side_indexes(c: redis.Redis, tag: str, jobs: Jobs) -> None:
    """P:queued:<queue> (queued jobs by run_at), P:fired, P:holders:<bucket>."""
    for key in c.scan_iter(match=f"{tag}:queued:*", count=1000):
        queue = key.split(":queued:", 1)[1]
        expected = {i: float(f["run_at"]) for i, f in jobs.items() if f["state"] == "queued" and f["queue"] == queue}
        assert scored(c, key) == expected, key
    queued = {f["queue"] for f in jobs.values() if f["state"] == "queued"}
    assert all(c.exists(f"{tag}:queued:{q}") for q in queued)
    fired = {
        f"{f['fire_at']}|{f['schedule_key']}": i for i, f in jobs.items() if "fire_at" in f and "schedule_key" in f
    }
    assert c.hgetall(f"{tag}:fired") == fired
    holding = {i: f["bucket"] for i, f in jobs.items() if "bucket" in f}
    assert all(jobs[i]["state"] == "running" for i in holding)
    for key in c.scan_iter(match=f"{tag}:holders:*", count=1000):
        bucket = key.split(":holders:", 1)[1]
        assert c.smembers(key) == {i for i, b in holding.items() if b == bucket}, key


def _schedule_indexes(c: redis.Redis, tag: str) -> None:
    """Each schedule is in exactly the indexes its state says (lib_schedules.lua sched_save)."""
    keys = {k.split(":schedule:", 1)[1] for k in c.scan_iter(match=f"{tag}:schedule:*", count=1000)}
    records = {k: c.hgetall(f"{tag}:schedule:{k}") for k in keys}
    assert set(c.zrange(f"{tag}:schedules", 0, -1)) == keys
    due = {
        k: float(r["next_at"])
        for k, r in records.items()
        if "paused" not in r and "in_flight" not in r and "next_at" in r
    }
    assert scored(c, f"{tag}:schedules-due") == due
    assert c.hgetall(f"{tag}:schedules-runs") == {k: r["in_flight"] for k, r in records.items() if "in_flight" in r}
    sla = {k: r for k, r in records.items() if "sla" in r}
    for name, members in (
        ("sla-active", {k for k, r in sla.items() if "paused" not in r}),
        ("sla-paused", {k for k, r in sla.items() if "paused" in r}),
        ("sla-watch", {k for k, r in sla.items() if "paused" not in r and "breach_since" not in r}),
    ):
        index = scored(c, f"{tag}:{name}")
        assert index == {k: float(sla[k]["deadline_at"]) for k in members}, name


def _breach_indexes(c: redis.Redis, tag: str) -> None:
    breaches: dict[str, dict[str, str]] = {
        k.split(":breach:", 1)[1]: cast(dict[str, str], c.hgetall(k))
        for k in c.scan_iter(match=f"{tag}:breach:*", count=1000)
    }
    open_ids = {i for ids in c.hvals(f"{tag}:breach-open") for i in ids.split()}
    assert open_ids == {i for i, b in breaches.items() if "ended_at" not in b}
    ended = scored(c, f"{tag}:breach-ended")
    assert ended == {i: float(b["ended_at"]) for i, b in breaches.items() if "ended_at" in b}
    assert set(c.zrange(f"{tag}:breach-new", 0, -1)) <= set(ended)
    for i, b in breaches.items():
        assert c.zscore(f"{tag}:blog:{b['key']}", i) == float(b["started_at"])


def _each_job_is_where_its_state_says(c: redis.Redis, tag: str, jobs: Jobs) -> Counter[str]:
    members: Counter[str] = Counter()
    for job_id, f in jobs.items():
        state, queue, task, prio = f["state"], f["queue"], f["task"], f["priority"]
        assert c.zscore(f"{tag}:ids:{state}", job_id) == 0, (job_id, state)
        where, score = {
            "queued": (f"{tag}:ready:{queue},{prio},{task}", f["order_at"]),
            "scheduled": (f"{tag}:sched:{queue}", f["run_at"]),
            "running": (f"{tag}:running", f.get("lease_expires_at")),
        }.get(state, (f"{tag}:done:{state}", f.get("finished_at")))
        assert score is not None and c.zscore(where, job_id) == float(score), (job_id, state, where)
        members[where] += 1
        if state == "queued":
            assert c.zscore(f"{tag}:lanes:{queue}", f"{prio},{task}") == -int(prio)
        assert ("lease_token" in f) == (state == "running")
    return members


def _no_entry_without_its_job(c: redis.Redis, tag: str, jobs: Jobs, members: Counter[str]) -> None:
    for key in (k for k in c.scan_iter(match=f"{tag}:*", count=1000) if c.type(k) == "zset"):
        kind = key[len(tag) + 1 :].split(":", 1)[0]
        if kind in ("ready", "sched", "running", "done"):
            assert c.zcard(key) == members[key], key
        elif kind == "ids":
            assert c.zcard(key) == sum(1 for f in jobs.values() if f"{tag}:ids:{f['state']}" == key), key
        elif kind == "lanes":
            queue = key.split(":lanes:", 1)[1]
            lanes: list[str] = c.zrange(key, 0, -1)  # type: ignore[assignment]
            assert all(c.exists(f"{tag}:ready:{queue},{m}") for m in lanes), key


def _dedup_is_held_by_live_jobs(dedup: dict[str, str], jobs: Jobs) -> None:
    for key, job_id in dedup.items():
        assert JobState(jobs[job_id]["state"]) in LIVE_STATES and jobs[job_id]["dedup_key"] == key
    for job_id, f in jobs.items():
        if f.get("dedup_key") and JobState(f["state"]) not in FINAL_STATES:
            assert dedup.get(f["dedup_key"]) == job_id, (job_id, f["dedup_key"])
