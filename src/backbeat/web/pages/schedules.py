"""``/schedules``: every schedule worst first (SLA breaches at the top), searchable, keyset
pages; one schedule with its ``explain`` timeline; pause, resume, run now, change the
interval, remove (after ticking a confirmation)."""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from backbeat.web import operations as ops
from backbeat.web import params
from backbeat.web.context import Dashboard
from backbeat.web.convertors import QUEUE, SCHEDULE
from backbeat.web.errors import BadRequest
from backbeat.web.pages.common import action, page, path_for, render


@page
async def schedule_list(request: Request, d: Dashboard) -> Response:
    query = params.given(request.query_params)
    after, search, limit = params.schedule_page(query)
    rows, cursor = await ops.list_schedules(d, after=after, search=search, limit=limit)
    shown = ({"search": search} if search else {}) | ({"limit": str(limit)} if limit != params.DEFAULT_PAGE else {})
    base = path_for(request, "schedules")
    return render(
        request,
        "schedules.html",
        page="schedules",
        rows=rows,
        search=search or "",
        limit=limit,
        paged=after is not None,
        first=base + ("?" + urlencode(shown) if shown else ""),
        later=None if cursor is None else base + "?" + urlencode(shown | {"after": cursor}),
        api=path_for(request, "api_schedules") + "?" + urlencode(shown | ({"after": query["after"]} if after else {})),
    )


@page
async def schedule_detail(request: Request, d: Dashboard) -> Response:
    key = request.path_params["key"]
    data = await ops.explain_schedule(d, key)
    return render(
        request,
        "schedule.html",
        page="schedule",
        s=data["schedule"],
        timeline=data["timeline"],
        api=path_for(request, "api_schedule", key=key),
    )


@action
async def pause(request: Request, d: Dashboard, form: dict[str, str]) -> str:
    result = await ops.pause_schedule(d, request.path_params["key"])
    return f"Schedule {result['key']} is paused: it fires no more until resumed (a run in flight goes on)."


@action
async def resume(request: Request, d: Dashboard, form: dict[str, str]) -> str:
    result = await ops.resume_schedule(d, request.path_params["key"])
    return f"Schedule {result['key']} fires again; its SLA count restarts now."


@action
async def run_now(request: Request, d: Dashboard, form: dict[str, str]) -> str:
    result = await ops.run_schedule(d, request.path_params["key"])
    return f"Schedule {result['key']}: job {result['job_id']} queued now; its next occurrence stays."


@action
async def set_every(request: Request, d: Dashboard, form: dict[str, str]) -> str:
    result = await ops.set_interval(d, request.path_params["key"], params.every(form.get("every", "")))
    return f"Schedule {result['key']} now runs every {result['every']:g} s (from its next run)."


@action
async def remove(request: Request, d: Dashboard, form: dict[str, str]) -> str:
    """The form names the list as its ``next``: the schedule's own page is gone after."""
    if form.get("confirm") != "yes":
        raise BadRequest("tick the box to confirm the removal")
    result = await ops.remove_schedule(d, request.path_params["key"])
    return f"Schedule {result['key']} {'removed' if result['removed'] else 'was already gone'}."


ROUTES = [
    Route("/schedules", schedule_list, methods=["GET"], name="schedules"),
    Route(f"/schedules/{{key:{QUEUE}}}/pause", pause, methods=["POST"], name="schedule_pause"),
    Route(f"/schedules/{{key:{QUEUE}}}/resume", resume, methods=["POST"], name="schedule_resume"),
    Route(f"/schedules/{{key:{QUEUE}}}/run", run_now, methods=["POST"], name="schedule_run"),
    Route(f"/schedules/{{key:{QUEUE}}}/every", set_every, methods=["POST"], name="schedule_every"),
    Route(f"/schedules/{{key:{QUEUE}}}/remove", remove, methods=["POST"], name="schedule_remove"),
    Route(f"/schedules/{{key:{SCHEDULE}}}", schedule_detail, methods=["GET"], name="schedule"),
]
