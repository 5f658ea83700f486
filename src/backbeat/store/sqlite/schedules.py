"""The SQLite store's schedule statements (table ``backbeat_schedules``, migration 0003).

Run on the store's connection thread (or inline), inside the caller's write transaction
where they change several rows. Invariants:
* ``fire`` advances a row only ``WHERE next_at = expected AND in_flight IS NULL AND
  paused = 0``, and inserts the job only if no job has the same (schedule_key, fire_at)
  (a unique index backs the check). A SAVEPOINT per fire keeps a batch's fires
  independent: one that loses its race leaves no trace.
* ``finish_run`` matches ``in_flight = job id``: a run ends once, and only the run the
  schedule is waiting for (a removed and re-added schedule ignores an old job).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from backbeat.store.sqlite.connection import write_tx
from backbeat.types import (
    Change,
    Fire,
    JobState,
    Misfire,
    NewJob,
    ScheduleFilter,
    ScheduleKind,
    ScheduleMode,
    ScheduleOrigin,
    ScheduleRecord,
    ScheduleSpec,
    Upserted,
)

SPEC_COLUMNS = (
    "key, task, queue, payload, kind, every, cron, tz, mode, jitter, sla, misfire, catch_up_limit, priority, "
    "max_attempts, timeout, description, origin"
)
STATE_COLUMNS = (
    "created_at, updated_at, next_tick, next_at, paused, paused_at, pending_jitter, in_flight, last_fire_at, "
    "last_job_id, last_finished_at, last_state, last_success_at"
)
COLUMNS = f"{SPEC_COLUMNS}, {STATE_COLUMNS}"
_N_SPEC = 18


def _spec_values(spec: ScheduleSpec) -> tuple[Any, ...]:
    return (
        spec.key,
        spec.task,
        spec.queue,
        spec.payload,
        spec.kind.value,
        spec.every,
        spec.cron,
        spec.tz,
        spec.mode.value,
        spec.jitter,
        spec.sla,
        spec.misfire.value,
        spec.catch_up_limit,
        spec.priority,
        spec.max_attempts,
        spec.timeout,
        spec.description,
        spec.origin.value,
    )


def record(row: Sequence[Any]) -> ScheduleRecord:
    spec = ScheduleSpec(
        key=row[0],
        task=row[1],
        queue=row[2],
        payload=row[3],
        kind=ScheduleKind(row[4]),
        every=row[5],
        cron=row[6],
        tz=row[7],
        mode=ScheduleMode(row[8]),
        jitter=row[9],
        sla=row[10],
        misfire=Misfire(row[11]),
        catch_up_limit=row[12],
        priority=row[13],
        max_attempts=row[14],
        timeout=row[15],
        description=row[16],
        origin=ScheduleOrigin(row[17]),
    )
    s = row[_N_SPEC:]
    return ScheduleRecord(
        spec=spec,
        created_at=s[0],
        updated_at=s[1],
        next_tick=s[2],
        next_at=s[3],
        paused=bool(s[4]),
        paused_at=s[5],
        pending_jitter=s[6],
        in_flight=s[7],
        last_fire_at=s[8],
        last_job_id=s[9],
        last_finished_at=s[10],
        last_state=None if s[11] is None else JobState(s[11]),
        last_success_at=s[12],
    )


def get(conn: sqlite3.Connection, key: str) -> ScheduleRecord | None:
    row = conn.execute(f"SELECT {COLUMNS} FROM backbeat_schedules WHERE key = ?", (key,)).fetchone()
    return None if row is None else record(row)


def upsert(
    conn: sqlite3.Connection, spec: ScheduleSpec, next_tick: float | None, next_at: float | None, now: float
) -> Upserted:
    with write_tx(conn):
        old = get(conn, spec.key)
        if old is None:
            conn.execute(
                f"INSERT INTO backbeat_schedules ({SPEC_COLUMNS}, created_at, updated_at, next_tick, next_at) "
                f"VALUES ({', '.join('?' * (_N_SPEC + 4))})",
                (*_spec_values(spec), now, now, next_tick, next_at),
            )
            change = Change.ADDED
        elif old.spec == spec:
            return Upserted(record=old, change=Change.UNCHANGED)
        else:
            delay = spec.kind is ScheduleKind.EVERY and spec.mode is ScheduleMode.DELAY
            waiting = old.in_flight is not None and delay
            assignments = ", ".join(f"{c.strip()} = ?" for c in SPEC_COLUMNS.split(",")[1:])
            timing = (None, None) if waiting else (next_tick, next_at)
            conn.execute(
                f"UPDATE backbeat_schedules SET {assignments}, updated_at = ?, next_tick = ?, next_at = ? "
                "WHERE key = ?",
                (*_spec_values(spec)[1:], now, *timing, spec.key),
            )
            change = Change.CHANGED
        current = get(conn, spec.key)
    assert current is not None
    return Upserted(record=current, change=change)


def listing(conn: sqlite3.Connection, flt: ScheduleFilter) -> list[ScheduleRecord]:
    clauses: list[str] = []
    params: list[Any] = []
    if flt.after is not None:
        clauses.append("key > ?")
        params.append(flt.after)
    if flt.origin is not None:
        clauses.append("origin = ?")
        params.append(flt.origin.value)
    if flt.search is not None:
        clauses.append("(instr(key, ?) > 0 OR instr(task, ?) > 0)")
        params += [flt.search, flt.search]
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    rows = conn.execute(
        f"SELECT {COLUMNS} FROM backbeat_schedules {where} ORDER BY key LIMIT ?", (*params, flt.limit)
    ).fetchall()
    return [record(r) for r in rows]


_FIRING = "paused = 0 AND in_flight IS NULL AND next_at IS NOT NULL"


def due(conn: sqlite3.Connection, now: float, limit: int) -> list[ScheduleRecord]:
    rows = conn.execute(
        f"SELECT {COLUMNS} FROM backbeat_schedules WHERE {_FIRING} AND next_at <= ? ORDER BY next_at, key LIMIT ?",
        (now, limit),
    ).fetchall()
    return [record(r) for r in rows]


def next_due(conn: sqlite3.Connection) -> float | None:
    row = conn.execute(f"SELECT MIN(next_at) FROM backbeat_schedules WHERE {_FIRING}").fetchone()
    return None if row[0] is None else float(row[0])


def fire(conn: sqlite3.Connection, fires: Sequence[Fire], now: float, insert_job: Any) -> list[bool]:
    """Each fire in its own savepoint within one write transaction."""
    fired: list[bool] = []
    with write_tx(conn):
        for f in fires:
            conn.execute("SAVEPOINT fire")
            ok = _fire_one(conn, f, now, insert_job)
            conn.execute("RELEASE fire" if ok else "ROLLBACK TO fire")
            if not ok:
                conn.execute("RELEASE fire")
            fired.append(ok)
    return fired


def _fire_one(conn: sqlite3.Connection, f: Fire, now: float, insert_job: Any) -> bool:
    job: NewJob = f.job
    taken = conn.execute(
        "SELECT 1 FROM backbeat_jobs WHERE (schedule_key = ? AND fire_at = ?) OR id = ?", (f.key, job.fire_at, job.id)
    ).fetchone()
    if taken is not None:
        return False
    advanced = conn.execute(
        f"UPDATE backbeat_schedules SET in_flight = ?, last_fire_at = ?, last_job_id = ?, next_tick = ?, "
        f"next_at = ?, pending_jitter = ? WHERE key = ? AND next_at = ? AND {_FIRING}",
        (job.id, job.fire_at, job.id, f.next_tick, f.next_at, f.pending_jitter, f.key, f.expected_next_at),
    ).rowcount
    if advanced != 1:
        return False
    insert_job(conn, job, now)
    return True


_FINISH = (
    "UPDATE backbeat_schedules SET in_flight = NULL, last_finished_at = :now, last_state = :state, "
    "last_success_at = CASE WHEN :state = 'succeeded' THEN :now ELSE last_success_at END, "
    "next_tick = CASE WHEN kind = 'every' AND mode = 'delay' THEN :now + COALESCE(:next_in, every) "
    "  WHEN :next_in IS NOT NULL THEN :now + :next_in ELSE next_tick END, "
    "next_at = CASE WHEN kind = 'every' AND mode = 'delay' THEN :now + COALESCE(:next_in, every) + pending_jitter "
    "  WHEN :next_in IS NOT NULL THEN :now + :next_in ELSE next_at END "
    "WHERE key = :key AND in_flight = :job"
)


def finish_run(
    conn: sqlite3.Connection, key: str, job_id: str, state: JobState, now: float, next_in: float | None = None
) -> bool:
    """End the schedule's run if ``job_id`` is the run in flight (call within a write tx)."""
    params = {"now": now, "state": state.value, "next_in": next_in, "key": key, "job": job_id}
    return conn.execute(_FINISH, params).rowcount == 1


def repair(conn: sqlite3.Connection, now: float) -> list[str]:
    with write_tx(conn):
        rows = conn.execute(
            "SELECT s.key, s.in_flight, j.state FROM backbeat_schedules s "
            "LEFT JOIN backbeat_jobs j ON j.id = s.in_flight WHERE s.in_flight IS NOT NULL "
            "AND (j.id IS NULL OR j.state IN ('succeeded', 'dead', 'cancelled'))"
        ).fetchall()
        for key, job_id, state in rows:
            finish_run(conn, key, job_id, JobState(state) if state else JobState.CANCELLED, now)
    return [r[0] for r in rows]
