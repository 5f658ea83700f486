"""Conformance: queues, wake-ups, workers and the task registry."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from backbeat.errors import JobNotFound
from backbeat.store.base import Store
from backbeat.testing.conformance.helpers import T0, Base, claim, new_job
from backbeat.types import JobState, TaskInfo, WorkerInfo


class QueueWorkerTests(Base):
    # -- queues ------------------------------------------------------------------------

    async def test_a_paused_queue_is_not_claimed_from(self, store: Store) -> None:
        a, b = new_job(queue="a"), new_job(queue="b")
        await store.job_enqueue([a, b], now=T0)
        await store.queue_pause("a", now=T0 + 1)
        await store.queue_pause("a", now=T0 + 2)
        claimed = await store.job_claim(claim(10, queues=("a", "b")), now=T0)
        assert [j.id for j in claimed] == [b.id]
        assert await store.job_claim(claim(10, queues=("a",)), now=T0) == []
        queues = {q.name: q for q in await store.queue_list()}
        assert queues["a"].paused and queues["a"].paused_at == T0 + 1 and not queues["b"].paused
        later = new_job(queue="a")
        assert (await store.job_enqueue([later], now=T0))[0].created  # enqueueing still works
        await store.queue_resume("a")
        await store.queue_resume("a")
        assert {j.id for j in await store.job_claim(claim(10, queues=("a",)), now=T0)} == {a.id, later.id}
        assert not {q.name: q for q in await store.queue_list()}["a"].paused

    async def test_pausing_an_unknown_queue_holds_jobs_enqueued_later(self, store: Store) -> None:
        await store.queue_pause("future", now=T0)
        await store.job_enqueue([new_job(queue="future")], now=T0)
        assert await store.job_claim(claim(10, queues=("future",)), now=T0) == []
        assert [q.name for q in await store.queue_list()] == ["future"]

    async def test_purge_deletes_pending_jobs_only(self, store: Store) -> None:
        pending = [new_job(queue="p"), new_job(queue="p", run_at=T0 + 60), new_job(queue="p", dedup_key="k")]
        running, other = new_job(queue="p"), new_job(queue="q")
        await store.job_enqueue([running], now=T0)
        job = await self.claim_one(store, queues=("p",))
        await store.job_enqueue([*pending, other], now=T0)
        assert await store.queue_purge("p") == 3
        for new in pending:
            with pytest.raises(JobNotFound):
                await store.job_get(new.id)
        assert (await store.job_get(job.id)).state is JobState.RUNNING
        assert (await store.job_get(other.id)).state is JobState.QUEUED
        assert (await store.job_enqueue([new_job(queue="p", dedup_key="k")], now=T0))[0].created
        assert await store.queue_purge("nothing-here") == 0

    async def test_queue_list_names_every_queue_with_jobs(self, store: Store) -> None:
        await store.job_enqueue([new_job(queue="z"), new_job(queue="a"), new_job(queue="a")], now=T0)
        assert [(q.name, q.paused) for q in await store.queue_list()] == [("a", False), ("z", False)]

    async def test_migrate_is_idempotent(self, store: Store) -> None:
        first = await store.migrate()
        assert await store.migrate() == first

    # -- wake-ups ----------------------------------------------------------------------

    async def test_wakeup_after_a_write_by_another_handle(self, store: Store, other: Store) -> None:
        waiter = asyncio.ensure_future(store.wakeup_wait(30))
        await asyncio.sleep(0)  # the waiter registers before its first suspension
        await other.job_enqueue([new_job()], now=T0)
        assert await asyncio.wait_for(waiter, 10) is True

    async def test_wakeup_times_out_without_writes(self, store: Store) -> None:
        assert await store.wakeup_wait(0.05) is False

    # -- workers -----------------------------------------------------------------------

    def worker(self, worker_id: str = "w1", **changes: Any) -> WorkerInfo:
        fields: dict[str, Any] = {
            "id": worker_id,
            "host": "h",
            "pid": 42,
            "queues": ("default", "low"),
            "concurrency": 4,
            "tasks": (TaskInfo(name="t.a", queue="default", max_attempts=3, timeout=5.0),),
            "started_at": T0,
            "heartbeat_at": T0,
        }
        fields.update(changes)
        return WorkerInfo(**fields)

    async def test_workers_register_heartbeat_prune(self, store: Store) -> None:
        await store.worker_register(self.worker("w1"))
        await store.worker_register(self.worker("w2", started_at=T0 + 1, heartbeat_at=T0 + 1))
        assert await store.worker_heartbeat("w2", in_flight=3, now=T0 + 20) is True
        assert await store.worker_heartbeat("ghost", in_flight=0, now=T0) is False
        workers = await store.worker_list()
        assert [w.id for w in workers] == ["w1", "w2"]
        assert workers[0] == self.worker("w1")
        assert workers[1].heartbeat_at == T0 + 20 and workers[1].in_flight == 3
        assert await store.worker_prune(dead_before=T0 + 10) == ["w1"]
        await store.worker_unregister("w2")
        await store.worker_unregister("w2")
        assert await store.worker_list() == []

    async def test_task_registry_keeps_the_last_definition(self, store: Store) -> None:
        await store.worker_register(self.worker("w1"))
        newer = TaskInfo(name="t.a", queue="low", max_attempts=1, timeout=None, priority=3)
        await store.worker_register(self.worker("w2", tasks=(newer, TaskInfo(name="t.b", queue="x", max_attempts=2))))
        await store.worker_unregister("w1")
        await store.worker_unregister("w2")
        assert [t.name for t in await store.task_list()] == ["t.a", "t.b"]
        assert (await store.task_list())[0] == newer

    async def test_task_registry_keeps_secret_names_and_handled_patterns(self, store: Store) -> None:
        poll = TaskInfo(name="twitter.poll", queue="default", max_attempts=3, secret=("token", "refresh"))
        handler = TaskInfo(name="on.linked", queue="default", max_attempts=1, secret=("token",), handles="account.*")
        await store.worker_register(self.worker("w1", tasks=(poll, handler)))
        assert await store.task_list() == [handler, poll]
        [worker] = await store.worker_list()
        assert set(worker.tasks) == {poll, handler}
