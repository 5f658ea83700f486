"""``/workers``: every registered worker: host, pid, queues, slots in use, heartbeat, alive."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from backbeat.web import operations as ops
from backbeat.web.context import Dashboard
from backbeat.web.pages.common import page, path_for, render


@page
async def worker_list(request: Request, d: Dashboard) -> Response:
    return render(
        request,
        "workers.html",
        page="workers",
        workers=await ops.workers(d),
        stale_after=d.stale_after,
        api=path_for(request, "api_workers"),
    )


ROUTES = [Route("/workers", worker_list, methods=["GET"], name="workers")]
