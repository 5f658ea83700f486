"""The JSON API under ``/api``: one module per resource, each with its ``ROUTES``."""

from __future__ import annotations

from starlette.routing import BaseRoute

from backbeat.web.api import events, jobs, queues, schedules, status, workers


def routes() -> list[BaseRoute]:
    return [*status.ROUTES, *jobs.ROUTES, *queues.ROUTES, *workers.ROUTES, *events.ROUTES, *schedules.ROUTES]
