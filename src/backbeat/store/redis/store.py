"""The Redis store (``redis://``, ``rediss://``): redis-py's asyncio client with hiredis.

The key layout is in ``keys.py``; every multi-key step is one Lua script in
``scripts/`` (atomic: no other command runs while a script does). Reads that need no
atomicity (``job_get``, listings, counts) are plain commands, pipelined.

Invariants the scripts rely on (``scripts/lib.lua`` has the conventions):
* A job is ``running`` only with a lease token; heartbeat and ack match on state and
  token inside the script, so a stale token changes nothing.
* Every transition moves a job between the structures of its old and new state in one
  script, so each job is always in exactly one state structure, its id index and one
  counter, and its dedup key is held exactly while it is live.
* Times come from the caller (``now``); Redis's own clock is never read.

Failures: redis-py retries a command whose connection failed (its default policy, which
also heals connections a server or proxy closed while idle). A script it re-sends may
have run already: a claim run twice leaves the first batch ``running`` until its lease
expires and ``job_rescue`` requeues it (late, not lost); an ack run twice is refused
the second time (a "lease lost" warning); an enqueue run twice fails with "job id
already exists" although the job was written. Whatever still fails is a
``StoreError``, which the worker's loops retry.

An instance belongs to the event loop that opened it (``loop_bound``): redis-py's
connections are bound to their loop. Blocking waits (``wakeup_wait``) use a connection
of their own, so they never hold up other calls.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, cast

from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from backbeat.errors import InvalidTransition, JobNotFound, SchemaTooNew, StoreError
from backbeat.ids import token as new_token
from backbeat.store.base import LEASE_EXPIRED, Store
from backbeat.store.redis import RedisOptions, codec
from backbeat.store.redis.keys import SCHEMA_VERSION, Keys
from backbeat.store.redis.scripts import Scripts
from backbeat.store.redis.server import check_durability, check_version
from backbeat.types import (
    FINAL_STATES,
    Capability,
    ClaimRequest,
    Enqueued,
    HeartbeatResult,
    JobCount,
    JobFilter,
    JobOutcome,
    JobRecord,
    JobState,
    Lease,
    NewJob,
    QueueInfo,
    TaskInfo,
    WorkerInfo,
)

PROMOTE_CAP = 1000
"""Most due scheduled jobs one claim promotes per queue (claim.lua)."""
PRUNE_CHUNK = 1000
"""Most jobs one prune script deletes (about 5 ms of server time)."""
LIST_PAGE = 100
"""Ids read per state and round trip by ``job_list``."""
_STATES = {s.value: s for s in JobState}


@contextmanager
def translated() -> Iterator[None]:
    """Redis failures surface as ``StoreError`` (callers retry on that).

    A cancellation requested while the block ran is re-raised if the block returned or
    failed instead: on Python 3.11, ``asyncio.wait_for`` (which redis-py uses for
    sends under a socket timeout, also while handshaking a new connection) returns
    normally when cancelled just as its operation completes, and a worker loop whose
    cancellation vanished would never stop."""
    task = asyncio.current_task()
    before = task.cancelling() if task is not None else 0
    try:
        yield
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


def _keepalive() -> dict[int, int]:
    """TCP keepalive probes that notice a dead server in about 25 s, also in the middle
    of a blocking read (backbeat sets no socket timeout by default; see ``_connect``)."""
    wanted = {"TCP_KEEPIDLE": 10, "TCP_KEEPINTVL": 5, "TCP_KEEPCNT": 3}
    return {getattr(socket, name): value for name, value in wanted.items() if hasattr(socket, name)}


def _flat(items: Iterator[list[str]]) -> list[str]:
    return [x for item in items for x in item]


class RedisStore(Store):
    capabilities = frozenset({Capability.PERSISTENT, Capability.MULTI_PROCESS})
    loop_bound = True

    def __init__(self, options: RedisOptions) -> None:
        self.options = options
        self.keys = Keys(options.prefix)
        self._client: Redis | None = None
        self._waiter: Redis | None = None
        self._scripts: Scripts | None = None
        self._lock = asyncio.Lock()
        self._wake_seen = "0-0"
        """The newest wake-stream entry this instance has accounted for (at open, and
        by each claim): ``wakeup_wait`` returns at once for anything newer."""

    # -- lifecycle ---------------------------------------------------------------------

    def _connect(self, *, blocking: bool = False) -> Redis:
        """A client for the URL. No socket timeout unless the URL sets one (redis-py's
        default of 5 s would cut blocking waits short, and on Python 3.11 its timed sends
        can lose a cancellation); TCP keepalive notices a dead server instead. The
        client for blocking waits never has one: its reads last as long as the wait."""
        client = Redis.from_url(
            self.options.client_url,
            decode_responses=True,
            socket_timeout=None,
            socket_connect_timeout=10,
            socket_keepalive=True,
            socket_keepalive_options=_keepalive(),
        )
        if blocking:
            client.connection_pool.connection_kwargs["socket_timeout"] = None
        return client

    async def open(self) -> None:
        if self._client is not None:
            return
        async with self._lock:
            if self._client is not None:
                return
            client = self._connect()
            try:
                with translated():
                    await check_version(client)
                    await check_durability(client, f"{_where(client)} (prefix {self.options.prefix})")
                    await self._check_schema(client)
                    self._wake_seen = await self._newest_wake(client)
            except BaseException:
                await client.aclose()
                raise
            self._scripts = Scripts(client)
            self._client = client

    async def close(self) -> None:
        clients = [c for c in (self._client, self._waiter) if c is not None]
        self._client = self._waiter = self._scripts = None
        for client in clients:
            await client.aclose()

    async def migrate(self) -> int:
        await self.open()
        with translated():
            return await self._check_schema(self._redis)

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
        await self.open()
        assert self._scripts is not None
        with translated():
            return await self._scripts.run(name, self.keys.meta, args)

    # -- jobs --------------------------------------------------------------------------

    async def job_enqueue(self, jobs: Sequence[NewJob], *, now: float) -> list[Enqueued]:
        if not jobs:
            return []
        ids = [j.id for j in jobs]
        if len(set(ids)) != len(ids):
            raise StoreError("job id repeated within one batch")
        for new in jobs:
            if "," in new.queue or "\x00" in new.queue:
                raise StoreError(f"queue name {new.queue!r} contains a comma or NUL byte")
        out = await self._run("enqueue", [codec.num(now), codec.script_json([codec.enqueue_args(j) for j in jobs])])
        return [
            Enqueued(job=codec.new_record(new, now), created=True)
            if item == 1
            else Enqueued(job=codec.scripted_record(item), created=False)
            for new, item in zip(jobs, out, strict=True)
        ]

    async def job_claim(self, request: ClaimRequest, *, now: float) -> list[JobRecord]:
        if request.limit < 1 or not request.tasks or not request.queues:
            return []
        queues = tuple(dict.fromkeys(request.queues))  # a queue named twice has its lanes read once
        args = [
            codec.num(now),
            str(request.limit),
            request.worker_id,
            new_token() + ".",
            codec.num(now + request.lease),
            str(PROMOTE_CAP),
            str(len(queues)),
            *queues,
            *sorted(request.tasks),
        ]
        out = await self._run("claim", args)
        self._wake_seen = out[0]
        claimed = {
            "state": JobState.RUNNING.value,
            "started_at": args[0],
            "worker_id": request.worker_id,
            "lease_expires_at": args[4],
        }
        return [codec.claimed_record(item, claimed, args[3]) for item in out[1:]]

    async def job_heartbeat(
        self, worker_id: str, leases: Sequence[Lease], *, lease: float, now: float
    ) -> HeartbeatResult:
        if not leases:
            return HeartbeatResult()
        lost, cancel = await self._run(
            "heartbeat", [codec.num(now + lease), *_flat([x.job_id, x.token] for x in leases)]
        )
        return HeartbeatResult(lost=frozenset(lost), cancel_requested=frozenset(cancel))

    async def job_ack(self, outcomes: Sequence[JobOutcome], *, now: float) -> list[str]:
        if not outcomes:
            return []
        refused = await self._run("ack", [codec.num(now), codec.script_json([codec.ack_args(o) for o in outcomes])])
        return list(refused)

    async def job_get(self, job_id: str) -> JobRecord:
        await self.open()
        with translated():
            fields = await self._hgetall(self.keys.job(job_id))
        if not fields:
            raise JobNotFound(f"no job {job_id!r}")
        return codec.job_record(job_id, fields)

    async def job_list(self, filter: JobFilter) -> list[JobRecord]:
        """Merges the per-state id indexes newest first, a page at a time; queue and task
        filters are applied to the records read (a scan, bounded by what matches)."""
        await self.open()
        states = [filter.state] if filter.state is not None else list(JobState)
        out: list[JobRecord] = []
        cursor = filter.before
        page = max(filter.limit, LIST_PAGE)
        while len(out) < filter.limit:
            with translated():
                async with self._redis.pipeline(transaction=False) as pipe:
                    for state in states:
                        pipe.zrange(self.keys.ids(state), "+" if cursor is None else f"({cursor}", "-",
                                    desc=True, bylex=True, offset=0, num=page)  # fmt: skip
                    found = sorted({i for ids in await pipe.execute() for i in ids}, reverse=True)[:page]
                if not found:
                    break
                async with self._redis.pipeline(transaction=False) as pipe:
                    for job_id in found:
                        pipe.hgetall(self.keys.job(job_id))
                    records = await pipe.execute()
            out += [codec.job_record(i, f) for i, f in zip(found, records, strict=True) if f and _matches(f, filter)]
            if len(found) < page:
                break
            cursor = found[-1]
        return out[: filter.limit]

    async def job_cancel(self, job_id: str, *, now: float) -> JobRecord:
        out = await self._run("cancel", [job_id, codec.num(now)])
        if out is None:
            raise JobNotFound(f"no job {job_id!r}")
        return codec.scripted_record(out)

    async def job_retry(self, job_id: str, *, now: float) -> JobRecord:
        out = await self._run("retry", [job_id, codec.num(now)])
        match out[0]:
            case "ok":
                return codec.scripted_record(out[1])
            case "missing":
                raise JobNotFound(f"no job {job_id!r}")
            case "dedup":
                raise InvalidTransition(f"job {job_id} cannot be retried: job {out[1]} already holds its dedup key")
        raise InvalidTransition(f"job {job_id} is {out[1]}; only dead or cancelled jobs can be retried")

    async def job_rescue(self, *, now: float, limit: int = 1000) -> list[JobRecord]:
        out = await self._run("rescue", [codec.num(now), str(limit), LEASE_EXPIRED])
        return [codec.scripted_record(item) for item in out]

    async def job_prune(self, cutoffs: Mapping[JobState, float], *, limit: int = 10_000) -> int:
        """Deletes in scripts of at most ``PRUNE_CHUNK`` jobs (the spec asks no atomicity
        here), so that pruning never holds the server for long."""
        deleted = 0
        for state, cutoff in cutoffs.items():
            if state not in FINAL_STATES:
                continue
            done = 0
            while done < limit:
                chunk = min(PRUNE_CHUNK, limit - done)
                n = int(await self._run("prune", [str(chunk), state.value, codec.num(cutoff)]))
                done += n
                if n < chunk:
                    break
            deleted += done
        return deleted

    async def job_next_due(self, queues: Sequence[str]) -> float | None:
        await self.open()
        with translated():
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.hgetall(self.keys.paused)
                for queue in queues:
                    pipe.zrange(self.keys.sched(queue), 0, 0, withscores=True)
                paused, *heads = await pipe.execute()
        due = [score for queue, head in zip(queues, heads, strict=True) if queue not in paused for _, score in head]
        return min(due) if due else None

    async def job_counts(self) -> list[JobCount]:
        await self.open()
        with translated():
            counts = await self._hgetall(self.keys.counts)
        out = []
        for field, n in counts.items():
            state, queue, task = field.split(",", 2)
            out.append(JobCount(queue=queue, task=task, state=_STATES[state], count=int(n)))
        return sorted(out, key=lambda c: (c.queue, c.task, c.state.value))

    async def job_finished_since(self, since: float) -> dict[JobState, int]:
        await self.open()
        finals = sorted(FINAL_STATES)
        with translated():
            async with self._redis.pipeline(transaction=False) as pipe:
                for state in finals:
                    pipe.zcount(self.keys.done(state), codec.num(since), "+inf")
                counts = await pipe.execute()
        return {state: int(n) for state, n in zip(finals, counts, strict=True) if n}

    # -- queues ------------------------------------------------------------------------

    async def queue_pause(self, queue: str, *, now: float) -> None:
        await self._run("queue_pause", [queue, codec.num(now)])

    async def queue_resume(self, queue: str) -> None:
        await self._run("queue_resume", [queue])

    async def queue_purge(self, queue: str) -> int:
        return int(await self._run("purge", [queue]))

    async def queue_list(self) -> list[QueueInfo]:
        await self.open()
        with translated():
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.smembers(self.keys.queues)
                pipe.hgetall(self.keys.paused)
                names, paused = await pipe.execute()
        return [
            QueueInfo(name=n, paused=n in paused, paused_at=float(paused[n]) if n in paused else None)
            for n in sorted(set(names) | set(paused))
        ]

    # -- wake-ups ----------------------------------------------------------------------

    async def wakeup_wait(self, timeout: float) -> bool:
        """Block in XREAD on the wake stream after the newest entry this instance has
        seen: a write since then (even one made before this call) returns at once."""
        await self.open()
        if self._waiter is None:
            self._waiter = self._connect(blocking=True)
        with translated():
            reply: Any = await self._waiter.xread(
                {self.keys.wake: self._wake_seen}, count=1, block=max(1, round(timeout * 1000))
            )
        if not reply:
            return False
        self._wake_seen = str(reply[0][1][-1][0])
        return True

    # -- workers and the task registry -------------------------------------------------

    async def worker_register(self, info: WorkerInfo) -> None:
        fields = codec.worker_fields(info)
        tasks = _flat([t.name, codec.task_json(t)] for t in info.tasks)
        head = [info.id, codec.num(info.heartbeat_at), str(len(fields) // 2)]
        await self._run("worker_register", [*head, *fields, *tasks])

    async def worker_heartbeat(self, worker_id: str, *, in_flight: int, now: float) -> bool:
        return bool(await self._run("worker_heartbeat", [worker_id, codec.num(now), str(in_flight)]))

    async def worker_unregister(self, worker_id: str) -> None:
        await self._run("worker_remove", ["id", worker_id])

    async def worker_list(self) -> list[WorkerInfo]:
        await self.open()
        with translated():
            ids = cast(list[str], await self._redis.zrange(self.keys.workers, 0, -1))
            async with self._redis.pipeline(transaction=False) as pipe:
                for worker_id in ids:
                    pipe.hgetall(self.keys.worker(worker_id))
                rows = await pipe.execute()
        tasks = {t.name: t for t in await self.task_list()}
        workers = [codec.worker_info(i, f, tasks) for i, f in zip(ids, rows, strict=True) if f]
        return sorted(workers, key=lambda w: (w.started_at, w.id))

    async def worker_prune(self, *, dead_before: float) -> list[str]:
        return list(await self._run("worker_remove", ["before", codec.num(dead_before)]))

    async def task_list(self) -> list[TaskInfo]:
        await self.open()
        with translated():
            tasks = await self._hgetall(self.keys.tasks)
        return sorted((codec.task_info(n, t) for n, t in tasks.items()), key=lambda t: t.name)


def _matches(fields: Mapping[str, str], filter: JobFilter) -> bool:
    return (
        (filter.state is None or fields["state"] == filter.state.value)
        and (filter.queue is None or fields["queue"] == filter.queue)
        and (filter.task is None or fields["task"] == filter.task)
    )


def _where(client: Redis) -> str:
    kwargs = client.connection_pool.connection_kwargs
    return f"{kwargs.get('host', kwargs.get('path', '?'))}:{kwargs.get('port', '')}/{kwargs.get('db', 0)}"
