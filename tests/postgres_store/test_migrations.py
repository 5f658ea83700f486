"""PostgreSQL migrations for real deployments: up from an empty database, ten processes at
once, a schema option, and a schema newer than this backbeat refused with a clear message."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from backbeat.errors import SchemaTooNew
from backbeat.ids import token
from backbeat.store import open_store
from backbeat.store.postgres.connection import NEWEST
from backbeat.testing.conformance import new_job
from backbeat.testing.conformance.schedules import spec
from backbeat.types import JobFilter, ScheduleFilter
from tests.postgres_server import drop_database, fresh_database, template, url_of

ROOT = Path(__file__).parent.parent.parent


def layout(database: str, schema: str = "public") -> dict[str, object]:
    """What the schema consists of: tables with their columns, and index definitions."""
    with psycopg.connect(url_of(database)) as conn:
        columns = conn.execute(
            "SELECT table_name, column_name, data_type, is_nullable, column_default FROM information_schema.columns "
            "WHERE table_schema = %s ORDER BY 1, 2",
            (schema,),
        ).fetchall()
        indexes = conn.execute(
            "SELECT indexname, replace(indexdef, %s, '') FROM pg_indexes WHERE schemaname = %s ORDER BY 1",
            (f"{schema}.", schema),
        ).fetchall()
        versions = conn.execute(f'SELECT version FROM "{schema}".backbeat_migrations ORDER BY 1').fetchall()
    return {"columns": columns, "indexes": indexes, "versions": versions}


def backbeat(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    env.pop("BACKBEAT_URL", None)
    return subprocess.Popen(
        [sys.executable, "-m", "backbeat", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=90)
    return proc.returncode, out, err


@pytest.mark.slow
def test_ten_processes_migrating_an_empty_database_at_once_leave_one_correct_schema() -> None:
    expected = layout(template())
    with fresh_database(migrated=False) as name:
        procs = [backbeat("migrate", "--url", url_of(name), "--json") for _ in range(10)]
        results = [finish(p) for p in procs]
        for code, out, err in results:
            assert code == 0, err
            assert json.loads(out) == {"schema_version": NEWEST}
        assert layout(name) == expected
        assert expected["versions"] == [(v,) for v in range(1, NEWEST + 1)]


async def test_migrations_run_up_from_an_empty_database_into_a_schema_of_their_own() -> None:
    with fresh_database(migrated=False) as name:
        store = open_store(url_of(name, schema="jobs_a"))
        other = open_store(url_of(name, schema="jobs_b"))
        try:
            assert await store.migrate() == NEWEST
            assert await store.migrate() == NEWEST  # idempotent
            await other.open()
            job = new_job()
            await store.job_enqueue([job], now=0.0)
            assert [j.id for j in await store.job_list(JobFilter(limit=100))] == [job.id]
            assert await other.job_list(JobFilter(limit=100)) == []  # two stores in one database, apart
        finally:
            await store.close()
            await other.close()
        a, b, public = layout(name, "jobs_a"), layout(name, "jobs_b"), layout(template())
        assert a == b == public


def _make_newer(name: str) -> None:
    with psycopg.connect(url_of(name), autocommit=True) as conn:
        conn.execute("INSERT INTO backbeat_migrations (version) VALUES (%s)", (NEWEST + 1,))


async def test_a_schema_newer_than_this_backbeat_is_refused_in_process() -> None:
    with fresh_database() as name:
        _make_newer(name)
        store = open_store(url_of(name))
        with pytest.raises(SchemaTooNew, match=f"version {NEWEST + 1}.*knows only up to {NEWEST}.*upgrade backbeat"):
            await store.open()
        await store.close()


@pytest.mark.slow
def test_a_process_refuses_to_start_against_a_newer_schema() -> None:
    with fresh_database() as name:
        _make_newer(name)
        url = url_of(name)
        for args in (
            ("migrate", "--url", url),
            ("status", "--url", url),
            ("worker", "tests.integration.bbapps:app", "--url", url),
        ):
            code, _out, err = finish(backbeat(*args))
            assert code != 0, args
            assert f"schema version {NEWEST + 1}" in err and "upgrade backbeat" in err, err
            assert "Traceback" not in err


# -- schedule search's trigram index (migration 3) ----------------------------------------


def _search_index(name: str, schema: str) -> str | None:
    with psycopg.connect(url_of(name)) as conn:
        row = conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = %s AND indexname = 'backbeat_schedules_search'",
            (schema,),
        ).fetchone()
    return None if row is None else str(row[0])


async def _search(url: str) -> list[str]:
    store = open_store(url)
    try:
        await store.open()
        for key in ("poll:alpha", "poll:beta", "50%_off"):
            await store.schedule_upsert(spec(key), next_tick=0.0, next_at=0.0, now=0.0)
        return [
            *(r.key for r in await store.schedule_list(ScheduleFilter(search="beta"))),
            *(r.key for r in await store.schedule_worst(search="%_", limit=10)),
        ]
    finally:
        await store.close()


async def test_the_search_index_uses_pg_trgm_where_it_is_already_installed() -> None:
    with fresh_database(migrated=False) as name:
        with psycopg.connect(url_of(name), autocommit=True) as conn:
            conn.execute("CREATE SCHEMA ext")
            conn.execute("CREATE EXTENSION pg_trgm SCHEMA ext")
        assert await _search(url_of(name, schema="app")) == ["poll:beta", "50%_off"]
        assert "ext.gin_trgm_ops" in (_search_index(name, "app") or "")


async def test_a_role_without_create_on_the_database_migrates_into_a_schema_made_for_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An administrator made the schema; the role cannot create schemas or extensions.
    Every migration applies; the search index, which needs pg_trgm, is left out with a
    warning in the log, and search still answers (by scanning)."""
    role = f"bbtest_role_{token()[:8].lower()}"
    with fresh_database(migrated=False) as name:
        with psycopg.connect(url_of(name), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
            conn.execute(sql.SQL("CREATE SCHEMA app AUTHORIZATION {}").format(sql.Identifier(role)))
        try:
            assert await _search(url_of(name, schema="app", user=role)) == ["poll:beta", "50%_off"]
            assert _search_index(name, "app") is None
            assert "cannot install pg_trgm" in caplog.text and "schedule search will scan" in caplog.text
        finally:
            drop_database(name)
            with psycopg.connect(url_of("postgres"), autocommit=True) as conn:
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
