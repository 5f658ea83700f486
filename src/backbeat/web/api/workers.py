"""``/api/workers``: the registered workers, with liveness."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from backbeat.web import operations as ops
from backbeat.web.api.common import endpoint
from backbeat.web.context import Dashboard
from backbeat.web.responses import JSON


@endpoint()
async def list_workers(request: Request, d: Dashboard) -> Response:
    return JSON(await ops.workers(d))


ROUTES = [Route("/api/workers", list_workers, methods=["GET"], name="api_workers")]
