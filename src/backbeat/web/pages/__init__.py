"""The server-rendered pages: one module per page, each with its ``ROUTES``. A page reads
through ``backbeat.web.operations`` (the API's data) and acts through POSTed forms that
``common.action`` guards (session, CSRF, origin, read-only)."""

from __future__ import annotations

from starlette.routing import BaseRoute

from backbeat.web.pages import auth, events, jobs, overview, queues, schedules, workers


def routes() -> list[BaseRoute]:
    return [
        *overview.ROUTES,
        *jobs.ROUTES,
        *queues.ROUTES,
        *workers.ROUTES,
        *schedules.ROUTES,
        *events.ROUTES,
        *auth.ROUTES,
    ]
