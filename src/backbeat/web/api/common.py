"""The wrapper every API endpoint goes through: the guard first, errors as JSON."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from backbeat.errors import BackbeatError
from backbeat.web.context import Dashboard, dashboard
from backbeat.web.errors import BadRequest, status_of
from backbeat.web.responses import JSON, error

log = logging.getLogger("backbeat.web")
MAX_BODY = 64 * 1024

Handler = Callable[[Request, Dashboard], Awaitable[Response]]
Endpoint = Callable[[Request], Awaitable[Response]]


def api_error(exc: BackbeatError) -> Response:
    status = status_of(exc)
    if status >= 500 and status != 503:
        log.error("API request failed: %s", exc)
    headers = {"WWW-Authenticate": 'Bearer realm="backbeat"'} if status == 401 else None
    return error(status, str(exc), headers)


def endpoint(*, write: bool = False) -> Callable[[Handler], Endpoint]:
    """Check the request may read (or, with ``write``, write), then run the handler;
    ``BackbeatError`` becomes ``{"error": ...}`` with its status."""

    def wrap(handler: Handler) -> Endpoint:
        @functools.wraps(handler)
        async def run(request: Request) -> Response:
            d = dashboard(request)
            try:
                if write:
                    d.guard.check_api_write(request)
                else:
                    d.guard.check_read(request, d.now())
                return await handler(request, d)
            except BackbeatError as exc:
                return api_error(exc)

        return run

    return wrap


def page(request: Request, rows: list[dict[str, Any]], limit: int) -> Response:
    """A keyset page as JSON; when it is full, a ``Link: <...?before=LAST>; rel="next"`` header."""
    full = bool(rows) and len(rows) == limit
    return JSON(rows, headers=next_link(request, "before", rows[-1]["id"] if full else None))


def next_link(request: Request, cursor: str, value: str | None) -> dict[str, str]:
    """The ``Link: <this URL with cursor=value>; rel="next"`` header, if there is a next page."""
    if value is None:
        return {}
    query = {k: v for k, v in request.query_params.items() if k != cursor} | {cursor: value}
    return {"Link": f'<{request.url.path}?{urlencode(query)}>; rel="next"'}


async def json_body(request: Request, *, empty: Any) -> Any:
    """The request's JSON body (``empty`` when there is none), at most ``MAX_BODY`` bytes."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise BadRequest(f"request body over {MAX_BODY} bytes")
    if not body.strip():
        return empty
    try:
        return json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise BadRequest("the request body is not valid JSON") from None
