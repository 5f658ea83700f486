"""The protocol's rules as plain functions any store can use: the record a new job starts
as, an upserted schedule, and the end of a schedule's run (the memory, SQLite and
PostgreSQL stores call them; the Redis
store states the end of a run in Lua, ``store/redis/scripts/lib_schedules.lua``, because
it must happen inside the script that moves the job).

``store.base`` states them; these compute them: given the schedule as it was, the job
that ended and the time, the schedule as it must be, and which breach records change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from backbeat.types import (
    Breach,
    Change,
    IntervalChange,
    JobRecord,
    JobState,
    NewJob,
    ScheduleKind,
    ScheduleMode,
    ScheduleRecord,
    ScheduleSpec,
    Upserted,
    evolve,
)

RUN_TIME_WEIGHT = 0.2
"""How far one run moves a schedule's average run time towards its own duration."""


def new_record(new: NewJob, now: float) -> JobRecord:
    """The job ``job_enqueue`` writes for ``new`` at ``now``: ``queued`` if due, else
    ``scheduled``; ``order_at`` defaults to ``run_at``."""
    return JobRecord(
        id=new.id,
        task=new.task,
        queue=new.queue,
        state=JobState.QUEUED if new.run_at <= now else JobState.SCHEDULED,
        payload=new.payload,
        priority=new.priority,
        run_at=new.run_at,
        order_at=new.run_at if new.order_at is None else new.order_at,
        attempts=0,
        max_attempts=new.max_attempts,
        created_at=now,
        timeout=new.timeout,
        dedup_key=new.dedup_key,
        schedule_key=new.schedule_key,
        fire_at=new.fire_at,
        deadline=new.deadline,
    )


@dataclass(frozen=True, kw_only=True, slots=True)
class RunEnd:
    record: ScheduleRecord
    """The schedule after the run."""
    end_open_breach: bool = False
    """The open breach of this schedule ends at the run's end."""
    missed_breach: Breach | None = None
    """A closed breach to record: the run succeeded after the deadline with no breach open."""


def finish_run(
    record: ScheduleRecord, state: JobState, started_at: float | None, now: float, next_in: float | None
) -> RunEnd:
    """The end of the schedule's in-flight run, whose job ended in ``state`` (a job that
    vanished counts as cancelled) having started at ``started_at`` (if it did)."""
    spec = record.spec
    run_time = record.run_time
    if started_at is not None:
        took = max(0.0, now - started_at)
        run_time = took if run_time is None else run_time + RUN_TIME_WEIGHT * (took - run_time)
    changes: dict[str, Any] = {"in_flight": None, "last_finished_at": now, "last_state": state, "run_time": run_time}
    end_open = False
    missed = None
    if state is JobState.SUCCEEDED:
        if spec.sla is not None:
            end_open = record.breach_since is not None
            if not end_open and record.deadline_at is not None and now > record.deadline_at:
                missed = Breach(
                    key=record.key,
                    sla=spec.sla,
                    base_at=record.deadline_at - spec.sla,
                    started_at=record.deadline_at,
                    ended_at=now,
                )
        deadline = None if spec.sla is None else now + spec.sla
        changes.update(last_success_at=now, deadline_at=deadline, breach_since=None)
    changes.update(rearm(record, record.pending_jitter, now, next_in))
    return RunEnd(record=evolve(record, **changes), end_open_breach=end_open, missed_breach=missed)


def rearm(record: ScheduleRecord, pending_jitter: float, now: float, next_in: float | None) -> dict[str, float]:
    """The next occurrence's (``next_tick``, ``next_at``) once a run ends, if the end sets it."""
    spec = record.timing
    if spec.kind is ScheduleKind.EVERY and spec.mode is ScheduleMode.DELAY:
        assert spec.every is not None
        tick = now + (spec.every if next_in is None else next_in)
        return {"next_tick": tick, "next_at": tick + pending_jitter}
    if next_in is not None:
        return {"next_tick": now + next_in, "next_at": now + next_in}
    return {}


def upserted(
    old: ScheduleRecord | None, spec: ScheduleSpec, next_tick: float | None, next_at: float | None, now: float
) -> tuple[Upserted, bool]:
    """What ``schedule_upsert`` writes (``Change.UNCHANGED``: nothing) and whether the key's
    open breach ends with it (the store records that end)."""
    if old is None:
        deadline = None if spec.sla is None else now + spec.sla
        record = ScheduleRecord(
            spec=spec, created_at=now, updated_at=now, next_tick=next_tick, next_at=next_at, deadline_at=deadline
        )
        return Upserted(record=record, change=Change.ADDED), False
    if old.spec == spec:
        return Upserted(record=old, change=Change.UNCHANGED), False
    waiting = old.in_flight is not None and spec.kind is ScheduleKind.EVERY and spec.mode is ScheduleMode.DELAY
    deadline, ends = changed_deadline(old, spec.sla, now)
    record = evolve(
        old,
        spec=spec,
        updated_at=now,
        next_tick=None if waiting else next_tick,
        next_at=None if waiting else next_at,
        deadline_at=deadline,
        breach_since=None if ends else old.breach_since,
        every_now=None,
        every_reason=None,
    )
    return Upserted(record=record, change=Change.CHANGED), ends


def changed_deadline(old: ScheduleRecord, sla: float | None, now: float) -> tuple[float | None, bool]:
    """(deadline_at, end the open breach?) when a schedule's SLA is (re)defined at ``now``."""
    deadline = None if sla is None else old.staleness_base + sla
    ends = old.breach_since is not None and (deadline is None or now <= deadline)
    return deadline, ends


def set_every(record: ScheduleRecord | None, change: IntervalChange) -> ScheduleRecord | None:
    """The schedule after ``change`` (``Store.schedule_set_every``), or None if it does not
    apply: no such schedule, not an every-schedule, or its interval is no longer ``expected``."""
    if record is None or record.spec.kind is not ScheduleKind.EVERY or record.every_now != change.expected:
        return None
    assert record.spec.every is not None
    before = record.every_now or record.spec.every
    after = change.every or record.spec.every
    moved = evolve(record, every_now=change.every, every_reason=change.reason)
    if record.in_flight is None and record.next_tick is not None and record.next_at is not None:
        shift = after - before
        moved = evolve(moved, next_tick=record.next_tick + shift, next_at=record.next_at + shift)
    return moved
