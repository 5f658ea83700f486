"""The Redis store's connection: clients, scripts, error translation, the schema marker.

Failures: redis-py retries a command whose connection failed, twice (which heals
connections a server or proxy closed while idle). A script it re-sends may
have run already: a claim run twice leaves the first batch ``running`` until its lease
expires and ``job_rescue`` requeues it (late, not lost); an ack run twice is refused
the second time (a "lease lost" warning); an enqueue run twice fails with "job id
already exists" although the job was written; a fire run twice fires nothing the second
time (the compare-and-set on ``next_at``); an event settled twice is a duplicate the
second time. Whatever still fails is a ``StoreError``, which the worker's loops retry.

Redis Cluster: every key of a store shares one hash tag, so one node serves the whole
store. A command sent to another node gets ``MOVED <slot> <host:port>``: the instance
notes that node (``_guarded``), and its next call closes its connections and opens them
on it (``open``): when opening through any node of the cluster, and after a resharding
moved the slot. When the node in use stops answering (a failover), it reconnects through
the next node it knows (the URL's, then those ``CLUSTER SLOTS`` listed when it opened),
whose ``MOVED`` names the new primary. A script that got ``MOVED`` did not run, so
``_run`` sends it again there; a blocking enqueue hands over to the async path, which
follows; another command fails once (a ``StoreError``). Functions are per node: the
library is loaded where it is missing (``scripts.py``). Limits: the nodes must be
reachable at the addresses they announce (and, with TLS, hold certificates for them);
move a store's slot only while nothing uses it, since a script that meets a key already
migrated stops part way (``ASK``), as any Lua script would.

Reconnecting: while the server is gone, one ``ReconnectGate`` per store instance paces every
loop of the process (claim, ack, heartbeat, rescue, wake-ups; fires; events): the first
call that cannot reach the server closes the gate for a jittered, doubling backoff (0.1 s
up to 5 s); calls meanwhile fail at once without touching the network; the first call
after it probes, and a success opens the gate again. Without it every loop, and redis-py
under each failing command, knocked on its own: thousands of connection attempts a second
from one scheduler during a restart (``tests/faults/test_store_restart.py``).

An instance belongs to the event loop that opened it (``loop_bound``): redis-py's
connections are bound to their loop. Blocking waits (``wakeup_wait``) use a connection
of their own, so they never hold up other calls. A sync enqueue on a thread with no event
loop (``job_enqueue_blocking``) runs the same script on a blocking redis-py client of the
instance (one connection, opened on first use), with the same retries, gate and error
translation: no event loop round, no asyncio client and no pool per call (an enqueue
about 80 µs faster on the benchmark VM: 3,560 -> 5,000 jobs/s back to back). A worker's
catcher thread (``job_handed_wait``) waits on a blocking client of its own, without the
gate (it waits once per ``idle_poll`` and paces its own retries); the inbox cursors it
shares with the loop move under ``_inbox_lock``.

Internal module.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import AskError, MovedError, RedisError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry as BlockingRetry

from backbeat.errors import SchemaTooNew, StoreError
from backbeat.store.base import Store
from backbeat.store.redis import RedisOptions
from backbeat.store.redis.keys import SCHEMA_VERSION, Keys
from backbeat.store.redis.scripts import Scripts, SyncScripts
from backbeat.store.redis.server import check_durability, check_version
from backbeat.types import Capability, JobRecord

log = logging.getLogger("backbeat.store.redis")
PRUNE_CHUNK = 1000
"""Most entries one pruning script deletes (about 5 ms of server time)."""
LIST_PAGE = 100
"""Ids read per index and round trip by the newest-first listings."""
T = TypeVar("T")


@contextmanager
def translated() -> Iterator[None]:
    """Redis failures surface as ``StoreError`` (callers retry on that).

    A cancellation requested while the block ran is re-raised if the block returned or
    failed instead: on Python 3.11, ``asyncio.wait_for`` (which redis-py uses for
    sends under a socket timeout, also while handshaking a new connection) returns
    normally when cancelled just as its operation completes, and a worker loop whose
    cancellation vanished would never stop."""
    try:
        task = asyncio.current_task()
    except RuntimeError:  # no event loop: a blocking call (``_run_sync``)
        task = None
    before = task.cancelling() if task is not None else 0
    try:
        yield
    except MovedError as exc:
        _raise_if_cancelled(task, before)
        raise StoreError(f"Redis Cluster: slot {exc.slot_id} of this store is served by {exc.host}:{exc.port}") from exc
    except AskError as exc:
        _raise_if_cancelled(task, before)
        raise StoreError(f"Redis Cluster: slot {exc.slot_id} of this store is moving to {exc.host}:{exc.port}") from exc
    except ResponseError as exc:
        _raise_if_cancelled(task, before)
        message = str(exc)
        if message.startswith("BB_DUPLICATE "):
            raise StoreError(message.removeprefix("BB_DUPLICATE ")) from None
        raise StoreError(f"Redis refused a command: {message}") from exc
    except RedisError as exc:
        _raise_if_cancelled(task, before)
        raise StoreError(f"Redis: {exc}") from exc
    _raise_if_cancelled(task, before)


def _raise_if_cancelled(task: asyncio.Task[Any] | None, before: int) -> None:
    if task is not None and task.cancelling() > before:
        raise asyncio.CancelledError


class ReconnectGate:
    """When this process may try the server again after it stopped answering (see the
    module docstring). Real time (``time.monotonic``): it paces sockets, it decides nothing
    about jobs."""

    BASE = 0.1
    CAP = 5.0

    def __init__(self, rng: random.Random | None = None) -> None:
        self.failures = 0
        self._until = 0.0
        self._rng = rng or random.Random()

    def check(self) -> None:
        """Raise ``StoreError`` while the backoff lasts; else let this call through (as the
        probe, if calls are failing: the others wait for it)."""
        if not self.failures:
            return
        now = time.monotonic()
        if now < self._until:
            wait = self._until - now
            raise StoreError(f"Redis unreachable ({self.failures} failures in a row); next try in {wait:.1f} s")
        self._until = now + self._delay()

    def failed(self) -> None:
        self.failures += 1
        self._until = time.monotonic() + self._delay()

    def ok(self) -> None:
        self.failures = 0

    def _delay(self) -> float:
        ceiling: float = min(self.CAP, self.BASE * 2.0 ** min(self.failures - 1, 16))
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)


def _keepalive() -> dict[int, int]:
    """TCP keepalive probes that notice a dead server in about 25 s, also in the middle
    of a blocking read (backbeat sets no socket timeout by default; see ``_connect``)."""
    wanted = {"TCP_KEEPIDLE": 10, "TCP_KEEPINTVL": 5, "TCP_KEEPCNT": 3}
    return {getattr(socket, name): value for name, value in wanted.items() if hasattr(socket, name)}


RETRIES = 2
"""Times redis-py re-sends a command whose connection failed (module docstring)."""


def _backoff() -> ExponentialWithJitterBackoff:
    return ExponentialWithJitterBackoff(base=0.01, cap=0.1)


_OPTIONS: dict[str, Any] = {
    "decode_responses": True,
    "socket_timeout": None,
    "socket_connect_timeout": 10,
    "socket_keepalive": True,
    "socket_keepalive_options": _keepalive(),
    "retry_on_error": [RedisConnectionError, RedisTimeoutError],
}
"""Both clients' options: no socket timeout unless the URL sets one (see ``_connect``).
``retry_on_error``: redis-py before 6.0 retries only the errors listed there (later ones
retry these two by default)."""


def _where(client: Redis) -> str:
    kwargs = client.connection_pool.connection_kwargs
    return f"{kwargs.get('host', kwargs.get('path', '?'))}:{kwargs.get('port', '')}/{kwargs.get('db', 0)}"


def flat(items: Iterator[list[str]]) -> list[str]:
    return [x for item in items for x in item]


class RedisBase(Store):
    """Connection, scripts and the schema marker, shared by the store's method groups."""

    capabilities = frozenset({Capability.PERSISTENT, Capability.MULTI_PROCESS})
    loop_bound = True
    enqueue_batch = 100
    """A script holds the whole server while it runs: 100 enqueues hold it about 1 ms (2.5 on
    a slow day of the 2-core VM; 500 held it 10 ms there for 20% more jobs per second)."""

    def __init__(self, options: RedisOptions) -> None:
        self.options = options
        self.keys = Keys(options.prefix)
        self._client: Redis | None = None
        url = urlsplit(options.client_url)
        self._origin = (url.hostname or "localhost", url.port or 6379)
        """The URL's node."""
        self._node: tuple[str, int] | None = None
        """The Redis Cluster node that serves this store's slot, once a ``MOVED`` named
        another than the URL's (``None``: the URL's)."""
        self._moved: tuple[str, int] | None = None
        """A node to reconnect to, not yet followed (``open`` follows it): the one a
        ``MOVED`` named, or another known node when the one in use stopped answering."""
        self._peers: list[tuple[str, int]] = []
        """The Redis Cluster's nodes (``CLUSTER SLOTS`` at open; none on a plain server)."""
        self._waiter: Redis | None = None
        self._scripts: Scripts | None = None
        self._sync: SyncScripts | None = None
        """Scripts on a blocking client, for sync calls with no event loop (``_run_sync``)."""
        self._sync_busy = False
        """A ``_run_sync`` call is waiting for its reply (a signal handler that enqueues
        meanwhile must not share its connection)."""
        self._lock = asyncio.Lock()
        self._gate = ReconnectGate()
        self._wake_seen = "0-0"
        """The newest wake-stream entry this instance has accounted for (at open, and
        by each claim): ``wakeup_wait`` returns at once for anything newer."""
        self._inboxes: dict[str, str] = {}
        """Worker id -> the newest entry of its inbox received, for each worker that
        parked through this instance (``job_claim``)."""
        self._handed: dict[str, list[JobRecord]] = {}
        """Jobs ``wakeup_wait`` received for parked workers, until ``job_handed``."""
        self._inbox_lock = threading.Lock()
        """Guards ``_inboxes``: a worker's thread receives its handed jobs beside the loop."""
        self._thread_inboxes: set[str] = set()
        """Workers whose inbox a thread of theirs reads (``job_handed_wait``), not ``wakeup_wait``."""
        self._catchers: dict[str, redis.Redis] = {}
        """Worker id -> the blocking client its thread waits on (``job_handed_wait``)."""

    def _connect(self, *, blocking: bool = False) -> Redis:
        """A client for the URL. No socket timeout unless the URL sets one (redis-py's
        default of 5 s would cut blocking waits short, and on Python 3.11 its timed sends
        can lose a cancellation); TCP keepalive notices a dead server instead. The
        client for blocking waits never has one: its reads last as long as the wait."""
        client = Redis.from_url(self._url(), retry=Retry(_backoff(), RETRIES), **_OPTIONS)
        if blocking:
            client.connection_pool.connection_kwargs["socket_timeout"] = None
        return client

    def _url(self) -> str:
        """The URL the clients connect to: the options' own, or the cluster node that
        serves this store."""
        node = self._node  # read once: a catcher's thread calls this beside the loop
        if node is None:
            return self.options.client_url
        host, port = node
        parts = urlsplit(self.options.client_url)
        userinfo = parts.netloc.rpartition("@")[0]
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        return urlunsplit(parts._replace(netloc=f"{userinfo}@{address}" if userinfo else address))

    async def open(self) -> None:
        if self._moved is not None:
            await self._follow()
        if self._client is not None:
            return
        try:
            await self._open()
        except StoreError as exc:
            if not isinstance(exc.__cause__, MovedError):
                raise
            await self._follow()  # opened on a cluster node that does not serve this store
            await self._open()

    async def _follow(self) -> None:
        """Close the connections, to open them on the node noted in ``_moved``."""
        async with self._lock:
            node, self._moved = self._moved, None
            if node is None or node == (self._node or self._origin):
                return
            log.info("Redis Cluster: reconnecting the store %s to %s:%d", self.keys.tag, *node)
            self._node = None if node == self._origin else node
            await self.close()

    async def _cluster_nodes(self, client: Redis) -> list[tuple[str, int]]:
        """Every node of the cluster, primaries and replicas ([] on a plain server, or
        where the server refuses to say)."""
        try:
            if not (await client.info("cluster")).get("cluster_enabled"):
                return []
            slots = await client.execute_command("CLUSTER", "SLOTS")  # type: ignore[no-untyped-call]
        except ResponseError:
            return []
        nodes: list[tuple[str, int]] = []
        for _, _, *members in slots:
            for host, port, *_ in members:
                address = self._address(host, int(port))
                if address not in nodes:
                    nodes.append(address)
        return nodes

    def _address(self, host: str, port: int) -> tuple[str, int]:
        """A node's address as Redis Cluster announces it: an empty host is the host in use."""
        return (host or (self._node or self._origin)[0], port)

    def _next_node(self, current: tuple[str, int]) -> tuple[str, int] | None:
        """The known node after ``current`` (the URL's, then the cluster's), to ask where
        the store's slot went when ``current`` stopped answering; None on a plain server."""
        known = list(dict.fromkeys([self._origin, *self._peers]))
        if current not in known:
            return known[0]
        if len(known) < 2:
            return None
        return known[(known.index(current) + 1) % len(known)]

    async def _open(self) -> None:
        async with self._lock:
            if self._client is not None:
                return
            client = self._connect()
            try:
                with self._guarded():
                    await check_version(client)
                    await check_durability(client, f"{_where(client)} (prefix {self.options.prefix})")
                    await self._check_schema(client)
                    self._wake_seen = await self._newest_wake(client)
                    self._peers = await self._cluster_nodes(client)
            except BaseException:
                await client.aclose()
                raise
            self._scripts = Scripts(client)
            self._client = client

    @contextmanager
    def _guarded(self) -> Iterator[None]:
        """``translated``, paced by the reconnect gate; notes a cluster node to reconnect to.
        A call whose connection was closed under it because the instance followed another
        node meanwhile says nothing about the node it follows now."""
        self._gate.check()
        node = self._node
        try:
            with translated():
                yield
        except StoreError as exc:
            cause = exc.__cause__
            if self._node != node:
                raise
            if isinstance(cause, (RedisConnectionError, RedisTimeoutError, OSError)):
                self._gate.failed()
                # a failover? another node knows where the slot went (a plain server has none)
                self._moved = self._next_node(node or self._origin) or self._moved
            elif isinstance(cause, MovedError):
                self._gate.ok()  # the server answered
                self._moved = self._address(cause.host, cause.port)
            raise
        self._gate.ok()

    async def close(self) -> None:
        clients = [c for c in (self._client, self._waiter) if c is not None]
        sync, self._sync = self._sync, None
        self._client = self._waiter = self._scripts = None
        if sync is not None:
            sync.close()
        with self._inbox_lock:
            catchers, self._catchers = list(self._catchers.values()), {}
        for catcher in catchers:  # a thread waiting on one gets an error: its wait is over
            catcher.close()
        for client in clients:
            await client.aclose()

    async def migrate(self) -> int:
        await self.open()
        with self._guarded():
            return await self._check_schema(self._redis)

    async def server_time(self) -> float:
        """Redis ``TIME`` (the server's clock, to the microsecond)."""
        seconds, micros = await self._redis_call("time")
        return int(seconds) + int(micros) / 1_000_000

    async def _check_schema(self, client: Redis) -> int:
        await client.hsetnx(self.keys.meta, "schema_version", SCHEMA_VERSION)
        version = int(await client.hget(self.keys.meta, "schema_version") or 0)
        if version > SCHEMA_VERSION:
            raise SchemaTooNew(
                f"the Redis store {self.keys.tag} has schema {version}, newer than this backbeat's "
                f"{SCHEMA_VERSION}: upgrade backbeat"
            )
        return version

    async def _newest_wake(self, client: Redis) -> str:
        last = await client.xrevrange(self.keys.wake, "+", "-", count=1)
        return str(last[0][0]) if last else "0-0"

    @property
    def _redis(self) -> Redis:
        if self._client is None:
            raise StoreError("the Redis store is not open (call open() first)")
        return self._client

    async def _hgetall(self, key: str) -> dict[str, str]:
        return cast(dict[str, str], await self._redis.hgetall(key))

    async def _run(self, name: str, args: list[str]) -> Any:
        try:
            return await self._run_once(name, args)
        except StoreError as exc:
            if not isinstance(exc.__cause__, MovedError):
                raise
        return await self._run_once(name, args)  # it did not run: again, where the store is now

    async def _run_once(self, name: str, args: list[str]) -> Any:
        await self.open()
        assert self._scripts is not None
        with self._guarded():
            return await self._scripts.run(name, self.keys.meta, args)

    def _run_sync(self, name: str, args: list[str]) -> Any:
        """``_run`` from sync code with no event loop, on the blocking client (opened on
        first use); ``None`` when it cannot: this instance is not open (``open`` checks the
        server and the schema; the caller then takes the async path, which opens it), or
        a call on its one connection is still waiting (this thread re-entered, from a
        signal handler: the caller then takes the async path, on another connection), or
        a Redis Cluster node answered ``MOVED`` (the async path reconnects, and sends it
        again)."""
        if self._client is None or self._sync_busy or self._moved is not None:
            return None
        self._sync_busy = True
        try:
            with self._guarded():
                if self._sync is None:  # one connection, no pool: an instance serves one thread
                    self._sync = SyncScripts(
                        redis.Redis.from_url(
                            self._url(),
                            retry=BlockingRetry(_backoff(), RETRIES),
                            single_connection_client=True,
                            **_OPTIONS,
                        )
                    )
                return self._sync.run(name, self.keys.meta, args)
        except StoreError as exc:
            if not isinstance(exc.__cause__, MovedError):
                raise
            return None
        finally:
            self._sync_busy = False

    async def _redis_call(self, command: str, *args: Any, **kwargs: Any) -> Any:
        """One redis-py command (``hset``, ``zrange``...) on the open client, translated."""
        await self.open()
        with self._guarded():
            return await getattr(self._redis, command)(*args, **kwargs)

    async def _read(self, queue: Any, *, transaction: bool = False) -> list[Any]:
        """Run the commands ``queue(pipe)`` adds in one round trip (``transaction``: as one
        MULTI/EXEC, a consistent snapshot); their replies."""
        await self.open()
        with self._guarded():
            async with self._redis.pipeline(transaction=transaction) as pipe:
                queue(pipe)
                replies: list[Any] = await pipe.execute()
                return replies

    async def _hashes(self, keys: list[str]) -> list[dict[str, str]]:
        """HGETALL of each key, in one round trip (empty where the key is gone)."""
        return await self._read(lambda pipe: [pipe.hgetall(k) for k in keys])

    async def _newest(
        self,
        indexes: Sequence[str],
        before: str | None,
        limit: int,
        load: Callable[[list[str]], Awaitable[list[T]]],
        wanted: Callable[[T], bool],
    ) -> list[T]:
        """Up to ``limit`` records ``wanted``, newest (highest id) first, only ids below
        ``before``: the id indexes (zsets of score 0, so ordered by id) are merged a page
        at a time and ``load`` reads each page's records (a scan, bounded by what matches)."""
        out: list[T] = []
        page = max(limit, LIST_PAGE)
        while len(out) < limit:
            found = await self._ids_below(indexes, before, page)
            out += [r for r in await load(found) if wanted(r)]
            if len(found) < page:
                break
            before = found[-1]
        return out[:limit]

    async def _ids_below(self, indexes: Sequence[str], before: str | None, page: int) -> list[str]:
        start = "+" if before is None else f"({before}"
        chunks = await self._read(
            lambda pipe: [pipe.zrange(i, start, "-", desc=True, bylex=True, offset=0, num=page) for i in indexes]
        )
        return sorted({i for chunk in chunks for i in chunk}, reverse=True)[:page]

    async def _chunked(self, name: str, args: list[str], limit: int) -> int:
        """Run a deleting script (its last argument the chunk size) until ``limit`` or
        nothing is left, ``PRUNE_CHUNK`` at a time, so no call holds the server for long."""
        done = 0
        while done < limit:
            chunk = min(PRUNE_CHUNK, limit - done)
            n = int(await self._run(name, [*args, str(chunk)]))
            done += n
            if n < chunk:
                break
        return done
