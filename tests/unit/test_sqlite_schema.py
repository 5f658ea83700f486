"""SQLite schema versioning: created on first use, refused when newer than this backbeat."""

import asyncio
import sqlite3
from pathlib import Path

import pytest

from backbeat.errors import SchemaTooNew
from backbeat.store.sqlite import SQLiteStore
from backbeat.store.sqlite.connection import migrations


async def test_first_open_creates_the_newest_schema_and_is_idempotent(tmp_path: Path) -> None:
    path = str(tmp_path / "s.db")
    stores = [SQLiteStore(path) for _ in range(4)]
    await asyncio.gather(*(s.open() for s in stores))  # several processes starting together
    for s in stores:
        await s.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == migrations()[-1][0]
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"backbeat_jobs", "backbeat_workers", "backbeat_tasks"} <= tables


async def test_a_newer_schema_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    path = str(tmp_path / "s.db")
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 999")
    store = SQLiteStore(path)
    with pytest.raises(SchemaTooNew, match="schema version 999, but this backbeat knows only up to"):
        await store.open()
    await store.close()


async def test_migration_10_counts_the_finished_jobs_already_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Version 10 keeps the counts of finished jobs; those finished before it are counted once."""
    from backbeat.store.sqlite import connection
    from backbeat.testing.conformance import new_job
    from backbeat.testing.conformance.helpers import T0, claim, outcome
    from backbeat.types import Outcome

    path = str(tmp_path / "s.db")
    every = migrations()
    monkeypatch.setattr(connection, "migrations", lambda: [m for m in every if m[0] < 10])
    old = SQLiteStore(path)
    await old.job_enqueue([new_job(task=t) for t in ("t.a", "t.a", "t.b", "t.b")], now=T0)
    a, b, _ = await old.job_claim(claim(3, tasks=frozenset({"t.a", "t.b"})), now=T0)
    await old.job_ack([outcome(a, Outcome.SUCCEEDED), outcome(b, Outcome.CANCELLED)], now=T0 + 1)
    await old.close()
    monkeypatch.setattr(connection, "migrations", lambda: every)
    store = SQLiteStore(path)
    counts = sorted((x.task, x.state.value, x.count) for x in await store.job_counts())
    await store.close()
    with sqlite3.connect(path) as conn:
        recount = sorted(conn.execute("SELECT task, state, COUNT(*) FROM backbeat_jobs GROUP BY 1, 2").fetchall())
        kept = conn.execute("SELECT COUNT(*) FROM backbeat_job_counts").fetchone()[0]
    assert counts == recount and kept == 2
