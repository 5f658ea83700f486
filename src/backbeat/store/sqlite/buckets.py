"""The SQLite store's rate-limit buckets (migration 0005).

A bucket's starts are rows of ``backbeat_bucket_starts`` (pruned as they leave the window
of the request that looks at them); its block is ``backbeat_buckets.blocked_until``; the
jobs holding it are the running jobs whose ``bucket`` column names it (cleared whenever a
job leaves ``running``, so a dead worker's job frees its slot when it is rescued). Every
decision runs in one write transaction, so two workers never both take the last start.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from backbeat.store.sqlite.connection import write_tx
from backbeat.types import BucketRequest, BucketState

CONCURRENCY_RETRY = 1.0
"""Seconds a job denied by a concurrency limit waits before asking again."""


def acquire(conn: sqlite3.Connection, requests: Sequence[BucketRequest], now: float) -> list[float | None]:
    with write_tx(conn):
        return [_acquire(conn, r, now) for r in requests]


def _acquire(conn: sqlite3.Connection, r: BucketRequest, now: float) -> float | None:
    row = conn.execute("SELECT blocked_until FROM backbeat_buckets WHERE bucket = ?", (r.bucket,)).fetchone()
    if row is not None and row[0] is not None and row[0] > now:
        return float(row[0])
    if r.limit is not None and r.per is not None:
        conn.execute("DELETE FROM backbeat_bucket_starts WHERE bucket = ? AND at <= ?", (r.bucket, now - r.per))
        count, oldest = conn.execute(
            "SELECT COUNT(*), MIN(at) FROM backbeat_bucket_starts WHERE bucket = ?", (r.bucket,)
        ).fetchone()
        if count >= r.limit:
            return float(oldest) + r.per
    if r.concurrency is not None:
        running = conn.execute(
            "SELECT COUNT(*) FROM backbeat_jobs WHERE bucket = ? AND state = 'running'", (r.bucket,)
        ).fetchone()[0]
        if running >= r.concurrency:
            return now + CONCURRENCY_RETRY
    if r.limit is not None:
        conn.execute("INSERT INTO backbeat_bucket_starts (bucket, at) VALUES (?, ?)", (r.bucket, now))
    conn.execute("UPDATE backbeat_jobs SET bucket = ? WHERE id = ?", (r.bucket, r.job_id))
    return None


def block(conn: sqlite3.Connection, bucket: str, until: float) -> None:
    conn.execute(
        "INSERT INTO backbeat_buckets (bucket, blocked_until) VALUES (?, ?) ON CONFLICT (bucket) DO UPDATE SET "
        "blocked_until = MAX(COALESCE(blocked_until, excluded.blocked_until), excluded.blocked_until)",
        (bucket, until),
    )


def state(conn: sqlite3.Connection, bucket: str, now: float, per: float | None) -> BucketState:
    row = conn.execute("SELECT blocked_until FROM backbeat_buckets WHERE bucket = ?", (bucket,)).fetchone()
    since = float("-inf") if per is None else now - per
    starts = conn.execute(
        "SELECT COUNT(*) FROM backbeat_bucket_starts WHERE bucket = ? AND at > ?", (bucket, since)
    ).fetchone()[0]
    running = conn.execute(
        "SELECT COUNT(*) FROM backbeat_jobs WHERE bucket = ? AND state = 'running'", (bucket,)
    ).fetchone()[0]
    return BucketState(bucket=bucket, blocked_until=None if row is None else row[0], starts=starts, running=running)
