"""The Redis store: jobs, queues, wake-ups, workers, the task registry, published state.

Reads that need no atomicity (``job_get``, listings, counts) are plain commands,
pipelined; every write is a script (``scripts/``) or a single command.

Internal module.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry as BlockingRetry

from backbeat.errors import InvalidTransition, JobNotFound, StoreError
from backbeat.ids import token as new_token
from backbeat.store.base import LEASE_EXPIRED
from backbeat.store.redis import codec
from backbeat.store.redis.connection import _OPTIONS, RedisBase, flat, translated
from backbeat.store.rules import new_record
from backbeat.types import (
    FINAL_STATES,
    Backlog,
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
    StateValue,
    TaskInfo,
    TaskStats,
    WorkerInfo,
)

PROMOTE_CAP = 1000
"""Most due scheduled jobs one claim promotes per queue (claim.lua)."""
STATS_PAGE = 2000
"""Finished jobs read per round trip by ``job_stats``."""
_STATES = {s.value: s for s in JobState}


def check_queue(queue: str) -> None:
    """Lane keys join queue, priority and task with commas (keys.py)."""
    if "," in queue or "\x00" in queue:
        raise StoreError(f"queue name {queue!r} contains a comma or NUL byte")


def _enqueued(jobs: Sequence[NewJob], out: list[Any], now: float) -> list[Enqueued]:
    """enqueue.lua's reply: 1 for a job written, else the live job holding its dedup key."""
    return [
        Enqueued(job=new_record(new, now), created=True)
        if item == 1
        else Enqueued(job=codec.scripted_record(item), created=False)
        for new, item in zip(jobs, out, strict=True)
    ]


def enqueue_items(jobs: Sequence[NewJob]) -> list[list[Any]]:
    """The jobs as ``insert_job`` takes them; refuses what the key layout cannot hold."""
    ids = [j.id for j in jobs]
    if len(set(ids)) != len(ids):
        raise StoreError("job id repeated within one batch")
    for new in jobs:
        check_queue(new.queue)
    return [codec.enqueue_item(j) for j in jobs]


