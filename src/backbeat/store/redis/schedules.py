"""The Redis store: schedules, SLA accounting, the decision log and history retention.

Every change to a schedule is a script (``scripts/schedule_*.lua``, ``sla_*.lua``): the
record is read, changed by the rules of ``scripts/lib_schedules.lua`` (``store/rules.py``
said in Lua) and written back with its indexes in one atomic step. The end of a run is
not here: ``ack.lua``, ``rescue.lua`` and ``cancel.lua`` end it with the job's final
transition. Reads are plain commands.

Internal module.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from backbeat.errors import ScheduleNotFound
from backbeat.store.base import breaches_by_key
from backbeat.store.redis import codec
from backbeat.store.redis.connection import RedisBase, flat
from backbeat.store.redis.jobs import check_queue
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

LIST_PAGE = 200
"""Schedules read per round trip by ``schedule_list`` when it filters."""
REPAIR_PAGE = 1000
"""Runs in flight checked per round trip by ``schedule_repair``."""
HISTORY = ("decisions", "breaches", "events")
"""What ``history_prune`` deletes, one kind at a time (``history_prune.lua``)."""


def _found(key: str, item: Any) -> ScheduleRecord:
    if item is None:
        raise ScheduleNotFound(f"no schedule {key!r}")
    return codec.scripted_schedule(item)


def _due(record: ScheduleRecord, now: float) -> bool:
    return not record.paused and record.in_flight is None and record.next_at is not None and record.next_at <= now


def _wanted(record: ScheduleRecord, flt: ScheduleFilter) -> bool:
    return (
        (flt.origin is None or record.spec.origin is flt.origin)
        and _found_by(record, flt.search)
        and (not flt.adaptive or record.spec.max_every is not None)
    )


def _found_by(record: ScheduleRecord, search: str | None) -> bool:
    return search is None or search in record.key or search in record.spec.task


def _fire_item(f: Fire, job: list[Any]) -> list[Any]:
    """One fire as ``schedule_fire.lua`` takes it (``job``: its enqueue item)."""
    return [f.key, codec.num(f.expected_next_at), job, codec.opt_num(f.next_tick), codec.opt_num(f.next_at),
            codec.num(f.pending_jitter)]  # fmt: skip


def _open_ids(values: list[str]) -> list[str]:
    """The ids of P:breach-open's values (space-separated per key)."""
    return [i for v in values for i in v.split()]


def _opt(value: float | None) -> str:
    return "" if value is None else codec.num(value)


