"""``/api/events``: ingestion for main apps in any language, and the event log.

``POST /api/events`` takes one envelope or a JSON array of up to ``MAX_BATCH`` (the
format is ``backbeat events schema``), needs ``Authorization: Bearer <BACKBEAT_TOKEN>``, and
answers 202 once every event is stored (a running consumer dispatches them). A body over
the size limit is 413 (nothing read past the limit); a malformed envelope is 400 with the
reason, and is kept as a dead event (``backbeat events list --dead``); then none of the
batch is stored, so the caller can fix it and send it again.
"""

from __future__ import annotations

import json

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from backbeat import shapes
from backbeat.errors import EventError
from backbeat.events import dead, from_envelope
from backbeat.signing import signing
from backbeat.types import EventSettlement, EventState, NewEvent
from backbeat.web import operations as ops
from backbeat.web import params
from backbeat.web.api.common import endpoint, page
from backbeat.web.context import Dashboard
from backbeat.web.errors import BadRequest, TooLarge
from backbeat.web.responses import JSON

MAX_BATCH = 1000
SOURCE = "http"


def body_limit(d: Dashboard) -> int:
    """Largest request body: one payload at the limit, plus room for its envelope."""
    return d.client.settings.max_payload_bytes + 64 * 1024


async def _read(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"body of {int(declared):,} bytes is over the limit of {limit:,} bytes")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise TooLarge(f"body is over the limit of {limit:,} bytes")
    return body


@endpoint(write=True)
async def post_events(request: Request, d: Dashboard) -> Response:
    raw = await _read(request, body_limit(d))
    store = await d.store()
    now = d.now()
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        await _bury(d, [dead(raw, f"body is not valid JSON: {exc}", source=SOURCE, received=now)])
        raise BadRequest(f"the body is not valid JSON: {exc}") from None
    envelopes = data if isinstance(data, list) else [data]
    if not 1 <= len(envelopes) <= MAX_BATCH:
        raise BadRequest(f"send 1 to {MAX_BATCH} events a request, got {len(envelopes)}")
    events: list[NewEvent] = []
    refused: list[tuple[int, NewEvent]] = []
    for index, item in enumerate(envelopes):
        try:
            if not isinstance(item, dict):
                raise EventError(f"an event must be a JSON object (the envelope), got {type(item).__name__}")
            event = from_envelope(item, source=SOURCE, received=now, signing=signing(d.client.settings))
            events.append(await d.client.aseal_event(event))
            _check_size(events[-1], d.client.settings.max_payload_bytes)
        except EventError as exc:
            text = json.dumps(item, ensure_ascii=False)
            refused.append((index, dead(text, str(exc), source=SOURCE, received=now)))
    if refused:
        await _bury(d, [e for _, e in refused])
        first, event = refused[0]
        where = f"event {first}: " if isinstance(data, list) else ""
        raise BadRequest(f"{where}{_reason(event)} (kept as dead event {event.id}; nothing else was stored)")
    created = await store.event_append(events, now=now)
    return JSON(shapes.event_accepted([e.id for e in events], created), status_code=202)


def _check_size(event: NewEvent, limit: int) -> None:
    size = len(event.payload.encode())
    if size > limit:
        raise TooLarge(f"event {event.name}: payload is {size:,} bytes, over the limit of {limit:,} bytes")


def _reason(event: NewEvent) -> str:
    return str(json.loads(event.payload)["reason"])


async def _bury(d: Dashboard, events: list[NewEvent]) -> None:
    store = await d.store()
    settlements = [EventSettlement(event=e, state=EventState.DEAD, reason=_reason(e)) for e in events]
    await store.event_settle(settlements, now=d.now())


@endpoint()
async def list_events(request: Request, d: Dashboard) -> Response:
    flt = params.event_filter(request.query_params)
    return page(request, await ops.list_events(d, flt), flt.limit)


@endpoint()
async def get_event(request: Request, d: Dashboard) -> Response:
    return JSON(await ops.get_event(d, request.path_params["event_id"]))


@endpoint(write=True)
async def replay_event(request: Request, d: Dashboard) -> Response:
    return JSON(await ops.replay_event(d, request.path_params["event_id"]))


async def events(request: Request) -> Response:
    """One route for both methods, so a 405 lists both in ``Allow``."""
    return await (post_events if request.method == "POST" else list_events)(request)


ROUTES = [
    Route("/api/events", events, methods=["GET", "POST"], name="api_events"),
    Route("/api/events/{event_id}", get_event, methods=["GET"], name="api_event"),
    Route("/api/events/{event_id}/replay", replay_event, methods=["POST"], name="api_event_replay"),
]
