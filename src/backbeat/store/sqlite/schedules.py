"""The SQLite store's schedule statements: ``backbeat_schedules`` (migrations 0003, 0004),
``backbeat_breaches`` and ``backbeat_decisions``.

Run on the store's connection thread (or inline), inside the caller's write transaction
where they change several rows. Invariants:
* ``fire`` advances a row only ``WHERE next_at = expected AND in_flight IS NULL AND
  paused = 0``, and inserts the job only if no job has the same (schedule_key, fire_at)
  (a unique index backs the check). A SAVEPOINT per fire keeps a batch's fires
  independent: one that loses its race leaves no trace.
* ``finish_run`` acts only when ``in_flight`` is the job that ended: a run ends once, and
  only the run the schedule waits for (a removed and re-added schedule ignores an old
  job). Its rules are ``store.rules`` (shared with the reference store): read the row,
  compute, write the run state back, in the same transaction.
* A breach row is open while ``ended_at IS NULL``; at most one per schedule, mirrored by
  the schedule's ``breach_since``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from backbeat.store import rules
from backbeat.store.schedule_rows import COLUMNS, FIELDS, record, values, worst_queries
from backbeat.store.sqlite.connection import write_tx
from backbeat.store.sqlite.events import prune as prune_events
from backbeat.types import (
    Breach,
    Change,
    Decision,
    DecisionKind,
    Fire,
    IntervalChange,
    JobState,
    NewJob,
    ScheduleFilter,
    ScheduleRank,
    ScheduleRecord,
    ScheduleSpec,
    SlaStats,
    Upserted,
)


def get(conn: sqlite3.Connection, key: str) -> ScheduleRecord | None:
    row = conn.execute(f"SELECT {COLUMNS} FROM backbeat_schedules WHERE key = ?", (key,)).fetchone()
    return None if row is None else record(row)


def put(conn: sqlite3.Connection, r: ScheduleRecord) -> None:
    """Write the whole row (insert or replace)."""
    marks = ", ".join("?" * len(FIELDS))
    conn.execute(
        f"INSERT OR REPLACE INTO backbeat_schedules ({COLUMNS}) VALUES ({marks})",
        values(r),
    )


def upsert(
    conn: sqlite3.Connection, spec: ScheduleSpec, next_tick: float | None, next_at: float | None, now: float
) -> Upserted:
    with write_tx(conn):
        upserted, ends = rules.upserted(get(conn, spec.key), spec, next_tick, next_at, now)
        if ends:
            _end_breach(conn, spec.key, now)
        if upserted.change is not Change.UNCHANGED:
            put(conn, upserted.record)
    return upserted


def pause(conn: sqlite3.Connection, key: str, now: float) -> ScheduleRecord | None:
    with write_tx(conn):
        old = get(conn, key)
        if old is None or old.paused:
            return old
        if old.breach_since is not None:
            _end_breach(conn, key, now)
        new = replace(old, paused=True, paused_at=now, breach_since=None)
        put(conn, new)
    return new


def resume(conn: sqlite3.Connection, key: str, now: float) -> ScheduleRecord | None:
    with write_tx(conn):
        old = get(conn, key)
        if old is None or not old.paused:
            return old
        sla = old.spec.sla
        new = replace(old, paused=False, paused_at=None, resumed_at=now, deadline_at=None if sla is None else now + sla)
        put(conn, new)
    return new


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
    if flt.adaptive:
        clauses.append("max_every IS NOT NULL")
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


def finish_run(
    conn: sqlite3.Connection,
    key: str,
    job_id: str,
    state: JobState,
    started_at: float | None,
    now: float,
    next_in: float | None = None,
) -> bool:
    """End the schedule's run if ``job_id`` is the run in flight (call within a write tx)."""
    current = get(conn, key)
    if current is None or current.in_flight != job_id:
        return False
    end = rules.finish_run(current, state, started_at, now, next_in)
    if end.end_open_breach:
        _end_breach(conn, key, now)
    if end.missed_breach is not None:
        _insert_breach(conn, end.missed_breach)
    put(conn, end.record)
    return True


def repair(conn: sqlite3.Connection, now: float) -> list[str]:
    with write_tx(conn):
        rows = conn.execute(
            "SELECT s.key, s.in_flight, j.state, j.started_at FROM backbeat_schedules s "
            "LEFT JOIN backbeat_jobs j ON j.id = s.in_flight WHERE s.in_flight IS NOT NULL "
            "AND (j.id IS NULL OR j.state IN ('succeeded', 'dead', 'cancelled'))"
        ).fetchall()
        for key, job_id, state, started_at in rows:
            finish_run(conn, key, job_id, JobState(state) if state else JobState.CANCELLED, started_at, now)
    return [r[0] for r in rows]


