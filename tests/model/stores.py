"""The stores the model tests compare with the reference store (``memory://``): one entry
per store, so a new store is one line in ``STORES`` and one factory.

Each factory is an async context manager yielding an open, empty store of its own (a file
in a fresh temporary directory, a fresh key prefix on the test Redis, a fresh database on
the test PostgreSQL) and deleting it afterwards. ``check`` runs the store's own
consistency check (Redis: its key layout against the job hashes; SQLite: integrity)."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import pytest

from backbeat.ids import token
from backbeat.store import SCHEMES, open_store
from backbeat.store.base import Store
from tests.redis_server import fresh_url


@asynccontextmanager
async def _opened(url: str) -> AsyncIterator[Store]:
    store = open_store(url)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


@asynccontextmanager
async def sqlite_store() -> AsyncIterator[Store]:
    directory = tempfile.mkdtemp(prefix="bbmodel-")
    try:
        async with _opened(f"sqlite:///{directory}/store.db") as store:
            yield store
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@asynccontextmanager
async def redis_store() -> AsyncIterator[Store]:
    with fresh_url() as url:
        async with _opened(url) as store:
            yield store


@asynccontextmanager
async def postgresql_store() -> AsyncIterator[Store]:
    """A database of its own on the test PostgreSQL (a copy of the migrated template), dropped after."""
    from tests import postgres_server

    name = f"bbmodel_{token()[:12].lower()}"
    await asyncio.to_thread(postgres_server.create_database, name, postgres_server.template())
    try:
        async with _opened(postgres_server.url_of(name)) as store:
            yield store
    finally:
        await asyncio.to_thread(postgres_server.drop_database, name)


FACTORIES: dict[str, Callable[[], AbstractAsyncContextManager[Store]]] = {
    "sqlite": sqlite_store,
    "redis": redis_store,
    "postgresql": postgresql_store,
}


def _param(name: str) -> object:
    """The store's name, skipped while its URL scheme is not registered (a store being built)."""
    missing = name not in SCHEMES
    return pytest.param(name, id=name, marks=pytest.mark.skipif(missing, reason=f"no {name} store registered yet"))


STORES = [_param(name) for name in FACTORIES]
"""``@pytest.mark.parametrize("store_name", STORES)``: every store the models compare."""


def check(store: Store) -> None:
    """The store's own consistency check, beyond comparing answers."""
    from backbeat.store.redis.store import RedisStore

    if isinstance(store, RedisStore):
        from tests.redis_store.layout import check_layout

        check_layout(store.keys.prefix)
