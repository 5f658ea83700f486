"""Schedules as data: validating definitions and planning when they fire. Pure functions:
no I/O, the time and a random source passed in.

Timing model. A schedule's ``next_tick`` is its next occurrence before jitter (a cron
tick, a rate tick, or the end of the last run plus the interval); ``next_at`` adds the
jitter and says when it is due. ``plan_fire`` turns a due schedule into a ``Fire``: the
job for one occurrence (``fire_at`` = that occurrence, so a handler can be idempotent per
tick), and the schedule's next timing. The store applies it atomically or not at all.

Misfires (occurrences that passed while nothing fired them: downtime, pause, a run still
in flight): ``skip`` fires once for the latest missed occurrence and continues on cadence;
``catch_up`` fires the missed ones one after another (runs never overlap), at most
``catch_up_limit`` of them, the latest ones.

Deadline dispatch: the job of a schedule with an SLA carries ``deadline`` (when the
schedule breaches) and ``order_at = deadline - expected run time``, so under overload the
workers take the runs nearest to breaking their promise first.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import replace
from datetime import timedelta

from backbeat import cron
from backbeat.config import MAX_KEY, MAX_SECONDS, check_text
from backbeat.errors import InvalidTransition, ScheduleError
from backbeat.ids import uuid7
from backbeat.types import Fire, Misfire, NewJob, ScheduleKind, ScheduleMode, ScheduleRecord, ScheduleSpec

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)", re.IGNORECASE)
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
MAX_DESCRIPTION = 10_000
COUNT_CAP = 10_000
"""Most missed occurrences counted for the record (a per-second cron down for a year)."""


def parse_duration(value: object, what: str = "duration") -> float:
    """Seconds from ``30``, ``2.5``, ``timedelta``, ``"30s"``, ``"5m"``, ``"1h30m"``, ``"2d"``."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value) if abs(value) < 1e300 else math.inf
    elif isinstance(value, str) and value.strip():
        text = value.strip()
        try:
            seconds = float(text)
        except ValueError:
            parts = _DURATION.findall(text)
            if not parts or _DURATION.sub("", text).strip():
                raise ScheduleError(
                    f"{what} {value!r} is not a duration (use seconds, or e.g. '30s', '5m', '1h30m', '2d')"
                ) from None
            seconds = sum(float(n) * _UNITS[u.lower()] for n, u in parts)
    else:
        raise ScheduleError(f"{what} must be seconds, a timedelta or a string such as '30s', got {value!r}")
    if not math.isfinite(seconds) or seconds < 0:
        raise ScheduleError(f"{what} must be a finite number of seconds >= 0, got {value!r}")
    if seconds > MAX_SECONDS:
        raise ScheduleError(f"{what} must be at most 100 years, got {value!r}")
    return seconds


def check_spec(spec: ScheduleSpec) -> ScheduleSpec:
    """The spec with its cron expression normalised; ``ScheduleError`` naming what is wrong."""
    check_text(spec.key, "a schedule key", limit=MAX_KEY, error=ScheduleError)
    if not spec.key.strip():
        raise ScheduleError(f"a schedule key must not be blank, got {spec.key!r}")
    where = f"schedule {spec.key!r}"
    if spec.description:
        check_text(spec.description, f"{where}: description", limit=MAX_DESCRIPTION, error=ScheduleError)
    cron.zone(spec.tz)
    if spec.kind is ScheduleKind.EVERY:
        if spec.cron is not None or spec.every is None or not spec.every > 0:
            raise ScheduleError(f"{where}: an every-schedule needs an interval > 0 and no cron expression")
    else:
        if spec.cron is None or spec.every is not None:
            raise ScheduleError(f"{where}: a cron schedule needs a cron expression and no interval")
        spec = replace(spec, cron=cron.normalise(spec.cron))
    for name, value in (("jitter", spec.jitter), ("sla", spec.sla), ("timeout", spec.timeout)):
        if value is not None and (not math.isfinite(value) or value < 0):
            raise ScheduleError(f"{where}: {name} must be >= 0 seconds, got {value!r}")
    if spec.sla is not None and spec.sla <= 0:
        raise ScheduleError(f"{where}: sla must be > 0 seconds")
    _check_range(spec, where)
    if spec.misfire is Misfire.CATCH_UP and spec.catch_up_limit < 1:
        raise ScheduleError(f"{where}: misfire 'catch_up' needs catch_up_limit >= 1")
    return spec


