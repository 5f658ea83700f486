"""``/jobs``: filter by state, queue, task; keyset pages; one job in full; retry, cancel,
and bulk retry of dead jobs."""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from backbeat.types import LIVE_STATES, JobState
from backbeat.web import operations as ops
from backbeat.web import params
from backbeat.web.context import Dashboard
from backbeat.web.pages.common import action, page, path_for, render
from backbeat.web.settings import MAX_BULK

RETRYABLE = [JobState.DEAD.value, JobState.CANCELLED.value]
CANCELLABLE = sorted(s.value for s in LIVE_STATES)


@page
async def job_list(request: Request, d: Dashboard) -> Response:
    flt = params.job_filter(params.given(request.query_params))
    rows = await ops.list_jobs(d, flt)
    filters = {"state": flt.state.value if flt.state else "", "queue": flt.queue or "", "task": flt.task or ""}
    shown = {k: v for k, v in filters.items() if v} | (
        {"limit": str(flt.limit)} if flt.limit != params.DEFAULT_PAGE else {}
    )
    older = None
    if rows and len(rows) == flt.limit:
        older = path_for(request, "jobs") + "?" + urlencode(shown | {"before": rows[-1]["id"]})
    return render(
        request,
        "jobs.html",
        page="jobs",
        rows=rows,
        filters=filters,
        limit=flt.limit,
        paged=flt.before is not None,
        first=path_for(request, "jobs") + ("?" + urlencode(shown) if shown else ""),
        older=older,
        api=path_for(request, "api_jobs") + "?" + urlencode(shown | ({"before": flt.before} if flt.before else {})),
        queue_names=await ops.queue_names(d),
        task_names=await ops.task_names(d),
        retryable=RETRYABLE,
        cancellable=CANCELLABLE,
        max_bulk=MAX_BULK,
    )


@page
async def job_detail(request: Request, d: Dashboard) -> Response:
    job = await ops.get_job(d, request.path_params["job_id"])
    return render(
        request,
        "job.html",
        page="job",
        job=job,
        api=path_for(request, "api_job", job_id=job["id"]),
        retryable=RETRYABLE,
        cancellable=CANCELLABLE,
    )


@action
async def retry(request: Request, d: Dashboard, form: dict[str, str]) -> str:
    result = await ops.retry_job(d, request.path_params["job_id"])
    return f"Job {result['id']} is {result['state']} again."


@action
async def cancel(request: Request, d: Dashboard, form: dict[str, str]) -> str:
    result = await ops.cancel_job(d, request.path_params["job_id"])
    state = result["state"]
    return (
        f"Job {result['id']} is {state}."
        if state != "running"
        else f"Job {result['id']} will stop at its worker's next heartbeat."
    )


@action
async def retry_dead(request: Request, d: Dashboard, form: dict[str, str]) -> str:
    fields = params.given(form)
    queue, task = params.text(fields, "queue"), params.text(fields, "task")
    done = await ops.retry_dead(d, queue=queue, task=task, limit=MAX_BULK)
    more = " (the most one click requeues: click again for more)" if len(done) == MAX_BULK else ""
    return f"Requeued {len(done)} dead job(s){more}."


ROUTES = [
    Route("/jobs", job_list, methods=["GET"], name="jobs"),
    Route("/jobs/retry-dead", retry_dead, methods=["POST"], name="jobs_retry_dead"),
    Route("/jobs/{job_id}", job_detail, methods=["GET"], name="job"),
    Route("/jobs/{job_id}/retry", retry, methods=["POST"], name="job_retry"),
    Route("/jobs/{job_id}/cancel", cancel, methods=["POST"], name="job_cancel"),
]
