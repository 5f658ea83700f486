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

from backbeat.types import JobOutcome, JobRecord, JobState, NewJob, TaskInfo, WorkerInfo

_STATES = {s.value: s for s in JobState}


def num(value: float) -> str:
    return repr(float(value))


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


def script_json(items: Sequence[Sequence[Any]]) -> str:
    """The one JSON argument ``enqueue.lua`` and ``ack.lua`` take for a batch."""
    return json.dumps(items, ensure_ascii=False, separators=(",", ":"))


def enqueue_args(new: NewJob) -> list[Any]:
    """One job's entry in ``enqueue.lua``'s JSON argument."""
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
    }
    for name, value in optional.items():
        if value is not None:
            fields[name] = value if isinstance(value, str) else num(value)
    head = [new.id, new.queue, new.task, str(new.priority), fields["run_at"], fields["order_at"], new.dedup_key or ""]
    return [*head, [x for item in fields.items() for x in item]]


def ack_args(o: JobOutcome) -> list[str | None]:
    """One outcome's entry in ``ack.lua``'s JSON argument (None is JSON null)."""
    retry_at = None if o.retry_at is None else num(o.retry_at)
    return [o.lease.job_id, o.lease.token, o.outcome.value, o.result, o.error, o.traceback, retry_at]


def new_record(new: NewJob, now: float) -> JobRecord:
    """The record ``enqueue.lua`` wrote for ``new`` (the same decision: due now is queued)."""
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
    )


# -- workers and tasks ----------------------------------------------------------------


def task_json(task: TaskInfo) -> str:
    return json.dumps(
        {
            "queue": task.queue,
            "max_attempts": task.max_attempts,
            "timeout": task.timeout,
            "priority": task.priority,
        }
    )


def task_info(name: str, text: str) -> TaskInfo:
    d = json.loads(text)
    return TaskInfo(
        name=name, queue=d["queue"], max_attempts=d["max_attempts"], timeout=d["timeout"], priority=d["priority"]
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
