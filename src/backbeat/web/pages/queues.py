"""``/queues``: counts per queue and state; pause, resume, purge (purge asks first)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from backbeat.web import operations as ops
from backbeat.web import params
from backbeat.web.context import Dashboard
from backbeat.web.convertors import QUEUE
from backbeat.web.pages.common import action, page, path_for, render


@page
async def queue_list(request: Request, d: Dashboard) -> Response:
    return render(
        request, "queues.html", page="queues", queues=await ops.queues(d), api=path_for(request, "api_queues")
    )


@action
async def pause(request: Request, d: Dashboard, form: dict[str, str]) -> str:
    name = params.queue_name(request.path_params["name"])
    await ops.pause_queue(d, name)
    return f"Queue {name} is paused: workers take no new jobs from it."


@action
async def resume(request: Request, d: Dashboard, form: dict[str, str]) -> str:
    name = params.queue_name(request.path_params["name"])
    await ops.resume_queue(d, name)
    return f"Queue {name} is running again."


@page
async def purge_confirm(request: Request, d: Dashboard) -> Response:
    """Purging cannot be undone, so the purge form is one more page away (works without JS)."""
    name = params.queue_name(request.path_params["name"])
    counts = next((q["counts"] for q in await ops.queues(d) if q["name"] == name), None)
    return render(request, "purge.html", page="queues", name=name, counts=counts)


@action
async def purge(request: Request, d: Dashboard, form: dict[str, str]) -> str:
    name = params.queue_name(request.path_params["name"])
    result = await ops.purge_queue(d, name)
    return f"Deleted {result['purged']} queued and scheduled job(s) of {name}."


ROUTES = [
    Route("/queues", queue_list, methods=["GET"], name="queues"),
    Route(f"/queues/{{name:{QUEUE}}}/pause", pause, methods=["POST"], name="queue_pause"),
    Route(f"/queues/{{name:{QUEUE}}}/resume", resume, methods=["POST"], name="queue_resume"),
    Route(f"/queues/{{name:{QUEUE}}}/purge", purge_confirm, methods=["GET"], name="queue_purge_confirm"),
    Route(f"/queues/{{name:{QUEUE}}}/purge", purge, methods=["POST"], name="queue_purge"),
]
