"""A schedule as a SQL row: the columns of ``backbeat_schedules`` (the same on SQLite and
PostgreSQL) and the conversions between a row and a ``ScheduleRecord``, shared by the two
SQL stores. Internal module."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from backbeat.types import (
    JobState,
    Misfire,
    ScheduleKind,
    ScheduleMode,
    ScheduleOrigin,
    ScheduleRank,
    ScheduleRecord,
    ScheduleSpec,
)

SPEC_FIELDS = (
    "key",
    "task",
    "queue",
    "payload",
    "kind",
    "every",
    "cron",
    "tz",
    "mode",
    "jitter",
    "sla",
    "max_every",
    "misfire",
    "catch_up_limit",
    "priority",
    "max_attempts",
    "timeout",
    "description",
    "origin",
)
STATE_FIELDS = (
    "created_at",
    "updated_at",
    "next_tick",
    "next_at",
    "paused",
    "paused_at",
    "pending_jitter",
    "in_flight",
    "last_fire_at",
    "last_job_id",
    "last_finished_at",
    "last_state",
    "last_success_at",
    "resumed_at",
    "deadline_at",
    "breach_since",
    "run_time",
    "every_now",
    "every_reason",
)
FIELDS = SPEC_FIELDS + STATE_FIELDS
COLUMNS = ", ".join(FIELDS)
_ENUMS = {"kind": ScheduleKind, "mode": ScheduleMode, "misfire": Misfire, "origin": ScheduleOrigin}


def values(r: ScheduleRecord) -> list[Any]:
    """The row's values in ``FIELDS`` order (``paused`` a bool: SQLite stores it as 1 or 0)."""
    spec = [getattr(r.spec, f).value if f in _ENUMS else getattr(r.spec, f) for f in SPEC_FIELDS]
    state = [getattr(r, f) for f in STATE_FIELDS]
    state[STATE_FIELDS.index("last_state")] = None if r.last_state is None else r.last_state.value
    return spec + state


def record(row: Sequence[Any]) -> ScheduleRecord:
    """The record of a row read as ``SELECT {COLUMNS}``."""
    spec = dict(zip(SPEC_FIELDS, row[: len(SPEC_FIELDS)], strict=True))
    for name, enum in _ENUMS.items():
        spec[name] = enum(spec[name])
    state = dict(zip(STATE_FIELDS, row[len(SPEC_FIELDS) :], strict=True))
    state["paused"] = bool(state["paused"])
    state["last_state"] = None if state["last_state"] is None else JobState(state["last_state"])
    return ScheduleRecord(spec=ScheduleSpec(**spec), **state)


WorstGroup = tuple[int, str, str, str]
"""A group of ``schedule_worst`` as SQL: (``ScheduleRank.group``, WHERE, ORDER BY, the
keyset condition after a cursor), in the store's dialect."""


def worst_queries(
    groups: Sequence[WorstGroup], after: ScheduleRank | None, search: tuple[str, list[Any]] | None
) -> Iterator[tuple[str, list[Any], str]]:
    """(WHERE, parameters, ORDER BY) of each group ``schedule_worst`` reads, in rank order:
    the cursor's group from the cursor on, later groups from their start; ``search`` is the
    dialect's (condition, parameters) for a substring of key or task."""
    for group, where, order, cursor in groups:
        if after is not None and group < after.group:
            continue
        clauses, params = [where], list[Any]()
        if after is not None and group == after.group:
            clauses.append(cursor)
            params += [after.key] if group == 2 else [after.deadline_at, after.key]
        if search is not None:
            clauses.append(search[0])
            params += search[1]
        yield " AND ".join(clauses), params, order
