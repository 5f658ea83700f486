"""The PostgreSQL store: schedules, SLA breaches, the decision log (``backbeat_schedules``,
``backbeat_breaches``, ``backbeat_decisions``).

Invariants:
* A schedule row is changed only under its row lock (``SELECT ... FOR UPDATE``, or the
  UPDATE's own), read, computed with ``store.rules`` and written back in one transaction.
* ``fire`` advances a row only ``WHERE next_at = expected AND in_flight IS NULL AND NOT
  paused`` (a compare-and-set: a second scheduler's UPDATE waits on the row lock, then
  finds it moved on and changes nothing), and inserts the job under the unique index
  on (schedule_key, fire_at). A savepoint per fire keeps a batch's fires independent.
* ``finish_run`` acts only when ``in_flight`` is the job that ended: a run ends once.
* ``sla_check`` and ``sla_ended`` take rows with ``FOR UPDATE SKIP LOCKED``, so each
  breach is returned to exactly one caller.

Internal module.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from backbeat.errors import ScheduleNotFound
from backbeat.store import rules
from backbeat.store.base import breaches_by_key
from backbeat.store.postgres.connection import PostgresBase, Row, Tx
from backbeat.store.postgres.events import prune_events
from backbeat.store.postgres.rows import DEDUP, INSERT_SELECT, columns
from backbeat.store.schedule_rows import COLUMNS, FIELDS, record, values, worst_queries
from backbeat.types import (
    Breach,
    Change,
    Decision,
    DecisionKind,
    Fire,
    IntervalChange,
    JobState,
    ScheduleFilter,
    ScheduleRank,
    ScheduleRecord,
    ScheduleSpec,
    SlaStats,
    Upserted,
)

_WORST = (
    # (group, WHERE, ORDER BY, cursor): ScheduleRank's groups, each a range of an index
    # (an SLA schedule always has a deadline)
    (0, "sla IS NOT NULL AND NOT paused", "deadline_at, key", "(deadline_at, key) > (%s, %s)"),
    (1, "sla IS NOT NULL AND paused", "deadline_at, key", "(deadline_at, key) > (%s, %s)"),
    (2, "sla IS NULL", "key", "key > %s"),
)
_PUT = (
    f"INSERT INTO backbeat_schedules ({COLUMNS}) VALUES ({', '.join(['%s'] * len(FIELDS))}) "
    "ON CONFLICT (key) DO UPDATE SET " + ", ".join(f"{f} = EXCLUDED.{f}" for f in FIELDS[1:])
)
_FIRING = "NOT paused AND in_flight IS NULL AND next_at IS NOT NULL"
_SEARCH = "(key LIKE %s OR task LIKE %s)"
"""A substring of key or task: a bitmap scan of the trigram index (migration 0003) when the
search has three characters or more and matches are rare; the ranked index filtered when
they are common (the planner estimates which)."""
DUE = f"WHERE {_FIRING} AND next_at <= %s ORDER BY next_at, key LIMIT %s"
"""``schedule_due``: a range scan of ``backbeat_schedules_due``, whose predicate is ``_FIRING``."""


async def get(db: Tx, key: str, *, lock: bool = False) -> ScheduleRecord | None:
    row = await db.row(
        f"SELECT {COLUMNS} FROM backbeat_schedules WHERE key = %s" + (" FOR UPDATE" if lock else ""), (key,)
    )
    return None if row is None else record(row)


async def put(db: Tx, r: ScheduleRecord) -> None:
    await db.run(_PUT, values(r))


def _contains(text: str) -> str:
    """A LIKE pattern matching ``text`` anywhere, its wildcards and escapes taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _found(key: str, r: ScheduleRecord | None) -> ScheduleRecord:
    if r is None:
        raise ScheduleNotFound(f"no schedule {key!r}")
    return r


async def _end_breach(db: Tx, key: str, now: float) -> None:
    await db.run("UPDATE backbeat_breaches SET ended_at = %s WHERE key = %s AND ended_at IS NULL", (now, key))


BREACH_COLUMNS = "key, sla, base_at, started_at, ended_at"


def _breach(row: Row) -> Breach:
    return Breach(key=row[0], sla=row[1], base_at=row[2], started_at=row[3], ended_at=row[4])


async def _insert_breach(db: Tx, b: Breach) -> None:
    await db.run(
        f"INSERT INTO backbeat_breaches ({BREACH_COLUMNS}) VALUES (%s, %s, %s, %s, %s)",
        (b.key, b.sla, b.base_at, b.started_at, b.ended_at),
    )