# -- SLA ---------------------------------------------------------------------------------

BREACH_COLUMNS = "key, sla, base_at, started_at, ended_at"


def _breach(row: Sequence[Any]) -> Breach:
    return Breach(key=row[0], sla=row[1], base_at=row[2], started_at=row[3], ended_at=row[4])


def _insert_breach(conn: sqlite3.Connection, b: Breach) -> None:
    conn.execute(
        f"INSERT INTO backbeat_breaches ({BREACH_COLUMNS}) VALUES (?, ?, ?, ?, ?)",
        (b.key, b.sla, b.base_at, b.started_at, b.ended_at),
    )


def _end_breach(conn: sqlite3.Connection, key: str, now: float) -> None:
    conn.execute("UPDATE backbeat_breaches SET ended_at = ? WHERE key = ? AND ended_at IS NULL", (now, key))


def sla_check(conn: sqlite3.Connection, now: float, limit: int) -> list[Breach]:
    with write_tx(conn):
        rows = conn.execute(
            "SELECT key, sla, deadline_at FROM backbeat_schedules WHERE sla IS NOT NULL AND paused = 0 "
            "AND breach_since IS NULL AND deadline_at < ? ORDER BY deadline_at, key LIMIT ?",
            (now, limit),
        ).fetchall()
        opened = [Breach(key=k, sla=sla, base_at=deadline - sla, started_at=deadline) for k, sla, deadline in rows]
        for breach in opened:
            conn.execute(
                "UPDATE backbeat_schedules SET breach_since = ? WHERE key = ?", (breach.started_at, breach.key)
            )
            _insert_breach(conn, breach)
    return opened


def sla_ended(conn: sqlite3.Connection, limit: int) -> list[Breach]:
    with write_tx(conn):
        rows = conn.execute(
            f"SELECT id, {BREACH_COLUMNS} FROM backbeat_breaches WHERE ended_at IS NOT NULL AND announced = 0 "
            "ORDER BY ended_at, id LIMIT ?",
            (limit,),
        ).fetchall()
        conn.executemany("UPDATE backbeat_breaches SET announced = 1 WHERE id = ?", [(r[0],) for r in rows])
    return [_breach(r[1:]) for r in rows]


def sla_breaches(conn: sqlite3.Connection, key: str | None, since: float, limit: int) -> list[Breach]:
    where = "(ended_at IS NULL OR ended_at >= ?)" + ("" if key is None else " AND key = ?")
    params: tuple[Any, ...] = (since,) if key is None else (since, key)
    rows = conn.execute(
        f"SELECT {BREACH_COLUMNS} FROM backbeat_breaches WHERE {where} ORDER BY started_at DESC, key DESC LIMIT ?",
        (*params, limit),
    ).fetchall()
    return [_breach(r) for r in rows]


def sla_breaches_of(conn: sqlite3.Connection, keys: Sequence[str], since: float) -> list[Breach]:
    """The breaches of ``keys`` open at or after ``since``, latest start first (the keys in
    chunks: SQLite bounds the parameters of one statement)."""
    found: list[Breach] = []
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        rows = conn.execute(
            f"SELECT {BREACH_COLUMNS} FROM backbeat_breaches WHERE key IN ({', '.join('?' * len(chunk))}) "
            "AND (ended_at IS NULL OR ended_at >= ?) ORDER BY started_at DESC, key DESC",
            (*chunk, since),
        ).fetchall()
        found += [_breach(r) for r in rows]
    return found


def sla_list(conn: sqlite3.Connection, limit: int) -> list[ScheduleRecord]:
    rows = conn.execute(
        f"SELECT {COLUMNS} FROM backbeat_schedules WHERE sla IS NOT NULL ORDER BY paused, deadline_at, key LIMIT ?",
        (limit,),
    ).fetchall()
    return [record(r) for r in rows]


_WORST = (
    # (group, WHERE, ORDER BY, cursor columns): each an index range scan (0004's
    # backbeat_schedules_sla for the SLA groups, 0009's backbeat_schedules_nosla)
    (0, "sla IS NOT NULL AND paused = 0", "deadline_at, key", "(deadline_at, key) > (?, ?)"),
    (1, "sla IS NOT NULL AND paused = 1", "deadline_at, key", "(deadline_at, key) > (?, ?)"),
    (2, "sla IS NULL", "key", "key > ?"),
)


