"""The SQLite store's events (migration 0006). An event's id is its primary key, so a
redelivered event is recognised whatever its source; settling moves ``pending`` (or
nothing) to a final state in the same write transaction as its jobs' inserts, with a
SAVEPOINT per event so one failure leaves the others settled and itself untouched."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

from backbeat.errors import EventError, EventNotFound, InvalidTransition
from backbeat.store.sqlite.connection import write_tx
from backbeat.types import EventFilter, EventRecord, EventSettlement, EventState, NewEvent, NewJob

COLUMNS = "id, name, key, occurred_at, received_at, payload, source, state, reason, jobs, settled_at"


def record(row: Sequence[Any]) -> EventRecord:
    return EventRecord(
        id=row[0],
        name=row[1],
        key=row[2],
        occurred_at=row[3],
        received_at=row[4],
        payload=row[5],
        source=row[6],
        state=EventState(row[7]),
        reason=row[8],
        jobs=row[9],
        settled_at=row[10],
    )


def _insert(conn: sqlite3.Connection, e: NewEvent, state: EventState, now: float) -> bool:
    return bool(
        conn.execute(
            "INSERT INTO backbeat_events (id, name, key, occurred_at, received_at, payload, source, state) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
            (e.id, e.name, e.key, e.occurred_at, now, e.payload, e.source, state.value),
        ).rowcount
    )


def append(conn: sqlite3.Connection, events: Sequence[NewEvent], now: float) -> list[bool]:
    with write_tx(conn):
        return append_on(conn, events, now)


def append_on(conn: sqlite3.Connection, events: Sequence[NewEvent], now: float) -> list[bool]:
    """The inserts alone, in whatever transaction ``conn`` (maybe the caller's) has open."""
    return [_insert(conn, e, EventState.PENDING, now) for e in events]


def check_same_file(conn: sqlite3.Connection, path: str) -> None:
    """Refuse a caller's connection to another database than the store's."""
    rows = conn.execute("PRAGMA database_list").fetchall()
    files = {os.path.realpath(row[2]) for row in rows if row[1] == "main" and row[2]}
    if os.path.realpath(path) not in files:
        raise EventError(
            f"connection= is open on {', '.join(sorted(files)) or 'an in-memory database'}, not on the store's "
            f"file {os.path.realpath(path)}: the event must be written to the store's database"
        )


def settle(
    conn: sqlite3.Connection,
    settlements: Sequence[EventSettlement],
    now: float,
    insert_job: Callable[[sqlite3.Connection, NewJob, float], object],
) -> list[bool]:
    out: list[bool] = []
    with write_tx(conn):
        for s in settlements:
            conn.execute("SAVEPOINT settle")
            try:
                done = _settle_one(conn, s, now, insert_job)
            except BaseException:
                conn.execute("ROLLBACK TO settle")
                conn.execute("RELEASE settle")
                raise
            conn.execute("RELEASE settle")
            out.append(done)
    return out


def _settle_one(
    conn: sqlite3.Connection,
    s: EventSettlement,
    now: float,
    insert_job: Callable[[sqlite3.Connection, NewJob, float], object],
) -> bool:
    if not _insert(conn, s.event, EventState.PENDING, now):
        row = conn.execute("SELECT state FROM backbeat_events WHERE id = ?", (s.event.id,)).fetchone()
        if row[0] != EventState.PENDING.value:
            return False
    conn.execute(
        "UPDATE backbeat_events SET state = ?, reason = ?, jobs = ?, settled_at = ?, payload = ? WHERE id = ?",
        (s.state.value, s.reason, len(s.jobs), now, s.event.payload, s.event.id),
    )
    for job in s.jobs:
        insert_job(conn, job, now)
    return True


def pending(conn: sqlite3.Connection, limit: int) -> list[EventRecord]:
    rows = conn.execute(
        f"SELECT {COLUMNS} FROM backbeat_events WHERE state = 'pending' ORDER BY received_at, id LIMIT ?", (limit,)
    ).fetchall()
    return [record(r) for r in rows]


def get(conn: sqlite3.Connection, event_id: str) -> EventRecord:
    row = conn.execute(f"SELECT {COLUMNS} FROM backbeat_events WHERE id = ?", (event_id,)).fetchone()
    if row is None:
        raise EventNotFound(f"no event {event_id!r}")
    return record(row)


def listing(conn: sqlite3.Connection, flt: EventFilter) -> list[EventRecord]:
    clauses, params = [], []
    for column, value in (("state", flt.state), ("name", flt.name)):
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(str(value))
    if flt.before is not None:
        clauses.append("id < ?")
        params.append(flt.before)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    rows = conn.execute(
        f"SELECT {COLUMNS} FROM backbeat_events {where} ORDER BY id DESC LIMIT ?", (*params, flt.limit)
    ).fetchall()
    return [record(r) for r in rows]


def replay(conn: sqlite3.Connection, event_id: str) -> EventRecord:
    with write_tx(conn):
        event = get(conn, event_id)
        if event.state not in (EventState.DEAD, EventState.UNHANDLED):
            raise InvalidTransition(f"event {event_id} is {event.state}; only dead or unhandled events replay")
        conn.execute(
            "UPDATE backbeat_events SET state = 'pending', reason = NULL, settled_at = NULL WHERE id = ?", (event_id,)
        )
        return get(conn, event_id)


def prune(conn: sqlite3.Connection, before: float, limit: int) -> int:
    return int(
        conn.execute(
            "DELETE FROM backbeat_events WHERE id IN (SELECT id FROM backbeat_events WHERE state <> 'pending' "
            "AND received_at < ? LIMIT ?)",
            (before, limit),
        ).rowcount
    )
