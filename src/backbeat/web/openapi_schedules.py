"""The schedules and SLA part of the OpenAPI document (``openapi.document`` merges it):
schemas for ``shapes.schedule``, ``reports.schedule_rows``, ``reports.sla_report`` and
``backbeat sla --json``, and the ``/api/schedules`` and ``/api/sla`` operations."""

from __future__ import annotations

from typing import Any

from backbeat.config import MAX_SECONDS
from backbeat.sla import SlaStatus
from backbeat.types import DecisionKind, Misfire, ScheduleKind, ScheduleMode, ScheduleOrigin
from backbeat.web.openapi import (
    BOOL,
    COUNT,
    INT,
    MAYBE_STR,
    MAYBE_TIME,
    NEXT_LINK,
    NUM,
    READ_ERRORS,
    SECRET_NOTE,
    STR,
    TEXT,
    TIME,
    WRITE_ERRORS,
    _array,
    _json,
    _obj,
    _op,
    _path,
    _query,
    _ref,
)
from backbeat.web.params import DEFAULT_PAGE
from backbeat.web.settings import MAX_PAGE

MAYBE_NUM = {"type": ["number", "null"]}
SLA_STATUS = {"type": "string", "enum": [s.value for s in SlaStatus]}


def _enum(values: Any) -> dict[str, Any]:
    return {"type": "string", "enum": [v.value for v in values]}


SCHEDULE = {
    "key": STR,
    "task": STR,
    "queue": STR,
    "kind": _enum(ScheduleKind),
    "every": {**MAYBE_NUM, "description": "the interval as defined (seconds); null for cron"},
    "cron": MAYBE_STR,
    "tz": STR,
    "mode": {"type": ["string", "null"], "enum": [*(m.value for m in ScheduleMode), None]},
    "jitter": NUM,
    "sla": {**MAYBE_NUM, "description": "longest allowed gap between successful runs (seconds)"},
    "max_every": {**MAYBE_NUM, "description": "how far the autopilot may stretch the interval"},
    "every_now": {**MAYBE_NUM, "description": "the effective interval the autopilot set (null: every)"},
    "every_reason": {**MAYBE_STR, "description": "why every_now is what it is"},
    "misfire": _enum(Misfire),
    "catch_up_limit": COUNT,
    "priority": INT,
    "args": _array({}),
    "kwargs": {"type": "object", "description": SECRET_NOTE},
    "description": STR,
    "origin": _enum(ScheduleOrigin),
    "paused": BOOL,
    "paused_at": MAYBE_TIME,
    "next_at": MAYBE_TIME,
    "in_flight": {**MAYBE_STR, "description": "the job of the run in flight"},
    "last_fire_at": MAYBE_TIME,
    "last_finished_at": MAYBE_TIME,
    "last_state": {"type": ["string", "null"]},
    "last_success_at": MAYBE_TIME,
    "created_at": TIME,
    "updated_at": TIME,
}
SLA_REPORT = {
    "key": STR,
    "task": STR,
    "sla": NUM,
    "status": SLA_STATUS,
    "staleness": NUM,
    "deadline_at": MAYBE_TIME,
    "compliance": {**MAYBE_NUM, "description": "share of the window within the SLA, 0..1 (null while paused)"},
    "breaches": COUNT,
    "worst_staleness": NUM,
    "last_success_at": MAYBE_TIME,
}
ROW = {
    **SCHEDULE,
    "state": {"type": "string", "enum": ["paused", "running", "waiting"]},
    "staleness": {**NUM, "description": "seconds since the last success (or creation, or resume)"},
    "sla_status": {"type": ["string", "null"], "enum": [*(s.value for s in SlaStatus), None]},
    "sla_report": {"oneOf": [{"type": "null"}, _ref("SlaReport")], "description": "over the last 24 h"},
}

