"""``/api/jobs``: list (keyset pages), one job, retry, cancel, bulk retry of dead jobs."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from backbeat.web import operations as ops
from backbeat.web import params
from backbeat.web.api.common import endpoint, json_body, page
from backbeat.web.context import Dashboard
from backbeat.web.responses import JSON


@endpoint()
async def list_jobs(request: Request, d: Dashboard) -> Response:
    flt = params.job_filter(request.query_params)
    return page(request, await ops.list_jobs(d, flt), flt.limit)


@endpoint()
async def get_job(request: Request, d: Dashboard) -> Response:
    return JSON(await ops.get_job(d, request.path_params["job_id"]))


@endpoint(write=True)
async def retry_job(request: Request, d: Dashboard) -> Response:
    return JSON(await ops.retry_job(d, request.path_params["job_id"]))


@endpoint(write=True)
async def cancel_job(request: Request, d: Dashboard) -> Response:
    return JSON(await ops.cancel_job(d, request.path_params["job_id"]))


@endpoint(write=True)
async def retry_dead(request: Request, d: Dashboard) -> Response:
    queue, task, limit = params.bulk_retry(await json_body(request, empty={}))
    return JSON(await ops.retry_dead(d, queue=queue, task=task, limit=limit))


ROUTES = [
    Route("/api/jobs", list_jobs, methods=["GET"], name="api_jobs"),
    Route("/api/jobs/retry-dead", retry_dead, methods=["POST"], name="api_retry_dead"),
    Route("/api/jobs/{job_id}", get_job, methods=["GET"], name="api_job"),
    Route("/api/jobs/{job_id}/retry", retry_job, methods=["POST"], name="api_job_retry"),
    Route("/api/jobs/{job_id}/cancel", cancel_job, methods=["POST"], name="api_job_cancel"),
]
