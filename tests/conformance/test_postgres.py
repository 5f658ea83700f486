from collections.abc import Iterator

import pytest

from backbeat.testing.conformance import StoreConformance
from tests.postgres_server import fresh_url


class TestPostgresStore(StoreConformance):
    @pytest.fixture
    def store_url(self) -> Iterator[str]:
        with fresh_url() as url:
            yield url