async def finish_run(
    db: Tx, key: str, job_id: str, state: JobState, started_at: float | None, now: float, next_in: float | None = None
) -> bool:
    """End the schedule's run if ``job_id`` is the run in flight (in the caller's transaction)."""
    current = await get(db, key, lock=True)
    if current is None or current.in_flight != job_id:
        return False
    end = rules.finish_run(current, state, started_at, now, next_in)
    if end.end_open_breach:
        await _end_breach(db, key, now)
    if end.missed_breach is not None:
        await _insert_breach(db, end.missed_breach)
    await put(db, end.record)
    return True


async def _upsert(db: Tx, spec: ScheduleSpec, next_tick: float | None, next_at: float | None, now: float) -> Upserted:
    # a new key is inserted as a placeholder first, so two upserts of it serialise on the row
    upserted, ends = rules.upserted(await get(db, spec.key, lock=True), spec, next_tick, next_at, now)
    if ends:
        await _end_breach(db, spec.key, now)
    if upserted.change is not Change.UNCHANGED:
        await put(db, upserted.record)
        if upserted.record.next_at is not None:
            await db.notify()
    return upserted


_FIRE = (
    "WITH adv AS (UPDATE backbeat_schedules SET in_flight = %s, last_fire_at = %s, last_job_id = %s, "
    f"next_tick = %s, next_at = %s, pending_jitter = %s WHERE key = %s AND next_at = %s AND {_FIRING} "
    "AND NOT EXISTS (SELECT 1 FROM backbeat_jobs WHERE (schedule_key = %s AND fire_at = %s) OR id = %s) "
    "RETURNING key), "
    "queues AS (INSERT INTO backbeat_queues (name) SELECT %s WHERE EXISTS (SELECT 1 FROM adv) "
    "ON CONFLICT DO NOTHING), "
    f"ins AS ({INSERT_SELECT} WHERE EXISTS (SELECT 1 FROM adv) {DEDUP} RETURNING id) "
    "SELECT EXISTS (SELECT 1 FROM adv), (SELECT pg_notify(%s, '') FROM ins LIMIT 1)"
)
"""One fire in one statement: the schedule advances (a compare-and-set on ``next_at``,
under its row lock) only if no job exists for (key, fire time) nor with the job's id,
and the job is inserted only if it advanced. Two schedulers firing one occurrence
serialise on the row lock; the second finds ``next_at`` moved and changes nothing. (The
unique index on (schedule_key, fire_at) stays as the backstop: a violation, impossible
through this statement, would fail the batch, which the scheduler retries.)"""


def _fire_params(f: Fire, now: float, channel: str) -> list[Any]:
    job = f.job
    advance = [job.id, job.fire_at, job.id, f.next_tick, f.next_at, f.pending_jitter, f.key, f.expected_next_at]
    taken = [f.key, job.fire_at, job.id]
    return [*advance, *taken, job.queue, now, *columns([rules.new_record(job, now)]), channel]


async def _fire(db: Tx, fires: Sequence[Fire], now: float) -> list[bool]:
    """Every fire of the batch sent at once (pipelined), their answers read after."""
    rows = await db.pipelined(_FIRE, [_fire_params(f, now, db.channel) for f in fires])
    return [bool(row and row[0]) for row in rows]


async def _repair(db: Tx, now: float) -> list[str]:
    rows = await db.rows(
        "SELECT s.key, s.in_flight, j.state, j.started_at FROM backbeat_schedules s "
        "LEFT JOIN backbeat_jobs j ON j.id = s.in_flight WHERE s.in_flight IS NOT NULL "
        "AND (j.id IS NULL OR j.state IN ('succeeded', 'dead', 'cancelled')) ORDER BY s.key"
    )
    for key, job_id, state, started_at in rows:
        await finish_run(db, key, job_id, JobState(state) if state else JobState.CANCELLED, started_at, now)
    return [r[0] for r in rows]


async def _sla_check(db: Tx, now: float, limit: int) -> list[Breach]:
    rows = await db.rows(
        "SELECT key, sla, deadline_at FROM backbeat_schedules WHERE sla IS NOT NULL AND NOT paused "
        "AND breach_since IS NULL AND deadline_at < %s ORDER BY deadline_at, key LIMIT %s FOR UPDATE SKIP LOCKED",
        (now, limit),
    )
    opened = [Breach(key=k, sla=sla, base_at=deadline - sla, started_at=deadline) for k, sla, deadline in rows]
    for breach in opened:
        await db.run("UPDATE backbeat_schedules SET breach_since = %s WHERE key = %s", (breach.started_at, breach.key))
        await _insert_breach(db, breach)
    return opened