def _check_range(spec: ScheduleSpec, where: str) -> None:
    """``max_every``: an every-schedule's, at least its interval, and short of its SLA."""
    if spec.max_every is None:
        return
    if spec.kind is not ScheduleKind.EVERY or spec.every is None:
        raise ScheduleError(f"{where}: max_every applies to every-schedules only (a cron keeps its times)")
    if spec.max_every < spec.every:
        raise ScheduleError(f"{where}: max_every {spec.max_every:g} s is shorter than the interval {spec.every:g} s")
    if spec.sla is not None and spec.max_every >= spec.sla:
        raise ScheduleError(
            f"{where}: max_every {spec.max_every:g} s leaves no room within the SLA of {spec.sla:g} s "
            "(a run must fit between the interval and the SLA)"
        )


def timing_changed(old: ScheduleSpec, new: ScheduleSpec) -> bool:
    return (old.kind, old.every, old.cron, old.tz, old.mode, old.jitter) != (
        new.kind,
        new.every,
        new.cron,
        new.tz,
        new.mode,
        new.jitter,
    )


def _jitter(spec: ScheduleSpec, rng: random.Random) -> float:
    return rng.uniform(0.0, spec.jitter) if spec.jitter > 0 else 0.0


def first_timing(spec: ScheduleSpec, now: float, first_in: float | None, rng: random.Random) -> tuple[float, float]:
    """(next_tick, next_at) of a new schedule. An every-schedule is due at once unless
    ``first_in`` says otherwise; a cron schedule at its first tick after now."""
    if spec.kind is ScheduleKind.CRON:
        assert spec.cron is not None
        tick = cron.next_after(spec.cron, spec.tz, now) if first_in is None else now + first_in
    else:
        tick = now + (first_in or 0.0)
    return tick, tick + _jitter(spec, rng)


def retimed(record: ScheduleRecord, spec: ScheduleSpec, now: float, rng: random.Random) -> tuple[float, float]:
    """(next_tick, next_at) after the definition changed to ``spec``; the same as now
    when only other fields changed, so an edit never delays or hastens a run by accident."""
    if not timing_changed(record.spec, spec) and record.next_tick is not None and record.next_at is not None:
        return record.next_tick, record.next_at
    if spec.kind is ScheduleKind.CRON:
        assert spec.cron is not None
        tick = cron.next_after(spec.cron, spec.tz, now)
    elif spec.mode is ScheduleMode.DELAY:
        assert spec.every is not None
        tick = (record.last_finished_at or record.created_at) + spec.every
    else:
        assert spec.every is not None
        tick = record.last_fire_at + spec.every if record.last_fire_at is not None else now
    return tick, tick + _jitter(spec, rng)


def plan_fire(record: ScheduleRecord, now: float, rng: random.Random, *, deadline_dispatch: bool = True) -> Fire:
    """The fire for a due schedule (``next_at <= now``, no run in flight). Without
    ``deadline_dispatch`` its job is ordered by due time like any other (FIFO)."""
    spec = record.timing
    assert record.next_tick is not None and record.next_at is not None
    if spec.kind is ScheduleKind.EVERY and spec.mode is ScheduleMode.DELAY:
        fire_at, skipped = record.next_tick, 0
        next_tick = next_at = None
        pending = _jitter(spec, rng)
    else:
        fire_at, skipped = _occurrence(spec, record.next_tick, now)
        next_tick = _after(spec, fire_at)
        if spec.misfire is Misfire.SKIP and next_tick <= now:
            next_tick = _after(spec, now)
        next_at = next_tick + _jitter(spec, rng)
        pending = 0.0
    return Fire(
        key=spec.key,
        expected_next_at=record.next_at,
        job=_run_job(record, fire_at, now, deadline_dispatch),
        next_tick=next_tick,
        next_at=next_at,
        pending_jitter=pending,
        skipped=skipped,
    )