def worst(conn: sqlite3.Connection, after: ScheduleRank | None, search: str | None, limit: int) -> list[ScheduleRecord]:
    """``schedule_worst``: the groups in turn, each from the cursor (in the cursor's group)
    or from its start (in later groups)."""
    out: list[ScheduleRecord] = []
    found = None if search is None else ("(instr(key, ?) > 0 OR instr(task, ?) > 0)", [search, search])
    for where, params, order in worst_queries(_WORST, after, found):
        rows = conn.execute(
            f"SELECT {COLUMNS} FROM backbeat_schedules WHERE {where} ORDER BY {order} LIMIT ?",
            (*params, limit - len(out)),
        ).fetchall()
        out += [record(r) for r in rows]
        if len(out) >= limit:
            break
    return out


def sla_stats(conn: sqlite3.Connection, now: float, since: float) -> SlaStats:
    # three counts over backbeat_schedules_sla: the paused and breached ones are index ranges
    count, paused, breached = conn.execute(
        "SELECT (SELECT COUNT(*) FROM backbeat_schedules WHERE sla IS NOT NULL), "
        "(SELECT COUNT(*) FROM backbeat_schedules WHERE sla IS NOT NULL AND paused = 1), "
        "(SELECT COUNT(*) FROM backbeat_schedules WHERE sla IS NOT NULL AND paused = 0 AND deadline_at < ?)",
        (now,),
    ).fetchone()
    seconds = conn.execute(
        "SELECT COALESCE(SUM(MAX(0, MIN(?, COALESCE(ended_at, ?)) - MAX(started_at, ?))), 0) FROM backbeat_breaches "
        "WHERE ended_at IS NULL OR ended_at >= ?",
        (now, now, since, since),
    ).fetchone()[0]
    return SlaStats(schedules=count, paused=paused, breached=breached, breach_seconds=float(seconds))


# -- the decision log --------------------------------------------------------------------


def decision_append(conn: sqlite3.Connection, decisions: Sequence[Decision]) -> None:
    with write_tx(conn):
        conn.executemany(
            "INSERT INTO backbeat_decisions (key, at, kind, detail, job_id) VALUES (?, ?, ?, ?, ?)",
            [(d.key, d.at, d.kind.value, d.detail, d.job_id) for d in decisions],
        )


def decision_list(conn: sqlite3.Connection, key: str, before: float | None, limit: int) -> list[Decision]:
    rows = conn.execute(
        "SELECT key, at, kind, detail, job_id FROM backbeat_decisions WHERE key = ? AND at < ? "
        "ORDER BY at DESC, id DESC LIMIT ?",
        (key, float("inf") if before is None else before, limit),
    ).fetchall()
    return [
        Decision(key=k, at=at, kind=DecisionKind(kind), detail=detail, job_id=job) for k, at, kind, detail, job in rows
    ]


def decision_since(conn: sqlite3.Connection, kinds: Sequence[DecisionKind], since: float, limit: int) -> list[Decision]:
    marks = ", ".join("?" * len(kinds))
    rows = conn.execute(
        f"SELECT key, at, kind, detail, job_id FROM backbeat_decisions WHERE kind IN ({marks}) AND at >= ? "
        "ORDER BY at, id LIMIT ?",
        (*(k.value for k in kinds), since, limit),
    ).fetchall()
    return [
        Decision(key=k, at=at, kind=DecisionKind(kind), detail=detail, job_id=job) for k, at, kind, detail, job in rows
    ]


def set_every(conn: sqlite3.Connection, changes: Sequence[IntervalChange]) -> list[bool]:
    done = []
    with write_tx(conn):
        for change in changes:
            moved = rules.set_every(get(conn, change.key), change)
            if moved is not None:
                put(conn, moved)
            done.append(moved is not None)
    return done


def history_prune(conn: sqlite3.Connection, before: float, limit: int) -> int:
    with write_tx(conn):
        decisions = conn.execute(
            "DELETE FROM backbeat_decisions WHERE id IN (SELECT id FROM backbeat_decisions WHERE at < ? LIMIT ?)",
            (before, limit),
        ).rowcount
        breaches = conn.execute(
            "DELETE FROM backbeat_breaches WHERE id IN "
            "(SELECT id FROM backbeat_breaches WHERE ended_at IS NOT NULL AND ended_at < ? LIMIT ?)",
            (before, limit),
        ).rowcount
        events = prune_events(conn, before, limit)
    return int(decisions) + int(breaches) + events
