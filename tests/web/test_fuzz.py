"""Schemathesis fuzzes every operation of the OpenAPI document against the ASGI app (with
the token, so writes run too): no 5xx, and every response conforms to the document.

Schemathesis binds the schema to an app at import (its lazy fixture loader does not work
with pytest 9), so the schema is bound to a stand-in that forwards to the app of the
running test, each over a freshly populated store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig
from starlette.types import ASGIApp, Receive, Scope, Send

from backbeat.web import create_app
from backbeat.web.openapi import document
from tests.web.conftest import TOKEN, populate


class CurrentApp:
    target: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self.target is not None, "no app under test"
        await self.target(scope, receive, send)


current = CurrentApp()
# Invalid data must be refused. A body over the size limit is refused with 413 before it is
# parsed, a status schemathesis's default list for this check leaves out; which inputs it
# tries depends on constants it reads from the project's source, so any new module can make
# it try one.
REJECTED = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429", "5xx"]
schema = schemathesis.openapi.from_dict(
    document(),
    config=SchemathesisConfig.from_dict({"checks": {"negative_data_rejection": {"expected-statuses": REJECTED}}}),
)
schema.app = current


@pytest.fixture
def served(tmp_path: Path) -> Iterator[None]:
    store = populate(f"sqlite:///{tmp_path}/fuzz.db")
    app = create_app(store.url, token=TOKEN, metrics_dir=None)
    current.target = app
    yield
    current.target = None
    app.state.backbeat.client.close()


@schema.parametrize()
@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_api_fuzz(case: Any, served: None) -> None:
    case.call_and_validate(headers={"Authorization": f"Bearer {TOKEN}"})
