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
