"""The claim, the due timer and the schedules' due query stay index range scans with many
rows in the tables: EXPLAIN of the store's own statements after 200,000 jobs and 100,000
schedules (written with generate_series, then ANALYZE). The claim runs inside a function
(``backbeat_claim``), so its plan is the one ``auto_explain`` reports as it runs: the
generic plan the function keeps, whatever the parameters."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from backbeat.store.postgres.connection import qualify
from backbeat.store.postgres.jobs import _CLAIM
from backbeat.store.schedule_rows import COLUMNS as SCHEDULE_COLUMNS
from tests.postgres_server import fresh_database, url_of

T0 = 1_800_000_000.0
JOBS = """
INSERT INTO backbeat_jobs (id, task, queue, state, payload, priority, run_at, order_at, max_attempts, created_at,
                           finished_at)
SELECT lpad(i::text, 12, '0'), 't.' || (i %% 3), CASE WHEN i %% 4 = 0 THEN 'low' ELSE 'default' END,
       CASE WHEN i %% 20 = 0 THEN 'queued' WHEN i %% 20 = 1 THEN 'scheduled' ELSE 'succeeded' END,
       '{"args":[],"kwargs":{}}', i %% 3, %(t0)s + (i %% 1000), %(t0)s + (i %% 1000), 3, %(t0)s,
       CASE WHEN i %% 20 > 1 THEN %(t0)s + i END
FROM generate_series(1, 200000) AS s(i)
"""
SCHEDULES = """
INSERT INTO backbeat_schedules (key, task, queue, payload, kind, every, tz, mode, jitter, misfire, catch_up_limit,
                                priority, max_attempts, description, origin, created_at, updated_at, next_tick, next_at,
                                in_flight)
SELECT 'poll:' || i, 't.0', 'default', '{}', 'every', 300, 'UTC', 'delay', 0, 'skip', 1, 0, 3, '', 'runtime',
       %(t0)s, %(t0)s, %(t0)s + (i %% 600), %(t0)s + (i %% 600), CASE WHEN i %% 10 = 0 THEN 'job' || i END
FROM generate_series(1, 100000) AS s(i)
"""


@pytest.fixture(scope="module")
def conn() -> Iterator[psycopg.Connection]:
    with fresh_database() as name, psycopg.connect(url_of(name), autocommit=True) as conn:
        conn.execute(JOBS, {"t0": T0})
        conn.execute(SCHEDULES, {"t0": T0})
        conn.execute("ANALYZE")
        yield conn


def plan(conn: psycopg.Connection, statement: str, params: Any) -> str:
    rows = conn.execute(f"EXPLAIN {statement}", params).fetchall()
    return "\n".join(r[0] for r in rows)


def nested_plan(conn: psycopg.Connection, statement: str, params: Any) -> str:
    """The plans of the statements run inside ``statement`` (rolled back), as auto_explain
    reports them."""
    plans: list[str] = []

    def keep(diagnostic: psycopg.errors.Diagnostic) -> None:
        plans.append(diagnostic.message_primary or "")

    conn.add_notice_handler(keep)
    try:
        with conn.transaction(force_rollback=True):
            conn.execute("LOAD 'auto_explain'")
            for setting, value in (("log_min_duration", "0"), ("log_nested_statements", "on"), ("log_level", "notice")):
                conn.execute("SELECT set_config(%s, %s, true)", (f"auto_explain.{setting}", value))
            conn.execute(statement, params).fetchall()
    finally:
        conn.remove_notice_handler(keep)
    return "\n".join(plans)


def assert_index_only(text: str) -> None:
    assert "Index" in text, text
    assert "Seq Scan on backbeat_jobs" not in text and "Seq Scan on backbeat_schedules" not in text, text
    assert "Sort Method: external" not in text, text


def test_the_claim_reads_indexes_in_dispatch_order(conn: psycopg.Connection) -> None:
    params = {
        "queues": ["default", "low"],
        "tasks": ["t.0", "t.1", "t.2"],
        "limit": 50,
        "now": T0 + 500,
        "worker": "w",
        "token": "x.",
        "expires": T0 + 530,
    }
    text = nested_plan(conn, qualify(_CLAIM, "public"), params)
    assert "run_at <= $" in text, text  # the function's statement, planned generically
    assert_index_only(text)
    assert "backbeat_jobs_claim" in text and "backbeat_jobs_due" in text, text


def test_the_timer_for_delayed_jobs_is_an_index_probe(conn: psycopg.Connection) -> None:
    from backbeat.store.postgres import jobs

    statement = jobs.NEXT_DUE
    text = plan(conn, statement, (["default", "low"],))
    assert_index_only(text)
    assert "backbeat_jobs_due" in text, text


def test_the_due_schedules_query_is_an_index_range_scan(conn: psycopg.Connection) -> None:
    from backbeat.store.postgres import schedules

    text = plan(conn, f"SELECT {SCHEDULE_COLUMNS} FROM backbeat_schedules {schedules.DUE}", (T0 + 30, 500))
    assert_index_only(text)
    assert "backbeat_schedules_due" in text, text


def test_a_rare_search_reads_the_trigram_index(conn: psycopg.Connection) -> None:
    """One schedule in 100,000 matches: a bitmap scan of the trigram index (migration 3),
    not a walk of the key order filtering every row."""
    from backbeat.store.postgres.schedules import _SEARCH, _contains

    statement = (
        f"SELECT {SCHEDULE_COLUMNS} FROM backbeat_schedules WHERE sla IS NULL AND {_SEARCH} ORDER BY key LIMIT 50"
    )
    text = plan(conn, statement, [_contains("poll:77777")] * 2)
    assert_index_only(text)
    assert "Bitmap Index Scan on backbeat_schedules_search" in text, text
