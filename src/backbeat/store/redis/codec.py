"""Records <-> the strings the Redis store keeps and its scripts take.

Floats are written with ``repr()``: the shortest string that reads back as the same
double, in Python and in Redis/Lua alike, so times survive the round trip exactly and
compare the same on both sides. A field that is ``None`` is simply absent from the hash.

Internal module.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from backbeat.types import (
    Breach,
    Decision,
    DecisionKind,
    EventRecord,
    EventState,
    JobOutcome,
    JobRecord,
    JobState,
    Misfire,
    NewEvent,
    NewJob,
    ScheduleKind,
    ScheduleMode,
    ScheduleOrigin,
    ScheduleRecord,
    ScheduleSpec,
    TaskInfo,
    WorkerInfo,
)

_STATES = {s.value: s for s in JobState}


def num(value: float) -> str:
    return repr(float(value))


def opt_num(value: float | None) -> str | None:
    return None if value is None else num(value)


def _opt_float(value: str | None) -> float | None:
    return None if value is None else float(value)


def pairs(flat: Sequence[str]) -> dict[str, str]:
    """HGETALL as a flat list (what scripts return) -> dict."""
    return dict(zip(flat[::2], flat[1::2], strict=True))


def job_record(job_id: str, f: Mapping[str, str]) -> JobRecord:
    return JobRecord(
        id=job_id,
        task=f["task"],
        queue=f["queue"],
        state=_STATES[f["state"]],
        payload=f["payload"],
        priority=int(f["priority"]),
        run_at=float(f["run_at"]),
        order_at=float(f["order_at"]),
        attempts=int(f["attempts"]),
        max_attempts=int(f["max_attempts"]),
        created_at=float(f["created_at"]),
        timeout=_opt_float(f.get("timeout")),
        dedup_key=f.get("dedup_key"),
        started_at=_opt_float(f.get("started_at")),
        finished_at=_opt_float(f.get("finished_at")),
        worker_id=f.get("worker_id"),
        lease_token=f.get("lease_token"),
        lease_expires_at=_opt_float(f.get("lease_expires_at")),
        cancel_requested=f.get("cancel_requested") == "1",
        result=f.get("result"),
        error=f.get("error"),
        traceback=f.get("traceback"),
        schedule_key=f.get("schedule_key"),
        fire_at=_opt_float(f.get("fire_at")),
        deadline=_opt_float(f.get("deadline")),
    )


def scripted_record(item: Sequence[Any]) -> JobRecord:
    """A script's ``{id, HGETALL}``."""
    return job_record(item[0], pairs(item[1]))


def claimed_record(item: Sequence[Any], claimed: Mapping[str, str], token_prefix: str) -> JobRecord:
    """A claimed job from ``claim.lua``'s ``{id, HGETALL before}`` and the claim's changes."""
    job_id, before = item[0], pairs(item[1])
    fields = {
        **before,
        **claimed,
        "attempts": str(int(before["attempts"]) + 1),
        "lease_token": token_prefix + job_id,
    }
    return job_record(job_id, fields)


def script_json(items: Any) -> str:
    """The one JSON argument the scripts take for a batch."""
    return json.dumps(items, ensure_ascii=False, separators=(",", ":"))


def enqueue_item(new: NewJob) -> list[Any]:
    """One job as ``lib.lua``'s ``insert_job`` takes it (enqueue, fire, settle)."""
    order_at = new.run_at if new.order_at is None else new.order_at
    fields: dict[str, str] = {
        "task": new.task,
        "queue": new.queue,
        "payload": new.payload,
        "priority": str(new.priority),
        "run_at": num(new.run_at),
        "order_at": num(order_at),
        "max_attempts": str(new.max_attempts),
    }
    optional: dict[str, str | float | None] = {
        "timeout": new.timeout,
        "dedup_key": new.dedup_key,
        "schedule_key": new.schedule_key,
        "fire_at": new.fire_at,
        "deadline": new.deadline,
    }
    for name, value in optional.items():
        if value is not None:
            fields[name] = value if isinstance(value, str) else num(value)
    head = [new.id, new.queue, new.task, str(new.priority), fields["run_at"], fields["order_at"], new.dedup_key or ""]
    head += [new.schedule_key or "", fields.get("fire_at", "")]
    return [*head, [x for item in fields.items() for x in item]]


def ack_item(o: JobOutcome) -> list[str | None]:
    """One outcome's entry in ``ack.lua``'s JSON argument (None is JSON null)."""
    return [
        o.lease.job_id,
        o.lease.token,
        o.outcome.value,
        o.result,
        o.error,
        o.traceback,
        opt_num(o.retry_at),
        opt_num(o.next_in),
    ]


# -- workers and tasks ----------------------------------------------------------------


def task_json(task: TaskInfo) -> str:
    return json.dumps(
        {
            "queue": task.queue,
            "max_attempts": task.max_attempts,
            "timeout": task.timeout,
            "priority": task.priority,
            "secret": list(task.secret),
            "handles": task.handles,
        }
    )


def task_info(name: str, text: str) -> TaskInfo:
    d = json.loads(text)
    return TaskInfo(
        name=name,
        queue=d["queue"],
        max_attempts=d["max_attempts"],
        timeout=d["timeout"],
        priority=d["priority"],
        secret=tuple(d.get("secret", ())),
        handles=d.get("handles"),
    )


