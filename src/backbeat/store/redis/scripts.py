"""The Lua scripts: every multi-key step of the Redis store is one of them (atomic).

Each ``scripts/NAME.lua`` is loaded as ``#!lua`` + the libraries it uses (``lib.lua``:
jobs, always; ``lib_schedules.lua``: schedules, breaches and the end-of-run rules;
``lib_events.lua``: events) + the script, so every loaded script is self-contained. A
library is included when the script, or a library included after it, names one of its
top-level locals: every call of a script runs its libraries' top level (about 4 µs per
25 function definitions on the server), so ``claim`` and ``ack`` do not pay for the
libraries they do not use. The shebang (Redis >= 7.0) makes
the server check, before running a script, that it may write (no script starts while
Redis is over ``maxmemory``, so none stops half way on OOM) and, on a cluster, that every
key it touches is in the slot of its declared key.
Scripts run with EVALSHA, loaded again after a server restart (``NoScriptError``).

Internal module.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

from redis.exceptions import NoScriptError

if TYPE_CHECKING:
    import redis
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript, Script

LIBRARIES = ("lib", "lib_schedules", "lib_events")
NAMES = (
    "enqueue",
    "claim",
    "unpark",
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
    "schedule_upsert",
    "schedule_fire",
    "schedule_remove",
    "schedule_pause",
    "schedule_set_every",
    "schedule_repair",
    "sla_check",
    "sla_ended",
    "decision_append",
    "history_prune",
    "bucket_acquire",
    "bucket_block",
    "event_append",
    "event_settle",
    "event_replay",
)


def _read(name: str) -> str:
    return resources.files("backbeat.store.redis").joinpath("scripts", f"{name}.lua").read_text(encoding="utf-8")


def _code(text: str) -> str:
    """Lua text without its ``--`` comments (a comment naming a function is no use of it)."""
    return re.sub(r"--[^\n]*", "", text)


def _defines(text: str) -> set[str]:
    """The top-level locals (functions, constants, each name of ``local a, b = ...``) a library defines."""
    found = re.findall(r"^local (?:function )?([A-Za-z_][\w, ]*)", text, re.MULTILINE)
    return {name.strip() for names in found for name in names.split(",")}


@cache
def source(name: str) -> str:
    """The text loaded for script ``name``: the libraries it uses, then the script."""
    script = _read(name)
    used = _code(script)
    parts = [script]
    for lib in reversed(LIBRARIES):  # a library uses only the ones listed before it
        text = _read(lib)
        if lib == LIBRARIES[0] or set(re.findall(r"[A-Za-z_]\w*", used)) & _defines(text):
            parts.insert(0, text)
            used += _code(text)
    return "\n".join(["#!lua", *parts])


class Scripts:
    """The scripts registered on one client; ``await scripts.run(name, anchor, args)``."""

    def __init__(self, client: Redis) -> None:
        self._scripts: dict[str, AsyncScript] = {name: client.register_script(source(name)) for name in NAMES}

    async def run(self, name: str, anchor: str, args: list[str]) -> Any:
        return await self._scripts[name](keys=[anchor], args=args)


class SyncScripts:
    """The scripts sync code runs with no event loop (``enqueue``), on a blocking client
    with one connection (``single_connection_client``).

    A call writes EVALSHA on that connection and reads the reply itself, under the
    client's retry policy (a failed connection is reconnected and the call re-sent, as
    in redis-py's ``execute_command``): its generic path (``Script.__call__``, option
    checks, response callbacks, metrics hooks) cost about 40 µs of a 300-500 µs enqueue
    in an interleaved A/B on the 2-core VM. It skips the client's lock too: one store
    instance serves one thread, and ``_run_sync`` refuses re-entry (a signal handler). A
    server that lost its scripts (``NoScriptError``) gets them through ``Script``, which
    loads them again."""

    NAMES = ("enqueue",)

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._scripts: dict[str, Script] = {name: client.register_script(source(name)) for name in self.NAMES}

    def run(self, name: str, anchor: str, args: list[str]) -> Any:
        script = self._scripts[name]
        conn = self.client.connection
        assert conn is not None  # a single-connection client holds its connection from the start

        def call() -> Any:
            conn.send_command("EVALSHA", script.sha, 1, anchor, *args)  # type: ignore[no-untyped-call]
            return conn.read_response()

        try:
            return conn.retry.call_with_retry(call, lambda error: conn.disconnect())  # type: ignore[no-untyped-call]
        except NoScriptError:
            return script(keys=[anchor], args=args)

    def close(self) -> None:
        self.client.close()
