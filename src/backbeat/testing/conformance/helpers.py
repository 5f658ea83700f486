"""Fixtures and helpers of the conformance suite."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from typing import Any

import pytest

from backbeat.ids import uuid7
from backbeat.store import open_store
from backbeat.store.base import Store
from backbeat.types import (
    ClaimRequest,
    JobOutcome,
    JobRecord,
    Lease,
    NewJob,
    Outcome,
)

T0 = 1_800_000_000.0
TASKS = frozenset({"t.a", "t.b"})
_seq = itertools.count()


def new_job(**changes: Any) -> NewJob:
    fields: dict[str, Any] = {
        "id": uuid7(int(T0 * 1000) + next(_seq)),
        "task": "t.a",
        "queue": "default",
        "payload": '{"args":[],"kwargs":{}}',
        "run_at": T0,
        "max_attempts": 3,
    }
    fields.update(changes)
    return NewJob(**fields)


def claim(
    limit: int = 10,
    *,
    worker: str = "w1",
    queues: tuple[str, ...] = ("default",),
    lease: float = 30.0,
    tasks: frozenset[str] = TASKS,
) -> ClaimRequest:
    return ClaimRequest(worker_id=worker, queues=queues, tasks=tasks, limit=limit, lease=lease)


def lease_of(job: JobRecord) -> Lease:
    assert job.lease_token is not None
    return Lease(job_id=job.id, token=job.lease_token)


def outcome(job: JobRecord, kind: Outcome, **changes: Any) -> JobOutcome:
    return JobOutcome(lease=lease_of(job), outcome=kind, **changes)


class Base:
    """Fixtures and helpers shared by the suite's test classes."""

    pytestmark = pytest.mark.asyncio

    @pytest.fixture
    def store_url(self) -> str:
        raise NotImplementedError("a store's test module provides the store_url fixture")

    @pytest.fixture
    async def store(self, store_url: str) -> AsyncIterator[Store]:
        store = open_store(store_url)
        await store.open()
        try:
            yield store
        finally:
            await store.close()

    @pytest.fixture
    async def other(self, store_url: str, store: Store) -> AsyncIterator[Store]:
        """A second handle on the same store, as another process would open it."""
        second = open_store(store_url)
        await second.open()
        try:
            yield second
        finally:
            await second.close()

    async def claim_one(self, store: Store, now: float = T0, **kw: Any) -> JobRecord:
        jobs = await store.job_claim(claim(1, **kw), now=now)
        assert len(jobs) == 1, jobs
        return jobs[0]
