"""The Lua scripts: every multi-key step of the Redis store is one of them (atomic).

All of them are loaded as one Redis *function library* (Redis >= 7.0): the libraries
(``lib.lua``: jobs; ``lib_schedules.lua``: schedules, breaches and the end-of-run rules;
``lib_events.lua``: events), then each ``scripts/NAME.lua`` as a function of it. The
libraries' top level (about 80 function definitions) then runs once, at load, instead of
at every call as it did for scripts sent with ``EVALSHA``: 33 µs of server time per call
at the median after an idle gap on the benchmark VM, more at the tail. A function begins
by setting the keys of its call's prefix (``KEYS[1]``, ``begin``) and the state a call
gathers. Functions are declared without flags: Redis checks, before running one, that it
may write (none starts while Redis is over ``maxmemory``, so none stops half way on OOM)
and, on a cluster, that every key it touches is in the slot of its declared key.

The library's name carries a digest of its code (``backbeat_<digest>``, each function
``backbeat_<digest>_<script>``), so processes of two backbeat versions on one server
(a rolling upgrade) each call their own. A call to a function the server does not have (a
restart without persistence, ``FUNCTION FLUSH``) loads the library and is sent again.
Libraries of versions no longer running stay until deleted (``FUNCTION DELETE``; about
0.3 MB of server memory each).

Internal module.
"""

from __future__ import annotations

import hashlib
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any, NamedTuple

from redis.exceptions import ResponseError

if TYPE_CHECKING:
    import redis
    from redis.asyncio import Redis

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


BEGIN = """
-- Each function starts here: the keys of its call's prefix (set again only when it
-- changes), and nothing gathered yet.
local bound
local function begin(anchor)
  if anchor ~= bound then
    lib_keys(anchor)
    schedules_keys()
    events_keys()
    bound = anchor
  end
  lib_reset()
end
"""


class Library(NamedTuple):
    name: str
    code: str
    functions: dict[str, str]
    """Script name -> the name of its function."""


@cache
def library() -> Library:
    """The function library: its name, its code and its functions."""
    libraries = [_read(lib) for lib in LIBRARIES]
    scripts = {name: _read(name) for name in NAMES}
    digest = hashlib.sha1("\0".join([BEGIN, *libraries, *scripts.values()]).encode()).hexdigest()[:12]
    name = f"backbeat_{digest}"
    functions = {script: f"{name}_{script}" for script in scripts}
    registered = [
        f"redis.register_function('{functions[script]}', function(KEYS, ARGV)\nbegin(KEYS[1])\n{text}\nend)"
        for script, text in scripts.items()
    ]
    return Library(name, "\n".join([f"#!lua name={name}", *libraries, BEGIN, *registered]), functions)


def _missing(exc: ResponseError) -> bool:
    """The server has no such function: it lost the library (or never had it)."""
    return str(exc).startswith("Function not found")


class Scripts:
    """The functions, called on one client: ``await scripts.run(name, anchor, args)``."""

    def __init__(self, client: Redis) -> None:
        self.client = client
        self.library = library()

    async def run(self, name: str, anchor: str, args: list[str]) -> Any:
        function = self.library.functions[name]
        try:
            return await self.client.fcall(function, 1, anchor, *args)
        except ResponseError as exc:
            if not _missing(exc):
                raise
        await self.client.function_load(self.library.code, replace=True)
        return await self.client.fcall(function, 1, anchor, *args)


class SyncScripts:
    """The functions sync code calls with no event loop (``enqueue``), on a blocking
    client with one connection (``single_connection_client``).

    A call writes FCALL on that connection and reads the reply itself, under the
    client's retry policy (a failed connection is reconnected and the call re-sent, as
    in redis-py's ``execute_command``): its generic path (option checks, response
    callbacks, metrics hooks) cost about 40 µs of a 300-500 µs enqueue in an interleaved
    A/B on the 2-core VM. It skips the client's lock too: one store instance serves one
    thread, and ``_run_sync`` refuses re-entry (a signal handler)."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.library = library()

    def run(self, name: str, anchor: str, args: list[str]) -> Any:
        function = self.library.functions[name]
        conn = self.client.connection
        assert conn is not None  # a single-connection client holds its connection from the start

        def call() -> Any:
            conn.send_command("FCALL", function, 1, anchor, *args)  # type: ignore[no-untyped-call]
            return conn.read_response()

        try:
            return conn.retry.call_with_retry(call, lambda error: conn.disconnect())  # type: ignore[no-untyped-call]
        except ResponseError as exc:
            if not _missing(exc):
                raise
        self.client.function_load(self.library.code, replace=True)
        return conn.retry.call_with_retry(call, lambda error: conn.disconnect())  # type: ignore[no-untyped-call]

    def close(self) -> None:
        self.client.close()
