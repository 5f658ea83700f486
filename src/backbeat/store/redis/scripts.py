"""The Lua scripts: every multi-key step of the Redis store is one of them (atomic).

Each ``scripts/NAME.lua`` is loaded as ``#!lua`` + ``lib.lua`` + the script. The
shebang (Redis >= 7.0) makes the server check, before running a script, that it may
write (no script starts while Redis is over ``maxmemory``, so none stops half way on
OOM) and, on a cluster, that every key it touches is in the slot of its declared key.
Scripts run with EVALSHA, loaded again after a server restart (``NoScriptError``).

Internal module.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript

NAMES = (
    "enqueue",
    "claim",
    "heartbeat",
    "ack",
    "rescue",
    "cancel",
    "retry",
    "prune",
    "purge",
    "queue_pause",
    "queue_resume",
    "worker_register",
    "worker_heartbeat",
    "worker_remove",
)


def _read(name: str) -> str:
    return resources.files("backbeat.store.redis").joinpath("scripts", f"{name}.lua").read_text(encoding="utf-8")


@cache
def source(name: str) -> str:
    """The text loaded for script ``name``."""
    return f"#!lua\n{_read('lib')}\n{_read(name)}"


class Scripts:
    """The scripts registered on one client; ``await scripts.run(name, anchor, args)``."""

    def __init__(self, client: Redis) -> None:
        self._scripts: dict[str, AsyncScript] = {name: client.register_script(source(name)) for name in NAMES}

    async def run(self, name: str, anchor: str, args: list[str]) -> Any:
        return await self._scripts[name](keys=[anchor], args=args)
