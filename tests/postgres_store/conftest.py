"""What the PostgreSQL store's own tests share: a fresh database per test, and the ids of
the jobs an app's store holds."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from backbeat import App
from backbeat.types import JobFilter
from tests.postgres_server import fresh_database


@pytest.fixture
def database() -> Iterator[str]:
    with fresh_database() as name:
        yield name


def jobs(app: App) -> list[str]:
    """The ids of every job in ``app``'s store (a sync call, as the tests' own code makes)."""

    async def read() -> list[str]:
        return [j.id for j in await (await app.client.astore()).job_list(JobFilter())]

    return app.client.sync(read)
