from collections.abc import Iterator

import pytest

from backbeat.store.base import BLOCKING_OK, Store
from backbeat.testing.conformance import StoreConformance
from tests.postgres_server import fresh_url


class TestPostgresStore(StoreConformance):
    @pytest.fixture
    def store_url(self) -> Iterator[str]:
        with fresh_url() as url:
            yield url


class TestPostgresStoreInline(TestPostgresStore):
    """The same suite with every call made inline, as sync callers make them: on a
    blocking connection (``SyncTx``), not the pool."""

    @pytest.fixture(autouse=True)
    def inline(self) -> Iterator[None]:
        token = BLOCKING_OK.set(True)
        yield
        BLOCKING_OK.reset(token)

    async def test_wakeup_after_a_write_by_another_handle(self, store: Store, other: Store) -> None:
        """A sync caller's store does not listen from ``open`` on (its blocking connections
        would never read the notifications): the first wait starts the listener, and a
        write after that wakes it."""
        assert await store.wakeup_wait(0.01) is False
        await super().test_wakeup_after_a_write_by_another_handle(store, other)

    async def test_calls_really_run_inline(self, store_url: str) -> None:
        from backbeat.store import open_store

        store = open_store(store_url)
        assert await store.queue_list() == []
        assert BLOCKING_OK.get() and store._pool is None and len(store._idle) == 1  # type: ignore[attr-defined]
        await store.close()