class JobMethods(RedisBase):
    # -- jobs --------------------------------------------------------------------------

    async def job_enqueue(self, jobs: Sequence[NewJob], *, now: float) -> list[Enqueued]:
        if not jobs:
            return []
        out = await self._run("enqueue", [codec.num(now), codec.script_json(enqueue_items(jobs))])
        return _enqueued(jobs, out, now)

    def job_enqueue_blocking(self, jobs: Sequence[NewJob], *, now: float) -> list[Enqueued] | None:
        out = self._run_sync("enqueue", [codec.num(now), codec.script_json(enqueue_items(jobs))])
        return None if out is None else _enqueued(jobs, out, now)

    async def job_claim(self, request: ClaimRequest, *, now: float) -> list[JobRecord]:
        if request.limit < 1 or not request.tasks or not request.queues:
            return []
        queues = tuple(dict.fromkeys(request.queues))  # a queue named twice has its lanes read once
        if request.park > 0:
            self._inboxes.setdefault(request.worker_id, "0-0")  # from now on, wakeup_wait watches its inbox
        args = [
            codec.num(now),
            str(request.limit),
            request.worker_id,
            new_token() + ".",
            codec.num(now + request.lease),
            str(PROMOTE_CAP),
            codec.num(now + request.park) if request.park > 0 else "",
            codec.num(request.lease),
            self._inboxes.get(request.worker_id, "0-0"),
            str(len(queues)),
            *queues,
            *sorted(request.tasks),
        ]
        out = await self._run("claim", args)
        self._wake_seen = out[0]
        handed = self._handed.pop(request.worker_id, []) + self._received(request.worker_id, out[1])
        claimed = {
            "state": JobState.RUNNING.value,
            "started_at": args[0],
            "worker_id": request.worker_id,
            "lease_expires_at": args[4],
        }
        return handed + [codec.claimed_record(item, claimed, args[3]) for item in out[2:]]

    def _received(
        self, worker_id: str, entries: Sequence[Any], accept: Callable[[list[JobRecord]], bool] | None = None
    ) -> list[JobRecord]:
        """The inbox entries (stream id, fields) of ``worker_id`` not received before: a
        claim, a wait and a thread's wait may all return one, and whichever answer comes
        first has it (the cursor moves under a lock: the thread's wait runs beside the
        loop). With ``accept``, the entries are received only if it says so."""
        with self._inbox_lock:
            cursor = self._inboxes.get(worker_id)
            if cursor is None:
                return []
            jobs = []
            for entry_id, fields in entries:
                if _stream_id(entry_id) > _stream_id(cursor):
                    fields = codec.pairs(fields) if isinstance(fields, list) else dict(fields)
                    jobs.append(codec.job_record(fields.pop("@id"), fields))
                    cursor = entry_id
            if jobs and accept is not None and not accept(jobs):
                return []
            self._inboxes[worker_id] = cursor
            return jobs

    def job_handed(self, worker_id: str) -> list[JobRecord]:
        return self._handed.pop(worker_id, [])

    def job_handed_to_thread(self, worker_id: str) -> bool:
        self._thread_inboxes.add(worker_id)
        return True

    def job_handed_wait(
        self, worker_id: str, timeout: float, accept: Callable[[list[JobRecord]], bool]
    ) -> list[JobRecord]:
        """XREAD on the worker's inbox, on a blocking connection of this worker's own
        (its thread is the only one using it), after the newest entry received."""
        with self._inbox_lock:
            cursor = self._inboxes.get(worker_id)
            client = self._catchers.get(worker_id)
            if cursor is None or self._client is None or worker_id not in self._thread_inboxes:
                raise StoreError(f"worker {worker_id} is not parked through this store, or it stopped, or it closed")
            if client is None:
                # no retries: a failed wait is simply the caller's next one. No socket
                # timeout, whatever the URL says: the read lasts as long as the wait.
                client = redis.Redis.from_url(self._url(), retry=BlockingRetry(NoBackoff(), 0), **_OPTIONS)
                client.connection_pool.connection_kwargs["socket_timeout"] = None
                self._catchers[worker_id] = client  # job_unpark and close() close it (under this lock)
        with translated():
            reply: Any = client.xread(
                {self.keys.inbox(worker_id): cursor}, count=16, block=max(1, round(timeout * 1000))
            )
        if not reply:
            return []
        [(_, entries)] = reply
        return self._received(worker_id, entries, accept)

    async def job_unpark(self, worker_id: str) -> list[JobRecord]:
        """The cursor stays: were the worker parked again, it is handed only what is new.
        A thread's wait on the inbox is cut (its connection closed): it is over."""
        with self._inbox_lock:
            self._thread_inboxes.discard(worker_id)
            catcher = self._catchers.pop(worker_id, None)
        if catcher is not None:
            catcher.close()
        cursor = self._inboxes.get(worker_id)
        entries = [] if cursor is None else await self._run("unpark", [worker_id, cursor])
        return self._handed.pop(worker_id, []) + self._received(worker_id, entries)

    async def job_heartbeat(
        self, worker_id: str, leases: Sequence[Lease], *, lease: float, now: float
    ) -> HeartbeatResult:
        if not leases:
            return HeartbeatResult()
        pairs = flat([x.job_id, x.token] for x in leases)
        lost, cancel = await self._run("heartbeat", [codec.num(now + lease), *pairs])
        return HeartbeatResult(lost=frozenset(lost), cancel_requested=frozenset(cancel))

    async def job_ack(self, outcomes: Sequence[JobOutcome], *, now: float) -> list[str]:
        if not outcomes:
            return []
        refused = await self._run("ack", [codec.num(now), codec.script_json([codec.ack_item(o) for o in outcomes])])
        return list(refused)

    async def job_get(self, job_id: str) -> JobRecord:
        await self.open()
        with self._guarded():
            fields = await self._hgetall(self.keys.job(job_id))
        if not fields:
            raise JobNotFound(f"no job {job_id!r}")
        return codec.job_record(job_id, fields)

    async def job_list(self, filter: JobFilter) -> list[JobRecord]:
        states = [filter.state] if filter.state is not None else list(JobState)
        return await self._newest(
            [self.keys.ids(s) for s in states], filter.before, filter.limit, self._jobs, lambda j: _matches(j, filter)
        )

    async def _jobs(self, ids: list[str]) -> list[JobRecord]:
        rows = await self._hashes([self.keys.job(i) for i in ids])
        return [codec.job_record(i, f) for i, f in zip(ids, rows, strict=True) if f]

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
        """Deletes in chunks (the spec asks no atomicity here), so that pruning never
        holds the server for long."""
        deleted = 0
        for state, cutoff in cutoffs.items():
            if state in FINAL_STATES:
                deleted += await self._chunked("prune", [state.value, codec.num(cutoff)], limit)
        return deleted

    async def job_next_due(self, queues: Sequence[str]) -> float | None:
        paused, *heads = await self._read(
            lambda pipe: (
                [pipe.hgetall(self.keys.paused)]
                + [pipe.zrange(self.keys.sched(q), 0, 0, withscores=True) for q in queues]
            )
        )
        due = [score for queue, head in zip(queues, heads, strict=True) if queue not in paused for _, score in head]
        return min(due) if due else None

    async def job_counts(self) -> list[JobCount]:
        await self.open()
        with self._guarded():
            counts = await self._hgetall(self.keys.counts)
        out = []
        for field, n in counts.items():
            state, queue, task = field.split(",", 2)
            out.append(JobCount(queue=queue, task=task, state=_STATES[state], count=int(n)))
        return sorted(out, key=lambda c: (c.queue, c.task, c.state.value))

    async def job_finished_since(self, since: float) -> dict[JobState, int]:
        finals = sorted(FINAL_STATES)
        since_ = codec.num(since)
        counts = await self._read(lambda pipe: [pipe.zcount(self.keys.done(s), since_, "+inf") for s in finals])
        return {state: int(n) for state, n in zip(finals, counts, strict=True) if n}

    async def job_stats(self, since: float) -> list[TaskStats]:
        """Reads the succeeded and dead jobs finished since ``since`` a page at a time
        (P:done:<state> gives each finish time; the job its task and start)."""
        stats: dict[str, tuple[int, float]] = {}
        for state in (JobState.SUCCEEDED, JobState.DEAD):
            offset, more = 0, True
            while more:
                page, read = await self._finished_page(state, since, offset)
                for task, started, finished in page:
                    count, seconds = stats.get(task, (0, 0.0))
                    ran = 0.0 if started is None else max(0.0, finished - started)
                    stats[task] = (count + 1, seconds + ran)
                offset, more = offset + read, read == STATS_PAGE
        return [TaskStats(task=t, finished=n, run_seconds=s) for t, (n, s) in sorted(stats.items())]

    async def _finished_page(
        self, state: JobState, since: float, offset: int
    ) -> tuple[list[tuple[str, float | None, float]], int]:
        """(task, started_at, finished_at) of one page of jobs that reached ``state`` since
        ``since`` (a job pruned meanwhile is left out), and how many entries were read."""
        done = self.keys.done(state)
        page = cast(
            list[tuple[str, float]],
            await self._redis_call("zrangebyscore", done, codec.num(since), "+inf", offset, STATS_PAGE, True),
        )
        rows = await self._read(lambda pipe: [pipe.hmget(self.keys.job(i), "task", "started_at") for i, _ in page])
        found = [
            (task, None if started is None else float(started), finished)
            for (_, finished), (task, started) in zip(page, rows, strict=True)
            if task is not None
        ]
        return found, len(page)

    async def job_backlog(self, queues: Sequence[str], *, now: float) -> Backlog:
        """Queued jobs from P:queued:<queue> (by run_at), due scheduled ones from
        P:sched:<queue>, read as one MULTI/EXEC snapshot."""
        wanted = list(dict.fromkeys(queues))
        if not wanted:
            return Backlog(count=0, oldest_due=None)
        due = codec.num(now)
        replies = await self._read(
            lambda pipe: [
                cmd
                for q in wanted
                for cmd in (
                    pipe.zcard(self.keys.queued(q)),
                    pipe.zrange(self.keys.queued(q), 0, 0, withscores=True),
                    pipe.zcount(self.keys.sched(q), "-inf", due),
                    pipe.zrangebyscore(self.keys.sched(q), "-inf", due, start=0, num=1, withscores=True),
                )
            ],
            transaction=True,
        )
        count = sum(int(n) for n in replies[0::2])
        times = [score for head in replies[1::2] for _, score in head]
        return Backlog(count=count, oldest_due=min(times) if times else None)

    # -- queues ------------------------------------------------------------------------

    async def queue_pause(self, queue: str, *, now: float) -> None:
        await self._run("queue_pause", [queue, codec.num(now)])

    async def queue_resume(self, queue: str) -> None:
        await self._run("queue_resume", [queue])

    async def queue_purge(self, queue: str) -> int:
        return int(await self._run("purge", [queue]))

    async def queue_list(self) -> list[QueueInfo]:
        names, paused = await self._read(lambda pipe: [pipe.smembers(self.keys.queues), pipe.hgetall(self.keys.paused)])
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
        streams: dict[Any, Any] = {self.keys.wake: self._wake_seen}
        workers = {}
        for worker_id, cursor in self._inboxes.items():
            if worker_id not in self._thread_inboxes:
                streams[self.keys.inbox(worker_id)] = cursor
                workers[self.keys.inbox(worker_id)] = worker_id
        with self._guarded():
            reply: Any = await self._waiter.xread(streams, count=16, block=max(1, round(timeout * 1000)))
        if not reply:
            return False
        for stream, entries in reply:
            if stream == self.keys.wake:
                self._wake_seen = str(entries[-1][0])
            elif (worker_id := workers[stream]) in self._inboxes:
                self._handed.setdefault(worker_id, []).extend(self._received(worker_id, entries))
        return True

    # -- workers and the task registry -------------------------------------------------

    async def worker_register(self, info: WorkerInfo) -> None:
        fields = codec.worker_fields(info)
        tasks = flat([t.name, codec.task_json(t)] for t in info.tasks)
        head = [info.id, codec.num(info.heartbeat_at), str(len(fields) // 2)]
        await self._run("worker_register", [*head, *fields, *tasks])

    async def worker_heartbeat(self, worker_id: str, *, in_flight: int, now: float) -> bool:
        return bool(await self._run("worker_heartbeat", [worker_id, codec.num(now), str(in_flight)]))

    async def worker_unregister(self, worker_id: str) -> None:
        await self._run("worker_remove", ["id", worker_id])

    async def worker_list(self) -> list[WorkerInfo]:
        ids = cast(list[str], await self._redis_call("zrange", self.keys.workers, 0, -1))
        rows = await self._hashes([self.keys.worker(i) for i in ids])
        tasks = {t.name: t for t in await self.task_list()}
        workers = [codec.worker_info(i, f, tasks) for i, f in zip(ids, rows, strict=True) if f]
        return sorted(workers, key=lambda w: (w.started_at, w.id))

    async def worker_prune(self, *, dead_before: float) -> list[str]:
        return list(await self._run("worker_remove", ["before", codec.num(dead_before)]))

    async def task_list(self) -> list[TaskInfo]:
        await self.open()
        with self._guarded():
            tasks = await self._hgetall(self.keys.tasks)
        return sorted((codec.task_info(n, t) for n, t in tasks.items()), key=lambda t: t.name)

    # -- published state ---------------------------------------------------------------

    async def state_set(self, name: str, value: str, *, now: float) -> None:
        await self._redis_call("hset", self.keys.state(name), mapping={"value": value, "updated_at": codec.num(now)})

    async def state_get(self, name: str) -> StateValue | None:
        value, updated_at = await self._redis_call("hmget", self.keys.state(name), ["value", "updated_at"])
        return None if value is None else StateValue(value=value, updated_at=float(updated_at))


def _matches(job: JobRecord, filter: JobFilter) -> bool:
    return (
        (filter.state is None or job.state is filter.state)
        and (filter.queue is None or job.queue == filter.queue)
        and (filter.task is None or job.task == filter.task)
        and (filter.schedule_key is None or job.schedule_key == filter.schedule_key)
    )


def _stream_id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)
