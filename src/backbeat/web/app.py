"""``create_app``: the dashboard, the JSON API, ``/metrics`` and ``/healthz`` as one ASGI app.

Routes (each module owns its own; a new resource such as schedules adds an ``api/`` and a
``pages/`` module and one line in each ``routes()``):

* pages: ``/`` ``/schedules`` ``/schedules/{key}`` ``/jobs`` ``/jobs/{id}`` ``/events``
  ``/events/{id}`` ``/queues`` ``/workers`` ``/login``, and the form actions under them
  (``POST``);
* API: ``/api/status`` ``/api/throughput`` ``/api/sla`` ``/api/schedules[...]``
  ``/api/jobs[...]`` ``/api/events[...]`` ``/api/queues[...]`` ``/api/workers``
  ``/api/openapi.json``;
* ``/metrics`` (Prometheus), ``/healthz``, ``/static/...``.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from backbeat.app import App
from backbeat.client import Client
from backbeat.web import api, health, metrics, pages
from backbeat.web.context import Dashboard, app_over
from backbeat.web.responses import SecurityHeaders, error
from backbeat.web.security import Guard
from backbeat.web.settings import DashboardSettings

log = logging.getLogger("backbeat.web")


class _FromEnv:
    def __repr__(self) -> str:
        return "<from the environment>"


FROM_ENV = _FromEnv()


def _or_env(value: str | _FromEnv | None, name: str) -> str | None:
    return (os.environ.get(name) or None) if isinstance(value, _FromEnv) else value


async def http_error(request: Request, exc: Exception) -> Response:
    """No route (404) or no such method (405): JSON under /api, as every API error is."""
    assert isinstance(exc, HTTPException)
    path = request.url.path[len(request.scope.get("root_path", "")) :]
    if path.startswith("/api/"):
        return error(exc.status_code, exc.detail, headers=exc.headers)
    return PlainTextResponse(exc.detail, status_code=exc.status_code, headers=exc.headers)


def create_app(
    target: App | Client | str | None = None,
    *,
    token: str | _FromEnv | None = FROM_ENV,
    read_only: bool = False,
    metrics_dir: str | _FromEnv | None = FROM_ENV,
    poll_seconds: float = 5.0,
) -> Starlette:
    """The dashboard for ``target``: an ``App``, a ``Client``, or a store URL (default
    ``BACKBEAT_URL``). Mount it in your own Starlette or FastAPI app
    (``Mount("/backbeat", create_app(app))``) or serve it with ``backbeat dashboard``.

    ``token`` defaults to ``$BACKBEAT_TOKEN``: every write needs it, and so do reads once
    it is set; without one, nothing can be written and only clients on this machine may
    read. ``read_only`` hides and refuses every action. ``metrics_dir`` (default
    ``$PROMETHEUS_MULTIPROC_DIR``) adds the worker metrics written there to ``/metrics``.
    """
    settings = DashboardSettings(
        token=_or_env(token, "BACKBEAT_TOKEN"),
        read_only=read_only,
        metrics_dir=_or_env(metrics_dir, "PROMETHEUS_MULTIPROC_DIR"),
        poll_seconds=poll_seconds,
    )
    if isinstance(target, App):
        client, owned, app_ = target.client, False, target
    else:
        client, owned = (target, False) if isinstance(target, Client) else (Client(target), True)
        app_ = app_over(client)
    state = Dashboard(client=client, app=app_, settings=settings, guard=Guard(settings), owns_client=owned)
    if settings.token is None:
        log.info("no BACKBEAT_TOKEN: the dashboard serves reads to this machine only and refuses every write")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        if state.owns_client:
            await state.client.aclose()

    routes = [
        *pages.routes(),
        *api.routes(),
        *metrics.ROUTES,
        *health.ROUTES,
        Mount("/static", StaticFiles(packages=[("backbeat.web", "static")]), name="static"),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(SecurityHeaders)],
        exception_handlers={404: http_error, 405: http_error},
        lifespan=lifespan,
    )
    app.state.backbeat = state
    return app
