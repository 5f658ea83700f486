"""``/api/queues``: list with counts; pause, resume, purge."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from backbeat.web import operations as ops
from backbeat.web import params
from backbeat.web.api.common import endpoint
from backbeat.web.context import Dashboard
from backbeat.web.convertors import QUEUE
from backbeat.web.responses import JSON


@endpoint()
async def list_queues(request: Request, d: Dashboard) -> Response:
    return JSON(await ops.queues(d))


@endpoint(write=True)
async def pause(request: Request, d: Dashboard) -> Response:
    return JSON(await ops.pause_queue(d, params.queue_name(request.path_params["name"])))


@endpoint(write=True)
async def resume(request: Request, d: Dashboard) -> Response:
    return JSON(await ops.resume_queue(d, params.queue_name(request.path_params["name"])))


@endpoint(write=True)
async def purge(request: Request, d: Dashboard) -> Response:
    return JSON(await ops.purge_queue(d, params.queue_name(request.path_params["name"])))


ROUTES = [
    Route("/api/queues", list_queues, methods=["GET"], name="api_queues"),
    Route(f"/api/queues/{{name:{QUEUE}}}/pause", pause, methods=["POST"], name="api_queue_pause"),
    Route(f"/api/queues/{{name:{QUEUE}}}/resume", resume, methods=["POST"], name="api_queue_resume"),
    Route(f"/api/queues/{{name:{QUEUE}}}/purge", purge, methods=["POST"], name="api_queue_purge"),
]
