"""Reading query parameters and bodies into typed values; anything else is ``BadRequest``
naming the parameter. Limits are capped here, whatever a client asks (an unbounded page
or time range is how dashboards get knocked over: Sidekiq CVE-2022-23837)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from backbeat import reports
from backbeat.config import MAX_SECONDS, check_queue_name
from backbeat.errors import ConfigError
from backbeat.types import EventFilter, EventState, JobFilter, JobState, ScheduleRank
from backbeat.web.errors import BadRequest
from backbeat.web.settings import MAX_BULK, MAX_PAGE

DEFAULT_PAGE = 50
STATE_NAMES = [s.value for s in JobState]


def integer(params: Mapping[str, str], name: str, *, default: int, low: int, high: int) -> int:
    raw = params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be an integer from {low} to {high}, got {raw!r}") from None
    if not low <= value <= high:
        raise BadRequest(f"{name} must be an integer from {low} to {high}, got {value}")
    return value


def given(params: Mapping[str, str]) -> dict[str, str]:
    """The non-empty fields of an HTML form (its empty fields mean "any"; the API is strict)."""
    return {k: v for k, v in params.items() if v}


def text(params: Mapping[str, str], name: str) -> str | None:
    """An optional string filter, as given."""
    value = params.get(name)
    if value is not None and "\x00" in value:
        raise BadRequest(f"{name} must not contain NUL characters")
    return value


def state(params: Mapping[str, str]) -> JobState | None:
    raw = params.get("state")
    if raw is None:
        return None
    try:
        return JobState(raw)
    except ValueError:
        raise BadRequest(f"state must be one of {', '.join(STATE_NAMES)}, got {raw!r}") from None


def job_filter(params: Mapping[str, str]) -> JobFilter:
    return JobFilter(
        state=state(params),
        queue=text(params, "queue"),
        task=text(params, "task"),
        before=text(params, "before"),
        limit=integer(params, "limit", default=DEFAULT_PAGE, low=1, high=MAX_PAGE),
    )


def event_filter(params: Mapping[str, str]) -> EventFilter:
    raw = params.get("state")
    try:
        chosen = EventState(raw) if raw is not None else None
    except ValueError:
        names = ", ".join(s.value for s in EventState)
        raise BadRequest(f"state must be one of {names}, got {raw!r}") from None
    return EventFilter(
        state=chosen,
        name=text(params, "name"),
        before=text(params, "before"),
        limit=integer(params, "limit", default=DEFAULT_PAGE, low=1, high=MAX_PAGE),
    )


def queue_name(name: str) -> str:
    try:
        return check_queue_name(name)
    except ConfigError as exc:
        raise BadRequest(str(exc)) from None


def bulk_retry(body: Any) -> tuple[str | None, str | None, int]:
    """``{"queue"?, "task"?, "limit"?}`` of ``POST /api/jobs/retry-dead``."""
    if not isinstance(body, dict):
        raise BadRequest('the body must be a JSON object such as {"queue": "default", "limit": 100}')
    unknown = set(body) - {"queue", "task", "limit"}
    if unknown:
        raise BadRequest(f"unknown field(s) {', '.join(sorted(unknown))}: expected queue, task, limit")
    return _optional_text(body, "queue"), _optional_text(body, "task"), _bulk_limit(body)


def _optional_text(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if key in body and (not isinstance(value, str) or "\x00" in value):
        raise BadRequest(f"{key} must be a string without NUL characters, got {value!r}")
    return value


def _bulk_limit(body: dict[str, Any]) -> int:
    limit = body.get("limit", 100)
    if isinstance(limit, float) and limit.is_integer():
        limit = int(limit)  # 260.0 is an integer to JSON Schema
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_BULK:
        raise BadRequest(f"limit must be an integer from 1 to {MAX_BULK}, got {limit!r}")
    return limit


def schedule_page(params: Mapping[str, str]) -> tuple[ScheduleRank | None, str | None, int]:
    """``after`` (the cursor a page's ``Link`` names), ``search``, ``limit`` of ``/api/schedules``."""
    raw = text(params, "after")
    try:
        after = None if raw is None else reports.parse_cursor(raw)
    except ValueError:
        raise BadRequest(f"after must be the cursor a page's Link header names, got {raw!r}") from None
    return after, text(params, "search"), integer(params, "limit", default=DEFAULT_PAGE, low=1, high=MAX_PAGE)


def every(value: Any) -> float | str:
    """An interval as given (seconds, or text such as ``"5m"``); ``app.schedules`` validates it."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise BadRequest(f'every must be seconds or a duration such as "5m", got {value!r}')
    if isinstance(value, str) and ("\x00" in value or not value.strip()):
        raise BadRequest(f'every must be seconds or a duration such as "5m", got {value!r}')
    return value


def interval_body(body: Any) -> float:
    """``{"every": 60}`` of ``POST /api/schedules/{key}/every``: seconds, a number."""
    value = body.get("every") if isinstance(body, dict) and set(body) == {"every"} else None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= MAX_SECONDS:
        raise BadRequest(
            f'the body must be a JSON object such as {{"every": 60}}: seconds, > 0 and at most {MAX_SECONDS:g}'
        )
    return float(value)
