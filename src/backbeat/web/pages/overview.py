"""``/``: SLA compliance at a glance (in breach, the worst schedules, compliance), workers
alive against what the autopilot wants, throughput over the last hour, queue depths."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from backbeat.shapes import STATES
from backbeat.web import chart
from backbeat.web import operations as ops
from backbeat.web.context import Dashboard
from backbeat.web.pages.common import page, path_for, render

CHART_MINUTES = 60
CHART_BUCKETS = 30
WORST = 5
"""Schedules the SLA panel names."""


@page
async def overview(request: Request, d: Dashboard) -> Response:
    counts = await (await d.store()).job_counts()  # reads every job: once for the page
    status = await ops.status(d, counts)
    queues = await ops.queues(d, counts)
    series = await ops.throughput(d, minutes=CHART_MINUTES, buckets=CHART_BUCKETS)
    totals = {s: sum(q["counts"][s] for q in queues) for s in STATES}
    sla = await ops.sla(d, limit=WORST)
    return render(
        request,
        "overview.html",
        page="overview",
        status=status,
        queues=queues,
        totals=totals,
        alive=sum(1 for w in status["workers"] if w["alive"]),
        chart=chart.bars(series),
        chart_minutes=CHART_MINUTES,
        chart_buckets=CHART_BUCKETS,
        sla=sla,
        api_sla=path_for(request, "api_sla") + f"?limit={WORST}",
    )


ROUTES = [Route("/", overview, methods=["GET"], name="overview")]
