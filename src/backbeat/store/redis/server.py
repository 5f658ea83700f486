"""What the Redis store asks of the server, checked when a store opens.

* Redis >= 7.0 (the scripts are Redis functions); an older server is refused.
* Durability is stated, not assumed: Redis is backbeat's database, not a cache. With
  ``maxmemory-policy`` other than ``noeviction`` a full server silently deletes jobs
  (sidekiq#5562); without AOF a restart loses every write since the last RDB snapshot
  (everything, when snapshots are off). A server set up to lose data gets one WARNING
  line in the log (never a Python warning: it is advice, not an error), once per
  process and store. ``CONFIG`` may be disabled (managed services): then ``INFO`` is
  read instead, and a setting neither shows is not judged.

Internal module.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from backbeat.errors import StoreError

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = logging.getLogger("backbeat.store.redis")
MIN_VERSION = (7, 0)
_warned: set[str] = set()


async def check_version(client: Redis) -> None:
    info = await client.info("server")
    text = str(info.get("redis_version", "0"))
    try:
        version = tuple(int(x) for x in text.split(".")[:2])
    except ValueError:
        return  # a fork with its own numbering: let the scripts speak for themselves
    if version < MIN_VERSION:
        raise StoreError(f"backbeat needs Redis >= 7.0 (its scripts are Redis functions); the server runs {text}")


async def _settings(client: Redis) -> dict[str, str]:
    """maxmemory-policy, appendonly, appendfsync as far as the server tells them."""
    from redis.exceptions import ResponseError

    try:
        found = await client.config_get("maxmemory-policy", "appendonly", "appendfsync")
        return {str(k): str(v) for k, v in found.items()}
    except ResponseError:  # CONFIG disabled or renamed
        pass
    out: dict[str, str] = {}
    try:
        memory = await client.info("memory")
        persistence = await client.info("persistence")
    except ResponseError:
        return out
    if "maxmemory_policy" in memory:
        out["maxmemory-policy"] = str(memory["maxmemory_policy"])
    if "aof_enabled" in persistence:
        out["appendonly"] = "yes" if str(persistence["aof_enabled"]) == "1" else "no"
    return out


def durability_problems(settings: dict[str, str]) -> list[str]:
    """What in these server settings can lose acknowledged jobs; empty when nothing."""
    problems = []
    policy = settings.get("maxmemory-policy")
    if policy is not None and policy != "noeviction":
        problems.append(f"maxmemory-policy is {policy}, so a full server evicts jobs (set noeviction)")
    aof = settings.get("appendonly")
    if aof is not None and aof != "yes":
        problems.append(
            "appendonly is no, so a restart loses every write since the last RDB snapshot, "
            "or all of them without snapshots (set appendonly yes, appendfsync everysec or always)"
        )
    elif aof == "yes" and settings.get("appendfsync") == "no":
        problems.append("appendfsync is no, so the OS decides when writes reach disk (set everysec or always)")
    return problems


async def check_durability(client: Redis, where: str) -> None:
    """Log one WARNING if the server is configured to lose data (once per ``where``)."""
    if where in _warned:
        return
    problems = durability_problems(await _settings(client))
    _warned.add(where)
    if problems:
        advice = "See 'Redis durability' in backbeat's README."
        log.warning("Redis at %s can lose jobs: %s. %s", where, "; ".join(problems), advice)
