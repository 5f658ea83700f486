"""The reference store: schedules, SLA accounting and the decision log."""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence

from backbeat.errors import ScheduleNotFound
from backbeat.store import rules
from backbeat.store.memory.state import (
    MemoryState,
)
from backbeat.types import (
    Breach,
    Change,
    Decision,
    DecisionKind,
    EventState,
    Fire,
    IntervalChange,
    JobState,
    ScheduleFilter,
    ScheduleRank,
    ScheduleRecord,
    ScheduleSpec,
    SlaStats,
    Upserted,
    evolve,
)


class ScheduleMethods(MemoryState):
    # -- schedules ---------------------------------------------------------------------

    async def schedule_upsert(
        self, spec: ScheduleSpec, *, next_tick: float | None, next_at: float | None, now: float
    ) -> Upserted:
        with self._lock:
            upserted, ends = rules.upserted(self._schedules.get(spec.key), spec, next_tick, next_at, now)
            if ends:
                self._end_breach(spec.key, now)
            if upserted.change is not Change.UNCHANGED:
                self._schedules[spec.key] = upserted.record
            return upserted

    async def schedule_get(self, key: str) -> ScheduleRecord:
        with self._lock:
            try:
                return self._schedules[key]
            except KeyError:
                raise ScheduleNotFound(f"no schedule {key!r}") from None

    async def schedule_list(self, filter: ScheduleFilter) -> list[ScheduleRecord]:
        with self._lock:
            table = self._schedules
            candidates = ((k, table[k]) for k in table.adaptive) if filter.adaptive else table.items()
            found = [
                r
                for key, r in candidates
                if (filter.after is None or key > filter.after)
                and (filter.origin is None or r.spec.origin is filter.origin)
                and (filter.search is None or filter.search in key or filter.search in r.spec.task)
                and (not filter.adaptive or r.spec.max_every is not None)
            ]
        return heapq.nsmallest(filter.limit, found, key=lambda r: r.key)

    async def schedule_worst(
        self, *, after: ScheduleRank | None = None, search: str | None = None, limit: int
    ) -> list[ScheduleRecord]:
        with self._lock:
            ranked = [(ScheduleRank.of(r), r) for r in self._schedules.values()]
        found = [
            (rank, r)
            for rank, r in ranked
            if (after is None or rank > after) and (search is None or search in r.key or search in r.spec.task)
        ]
        return [r for _, r in heapq.nsmallest(limit, found, key=lambda pair: pair[0])]

    async def schedule_remove(self, key: str) -> bool:
        with self._lock:
            self._schedules.adaptive.discard(key)
            return self._schedules.pop(key, None) is not None

    async def schedule_pause(self, key: str, *, now: float) -> ScheduleRecord:
        with self._lock:
            record = self._schedules.get(key)
            if record is None:
                raise ScheduleNotFound(f"no schedule {key!r}")
            if not record.paused:
                if record.breach_since is not None:
                    self._end_breach(key, now)
                record = self._schedules[key] = evolve(record, paused=True, paused_at=now, breach_since=None)
            return record

    async def schedule_resume(self, key: str, *, now: float) -> ScheduleRecord:
        with self._lock:
            record = self._schedules.get(key)
            if record is None:
                raise ScheduleNotFound(f"no schedule {key!r}")
            if record.paused:
                sla = record.spec.sla
                deadline = None if sla is None else now + sla
                record = evolve(record, paused=False, paused_at=None, resumed_at=now, deadline_at=deadline)
                self._schedules[key] = record
            return record

    async def schedule_due(self, *, now: float, limit: int) -> list[ScheduleRecord]:
        with self._lock:
            return self._schedules.due(now, limit)

    async def schedule_next_due(self) -> float | None:
        with self._lock:
            return self._schedules.next_due()

    async def schedule_fire(self, fires: Sequence[Fire], *, now: float) -> list[bool]:
        with self._lock:
            fired: list[bool] = []
            for fire in fires:
                record = self._schedules.get(fire.key)
                ok = (
                    record is not None
                    and not record.paused
                    and record.in_flight is None
                    and record.next_at == fire.expected_next_at
                    and (fire.key, fire.job.fire_at) not in self._fires
                    and fire.job.id not in self._jobs
                )
                if ok:
                    assert record is not None
                    job = rules.new_record(fire.job, now)
                    self._put(job)
                    self._schedules[fire.key] = evolve(
                        record,
                        in_flight=job.id,
                        last_fire_at=fire.job.fire_at,
                        last_job_id=job.id,
                        next_tick=fire.next_tick,
                        next_at=fire.next_at,
                        pending_jitter=fire.pending_jitter,
                    )
                fired.append(ok)
            if any(fired):
                self._notify()
            return fired

    async def schedule_set_every(self, changes: Sequence[IntervalChange], *, now: float) -> list[bool]:
        with self._lock:
            done = []
            for change in changes:
                moved = rules.set_every(self._schedules.get(change.key), change)
                if moved is not None:
                    self._schedules[change.key] = moved
                done.append(moved is not None)
            return done

    async def schedule_repair(self, *, now: float) -> list[str]:
        with self._lock:
            repaired = []
            for record in list(self._schedules.values()):
                if record.in_flight is None:
                    continue
                job = self._jobs.get(record.in_flight)
                if job is None or job.state.is_final:
                    state, started = (JobState.CANCELLED, None) if job is None else (job.state, job.started_at)
                    self._apply_end(rules.finish_run(record, state, started, now, None), now)
                    repaired.append(record.key)
            return repaired

    # -- SLA and the decision log -------------------------------------------------------

    def _late(self, now: float) -> list[ScheduleRecord]:
        return [
            r
            for r in self._schedules.values()
            if r.spec.sla is not None and not r.paused and r.deadline_at is not None and r.deadline_at < now
        ]

    async def sla_check(self, *, now: float, limit: int = 1000) -> list[Breach]:
        with self._lock:
            late = sorted((r for r in self._late(now) if r.breach_since is None), key=lambda r: (r.deadline_at, r.key))
            opened = []
            for record in late[:limit]:
                assert record.deadline_at is not None and record.spec.sla is not None
                breach = Breach(
                    key=record.key,
                    sla=record.spec.sla,
                    base_at=record.deadline_at - record.spec.sla,
                    started_at=record.deadline_at,
                )
                self._breaches.append(breach)
                self._schedules[record.key] = evolve(record, breach_since=record.deadline_at)
                opened.append(breach)
            return opened

    async def sla_ended(self, *, limit: int = 1000) -> list[Breach]:
        with self._lock:
            ended = [
                b
                for b in self._breaches
                if b.ended_at is not None and (b.key, b.started_at, b.ended_at) not in self._announced
            ]
            ended.sort(key=lambda b: (b.ended_at, b.key))
            self._announced.update((b.key, b.started_at, b.ended_at) for b in ended[:limit])
            return ended[:limit]

    async def sla_breaches(self, *, key: str | None, since: float, limit: int = 1000) -> list[Breach]:
        with self._lock:
            found = [
                b
                for b in self._breaches
                if (key is None or b.key == key) and (b.ended_at is None or b.ended_at >= since)
            ]
        found.sort(key=lambda b: (b.started_at, b.key), reverse=True)
        return found[:limit]

    async def sla_list(self, *, limit: int) -> list[ScheduleRecord]:
        with self._lock:
            found = [r for r in self._schedules.values() if r.spec.sla is not None]
        found.sort(key=lambda r: (r.paused, r.deadline_at if r.deadline_at is not None else math.inf, r.key))
        return found[:limit]

    async def sla_stats(self, *, now: float, since: float) -> SlaStats:
        with self._lock:
            with_sla = [r for r in self._schedules.values() if r.spec.sla is not None]
            seconds = sum(
                max(0.0, min(now, b.ended_at if b.ended_at is not None else now) - max(b.started_at, since))
                for b in self._breaches
            )
            return SlaStats(
                schedules=len(with_sla),
                paused=sum(1 for r in with_sla if r.paused),
                breached=len(self._late(now)),
                breach_seconds=seconds,
            )

    async def decision_append(self, decisions: Sequence[Decision]) -> None:
        with self._lock:
            self._decisions.extend(decisions)

    async def decision_list(self, key: str, *, before: float | None = None, limit: int = 100) -> list[Decision]:
        with self._lock:
            found = [d for d in reversed(self._decisions) if d.key == key and (before is None or d.at < before)]
        found.sort(key=lambda d: d.at, reverse=True)  # stable: entries at the same time, newest first
        return found[:limit]

    async def decision_since(self, kinds: Sequence[DecisionKind], *, since: float, limit: int) -> list[Decision]:
        with self._lock:
            wanted = set(kinds)
            found = [d for d in self._decisions if d.kind in wanted and d.at >= since]
        found.sort(key=lambda d: d.at)
        return found[:limit]

    async def history_prune(self, *, before: float, limit: int = 10_000) -> int:
        with self._lock:
            old = [i for i, d in enumerate(self._decisions) if d.at < before][:limit]
            for i in reversed(old):
                del self._decisions[i]
            closed = [i for i, b in enumerate(self._breaches) if b.ended_at is not None and b.ended_at < before]
            for i in reversed(closed[:limit]):
                breach = self._breaches.pop(i)
                self._announced.discard((breach.key, breach.started_at, breach.ended_at))
            settled = [
                e.id for e in self._events.values() if e.state is not EventState.PENDING and e.received_at < before
            ]
            for event_id in settled[:limit]:
                del self._events[event_id]
            return len(old) + len(closed[:limit]) + len(settled[:limit])
