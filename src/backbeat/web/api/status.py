"""``/api/status`` (= ``backbeat status --json``), ``/api/throughput`` and the OpenAPI document."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from backbeat.web import operations as ops
from backbeat.web import params
from backbeat.web.api.common import endpoint
from backbeat.web.context import Dashboard
from backbeat.web.openapi import document
from backbeat.web.responses import JSON


@endpoint()
async def status(request: Request, d: Dashboard) -> Response:
    return JSON(await ops.status(d))


@endpoint()
async def throughput(request: Request, d: Dashboard) -> Response:
    q = request.query_params
    minutes = params.integer(q, "minutes", default=60, low=1, high=ops.MAX_MINUTES)
    buckets = params.integer(q, "buckets", default=30, low=1, high=ops.MAX_BUCKETS)
    return JSON(await ops.throughput(d, minutes=minutes, buckets=buckets))


async def openapi(request: Request) -> Response:
    """Open to all: it describes the API and holds no data."""
    return JSON(document())


ROUTES = [
    Route("/api/status", status, methods=["GET"], name="api_status"),
    Route("/api/throughput", throughput, methods=["GET"], name="api_throughput"),
    Route("/api/openapi.json", openapi, methods=["GET"], name="api_openapi"),
]