SCHEMAS: dict[str, Any] = {
    "Schedule": _obj(SCHEDULE),
    "SlaReport": _obj(SLA_REPORT),
    "ScheduleRow": _obj(ROW),
    "Explain": _obj(
        {
            "schedule": _ref("ScheduleRow"),
            "timeline": _array(
                _obj(
                    {
                        "at": TIME,
                        "kind": {"type": "string", "examples": [k.value for k in DecisionKind]},
                        "detail": STR,
                        "job_id": MAYBE_STR,
                    }
                )
            ),
        }
    ),
    "SchedulePaused": _obj({"key": STR, "paused": BOOL}),
    "ScheduleRemoved": _obj({"key": STR, "removed": BOOL}),
    "ScheduleRun": _obj({"key": STR, "job_id": STR}),
    "SetEvery": _obj(
        {
            "every": {
                "type": "number",
                "exclusiveMinimum": 0,
                "maximum": MAX_SECONDS,
                "description": "the new interval in seconds",
            }
        }
    ),
    "Sla": _obj(
        {
            "now": TIME,
            "window_seconds": NUM,
            "summary": _obj(
                {
                    "schedules": COUNT,
                    "paused": COUNT,
                    "in_breach": COUNT,
                    "compliance": {**MAYBE_NUM, "description": "across active SLA schedules, 0..1"},
                }
            ),
            "schedules": _array(_ref("SlaReport")),
        }
    ),
}

KEY = _path("key", {"type": "string", "minLength": 1, "pattern": "^[^\\u0000]+$"}, "the schedule's key, URL-encoded")
CURSOR = {
    "type": "string",
    "pattern": "^[012]:(-?[0-9]+(\\.[0-9]*)?([eE][-+]?[0-9]+)?|inf):[^\\u0000]*$",
    "description": "group:deadline:key, as the Link header names it",
}
LIST_PARAMS = [
    _query("search", TEXT, "only schedules whose key or task contains this"),
    _query("after", CURSOR, "keyset pagination: the cursor the previous page's Link header names"),
    _query(
        "limit", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": DEFAULT_PAGE}, "schedules per page"
    ),
]
ACTION_ERRORS = WRITE_ERRORS + " 409"


def _action(summary: str, schema: str, errors: str = WRITE_ERRORS, **extra: Any) -> dict[str, Any]:
    return {"post": _op(summary, _json(_ref(schema), "done"), errors, write=True, parameters=[KEY], **extra)}


PATHS: dict[str, Any] = {
    "/api/schedules": {
        "get": _op(
            "Schedules worst first: in breach, closest to breach, paused, without an SLA "
            "(= `backbeat schedules list --worst --json`)",
            _json(_array(_ref("ScheduleRow")), "a page of schedules", NEXT_LINK),
            "400 " + READ_ERRORS,
            parameters=LIST_PARAMS,
        )
    },
    "/api/schedules/{key}": {
        "get": _op(
            "One schedule and its timeline, newest first (= `backbeat explain KEY --json`)",
            _json(_ref("Explain"), "the schedule"),
            "404 " + READ_ERRORS,
            parameters=[KEY],
        ),
        "delete": _op(
            "Remove the schedule (= `backbeat schedules remove KEY --json`); a run in flight finishes",
            _json(_ref("ScheduleRemoved"), "removed, or false if there was none"),
            WRITE_ERRORS,
            write=True,
            parameters=[KEY],
        ),
    },
    "/api/schedules/{key}/pause": _action("Stop firing the schedule (a run in flight goes on)", "SchedulePaused"),
    "/api/schedules/{key}/resume": _action("Fire the schedule again; its SLA count restarts", "SchedulePaused"),
    "/api/schedules/{key}/run": _action(
        "Run the schedule once now, outside its cadence (= `backbeat schedules run KEY`); 409 while paused "
        "or a run is in flight",
        "ScheduleRun",
        ACTION_ERRORS,
    ),
    "/api/schedules/{key}/every": _action(
        "Change an every-schedule's interval from its next run (= `backbeat schedules update KEY --every`); "
        "409 for a cron schedule",
        "Schedule",
        ACTION_ERRORS,
        requestBody={"required": True, "content": {"application/json": {"schema": _ref("SetEvery")}}},
    ),
    "/api/sla": {
        "get": _op(
            "SLA compliance: the summary and the worst schedules with an SLA (= `backbeat sla --json`)",
            _json(_ref("Sla"), "the SLA report over the last 24 h"),
            "400 " + READ_ERRORS,
            parameters=[
                _query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": 50}, "worst shown")
            ],
        )
    },
}
