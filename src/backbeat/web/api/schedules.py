"""``/api/sla`` (= ``backbeat sla --json``) and ``/api/schedules``: worst first (keyset
pages), one schedule with its timeline; pause, resume, run now, change the interval,
remove. The shapes are the CLI's: ``schedules list --worst --json``, ``explain KEY
--json``, ``schedules pause|resume|run|remove --json`` (one element), ``schedules update
KEY --every ... --json``."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from backbeat.web import operations as ops
from backbeat.web import params
from backbeat.web.api.common import endpoint, json_body, next_link
from backbeat.web.context import Dashboard
from backbeat.web.convertors import QUEUE, SCHEDULE
from backbeat.web.responses import JSON
from backbeat.web.settings import MAX_PAGE


@endpoint()
async def list_schedules(request: Request, d: Dashboard) -> Response:
    after, search, limit = params.schedule_page(request.query_params)
    rows, cursor = await ops.list_schedules(d, after=after, search=search, limit=limit)
    return JSON(rows, headers=next_link(request, "after", cursor))


@endpoint()
async def get_schedule(request: Request, d: Dashboard) -> Response:
    return JSON(await ops.explain_schedule(d, request.path_params["key"]))


@endpoint(write=True)
async def pause(request: Request, d: Dashboard) -> Response:
    return JSON(await ops.pause_schedule(d, request.path_params["key"]))


@endpoint(write=True)
async def resume(request: Request, d: Dashboard) -> Response:
    return JSON(await ops.resume_schedule(d, request.path_params["key"]))


@endpoint(write=True)
async def run_now(request: Request, d: Dashboard) -> Response:
    return JSON(await ops.run_schedule(d, request.path_params["key"]))


@endpoint(write=True)
async def set_every(request: Request, d: Dashboard) -> Response:
    every = params.interval_body(await json_body(request, empty=None))
    return JSON(await ops.set_interval(d, request.path_params["key"], every))


@endpoint(write=True)
async def remove(request: Request, d: Dashboard) -> Response:
    return JSON(await ops.remove_schedule(d, request.path_params["key"]))


@endpoint()
async def sla(request: Request, d: Dashboard) -> Response:
    limit = params.integer(request.query_params, "limit", default=50, low=1, high=MAX_PAGE)
    return JSON(await ops.sla(d, limit=limit))


async def schedule(request: Request) -> Response:
    """One route for both methods, so a 405 lists both in ``Allow``."""
    return await (remove if request.method == "DELETE" else get_schedule)(request)


ROUTES = [
    Route("/api/sla", sla, methods=["GET"], name="api_sla"),
    Route("/api/schedules", list_schedules, methods=["GET"], name="api_schedules"),
    Route(f"/api/schedules/{{key:{QUEUE}}}/pause", pause, methods=["POST"], name="api_schedule_pause"),
    Route(f"/api/schedules/{{key:{QUEUE}}}/resume", resume, methods=["POST"], name="api_schedule_resume"),
    Route(f"/api/schedules/{{key:{QUEUE}}}/run", run_now, methods=["POST"], name="api_schedule_run"),
    Route(f"/api/schedules/{{key:{QUEUE}}}/every", set_every, methods=["POST"], name="api_schedule_every"),
    Route(f"/api/schedules/{{key:{SCHEDULE}}}", schedule, methods=["GET", "DELETE"], name="api_schedule"),
]
