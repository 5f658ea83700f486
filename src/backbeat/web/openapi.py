"""The OpenAPI 3.1 document of the JSON API (served at ``/api/openapi.json``).

The component schemas describe the shapes of ``backbeat.shapes`` exactly (the CLI's
``--json`` prints the same): tests validate real CLI output and real API responses
against them, and fuzz every operation with schemathesis. Change a shape and its schema
together.
"""

from __future__ import annotations

from typing import Any

from backbeat import __version__
from backbeat.events import ENVELOPE_SCHEMA
from backbeat.types import FINAL_STATES, EventState, JobState
from backbeat.web.api.events import MAX_BATCH
from backbeat.web.operations import MAX_BUCKETS, MAX_MINUTES
from backbeat.web.params import DEFAULT_PAGE
from backbeat.web.settings import MAX_BULK, MAX_PAGE

STATES = [s.value for s in JobState]
FINISHED = sorted(s.value for s in FINAL_STATES)


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(required: dict[str, Any]) -> dict[str, Any]:
    """An object with exactly these properties, all present (as the shapes build them)."""
    return {"type": "object", "properties": required, "required": list(required), "additionalProperties": False}


def _array(items: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": items}


STR = {"type": "string"}
INT = {"type": "integer"}
COUNT = {"type": "integer", "minimum": 0}
NUM = {"type": "number"}
BOOL = {"type": "boolean"}
TIME = {"type": "string", "format": "date-time", "description": "ISO 8601, UTC"}
MAYBE_TIME = {"type": ["string", "null"], "format": "date-time", "description": "ISO 8601, UTC"}
MAYBE_STR = {"type": ["string", "null"]}
SECRET_NOTE = 'values declared secret are stored sealed and shown as "***" (docs/secrets.md)'
TEXT = {"type": "string", "pattern": "^[^\\u0000]*$", "description": "no NUL characters (a filter, not data)"}

JOB = {
    "id": {**STR, "description": "UUIDv7"},
    "task": STR,
    "queue": STR,
    "state": _ref("JobState"),
    "priority": INT,
    "args": _array({}),
    "kwargs": {"type": "object", "description": SECRET_NOTE},
    "attempts": COUNT,
    "max_attempts": COUNT,
    "run_at": TIME,
    "created_at": TIME,
    "started_at": MAYBE_TIME,
    "finished_at": MAYBE_TIME,
    "worker_id": MAYBE_STR,
    "dedup_key": MAYBE_STR,
    "error": MAYBE_STR,
    "cancel_requested": BOOL,
}
DETAIL = {"timeout": {"type": ["number", "null"]}, "lease_expires_at": MAYBE_TIME, "result": {}, "traceback": MAYBE_STR}
WORKER = {
    "id": STR,
    "host": STR,
    "pid": INT,
    "queues": _array(STR),
    "concurrency": COUNT,
    "in_flight": COUNT,
    "tasks": _array(STR),
    "started_at": TIME,
    "heartbeat_at": TIME,
    "alive": BOOL,
    "version": STR,
}

EVENT = {
    "id": STR,
    "name": STR,
    "key": MAYBE_STR,
    "state": _ref("EventState"),
    "reason": {**MAYBE_STR, "description": "why it is dead"},
    "source": STR,
    "jobs": {**COUNT, "description": "handler jobs it made"},
    "occurred_at": TIME,
    "received_at": TIME,
    "settled_at": MAYBE_TIME,
    "payload": {"type": "object", "description": SECRET_NOTE},
}
_ENVELOPE = {k: v for k, v in ENVELOPE_SCHEMA.items() if not k.startswith("$")}

SCHEMAS: dict[str, Any] = {
    "JobState": {"type": "string", "enum": STATES},
    "Counts": _obj(dict.fromkeys(STATES, COUNT)),
    "Job": _obj(JOB),
    "JobDetail": _obj({**JOB, **DETAIL}),
    "JobAction": _obj({"id": STR, "state": _ref("JobState")}),
    "Worker": _obj(WORKER),
    "Queue": _obj({"name": STR, "paused": BOOL, "paused_at": MAYBE_TIME, "counts": _ref("Counts")}),
    "QueuePaused": _obj({"queue": STR, "paused": BOOL}),
    "QueuePurged": _obj({"queue": STR, "purged": COUNT}),
    "Status": _obj(
        {
            "now": TIME,
            "queues": _array(_obj({"name": STR, "counts": _ref("Counts")})),
            "tasks": _array(_obj({"name": STR, "counts": _ref("Counts"), "known_by_live_worker": BOOL})),
            "missing_tasks": _array(STR),
            "registered_tasks": _array(STR),
            "workers": _array(_ref("Worker")),
            "throughput": _obj(
                {"window_seconds": NUM, "finished": _obj(dict.fromkeys(FINISHED, COUNT)), "per_second": NUM}
            ),
            "autopilot": {
                "oneOf": [
                    {"type": "null"},
                    _obj(
                        {
                            "desired_workers": COUNT,
                            "needed_workers": COUNT,
                            "slots_needed": NUM,
                            "demand": NUM,
                            "mean_run_time": {"type": ["number", "null"]},
                            "reason": STR,
                            "at": TIME,
                        }
                    ),
                ],
                "description": "what the autopilot last published (null until one runs)",
            },
        }
    ),
    "Throughput": _obj(
        {
            "now": TIME,
            "bucket_seconds": NUM,
            "buckets": _array(_obj({"start": TIME, "end": TIME, **dict.fromkeys(FINISHED, COUNT)})),
        }
    ),
    "Health": _obj(
        {
            "ok": BOOL,
            "now": TIME,
            "live_workers": COUNT,
            "registered_workers": COUNT,
            "stale_after_seconds": NUM,
            "last_heartbeat_at": MAYBE_TIME,
            "message": STR,
        }
    ),
    "RetryDead": {
        "type": "object",
        "properties": {
            "queue": {**TEXT, "description": "only dead jobs of this queue"},
            "task": {**TEXT, "description": "only dead jobs of this task"},
            "limit": {"type": "integer", "minimum": 1, "maximum": MAX_BULK, "default": 100},
        },
        "additionalProperties": False,
    },
    "EventState": {"type": "string", "enum": [s.value for s in EventState]},
    "Event": _obj(EVENT),
    "Envelope": _ENVELOPE,
    "EventsAccepted": _obj({"events": _array(_obj({"id": STR, "duplicate": BOOL}))}),
    "Error": _obj({"error": STR}),
}

ERRORS = {
    "400": "A parameter or body is invalid (the message names it).",
    "401": "BACKBEAT_TOKEN is configured and the request carries no valid bearer token.",
    "403": "Refused: read-only mode, writes without a configured token, or reads from off-host without one.",
    "404": "No such job, event or schedule (jobs and events may have been pruned after their retention).",
    "409": "The job, event or schedule is not in a state that allows this (e.g. retrying a running job).",
    "413": "The body is over the size limit (the message names it).",
    "503": "The store cannot be reached.",
}


def _json(schema: dict[str, Any], description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description, "content": {"application/json": {"schema": schema}}}
    if headers:
        response["headers"] = headers
    return response


def _op(
    summary: str, ok: dict[str, Any], errors: str, *, write: bool = False, status: str = "200", **extra: Any
) -> dict[str, Any]:
    responses = {status: ok} | {code: _json(_ref("Error"), ERRORS[code]) for code in errors.split()}
    operation: dict[str, Any] = {"summary": summary, "responses": responses, **extra}
    if write:
        operation["security"] = [{"bearer": []}]
    return operation


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def _path(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema, "description": description}


JOB_ID = _path("job_id", STR, "the job's id")
QUEUE = _path(
    "name",
    {"type": "string", "minLength": 1, "pattern": "^[^,\\u0000]+$"},
    "the queue's name, URL-encoded (any characters but commas and NUL)",
)
READ_ERRORS = "401 403 503"
WRITE_ERRORS = "400 401 403 404 503"

JOB_LIST_PARAMS = [
    _query("state", _ref("JobState"), "only jobs in this state"),
    _query("queue", TEXT, "only jobs of this queue"),
    _query("task", TEXT, "only jobs of this task"),
    _query("before", TEXT, "keyset pagination: the last id of the previous page"),
    _query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": DEFAULT_PAGE}, "jobs per page"),
]
EVENT_ID = _path("event_id", STR, "the event's id")
EVENT_LIST_PARAMS = [
    _query("state", _ref("EventState"), "only events in this state"),
    _query("name", TEXT, "only events of this name"),
    _query("before", TEXT, "keyset pagination: the last id of the previous page"),
    _query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": DEFAULT_PAGE}, "events per page"),
]
NEXT_LINK = {
    "Link": {
        "description": 'Present when the page is full: `<URL of the next page>; rel="next"`.',
        "schema": STR,
    }
}


def _paths() -> dict[str, Any]:
    return {
        "/api/status": {
            "get": _op(
                "Queues, job counts, workers, throughput (= `backbeat status --json`)",
                _json(_ref("Status"), "status"),
                READ_ERRORS,
            )
        },
        "/api/throughput": {
            "get": _op(
                "Jobs finished per time bucket",
                _json(_ref("Throughput"), "buckets, oldest first"),
                "400 " + READ_ERRORS,
                parameters=[
                    _query(
                        "minutes",
                        {"type": "integer", "minimum": 1, "maximum": MAX_MINUTES, "default": 60},
                        "how far back",
                    ),
                    _query(
                        "buckets",
                        {"type": "integer", "minimum": 1, "maximum": MAX_BUCKETS, "default": 30},
                        "how many buckets",
                    ),
                ],
            )
        },
        "/api/jobs": {
            "get": _op(
                "Jobs, newest first (= `backbeat jobs list --json`)",
                _json(_array(_ref("Job")), "a page of jobs", NEXT_LINK),
                "400 " + READ_ERRORS,
                parameters=JOB_LIST_PARAMS,
            )
        },
        "/api/jobs/retry-dead": {
            "post": _op(
                f"Requeue dead jobs, newest first, at most `limit` ({MAX_BULK} max) a call",
                _json(_array(_ref("JobAction")), "the jobs requeued"),
                "400 401 403 503",
                write=True,
                requestBody={"required": False, "content": {"application/json": {"schema": _ref("RetryDead")}}},
            )
        },
        "/api/jobs/{job_id}": {
            "get": _op(
                "One job in full (= `backbeat jobs show ID --json`)",
                _json(_ref("JobDetail"), "the job"),
                "404 " + READ_ERRORS,
                parameters=[JOB_ID],
            )
        },
        "/api/jobs/{job_id}/retry": {
            "post": _op(
                "Requeue a dead or cancelled job",
                _json(_ref("JobAction"), "its new state"),
                WRITE_ERRORS + " 409",
                write=True,
                parameters=[JOB_ID],
            )
        },
        "/api/jobs/{job_id}/cancel": {
            "post": _op(
                "Cancel a job (a running one stops at its worker's next heartbeat)",
                _json(_ref("JobAction"), "its state now"),
                WRITE_ERRORS,
                write=True,
                parameters=[JOB_ID],
            )
        },
        "/api/queues": {
            "get": _op(
                "Every queue with its pause state and counts (= `backbeat queues list --json`)",
                _json(_array(_ref("Queue")), "the queues"),
                READ_ERRORS,
            )
        },
        "/api/queues/{name}/pause": {
            "post": _op(
                "Stop workers taking jobs from the queue",
                _json(_ref("QueuePaused"), "paused"),
                WRITE_ERRORS,
                write=True,
                parameters=[QUEUE],
            )
        },
        "/api/queues/{name}/resume": {
            "post": _op(
                "Let workers take jobs from the queue again",
                _json(_ref("QueuePaused"), "resumed"),
                WRITE_ERRORS,
                write=True,
                parameters=[QUEUE],
            )
        },
        "/api/queues/{name}/purge": {
            "post": _op(
                "Delete the queue's queued and scheduled jobs",
                _json(_ref("QueuePurged"), "how many"),
                WRITE_ERRORS,
                write=True,
                parameters=[QUEUE],
            )
        },
        "/api/events": {
            "get": _op(
                "Events, newest first (= `backbeat events list --json`)",
                _json(_array(_ref("Event")), "a page of events", NEXT_LINK),
                "400 " + READ_ERRORS,
                parameters=EVENT_LIST_PARAMS,
            ),
            "post": _op(
                f"Store events for the jobs app's handlers: one envelope or an array of up to {MAX_BATCH}",
                _json(_ref("EventsAccepted"), "stored (a repeated id is a duplicate, processed once)"),
                "400 401 403 413 503",
                write=True,
                status="202",
                requestBody={
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "oneOf": [
                                    _ref("Envelope"),
                                    {**_array(_ref("Envelope")), "minItems": 1, "maxItems": MAX_BATCH},
                                ]
                            }
                        }
                    },
                },
            ),
        },
        "/api/events/{event_id}": {
            "get": _op(
                "One event (= `backbeat events show ID --json`)",
                _json(_ref("Event"), "the event"),
                "404 " + READ_ERRORS,
                parameters=[EVENT_ID],
            )
        },
        "/api/events/{event_id}/replay": {
            "post": _op(
                "Dispatch a dead or unhandled event again (= `backbeat events replay ID`)",
                _json(_ref("Event"), "the event, pending again"),
                WRITE_ERRORS + " 409",
                write=True,
                parameters=[EVENT_ID],
            )
        },
        "/api/workers": {
            "get": _op("Registered workers, oldest first", _json(_array(_ref("Worker")), "workers"), READ_ERRORS)
        },
        "/healthz": {
            "get": {
                "summary": "200 while a worker heartbeats within the staleness window, else 503 (no token needed)",
                "security": [],
                "responses": {"200": _json(_ref("Health"), "healthy"), "503": _json(_ref("Health"), "unhealthy")},
            }
        },
        "/metrics": {
            "get": _op(
                "Prometheus metrics (text exposition format)",
                {"description": "metrics", "content": {"text/plain": {"schema": STR}}},
                READ_ERRORS,
            )
        },
    }


def document() -> dict[str, Any]:
    from backbeat.web import openapi_schedules  # it builds on this module's helpers

    return {
        "openapi": "3.1.0",
        "info": {
            "title": "backbeat",
            "version": __version__,
            "description": "Jobs, schedules, SLAs, events, queues and workers of a backbeat store. Every write needs "
            "`Authorization: Bearer <BACKBEAT_TOKEN>`; reads need it too once a token is configured.",
        },
        "paths": _paths() | openapi_schedules.PATHS,
        "components": {
            "schemas": SCHEMAS | openapi_schedules.SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}, {}],
    }