def worker_fields(info: WorkerInfo) -> list[str]:
    fields = {
        "host": info.host,
        "pid": str(info.pid),
        "queues": json.dumps(list(info.queues)),
        "concurrency": str(info.concurrency),
        "tasks": json.dumps([t.name for t in info.tasks]),
        "started_at": num(info.started_at),
        "heartbeat_at": num(info.heartbeat_at),
        "in_flight": str(info.in_flight),
        "version": info.version,
    }
    return [x for item in fields.items() for x in item]


def worker_info(worker_id: str, f: Mapping[str, str], tasks: Mapping[str, TaskInfo]) -> WorkerInfo:
    return WorkerInfo(
        id=worker_id,
        host=f["host"],
        pid=int(f["pid"]),
        queues=tuple(json.loads(f["queues"])),
        concurrency=int(f["concurrency"]),
        tasks=tuple(tasks.get(n) or TaskInfo(name=n, queue="", max_attempts=1) for n in json.loads(f["tasks"])),
        started_at=float(f["started_at"]),
        heartbeat_at=float(f["heartbeat_at"]),
        in_flight=int(f["in_flight"]),
        version=f["version"],
    )


# -- schedules, breaches, decisions ---------------------------------------------------

_SPEC_ENUMS: dict[str, Any] = {
    "kind": ScheduleKind,
    "mode": ScheduleMode,
    "misfire": Misfire,
    "origin": ScheduleOrigin,
}
_SPEC_INTS = ("catch_up_limit", "priority", "max_attempts")
_SPEC_FLOATS = ("every", "jitter", "sla", "max_every", "timeout")
_RECORD_FLOATS = (
    "next_tick",
    "next_at",
    "paused_at",
    "last_fire_at",
    "last_finished_at",
    "last_success_at",
    "resumed_at",
    "deadline_at",
    "breach_since",
    "run_time",
    "every_now",
)


def spec_fields(spec: ScheduleSpec) -> dict[str, str | None]:
    """Every field of the definition as the string the store keeps (None: absent)."""
    out: dict[str, str | None] = {}
    for name in ScheduleSpec.__dataclass_fields__:
        value = getattr(spec, name)
        if value is None or isinstance(value, str):  # enums are StrEnums: their value
            out[name] = None if value is None else str(value)
        elif name in _SPEC_FLOATS:
            out[name] = num(value)
        else:
            out[name] = str(int(value))
    return out


def schedule_record(f: Mapping[str, str]) -> ScheduleRecord:
    spec: dict[str, Any] = {name: f.get(name) for name in ScheduleSpec.__dataclass_fields__}
    for name, enum in _SPEC_ENUMS.items():
        spec[name] = enum(spec[name])
    for name in _SPEC_INTS:
        spec[name] = int(spec[name])
    for name in _SPEC_FLOATS:
        spec[name] = _opt_float(spec[name])
    state: dict[str, Any] = {name: _opt_float(f.get(name)) for name in _RECORD_FLOATS}
    last_state = f.get("last_state")
    return ScheduleRecord(
        spec=ScheduleSpec(**spec),
        created_at=float(f["created_at"]),
        updated_at=float(f["updated_at"]),
        paused=f.get("paused") == "1",
        pending_jitter=float(f.get("pending_jitter", "0")),
        in_flight=f.get("in_flight"),
        last_job_id=f.get("last_job_id"),
        last_state=None if last_state is None else _STATES[last_state],
        every_reason=f.get("every_reason"),
        **state,
    )


def scripted_schedule(item: Sequence[Any]) -> ScheduleRecord:
    """A script's ``{key, HGETALL}``."""
    return schedule_record(pairs(item[1]))


def breach(f: Mapping[str, str]) -> Breach:
    return Breach(
        key=f["key"],
        sla=float(f["sla"]),
        base_at=float(f["base_at"]),
        started_at=float(f["started_at"]),
        ended_at=_opt_float(f.get("ended_at")),
    )


def decision_item(d: Decision) -> list[str | None]:
    """One entry as ``decision_append.lua`` takes and ``P:decisions`` keeps it."""
    return [d.key, num(d.at), d.kind.value, d.detail, d.job_id]


def decision(text: str) -> Decision:
    key, at, kind, detail, job_id = json.loads(text)
    return Decision(key=key, at=float(at), kind=DecisionKind(kind), detail=detail, job_id=job_id)


# -- events ---------------------------------------------------------------------------

_EVENT_STATES = {s.value: s for s in EventState}


def event_item(e: NewEvent) -> list[str | None]:
    """One event as ``lib_events.lua``'s ``ev_insert`` takes it."""
    return [e.id, e.name, e.key, num(e.occurred_at), e.payload, e.source]


def event_record(event_id: str, f: Mapping[str, str]) -> EventRecord:
    return EventRecord(
        id=event_id,
        name=f["name"],
        occurred_at=float(f["occurred_at"]),
        payload=f["payload"],
        received_at=float(f["received_at"]),
        state=_EVENT_STATES[f["state"]],
        key=f.get("key"),
        source=f["source"],
        reason=f.get("reason"),
        jobs=int(f.get("jobs", "0")),
        settled_at=_opt_float(f.get("settled_at")),
    )
