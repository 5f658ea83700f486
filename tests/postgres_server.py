"""The shared PostgreSQL server the tests use (``scripts/services.sh`` starts it; set
``BACKBEAT_TEST_POSTGRES`` to use another). Each test gets a database of its own, created
from a template database that was migrated once per test session (procrastinate's way):
``CREATE DATABASE x TEMPLATE t`` copies files, far faster than running the migrations,
and a test can never see another's rows. Databases are dropped afterwards; names carry a
random token, so several test runs can share the server."""

from __future__ import annotations

import asyncio
import atexit
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

from backbeat.ids import token
from tests.threads import on_a_thread

SERVER = os.environ.get("BACKBEAT_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
_lock = threading.Lock()
_template: str | None = None


def url_of(database: str, **options: str) -> str:
    parts = urlsplit(SERVER)
    query = "&".join(f"{k}={v}" for k, v in options.items())
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", query, ""))


def admin() -> psycopg.Connection:
    """An autocommit connection to the server's maintenance database (CREATE/DROP DATABASE)."""
    try:
        return psycopg.connect(SERVER, autocommit=True, connect_timeout=5)
    except psycopg.Error as exc:
        pytest.fail(
            f"PostgreSQL at {SERVER} does not answer ({exc}): run scripts/services.sh (or set BACKBEAT_TEST_POSTGRES)"
        )


def create_database(name: str, template: str | None = None) -> None:
    with admin() as conn:
        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template is not None:
            statement = sql.SQL("{} TEMPLATE {}").format(statement, sql.Identifier(template))
        conn.execute(statement)


def drop_database(name: str) -> None:
    with admin() as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _migrate(url: str) -> None:
    from backbeat.store import open_store

    async def run() -> None:
        store = open_store(url)
        try:
            await store.migrate()
        finally:
            await store.close()

    on_a_thread(lambda: asyncio.run(run()), timeout=None)


def template() -> str:
    """The session's migrated template database (created on first use, dropped at exit)."""
    global _template
    with _lock:
        if _template is None:
            name = f"bbtmpl_{token()[:12].lower()}"
            create_database(name)
            atexit.register(drop_database, name)
            _migrate(url_of(name))
            _template = name
        return _template


@contextmanager
def fresh_database(*, migrated: bool = True) -> Iterator[str]:
    """The name of a new database (a copy of the migrated template, or empty); dropped on exit."""
    name = f"bbtest_{token()[:12].lower()}"
    create_database(name, template() if migrated else None)
    try:
        yield name
    finally:
        drop_database(name)


@contextmanager
def fresh_url(*, migrated: bool = True, **options: str) -> Iterator[str]:
    """A store URL on a database of its own."""
    with fresh_database(migrated=migrated) as name:
        yield url_of(name, **options)
