"""Checks the Redis store's key layout (``store/redis/keys.py``) against its job hashes."""

from __future__ import annotations

from collections import Counter

import redis

from backbeat.types import FINAL_STATES, LIVE_STATES, JobState
from tests.redis_server import SERVER

Jobs = dict[str, dict[str, str]]


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
    return len(jobs)


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