class ScheduleMethods(PostgresBase):
    async def schedule_upsert(
        self, spec: ScheduleSpec, *, next_tick: float | None, next_at: float | None, now: float
    ) -> Upserted:
        async with self.tx() as db:
            # serialise upserts of one new key: the first inserts, the second finds it
            await db.run("SELECT pg_advisory_xact_lock(hashtextextended(%s, 1))", (f"schedule:{spec.key}",))
            return await _upsert(db, spec, next_tick, next_at, now)

    async def schedule_get(self, key: str) -> ScheduleRecord:
        async with self.connection() as db:
            return _found(key, await get(db, key))

    async def schedule_list(self, filter: ScheduleFilter) -> list[ScheduleRecord]:
        clauses: list[str] = []
        params: list[Any] = []
        if filter.after is not None:
            clauses.append("key > %s")
            params.append(filter.after)
        if filter.origin is not None:
            clauses.append("origin = %s")
            params.append(filter.origin.value)
        if filter.search is not None:
            clauses.append(_SEARCH)
            params += [_contains(filter.search)] * 2
        if filter.adaptive:
            clauses.append("max_every IS NOT NULL")
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = await self.rows(
            f"SELECT {COLUMNS} FROM backbeat_schedules {where} ORDER BY key LIMIT %s", (*params, filter.limit)
        )
        return [record(r) for r in rows]

    async def schedule_remove(self, key: str) -> bool:
        return bool(await self.run("DELETE FROM backbeat_schedules WHERE key = %s", (key,)))

    async def schedule_pause(self, key: str, *, now: float) -> ScheduleRecord:
        async with self.tx() as db:
            old = _found(key, await get(db, key, lock=True))
            if old.paused:
                return old
            if old.breach_since is not None:
                await _end_breach(db, key, now)
            new = replace(old, paused=True, paused_at=now, breach_since=None)
            await put(db, new)
        return new

    async def schedule_resume(self, key: str, *, now: float) -> ScheduleRecord:
        async with self.tx() as db:
            old = _found(key, await get(db, key, lock=True))
            if not old.paused:
                return old
            sla = old.spec.sla
            new = replace(
                old, paused=False, paused_at=None, resumed_at=now, deadline_at=None if sla is None else now + sla
            )
            await put(db, new)
            await db.notify()
        return new

    async def schedule_due(self, *, now: float, limit: int) -> list[ScheduleRecord]:
        rows = await self.rows(f"SELECT {COLUMNS} FROM backbeat_schedules {DUE}", (now, limit))
        return [record(r) for r in rows]

    async def schedule_next_due(self) -> float | None:
        row = await self.row(f"SELECT next_at FROM backbeat_schedules WHERE {_FIRING} ORDER BY next_at LIMIT 1")
        return None if row is None else float(row[0])

    async def schedule_fire(self, fires: Sequence[Fire], *, now: float) -> list[bool]:
        if not fires:
            return []
        async with self.tx() as db:
            return await _fire(db, fires, now)

    async def schedule_repair(self, *, now: float) -> list[str]:
        async with self.tx() as db:
            return await _repair(db, now)

    async def schedule_set_every(self, changes: Sequence[IntervalChange], *, now: float) -> list[bool]:
        done = []
        async with self.tx() as db:
            for change in changes:
                moved = rules.set_every(await get(db, change.key, lock=True), change)
                if moved is not None:
                    await put(db, moved)
                done.append(moved is not None)
            await db.notify()
        return done

    # -- SLA and the decision log -------------------------------------------------------

    async def sla_check(self, *, now: float, limit: int = 1000) -> list[Breach]:
        async with self.tx() as db:
            return await _sla_check(db, now, limit)

    async def sla_ended(self, *, limit: int = 1000) -> list[Breach]:
        rows = await self.rows(
            f"UPDATE backbeat_breaches SET announced = true WHERE id IN (SELECT id FROM backbeat_breaches "
            "WHERE ended_at IS NOT NULL AND NOT announced ORDER BY ended_at, id LIMIT %s FOR UPDATE SKIP LOCKED) "
            f"RETURNING id, {BREACH_COLUMNS}",
            (limit,),
        )
        rows.sort(key=lambda r: (r[5], r[0]))
        return [_breach(r[1:]) for r in rows]

    async def sla_breaches(self, *, key: str | None, since: float, limit: int = 1000) -> list[Breach]:
        where = "(ended_at IS NULL OR ended_at >= %s)" + ("" if key is None else " AND key = %s")
        params: tuple[Any, ...] = (since,) if key is None else (since, key)
        rows = await self.rows(
            f"SELECT {BREACH_COLUMNS} FROM backbeat_breaches WHERE {where} ORDER BY started_at DESC, key DESC LIMIT %s",
            (*params, limit),
        )
        return [_breach(r) for r in rows]

    async def sla_breaches_of(self, keys: Sequence[str], *, since: float) -> dict[str, list[Breach]]:
        rows = await self.rows(
            f"SELECT {BREACH_COLUMNS} FROM backbeat_breaches WHERE key = ANY(%s) "
            "AND (ended_at IS NULL OR ended_at >= %s) ORDER BY started_at DESC, key DESC",
            (list(keys), since),
        )
        return breaches_by_key(keys, [_breach(r) for r in rows])

    async def schedule_worst(
        self, *, after: ScheduleRank | None = None, search: str | None = None, limit: int
    ) -> list[ScheduleRecord]:
        """The groups in turn, each from the cursor (in the cursor's group) or from its start
        (in later groups); each an index range scan (migration 0002)."""
        out: list[ScheduleRecord] = []
        found = None if search is None else (_SEARCH, [_contains(search)] * 2)
        for where, params, order in worst_queries(_WORST, after, found):
            rows = await self.rows(
                f"SELECT {COLUMNS} FROM backbeat_schedules WHERE {where} ORDER BY {order} LIMIT %s",
                (*params, limit - len(out)),
            )
            out += [record(r) for r in rows]
            if len(out) >= limit:
                break
        return out

    async def sla_list(self, *, limit: int) -> list[ScheduleRecord]:
        rows = await self.rows(
            f"SELECT {COLUMNS} FROM backbeat_schedules WHERE sla IS NOT NULL ORDER BY paused, deadline_at, key "
            "LIMIT %s",
            (limit,),
        )
        return [record(r) for r in rows]

    async def sla_stats(self, *, now: float, since: float) -> SlaStats:
        async with self.connection() as db:
            counts = await db.row(
                "SELECT COUNT(*), COUNT(*) FILTER (WHERE paused), "
                "COUNT(*) FILTER (WHERE NOT paused AND deadline_at < %s) FROM backbeat_schedules WHERE sla IS NOT NULL",
                (now,),
            )
            seconds = await db.row(
                "SELECT COALESCE(SUM(GREATEST(0, LEAST(%s, COALESCE(ended_at, %s)) - GREATEST(started_at, %s))), 0) "
                "FROM backbeat_breaches WHERE ended_at IS NULL OR ended_at >= %s",
                (now, now, since, since),
            )
        assert counts is not None and seconds is not None
        return SlaStats(schedules=counts[0], paused=counts[1], breached=counts[2], breach_seconds=float(seconds[0]))

    async def decision_append(self, decisions: Sequence[Decision]) -> None:
        if not decisions:
            return
        await self.run(
            "INSERT INTO backbeat_decisions (key, at, kind, detail, job_id) "
            "SELECT d.key, d.at, d.kind, d.detail, d.job_id "
            "FROM unnest(%s::text[], %s::float8[], %s::text[], %s::text[], %s::text[]) WITH ORDINALITY "
            "AS d(key, at, kind, detail, job_id, n) ORDER BY d.n",
            (
                [d.key for d in decisions],
                [d.at for d in decisions],
                [d.kind.value for d in decisions],
                [d.detail for d in decisions],
                [d.job_id for d in decisions],
            ),
        )

    async def decision_list(self, key: str, *, before: float | None = None, limit: int = 100) -> list[Decision]:
        rows = await self.rows(
            "SELECT key, at, kind, detail, job_id FROM backbeat_decisions WHERE key = %s AND at < %s "
            "ORDER BY at DESC, id DESC LIMIT %s",
            (key, float("inf") if before is None else before, limit),
        )
        return [_decision(r) for r in rows]

    async def decision_since(self, kinds: Sequence[DecisionKind], *, since: float, limit: int) -> list[Decision]:
        rows = await self.rows(
            "SELECT key, at, kind, detail, job_id FROM backbeat_decisions WHERE kind = ANY(%s) AND at >= %s "
            "ORDER BY at, id LIMIT %s",
            ([k.value for k in kinds], since, limit),
        )
        return [_decision(r) for r in rows]

    async def history_prune(self, *, before: float, limit: int = 10_000) -> int:
        async with self.tx() as db:
            decisions = await db.run(
                "DELETE FROM backbeat_decisions WHERE id IN (SELECT id FROM backbeat_decisions WHERE at < %s LIMIT %s)",
                (before, limit),
            )
            breaches = await db.run(
                "DELETE FROM backbeat_breaches WHERE id IN "
                "(SELECT id FROM backbeat_breaches WHERE ended_at IS NOT NULL AND ended_at < %s LIMIT %s)",
                (before, limit),
            )
            events = await prune_events(db, before, limit)
        return decisions + breaches + events


def _decision(r: Row) -> Decision:
    return Decision(key=r[0], at=r[1], kind=DecisionKind(r[2]), detail=r[3], job_id=r[4])
