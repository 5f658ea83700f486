"""Jobs: random enqueue, claim, heartbeat, ack (succeed, fail, snooze, release), rescue
(expired leases), cancel, retry, queue pause/purge and prune, on the reference store and the
store under test; every answer must be the same, and so must every listing.

Times are arbitrary floats (they must survive Lua and SQL exactly); ties in order_at across
tasks and queues exercise the lane merge. One difference is allowed by the spec and
normalised (``Twins.norm``): a due ``scheduled`` job that a claim did not take is promoted
to ``queued`` by the server stores but left ``scheduled`` by the memory store.

Claims may park the worker; a job a store hands over (Redis: ``ClaimRequest.park``) is
mirrored on the reference store by a claim of one job, which must take the same job."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field, replace
from typing import Any

from backbeat.ids import uuid7
from backbeat.types import (
    ClaimRequest,
    JobFilter,
    JobOutcome,
    JobState,
    Lease,
    NewJob,
    Outcome,
)
from tests.model.twins import Twins

GAPS = (0.25, 1.0, 2.5)
"""Seconds the clock moves by, one at a time."""


@dataclass
class JobModel(Twins):
    ids: list[str] = field(default_factory=list)
    parked: ClaimRequest | None = None
    """The last claim, while it parks the worker (``ClaimRequest.park``)."""

    def new_job(self) -> NewJob:
        r = self.rng
        return NewJob(
            id=uuid7(int(self.now * 1000) + r.randrange(5000)),
            task=r.choice(["t0", "t1", "t2", "tx"]),
            queue=r.choice(["a", "b"]),
            payload='{"args":[],"kwargs":{}}',
            run_at=self.now + r.choice([0.0, 0.0, -0.5, r.uniform(0.1, 4)]),
            priority=r.choice([-1, 0, 0, 2]),
            max_attempts=r.choice([1, 2, 3]),
            dedup_key=r.choice([None, None, None, "d0", "d1"]),
            order_at=r.choice([None, None, self.now + r.choice([-1.0, 0.0, 1.0]), self.now + r.uniform(-3, 3)]),
        )

    async def enqueue(self, count: int | None = None) -> None:
        jobs = [self.new_job() for _ in range(count or self.rng.randint(1, 5))]
        m, r = await self.both("job_enqueue", jobs, now=self.now)
        assert [(e.created, self.norm(e.job)) for e in m] == [(e.created, self.norm(e.job)) for e in r]
        self.ids += [j.id for j in jobs]
        if self.parked is not None and len(m) == 1 and m[0].created:
            await self.handed_over(m[0].job.id)

    async def enqueue_one(self) -> None:
        """One job alone, as ``task.enqueue()`` writes it: the kind a parked worker is handed."""
        await self.enqueue(1)

    async def handed_over(self, job_id: str) -> None:
        """A store that hands jobs over (Redis) leased the job to the parked worker as a
        claim of one job would have: the reference store makes that claim, which must
        take the same job (dispatch order holds)."""
        assert self.parked is not None
        if (await self.sut.job_get(job_id)).state is not JobState.RUNNING:
            return
        [handed] = await self.sut.job_unpark("w")
        [claimed] = await self.mem.job_claim(replace(self.parked, limit=1), now=self.now)
        assert self.norm(claimed) == self.norm(handed)
        assert claimed.lease_token and handed.lease_token
        self.held[job_id] = (
            Lease(job_id=job_id, token=claimed.lease_token),
            Lease(job_id=job_id, token=handed.lease_token),
        )
        self.parked = None

    async def claim(self) -> None:
        r = self.rng
        request = ClaimRequest(
            worker_id="w",
            queues=r.choice([("a",), ("b",), ("a", "b"), ("b", "a"), ("a", "a")]),
            tasks=frozenset(r.choice([{"t0", "t1", "t2"}, {"t0"}, {"t1", "t2", "tx"}, {"t0", "t1", "t2", "tx"}])),
            limit=r.randint(1, 6),
            lease=r.choice([1.0, 5.0]),
            park=r.choice([0.0, 1.0, 3.0]),
        )
        m, rd = await self.both("job_claim", request, now=self.now)
        assert [self.norm(j) for j in m] == [self.norm(j) for j in rd]
        self.parked = request if request.park > 0 and len(rd) < request.limit else None
        for a, b in zip(m, rd, strict=True):
            assert a.lease_token and b.lease_token
            self.held[a.id] = (Lease(job_id=a.id, token=a.lease_token), Lease(job_id=b.id, token=b.lease_token))

    def outcome(self, lease: Lease, kind: Outcome) -> JobOutcome:
        r = self.rng
        retry = r.choice([None, self.now + r.uniform(0, 3)]) if kind is not Outcome.SNOOZED else self.now + 1.5
        return JobOutcome(
            lease=lease,
            outcome=kind,
            result=r.choice([None, "1", '{"x":"ü"}']),
            error=r.choice([None, "E: boom"]),
            traceback=r.choice([None, "tb"]),
            retry_at=retry if kind in (Outcome.FAILED, Outcome.SNOOZED) else None,
        )

    async def ack(self) -> None:
        chosen = self.rng.sample(sorted(self.held), min(len(self.held), self.rng.randint(1, 4)))
        stale = self.rng.random() < 0.2
        pairs = [self.held.pop(i) for i in chosen]
        drawn = [self.outcome(p[0], self.rng.choice(list(Outcome))) for p in pairs]
        for store, side in ((self.mem, 0), (self.sut, 1)):
            leases = [replace(p[side], token="stale") if stale else p[side] for p in pairs]
            outcomes = [replace(o, lease=lease) for o, lease in zip(drawn, leases, strict=True)]
            assert await store.job_ack(outcomes, now=self.now) == (chosen if stale else [])
        for job_id in chosen:
            m, r = await self.both("job_get", job_id)
            assert self.norm(m) == self.norm(r)

    async def heartbeat(self) -> None:
        if not self.held:
            return
        leases = list(self.held.values())
        m = await self.mem.job_heartbeat("w", [p[0] for p in leases], lease=2.0, now=self.now)
        r = await self.sut.job_heartbeat("w", [p[1] for p in leases], lease=2.0, now=self.now)
        assert m == r
        for job_id in m.lost:
            self.held.pop(job_id, None)

    async def cancel_or_retry(self) -> None:
        job_id = self.rng.choice([*self.ids, "missing"])
        call = self.rng.choice(["job_cancel", "job_retry"])
        m, r = await self.both(call, job_id, now=self.now)
        assert self.norm_or_error(m) == self.norm_or_error(r)

    async def queues(self) -> None:
        queue = self.rng.choice(["a", "b"])
        match self.rng.randrange(10):
            case 0:
                m, r = await self.both("queue_purge", queue)
                assert m == r
            case 1 | 2 | 3:
                await self.both("queue_pause", queue, now=self.now)
            case _:
                await self.both("queue_resume", queue)
        m, r = await self.both("queue_list")
        assert m == r

    async def prune(self) -> None:
        cutoffs = {JobState.SUCCEEDED: self.now - 2, JobState.DEAD: self.now - 1, JobState.CANCELLED: self.now}
        m, r = await self.both("job_prune", cutoffs)  # which jobs a smaller limit takes is unspecified
        assert m == r

    async def compare_all(self) -> None:
        m, r = await self.both("job_list", JobFilter(limit=10_000))
        assert [self.norm(j) for j in m] == [self.norm(j) for j in r]
        for state in (JobState.RUNNING, JobState.SUCCEEDED, JobState.DEAD, JobState.CANCELLED):
            m, r = await self.both("job_list", JobFilter(state=state, queue=self.rng.choice([None, "a"]), limit=3))
            assert [self.norm(j) for j in m] == [self.norm(j) for j in r]
        m, r = await self.both("job_finished_since", self.now - 3)
        assert m == r
        for store in (self.mem, self.sut):  # kept counts (triggers on SQL) equal a recount
            jobs = await store.job_list(JobFilter(limit=10_000))
            recount = Counter((j.queue, j.task, j.state) for j in jobs)
            counts = await store.job_counts()
            assert sorted((c.queue, c.task, c.state, c.count) for c in counts) == sorted(
                (q, t, s, n) for (q, t, s), n in recount.items()
            )

    def operations(self) -> list[Callable[[], Coroutine[Any, Any, None]]]:
        steps = [self.enqueue] * 4 + [self.enqueue_one] * 2 + [self.claim] * 4 + [self.ack] * 3
        return steps + [self.heartbeat, self.rescue] + [self.cancel_or_retry] * 2 + [self.queues, self.prune]
