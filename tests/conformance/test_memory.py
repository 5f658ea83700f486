import pytest

from backbeat.ids import uuid7
from backbeat.testing.conformance import StoreConformance


class TestMemoryStore(StoreConformance):
    @pytest.fixture
    def store_url(self) -> str:
        return f"memory://{uuid7()}"
