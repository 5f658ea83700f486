"""``/healthz``: 200 while some worker heartbeats within the staleness window, else 503.

Open to all (load balancers and orchestrators send no token): it tells only whether
workers are alive, by the same rule and in the same shape as ``backbeat status --check --json``.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from backbeat import shapes
from backbeat.errors import StoreError
from backbeat.web import operations as ops
from backbeat.web.context import dashboard
from backbeat.web.responses import JSON


async def healthz(request: Request) -> Response:
    d = dashboard(request)
    try:
        data = await ops.health(d)
    except StoreError as exc:
        data = shapes.health([], now=d.now(), stale_after=d.stale_after) | {
            "message": f"the store cannot be reached: {exc}"
        }
    return JSON(data, status_code=200 if data["ok"] else 503)


ROUTES = [Route("/healthz", healthz, methods=["GET"], name="healthz")]
