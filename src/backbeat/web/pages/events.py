"""``/events``: events newest first, filtered by state and name (dead ones with the reason
they were refused); keyset pages; one event with its payload; replay of a dead or
unhandled event."""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from backbeat.types import EventState
from backbeat.web import operations as ops
from backbeat.web import params
from backbeat.web.context import Dashboard
from backbeat.web.pages.common import action, page, path_for, render

REPLAYABLE = [EventState.DEAD.value, EventState.UNHANDLED.value]
EVENT_STATES = [s.value for s in EventState]


@page
async def event_list(request: Request, d: Dashboard) -> Response:
    flt = params.event_filter(params.given(request.query_params))
    rows = await ops.list_events(d, flt)
    filters = {"state": flt.state.value if flt.state else "", "name": flt.name or ""}
    shown = {k: v for k, v in filters.items() if v} | (
        {"limit": str(flt.limit)} if flt.limit != params.DEFAULT_PAGE else {}
    )
    base = path_for(request, "events")
    older = base + "?" + urlencode(shown | {"before": rows[-1]["id"]}) if rows and len(rows) == flt.limit else None
    return render(
        request,
        "events.html",
        page="events",
        rows=rows,
        filters=filters,
        limit=flt.limit,
        event_states=EVENT_STATES,
        replayable=REPLAYABLE,
        paged=flt.before is not None,
        first=base + ("?" + urlencode(shown) if shown else ""),
        older=older,
        api=path_for(request, "api_events") + "?" + urlencode(shown | ({"before": flt.before} if flt.before else {})),
    )


@page
async def event_detail(request: Request, d: Dashboard) -> Response:
    event = await ops.get_event(d, request.path_params["event_id"])
    return render(
        request,
        "event.html",
        page="event",
        event=event,
        replayable=REPLAYABLE,
        api=path_for(request, "api_event", event_id=event["id"]),
    )


@action
async def replay(request: Request, d: Dashboard, form: dict[str, str]) -> str:
    event = await ops.replay_event(d, request.path_params["event_id"])
    return f"Event {event['id']} ({event['name']}) is pending again: a running consumer dispatches it now."


ROUTES = [
    Route("/events", event_list, methods=["GET"], name="events"),
    Route("/events/{event_id}", event_detail, methods=["GET"], name="event"),
    Route("/events/{event_id}/replay", replay, methods=["POST"], name="event_replay"),
]