class ScheduleMethods(RedisBase):
    # -- schedules ---------------------------------------------------------------------

    async def schedule_upsert(
        self, spec: ScheduleSpec, *, next_tick: float | None, next_at: float | None, now: float
    ) -> Upserted:
        check_queue(spec.queue)
        fields = codec.script_json(codec.spec_fields(spec))
        change, item = await self._run("schedule_upsert", [codec.num(now), _opt(next_tick), _opt(next_at), fields])
        return Upserted(record=codec.scripted_schedule(item), change=Change(change))

    async def schedule_get(self, key: str) -> ScheduleRecord:
        fields = await self._redis_call("hgetall", self.keys.schedule(key))
        if not fields:
            raise ScheduleNotFound(f"no schedule {key!r}")
        return codec.schedule_record(fields)

    async def schedule_list(self, filter: ScheduleFilter) -> list[ScheduleRecord]:
        """Keys in order from P:schedules, a page at a time; origin, search and adaptive are
        checked on the records read (a scan, bounded by what matches)."""
        out: list[ScheduleRecord] = []
        after = filter.after
        narrowed = filter.origin is not None or filter.search is not None or filter.adaptive
        page = max(filter.limit, LIST_PAGE) if narrowed else filter.limit
        while len(out) < filter.limit:
            start = "-" if after is None else f"({after}"
            keys = cast(
                list[str],
                await self._redis_call("zrange", self.keys.schedules, start, "+", bylex=True, offset=0, num=page),
            )
            records = await self._schedules(keys)
            out += [r for r in records if _wanted(r, filter)]
            if len(keys) < page:
                break
            after = keys[-1]
        return out[: filter.limit]

    async def _schedules(self, keys: Sequence[str]) -> list[ScheduleRecord]:
        """The schedules named, in order (those removed meanwhile left out)."""
        rows = await self._hashes([self.keys.schedule(k) for k in keys])
        return [codec.schedule_record(f) for f in rows if f]

    async def schedule_worst(
        self, *, after: ScheduleRank | None = None, search: str | None = None, limit: int
    ) -> list[ScheduleRecord]:
        """The groups in turn: ``P:sla-active`` and ``P:sla-paused`` by rank (score =
        deadline_at, then member), then ``P:schedules`` by key keeping those without an
        SLA. Records are re-ranked when read, so one that moved meanwhile is left out
        rather than shown twice. Not one snapshot: each round trip reads the present."""
        out: list[ScheduleRecord] = []
        for group, index in ((0, self.keys.sla_active), (1, self.keys.sla_paused), (2, self.keys.schedules)):
            if after is not None and group < after.group:
                continue
            start = after if after is not None and group == after.group else None
            out += await self._worst_group(group, index, start, search, limit - len(out))
            if len(out) >= limit:
                break
        return out

    async def _worst_group(
        self, group: int, index: str, after: ScheduleRank | None, search: str | None, limit: int
    ) -> list[ScheduleRecord]:
        position = 0 if after is None else await self._rank_after(group, index, after)
        page = max(limit, LIST_PAGE) if search is not None or group == 2 else limit
        out: list[ScheduleRecord] = []
        while len(out) < limit:
            keys = cast(list[str], await self._redis_call("zrange", index, position, position + page - 1))
            for record in await self._schedules(keys):
                rank = ScheduleRank.of(record)
                if rank.group == group and (after is None or rank > after) and _found_by(record, search):
                    out.append(record)
            if len(keys) < page:
                break
            position += page
        return out[:limit]

    async def _rank_after(self, group: int, index: str, after: ScheduleRank) -> int:
        """The position in ``index`` just past the cursor: the cursor's own rank + 1 while
        it is still there (O(log n)); else the first member scored at or above its deadline
        (rows at that score up to the cursor's key are dropped by re-ranking)."""
        if group == 2:
            return int(await self._redis_call("zlexcount", index, "-", f"[{after.key}"))
        score, rank = await self._read(lambda pipe: [pipe.zscore(index, after.key), pipe.zrank(index, after.key)])
        if score is not None and rank is not None and float(score) == after.deadline_at:
            return int(rank) + 1
        return int(await self._redis_call("zcount", index, "-inf", f"({codec.num(after.deadline_at)}"))

    async def schedule_remove(self, key: str) -> bool:
        return bool(await self._run("schedule_remove", [key]))

    async def schedule_pause(self, key: str, *, now: float) -> ScheduleRecord:
        return _found(key, await self._run("schedule_pause", ["pause", key, codec.num(now)]))

    async def schedule_resume(self, key: str, *, now: float) -> ScheduleRecord:
        return _found(key, await self._run("schedule_pause", ["resume", key, codec.num(now)]))

    async def schedule_due(self, *, now: float, limit: int) -> list[ScheduleRecord]:
        """The index, then the records: a record that moved on between the two reads (another
        scheduler fired it and its run already ended) is left out, or this scheduler would
        fire its *next* occurrence, not yet due, with a compare-and-set that still holds."""
        keys = await self._redis_call("zrangebyscore", self.keys.schedules_due, "-inf", codec.num(now), 0, limit)
        return [r for r in await self._schedules(keys) if _due(r, now)]

    async def schedule_next_due(self) -> float | None:
        head = await self._redis_call("zrange", self.keys.schedules_due, 0, 0, withscores=True)
        return float(head[0][1]) if head else None

    async def schedule_fire(self, fires: Sequence[Fire], *, now: float) -> list[bool]:
        if not fires:
            return []
        for f in fires:  # a job id given twice is not an error here: its second fire loses
            check_queue(f.job.queue)
        items = [_fire_item(f, codec.enqueue_item(f.job)) for f in fires]
        out = await self._run("schedule_fire", [codec.num(now), codec.script_json(items)])
        return [bool(x) for x in out]

    async def schedule_repair(self, *, now: float) -> list[str]:
        """Finds runs whose job is gone or final (P:schedules-runs against the jobs, a page
        at a time); ``schedule_repair.lua`` checks each again before ending it."""
        repaired: list[str] = []
        cursor = 0
        while True:
            cursor, runs = await self._redis_call("hscan", self.keys.schedules_runs, cursor, count=REPAIR_PAGE)
            states = await self._job_states(list(runs.values()))
            suspects = [(k, job) for (k, job), s in zip(runs.items(), states, strict=True) if s is None or s.is_final]
            if suspects:
                repaired += await self._run("schedule_repair", [codec.num(now), *flat(list(p) for p in suspects)])
            if cursor == 0:
                return repaired

    async def _job_states(self, ids: list[str]) -> list[JobState | None]:
        states = await self._read(lambda pipe: [pipe.hget(self.keys.job(i), "state") for i in ids])
        return [None if s is None else JobState(s) for s in states]

    async def schedule_set_every(self, changes: Sequence[IntervalChange], *, now: float) -> list[bool]:
        if not changes:
            return []
        items = [[c.key, codec.opt_num(c.every), codec.opt_num(c.expected), c.reason] for c in changes]
        return [bool(x) for x in await self._run("schedule_set_every", [codec.script_json(items)])]

    # -- SLA ---------------------------------------------------------------------------

    async def sla_check(self, *, now: float, limit: int = 1000) -> list[Breach]:
        out = await self._run("sla_check", [codec.num(now), str(limit)])
        return [codec.breach(codec.pairs(item[1])) for item in out]

    async def sla_ended(self, *, limit: int = 1000) -> list[Breach]:
        if limit < 1:
            return []  # ZRANGE 0 -1 would be everything
        out = await self._run("sla_ended", [str(limit)])
        return [codec.breach(codec.pairs(item[1])) for item in out]

    async def sla_breaches(self, *, key: str | None, since: float, limit: int = 1000) -> list[Breach]:
        """Open breaches, and closed ones that ended at or after ``since``: of one schedule
        from its P:blog:<key>, of all from P:breach-open and P:breach-ended."""
        if key is not None:
            ids = await self._redis_call("zrange", self.keys.blog(key), 0, -1)
        else:
            open_ids, ended = await self._read(
                lambda pipe: [
                    pipe.hvals(self.keys.breach_open),
                    pipe.zrangebyscore(self.keys.breach_ended, codec.num(since), "+inf"),
                ]
            )
            ids = [*_open_ids(open_ids), *ended]
        return (await self._breaches(ids, since))[:limit]

    async def sla_breaches_of(self, keys: Sequence[str], *, since: float) -> dict[str, list[Breach]]:
        """Every key's P:blog:<key> in one pipeline, then the breaches in one more."""
        logs = await self._read(lambda pipe: [pipe.zrange(self.keys.blog(key), 0, -1) for key in keys])
        return breaches_by_key(keys, await self._breaches([i for ids in logs for i in ids], since))

    async def _breaches(self, ids: Sequence[str], since: float) -> list[Breach]:
        """The breaches ``ids`` open at or after ``since``, latest start first."""
        rows = await self._hashes([self.keys.breach(i) for i in ids])
        found = [b for b in (codec.breach(f) for f in rows if f) if b.ended_at is None or b.ended_at >= since]
        found.sort(key=lambda b: (b.started_at, b.key), reverse=True)
        return found

    async def sla_list(self, *, limit: int) -> list[ScheduleRecord]:
        if limit < 1:
            return []
        active = cast(list[str], await self._redis_call("zrange", self.keys.sla_active, 0, limit - 1))
        paused: list[str] = []
        if len(active) < limit:
            paused = await self._redis_call("zrange", self.keys.sla_paused, 0, limit - len(active) - 1)
        return await self._schedules([*active, *paused])

    async def sla_stats(self, *, now: float, since: float) -> SlaStats:
        active, paused, breached, open_ids, ended = await self._read(
            lambda pipe: [
                pipe.zcard(self.keys.sla_active),
                pipe.zcard(self.keys.sla_paused),
                pipe.zcount(self.keys.sla_active, "-inf", f"({codec.num(now)}"),
                pipe.hvals(self.keys.breach_open),
                pipe.zrangebyscore(self.keys.breach_ended, codec.num(since), "+inf"),
            ],
            transaction=True,
        )
        seconds = 0.0
        for b in await self._breaches([*_open_ids(open_ids), *ended], since):
            end = b.ended_at if b.ended_at is not None else now
            seconds += max(0.0, min(now, end) - max(b.started_at, since))
        return SlaStats(schedules=active + paused, paused=paused, breached=breached, breach_seconds=seconds)

    # -- the decision log --------------------------------------------------------------

    async def decision_append(self, decisions: Sequence[Decision]) -> None:
        if decisions:
            await self._run("decision_append", [codec.script_json([codec.decision_item(d) for d in decisions])])

    async def decision_list(self, key: str, *, before: float | None = None, limit: int = 100) -> list[Decision]:
        top = "+inf" if before is None else f"({codec.num(before)}"
        ids = await self._redis_call("zrevrangebyscore", self.keys.dlog(key), top, "-inf", 0, limit)
        return await self._decisions(ids)

    async def decision_since(self, kinds: Sequence[DecisionKind], *, since: float, limit: int) -> list[Decision]:
        """Merges the per-kind logs (P:dkind:<kind>, by time then entry number)."""
        per_kind = await self._read(
            lambda pipe: [
                pipe.zrangebyscore(self.keys.dkind(k), codec.num(since), "+inf", 0, limit, withscores=True)
                for k in dict.fromkeys(kinds)
            ]
        )
        entries = sorted((at, entry) for chunk in per_kind for entry, at in chunk)[:limit]
        return await self._decisions([entry for _, entry in entries])

    async def _decisions(self, ids: Sequence[str]) -> list[Decision]:
        if not ids:
            return []
        texts = await self._redis_call("hmget", self.keys.decisions, list(ids))
        return [codec.decision(t) for t in texts if t is not None]

    async def history_prune(self, *, before: float, limit: int = 10_000) -> int:
        """Decisions, closed breaches and settled events, each in chunks."""
        cutoff = codec.num(before)
        return sum([await self._chunked("history_prune", [kind, cutoff], limit) for kind in HISTORY])
