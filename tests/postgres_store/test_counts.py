"""Finished-job counts on PostgreSQL are kept, not recounted (migration 5): every statement
that moves jobs into or out of a finished state appends its net change per (queue, task,
state), and each maintenance round folds those deltas into the kept counts; live jobs are
counted from their rows. A count must equal a recount at every step."""

from __future__ import annotations

import psycopg
import pytest

from backbeat.store import open_store
from backbeat.store.base import Store
from backbeat.store.postgres import connection
from backbeat.testing.conformance import new_job
from backbeat.testing.conformance.helpers import T0
from backbeat.types import ClaimRequest, JobOutcome, JobState, Lease, Outcome
from tests.postgres_server import fresh_database, url_of


def recount(database: str) -> list[tuple[str, str, str, int]]:
    with psycopg.connect(url_of(database)) as conn:
        rows = conn.execute(
            "SELECT queue, task, state, COUNT(*) FROM backbeat_jobs GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
        ).fetchall()
    return [(q, t, s, int(n)) for q, t, s, n in rows]


def finished_groups(database: str) -> int:
    return sum(1 for _, _, state, _ in recount(database) if state in ("succeeded", "dead", "cancelled"))


def kept(database: str) -> tuple[int, int]:
    """(rows of kept counts, rows of deltas not folded yet)."""
    with psycopg.connect(url_of(database)) as conn:
        counts = conn.execute("SELECT COUNT(*) FROM backbeat_job_counts").fetchone()
        deltas = conn.execute("SELECT COUNT(*) FROM backbeat_job_count_deltas").fetchone()
    assert counts is not None and deltas is not None
    return int(counts[0]), int(deltas[0])


async def counts(store: Store) -> list[tuple[str, str, str, int]]:
    return [(c.queue, c.task, c.state.value, c.count) for c in await store.job_counts()]


async def test_counts_follow_every_write_and_survive_the_fold(database: str) -> None:
    store = open_store(url_of(database))
    try:
        jobs = [new_job(task=f"t{i % 2}", queue=f"q{i % 3}") for i in range(12)]
        await store.job_enqueue(jobs, now=T0)
        assert await counts(store) == recount(database)
        request = ClaimRequest(
            worker_id="w", queues=("q0", "q1", "q2"), tasks=frozenset({"t0", "t1"}), limit=7, lease=30
        )
        claimed = await store.job_claim(request, now=T0 + 1)
        assert await counts(store) == recount(database)
        outcomes = [Outcome.SUCCEEDED, Outcome.FAILED, Outcome.CANCELLED, Outcome.RELEASED]
        await store.job_ack(
            [
                JobOutcome(lease=Lease(job_id=j.id, token=j.lease_token or ""), outcome=o)
                for j, o in zip(claimed, outcomes, strict=False)
            ],
            now=T0 + 2,
        )
        await store.job_heartbeat(
            "w", [Lease(job_id=j.id, token=j.lease_token or "") for j in claimed], lease=30, now=T0 + 3
        )
        assert await counts(store) == recount(database)
        assert kept(database)[1] > 0
        assert await store.job_prune({JobState.SUCCEEDED: T0 + 10}) == 1
        await store.job_rescue(now=T0 + 3)  # folds
        assert kept(database) == (finished_groups(database), 0)
        assert await counts(store) == recount(database)
        await store.queue_purge("q0")
        await store.job_rescue(now=T0 + 100)  # the rest of the leases expired: rescued, then folded
        assert kept(database) == (finished_groups(database), 0)  # a count at 0 is dropped
        assert await counts(store) == recount(database)
    finally:
        await store.close()


async def test_migration_5_counts_the_jobs_already_there(monkeypatch: pytest.MonkeyPatch) -> None:
    every = connection.migrations()
    with fresh_database(migrated=False) as name:
        monkeypatch.setattr(connection, "migrations", lambda: [m for m in every if m[0] < 5])
        old = open_store(url_of(name))
        try:
            await old.migrate()
            await old.job_enqueue([new_job(task=f"t{i % 3}") for i in range(7)], now=T0)
            request = ClaimRequest(
                worker_id="w", queues=("default",), tasks=frozenset({"t0", "t1", "t2"}), limit=4, lease=30
            )
            claimed = await old.job_claim(request, now=T0 + 1)
            outcomes = [Outcome.SUCCEEDED, Outcome.SUCCEEDED, Outcome.CANCELLED]
            await old.job_ack(
                [
                    JobOutcome(lease=Lease(job_id=j.id, token=j.lease_token or ""), outcome=o)
                    for j, o in zip(claimed, outcomes, strict=False)
                ],
                now=T0 + 2,
            )
        finally:
            await old.close()
        monkeypatch.setattr(connection, "migrations", lambda: every)
        store = open_store(url_of(name))
        try:
            assert await store.migrate() == connection.NEWEST
            assert await counts(store) == recount(name)
            assert kept(name) == (finished_groups(name), 0) and finished_groups(name) >= 2
        finally:
            await store.close()


async def test_finished_jobs_written_by_plain_sql_are_counted_too(database: str) -> None:
    """The store never inserts a finished job, but an import or a restore by SQL may."""
    store = open_store(url_of(database))
    try:
        await store.job_enqueue([new_job()], now=T0)
        with psycopg.connect(url_of(database), autocommit=True) as conn:
            conn.execute(
                "INSERT INTO backbeat_jobs (id, task, queue, state, payload, run_at, order_at, max_attempts, "
                "created_at, finished_at) SELECT 'imported-' || i, 't.a', 'default', "
                "(ARRAY['succeeded', 'dead', 'cancelled', 'queued'])[1 + i % 4], '{}', 0, 0, 1, 0, 1 "
                "FROM generate_series(1, 8) AS i"
            )
        assert await counts(store) == recount(database)
        await store.job_rescue(now=T0)
        assert await counts(store) == recount(database) and kept(database) == (3, 0)
    finally:
        await store.close()