def plan_run_now(record: ScheduleRecord, now: float, rng: random.Random, *, deadline_dispatch: bool = True) -> Fire:
    """A run of the schedule now, outside its cadence ("run now" in the dashboard): one
    more occurrence (``fire_at = now``) through the same atomic ``schedule_fire``, so it
    never overlaps a run in flight and counts for the SLA like any run. Its next
    occurrence stays where it is (a delay-mode schedule re-arms when this run ends, as
    after any run). ``InvalidTransition`` when it cannot run now: paused or a run in flight."""
    spec = record.timing
    if record.paused:
        raise InvalidTransition(f"schedule {record.key!r} is paused: resume it to run it")
    if record.in_flight is not None or record.next_at is None:
        raise InvalidTransition(
            f"schedule {record.key!r} has a run in flight (job {record.in_flight}): wait for it to end"
        )
    delay = spec.kind is ScheduleKind.EVERY and spec.mode is ScheduleMode.DELAY
    return Fire(
        key=spec.key,
        expected_next_at=record.next_at,
        job=_run_job(record, now, now, deadline_dispatch),
        next_tick=None if delay else record.next_tick,
        next_at=None if delay else record.next_at,
        pending_jitter=_jitter(spec, rng) if delay else 0.0,
    )


def _run_job(record: ScheduleRecord, fire_at: float, now: float, deadline_dispatch: bool) -> NewJob:
    """The job of one run of ``record`` (occurrence ``fire_at``), due ``now``."""
    spec = record.timing
    deadline = record.deadline_at if spec.sla is not None and deadline_dispatch else None
    return NewJob(
        id=uuid7(),
        task=spec.task,
        queue=spec.queue,
        payload=spec.payload,
        run_at=now,
        priority=spec.priority,
        max_attempts=spec.max_attempts,
        timeout=spec.timeout,
        schedule_key=spec.key,
        fire_at=fire_at,
        deadline=deadline,
        # deadline dispatch: the job runs in order of when its schedule must have run by
        order_at=None if deadline is None else deadline - (record.run_time or 0.0),
    )


def _after(spec: ScheduleSpec, t: float) -> float:
    """The occurrence after ``t`` on the schedule's cadence (rate ``every`` or cron)."""
    if spec.kind is ScheduleKind.CRON:
        assert spec.cron is not None
        return cron.next_after(spec.cron, spec.tz, t)
    assert spec.every is not None
    return t + spec.every


def _occurrence(spec: ScheduleSpec, first: float, now: float) -> tuple[float, int]:
    """(fire_at, skipped): the occurrence to fire among those in ``[first, now]``."""
    if first > now:
        return first, 0
    if spec.kind is ScheduleKind.EVERY:
        assert spec.every is not None
        missed = int((now - first) // spec.every) + 1  # occurrences in [first, now]
        keep = 1 if spec.misfire is Misfire.SKIP else min(missed, spec.catch_up_limit)
        return first + (missed - keep) * spec.every, missed - keep
    assert spec.cron is not None
    keep = 1 if spec.misfire is Misfire.SKIP else spec.catch_up_limit
    recent = [t for t in cron.latest(spec.cron, spec.tz, now, keep) if t >= first]
    if not recent:
        return first, 0
    fire_at = min(recent)
    skipped = cron.count_between(spec.cron, spec.tz, first, now, COUNT_CAP) - len(recent)
    return fire_at, max(0, skipped)
