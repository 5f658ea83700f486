from collections.abc import Iterator
from pathlib import Path

import pytest

from backbeat.store.base import BLOCKING_OK
from backbeat.testing.conformance import StoreConformance


class TestSQLiteStore(StoreConformance):
    @pytest.fixture
    def store_url(self, tmp_path: Path) -> str:
        return f"sqlite:///{tmp_path}/conformance.db"


class TestSQLiteStoreInline(TestSQLiteStore):
    """The same suite with every call made inline, as sync callers (the portal) make them."""

    @pytest.fixture(autouse=True)
    def inline(self) -> Iterator[None]:
        token = BLOCKING_OK.set(True)
        yield
        BLOCKING_OK.reset(token)

    async def test_calls_really_run_inline(self, store_url: str) -> None:
        from backbeat.store import open_store

        store = open_store(store_url)
        await store.open()
        assert BLOCKING_OK.get() and store._db is None  # type: ignore[attr-defined]
        await store.close()
