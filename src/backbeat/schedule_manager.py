"""``app.schedules``: schedules as data, changed at run time from Python (the CLI and the
HTTP API call the same methods). Declared schedules (``@app.periodic``) are synced here
too, by the scheduler at start.

Every method has an async form (``aupdate``) and a sync form (``update``) that runs it.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from backbeat import secrets
from backbeat.config import Settings, check_queue_name
from backbeat.errors import ConfigError, EnqueueError, InvalidTransition, ScheduleError, ScheduleNotFound
from backbeat.schedules import check_spec, first_timing, parse_duration, plan_run_now, retimed
from backbeat.secrets import refuse_positional
from backbeat.serialization import decode_payload, encode_payload
from backbeat.signing import sign_payload, signed_by_current
from backbeat.store.base import Store
from backbeat.types import (
    Change,
    Decision,
    DecisionKind,
    Misfire,
    ScheduleFilter,
    ScheduleKind,
    ScheduleMode,
    ScheduleOrigin,
    ScheduleRecord,
    ScheduleSpec,
    TaskInfo,
    Upserted,
)

if TYPE_CHECKING:
    from backbeat import resque
    from backbeat.app import App
    from backbeat.tasks import Task

log = logging.getLogger("backbeat.scheduler")
Duration = float | int | str | timedelta


@dataclass(frozen=True, kw_only=True, slots=True)
class Declared:
    spec: ScheduleSpec
    first_in: float | None = None


@dataclass(kw_only=True, slots=True)
class SyncReport:
    """What a sync of declared (or loaded) schedules did, key by key."""

    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    ignored: dict[str, list[str]] = field(default_factory=dict)
    """Entry -> keys of a loaded file that only meant something to Resque."""

    def note(self, key: str, change: Change) -> None:
        {Change.ADDED: self.added, Change.CHANGED: self.changed, Change.UNCHANGED: self.unchanged}[change].append(key)


def _choice(enum: Any, value: Any, what: str) -> Any:
    try:
        return enum(value)
    except ValueError:
        allowed = ", ".join(repr(m.value) for m in enum)
        raise ScheduleError(f"{what} must be one of {allowed}, got {value!r}") from None


def build_spec(
    info: TaskInfo,
    *,
    key: str | None,
    kind: ScheduleKind,
    every: Duration | None = None,
    cron: str | None = None,
    tz: str = "UTC",
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    sla: Duration | None = None,
    max_every: Duration | None = None,
    mode: str = "delay",
    jitter: Duration = 0,
    misfire: str = "skip",
    catch_up_limit: int | None = None,
    queue: str | None = None,
    priority: int | None = None,
    description: str = "",
    origin: ScheduleOrigin = ScheduleOrigin.RUNTIME,
    settings: Settings,
) -> ScheduleSpec:
    """A validated spec for a schedule of the task ``info``, its secret arguments sealed;
    ``ScheduleError`` says what is wrong."""
    try:
        spec = ScheduleSpec(
            key=key if key is not None else info.name,
            task=info.name,
            queue=check_queue_name(queue) if queue is not None else info.queue,
            payload=sign_payload(
                settings,
                info.name,
                encode_payload(
                    list(args),
                    dict(kwargs or {}),
                    limit=settings.max_payload_bytes,
                    sealer=secrets.for_task(info, settings),
                ),
            ),
            kind=kind,
            every=None if every is None else parse_duration(every, "interval"),
            cron=cron,
            tz=tz,
            mode=_choice(ScheduleMode, mode, "mode"),
            jitter=parse_duration(jitter, "jitter"),
            sla=None if sla is None else parse_duration(sla, "sla"),
            max_every=None if max_every is None else parse_duration(max_every, "max_every"),
            misfire=_choice(Misfire, misfire, "misfire"),
            catch_up_limit=(10 if misfire == Misfire.CATCH_UP else 0) if catch_up_limit is None else catch_up_limit,
            priority=info.priority if priority is None else priority,
            max_attempts=info.max_attempts,
            timeout=info.timeout,
            description=description,
            origin=origin,
        )
    except ConfigError as exc:
        raise ScheduleError(str(exc)) from None
    return check_spec(spec)


class Schedules:
    def __init__(self, app: App) -> None:
        self.app = app
        self.declared: dict[str, Declared] = {}
        """Schedules owned by the code (``@app.periodic``); written only by a sync."""
        self.rng = random.Random()

    async def _store(self) -> Store:
        return await self.app.client.astore()

    async def task_info(self, task: Task[Any, Any] | str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> TaskInfo:
        """The task a schedule fires, its arguments checked when its code is here."""
        name = task if isinstance(task, str) else task.name
        local = self.app.tasks.get(name)
        if local is not None:
            local.check_arguments(args, kwargs)
            return local.info
        info = await self.app.client.atask_info(name)
        refuse_positional(info, args)
        return info

    # -- writing ---------------------------------------------------------------------------

    async def aput(self, spec: ScheduleSpec, *, first_in: float | None = None) -> Upserted:
        """Add ``spec`` or replace the schedule with its key; timing as ``first_in`` (new) or
        kept where only non-timing fields changed. Sealed arguments that hold the same
        values as the stored ones keep the stored sealing (each sealing differs), unless
        that was made with a key other than the current one (or it lacks the current
        signing key's signature)."""
        store = await self._store()
        now = self.app.clock.now()
        try:
            existing: ScheduleRecord | None = await store.schedule_get(spec.key)
        except ScheduleNotFound:
            existing = None
        if existing is None:
            tick, at = first_timing(spec, now, first_in, self.rng)
        else:
            old, keys = existing.spec, secrets.keyring(self.app.settings)
            if (
                old.payload != spec.payload
                and signed_by_current(self.app.settings, old.payload)
                and secrets.same_values(old.payload, spec.payload, spec.task, keys)
            ):
                spec = replace(spec, payload=old.payload)
            tick, at = retimed(existing, spec, now, self.rng)
        result = await store.schedule_upsert(spec, next_tick=tick, next_at=at, now=now)
        if result.change is Change.CHANGED and existing is not None:
            detail = f"definition changed: {differences(existing.spec, spec)}"
            await store.decision_append([Decision(key=spec.key, at=now, kind=DecisionKind.CHANGED, detail=detail)])
        if result.change is not Change.UNCHANGED:
            log.info("schedule %s %s (%s)", spec.key, result.change.value, describe(spec))
        return result

    async def aupdate(self, key: str, **changes: Any) -> ScheduleRecord:
        """Change a schedule: ``every``, ``cron``, ``tz``, ``args``, ``kwargs``, ``sla``, ``max_every``, ``mode``,
        ``jitter``, ``misfire``, ``catch_up_limit``, ``queue``, ``priority``, ``description``.
        Takes effect for the next run; a run in flight is not touched."""
        store = await self._store()
        record = await store.schedule_get(key)
        spec = record.spec
        unknown = set(changes) - _UPDATABLE
        if unknown:
            raise ScheduleError(f"schedule {key!r}: cannot update {', '.join(sorted(unknown))}")
        if "every" in changes and changes["every"] is not None:
            changes.setdefault("cron", None)
            spec = replace(spec, kind=ScheduleKind.EVERY)
        elif changes.get("cron") is not None:
            changes.setdefault("every", None)
            spec = replace(spec, kind=ScheduleKind.CRON)
        args, kwargs = decode_payload(spec.payload)
        if "kwargs" not in changes:
            kwargs, _ = secrets.open_fields(kwargs, secrets.keyring(self.app.settings), secrets.task_context(spec.task))
        args = list(changes.pop("args", args))
        kwargs = dict(changes.pop("kwargs", kwargs))
        info = await self.task_info(spec.task, args, kwargs)
        new = build_spec(
            replace(info, queue=spec.queue, priority=spec.priority),
            key=key,
            kind=spec.kind,
            every=changes.get("every", spec.every),
            cron=changes.get("cron", spec.cron),
            tz=changes.get("tz", spec.tz),
            args=args,
            kwargs=kwargs,
            sla=changes.get("sla", spec.sla),
            max_every=changes.get("max_every", spec.max_every),
            mode=changes.get("mode", spec.mode),
            jitter=changes.get("jitter", spec.jitter),
            misfire=changes.get("misfire", spec.misfire),
            catch_up_limit=changes.get("catch_up_limit", spec.catch_up_limit),
            queue=changes.get("queue"),
            priority=changes.get("priority"),
            description=changes.get("description", spec.description),
            origin=spec.origin,
            settings=self.app.settings,
        )
        return (await self.aput(new)).record

    async def apause(self, key: str) -> ScheduleRecord:
        store, now = await self._store(), self.app.clock.now()
        record = await store.schedule_pause(key, now=now)
        await store.decision_append([Decision(key=key, at=now, kind=DecisionKind.PAUSED, detail="paused")])
        return record

    async def aresume(self, key: str) -> ScheduleRecord:
        store, now = await self._store(), self.app.clock.now()
        record = await store.schedule_resume(key, now=now)
        detail = "resumed; occurrences missed while paused follow the misfire policy"
        await store.decision_append([Decision(key=key, at=now, kind=DecisionKind.RESUMED, detail=detail)])
        return record

    async def arun_now(self, key: str) -> ScheduleRecord:
        """Run the schedule once now, outside its cadence (its next occurrence stays). The
        same atomic fire as the scheduler's, so it never overlaps a run in flight; its job
        counts for the SLA like any run. ``InvalidTransition`` while it is paused or a run is
        in flight (or another scheduler fired it first: try again)."""
        store, now = await self._store(), self.app.clock.now()
        record = await store.schedule_get(key)
        fire = plan_run_now(record, now, self.rng)
        if not (await store.schedule_fire([fire], now=now))[0]:
            raise InvalidTransition(f"schedule {key!r} fired or changed meanwhile: look again and retry")
        detail = "run now requested: one run outside the cadence; the next occurrence stays"
        decision = Decision(key=key, at=now, kind=DecisionKind.RUN_NOW, detail=detail, job_id=fire.job.id)
        await store.decision_append([decision])
        return await store.schedule_get(key)

    async def areseal(self) -> list[str]:
        """Seal every schedule's secret arguments with the current key (after a rotation,
        so that the previous key can be retired) and seal plain values of parameters its
        task now declares secret; return the keys of the schedules rewritten."""
        store, keys = await self._store(), secrets.keyring(self.app.settings)
        registry = await self.app.client.aregistry(refresh=True)
        rewritten: list[str] = []
        after = None
        while page := await store.schedule_list(ScheduleFilter(after=after, limit=500)):
            for record in page:
                spec = record.spec
                info = self.app.tasks[spec.task].info if spec.task in self.app.tasks else registry.get(spec.task)
                declared = info.secret if info is not None and info.handles is None else ()
                args, kwargs = decode_payload(spec.payload)
                sealed = secrets.reseal(kwargs, declared, keys, spec.task)
                if sealed is not None or not signed_by_current(self.app.settings, spec.payload):
                    payload = encode_payload(
                        args, kwargs if sealed is None else sealed, limit=self.app.settings.max_payload_bytes
                    )
                    await self.aput(replace(spec, payload=sign_payload(self.app.settings, spec.task, payload)))
                    rewritten.append(spec.key)
            after = page[-1].key
        return rewritten

    async def aremove(self, key: str) -> bool:
        return await (await self._store()).schedule_remove(key)

    # -- reading -----------------------------------------------------------------------

    async def aget(self, key: str) -> ScheduleRecord:
        return await (await self._store()).schedule_get(key)

    async def alist(
        self,
        *,
        after: str | None = None,
        limit: int = 100,
        search: str | None = None,
        origin: ScheduleOrigin | None = None,
    ) -> list[ScheduleRecord]:
        flt = ScheduleFilter(after=after, limit=limit, search=search, origin=origin)
        return await (await self._store()).schedule_list(flt)

    # -- resque-scheduler files --------------------------------------------------------

    async def aload(
        self, text: str, path: str = "<schedules>", *, tasks: set[str] | None = None, force: bool = False
    ) -> SyncReport:
        """Load a resque-scheduler YAML document: upsert each entry by name (origin
        ``file``). Every entry is checked first (cron, durations, arguments, and the task
        name against ``tasks``: by default the app's tasks and those workers registered;
        ``force`` skips that check); if any is bad, ``ScheduleFileError`` lists them all and
        nothing is applied."""
        from backbeat import resque  # YAML and its parser load only where a file is read

        entries, problems = resque.parse(text, path)
        if force:
            tasks = {entry.task for entry in entries}
        elif tasks is None:
            tasks = set(self.app.tasks) | {t.name for t in await (await self._store()).task_list()}
        planned: list[tuple[ScheduleSpec, float | None]] = []
        for entry in entries:
            try:
                planned.append((await self._entry_spec(entry, tasks), entry.first_in))
            except (ScheduleError, EnqueueError) as exc:
                problems.append(f"{entry.name} (line {entry.line}): {exc}")
        if problems:
            raise resque.ScheduleFileError(path, sorted(problems, key=_line))
        report = SyncReport(ignored={e.name: e.ignored for e in entries if e.ignored})
        for spec, first_in in planned:
            report.note(spec.key, (await self.aput(spec, first_in=first_in)).change)
        return report

    async def _entry_spec(self, entry: resque.Entry, tasks: set[str]) -> ScheduleSpec:
        if entry.task not in tasks:
            known = ", ".join(sorted(tasks)) or "none"
            raise ScheduleError(f"unknown task {entry.task!r} (known: {known})")
        options = dict(entry.options)
        args, kwargs = options.pop("args", ()), options.pop("kwargs", {})
        info = await self.task_info(entry.task, args, kwargs)
        return build_spec(
            info,
            key=entry.name,
            kind=entry.kind,
            every=entry.every,
            cron=entry.cron,
            args=args,
            kwargs=kwargs,
            origin=ScheduleOrigin.FILE,
            settings=self.app.settings,
            **options,
        )

    def load(
        self, text: str, path: str = "<schedules>", *, tasks: set[str] | None = None, force: bool = False
    ) -> SyncReport:
        return self.app.client.sync(self.aload, text, path, tasks=tasks, force=force)

    # -- declared schedules ------------------------------------------------------------

    async def async_declared(self) -> SyncReport:
        """Make the store's code-owned schedules exactly the declared ones: add and change
        what is declared, remove what the code no longer declares."""
        report = SyncReport()
        for declared in self.declared.values():
            report.note(declared.spec.key, (await self.aput(declared.spec, first_in=declared.first_in)).change)
        store = await self._store()
        after = None
        while page := await store.schedule_list(ScheduleFilter(origin=ScheduleOrigin.CODE, after=after, limit=500)):
            for record in page:
                if record.key not in self.declared and await store.schedule_remove(record.key):
                    report.removed.append(record.key)
                    log.info("schedule %s removed: no longer declared in the code", record.key)
            after = page[-1].key
        return report

    # -- sync facade -------------------------------------------------------------------

    def put(self, spec: ScheduleSpec, *, first_in: float | None = None) -> Upserted:
        return self.app.client.sync(self.aput, spec, first_in=first_in)

    def update(self, key: str, **changes: Any) -> ScheduleRecord:
        return self.app.client.sync(self.aupdate, key, **changes)

    def pause(self, key: str) -> ScheduleRecord:
        return self.app.client.sync(self.apause, key)

    def resume(self, key: str) -> ScheduleRecord:
        return self.app.client.sync(self.aresume, key)

    def remove(self, key: str) -> bool:
        return self.app.client.sync(self.aremove, key)

    def run_now(self, key: str) -> ScheduleRecord:
        return self.app.client.sync(self.arun_now, key)

    def reseal(self) -> list[str]:
        return self.app.client.sync(self.areseal)

    def get(self, key: str) -> ScheduleRecord:
        return self.app.client.sync(self.aget, key)

    def list(
        self,
        *,
        after: str | None = None,
        limit: int = 100,
        search: str | None = None,
        origin: ScheduleOrigin | None = None,
    ) -> list[ScheduleRecord]:
        return self.app.client.sync(self.alist, after=after, limit=limit, search=search, origin=origin)


def _line(problem: str) -> int:
    """The line number in a "name (line N): ..." problem, for reporting in file order."""
    head = problem.split("): ", 1)[0]
    digits = head.rsplit(" ", 1)[-1].split(",")[0]
    return int(digits) if digits.isdigit() else 0


_UPDATABLE = frozenset(
    {
        "every",
        "cron",
        "tz",
        "args",
        "kwargs",
        "sla",
        "max_every",
        "mode",
        "jitter",
        "misfire",
        "catch_up_limit",
        "queue",
        "priority",
        "description",
    }
)


def differences(old: ScheduleSpec, new: ScheduleSpec) -> str:
    """``every 20 -> 60; sla None -> 30`` for the fields that changed (sealed values as ``***``)."""
    changed = [
        f"{name} {getattr(old, name)!r} -> {getattr(new, name)!r}"
        for name in ScheduleSpec.__dataclass_fields__
        if getattr(old, name) != getattr(new, name)
    ]
    return secrets.redact_text("; ".join(changed)) or "no change"


def describe(spec: ScheduleSpec) -> str:
    if spec.kind is ScheduleKind.CRON:
        return f"cron {spec.cron} {spec.tz}"
    return f"every {spec.every:g} s ({spec.mode.value})"
