"""The JSON shapes of what backbeat shows: one function per thing, used by the CLI's
``--json`` and the HTTP API (``backbeat.web``), so both always agree. Timestamps are
ISO 8601 UTC. The OpenAPI document (``backbeat/web/openapi.py``) describes each shape;
change both together. Sealed secrets (``backbeat.secrets``) are shown as ``***``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from backbeat.clock import iso
from backbeat.secrets import redact, redact_text
from backbeat.types import (
    FINAL_STATES,
    EventRecord,
    JobCount,
    JobRecord,
    JobState,
    QueueInfo,
    ScheduleRecord,
    StateValue,
    TaskInfo,
    WorkerInfo,
)

STATES = [s.value for s in JobState]


def job(record: JobRecord, *, detail: bool = False) -> dict[str, Any]:
    payload = _payload(record.payload, {"args": [], "kwargs": {}})
    shape: dict[str, Any] = {
        "id": record.id,
        "task": record.task,
        "queue": record.queue,
        "state": record.state.value,
        "priority": record.priority,
        "args": payload.get("args", []),
        "kwargs": payload.get("kwargs", {}),
        "attempts": record.attempts,
        "max_attempts": record.max_attempts,
        "run_at": iso(record.run_at),
        "created_at": iso(record.created_at),
        "started_at": iso(record.started_at),
        "finished_at": iso(record.finished_at),
        "worker_id": record.worker_id,
        "dedup_key": record.dedup_key,
        "error": record.error,
        "cancel_requested": record.cancel_requested,
    }
    if detail:
        shape["timeout"] = record.timeout
        shape["lease_expires_at"] = iso(record.lease_expires_at)
        shape["result"] = None if record.result is None else json.loads(record.result)
        shape["traceback"] = record.traceback
    return shape


def _payload(text: str, empty: dict[str, Any]) -> Any:
    """A stored payload to show: decoded, sealed values as ``***``."""
    try:
        return redact(json.loads(text))
    except ValueError:
        return {**empty, "undecodable": redact_text(text)}


def event(record: EventRecord) -> dict[str, Any]:
    payload = _payload(record.payload, {})
    return {
        "id": record.id,
        "name": record.name,
        "key": record.key,
        "state": record.state.value,
        "reason": record.reason,
        "source": record.source,
        "jobs": record.jobs,
        "occurred_at": iso(record.occurred_at),
        "received_at": iso(record.received_at),
        "settled_at": iso(record.settled_at),
        "payload": payload,
    }


def event_accepted(ids: Sequence[str], created: Sequence[bool]) -> dict[str, Any]:
    """What ``emit`` and ``POST /api/events`` answer: each id, and whether it was new."""
    return {"events": [{"id": i, "duplicate": not c} for i, c in zip(ids, created, strict=True)]}


def worker(info: WorkerInfo, *, now: float, stale_after: float) -> dict[str, Any]:
    return {
        "id": info.id,
        "host": info.host,
        "pid": info.pid,
        "queues": list(info.queues),
        "concurrency": info.concurrency,
        "in_flight": info.in_flight,
        "tasks": [t.name for t in info.tasks],
        "started_at": iso(info.started_at),
        "heartbeat_at": iso(info.heartbeat_at),
        "alive": info.heartbeat_at >= now - stale_after,
        "version": info.version,
    }


def status(
    counts: Sequence[JobCount],
    workers: Sequence[WorkerInfo],
    registered: Sequence[TaskInfo],
    finished: dict[JobState, int],
    *,
    now: float,
    window: float,
    stale_after: float,
    autopilot: StateValue | None = None,
) -> dict[str, Any]:
    """Queues, tasks and their job counts, workers, throughput, tasks no live worker knows,
    and what the autopilot last published (desired workers and why)."""
    queues: dict[str, dict[str, int]] = {}
    tasks: dict[str, dict[str, int]] = {}
    for c in counts:
        queues.setdefault(c.queue, dict.fromkeys(STATES, 0))[c.state.value] += c.count
        tasks.setdefault(c.task, dict.fromkeys(STATES, 0))[c.state.value] += c.count
    shown = [worker(w, now=now, stale_after=stale_after) for w in workers]
    known = {name for w in shown if w["alive"] for name in w["tasks"]}
    waiting = {c.task for c in counts if c.state in (JobState.QUEUED, JobState.SCHEDULED) and c.count}
    done = sum(n for state, n in finished.items() if state in FINAL_STATES)
    return {
        "now": iso(now),
        "queues": [{"name": q, "counts": n} for q, n in sorted(queues.items())],
        "tasks": [{"name": t, "counts": n, "known_by_live_worker": t in known} for t, n in sorted(tasks.items())],
        "missing_tasks": sorted(waiting - known),
        "registered_tasks": [t.name for t in registered],
        "workers": shown,
        "throughput": {
            "window_seconds": window,
            "finished": {s.value: finished.get(s, 0) for s in sorted(FINAL_STATES)},
            "per_second": round(done / window, 3) if window else 0.0,
        },
        "autopilot": None if autopilot is None else {**json.loads(autopilot.value), "at": iso(autopilot.updated_at)},
    }


def queues(infos: Sequence[QueueInfo], counts: Sequence[JobCount]) -> list[dict[str, Any]]:
    by_queue: dict[str, dict[str, int]] = {}
    for c in counts:
        by_queue.setdefault(c.queue, dict.fromkeys(STATES, 0))[c.state.value] += c.count
    return [
        {
            "name": q.name,
            "paused": q.paused,
            "paused_at": iso(q.paused_at),
            "counts": by_queue.get(q.name, dict.fromkeys(STATES, 0)),
        }
        for q in infos
    ]


def schedule(record: ScheduleRecord) -> dict[str, Any]:
    spec = record.spec
    payload = _payload(spec.payload, {"args": [], "kwargs": {}})
    return {
        "key": spec.key,
        "task": spec.task,
        "queue": spec.queue,
        "kind": spec.kind.value,
        "every": spec.every,
        "cron": spec.cron,
        "tz": spec.tz,
        "mode": spec.mode.value if spec.every is not None else None,
        "jitter": spec.jitter,
        "sla": spec.sla,
        "max_every": spec.max_every,
        "every_now": record.every_now,
        "every_reason": record.every_reason,
        "misfire": spec.misfire.value,
        "catch_up_limit": spec.catch_up_limit,
        "priority": spec.priority,
        "args": payload.get("args", []),
        "kwargs": payload.get("kwargs", {}),
        "description": spec.description,
        "origin": spec.origin.value,
        "paused": record.paused,
        "paused_at": iso(record.paused_at),
        "next_at": iso(record.next_at),
        "in_flight": record.in_flight,
        "last_fire_at": iso(record.last_fire_at),
        "last_finished_at": iso(record.last_finished_at),
        "last_state": None if record.last_state is None else record.last_state.value,
        "last_success_at": iso(record.last_success_at),
        "created_at": iso(record.created_at),
        "updated_at": iso(record.updated_at),
    }


def run_now(key: str, record: ScheduleRecord) -> dict[str, Any]:
    """What ``schedules run`` (run now) did: the job it queued (the run in flight)."""
    return {"key": key, "job_id": record.in_flight}


def schedule_paused(key: str, paused: bool) -> dict[str, Any]:
    """The result of ``schedules pause|resume`` (one element of the CLI's list)."""
    return {"key": key, "paused": paused}


def schedule_removed(key: str, removed: bool) -> dict[str, Any]:
    """The result of ``schedules remove``: False when there was no such schedule."""
    return {"key": key, "removed": removed}


def job_action(job_id: str, state: JobState) -> dict[str, Any]:
    """What a retry or cancel left the job as (``jobs retry|cancel --json``, ``POST /api/jobs/{id}/...``)."""
    return {"id": job_id, "state": state.value}


def queue_paused(name: str, paused: bool) -> dict[str, Any]:
    """The result of ``queues pause|resume`` (one element of the CLI's list)."""
    return {"queue": name, "paused": paused}


def queue_purged(name: str, deleted: int) -> dict[str, Any]:
    """The result of ``queues purge``: how many pending jobs were deleted."""
    return {"queue": name, "purged": deleted}


def health(workers: Sequence[WorkerInfo], *, now: float, stale_after: float) -> dict[str, Any]:
    """Whether any worker heartbeated within ``stale_after`` seconds (``status --check``,
    ``/healthz``), with a one-line ``message`` that says why not."""
    live = [w for w in workers if w.heartbeat_at >= now - stale_after]
    last = max((w.heartbeat_at for w in workers), default=None)
    if live:
        message = f"{len(live)} live worker(s) of {len(workers)} registered"
    elif not workers:
        message = "no worker is registered: start one with `backbeat worker APP` or `backbeat run APP`"
    else:
        assert last is not None
        message = (
            f"no worker heartbeat within the last {stale_after:g} s "
            f"({len(workers)} registered, last heartbeat {now - last:.0f} s ago at {iso(last)})"
        )
    return {
        "ok": bool(live),
        "now": iso(now),
        "live_workers": len(live),
        "registered_workers": len(workers),
        "stale_after_seconds": stale_after,
        "last_heartbeat_at": iso(last),
        "message": message,
    }


def throughput(
    finished_since: Sequence[dict[JobState, int]], *, starts: Sequence[float], now: float, bucket_seconds: float
) -> dict[str, Any]:
    """Jobs finished per time bucket, from cumulative counts: ``finished_since[i]`` counts
    what finished at or after ``starts[i]`` (ascending); bucket ``i`` runs from
    ``starts[i]`` to ``starts[i + 1]``, the last one to ``now``."""
    buckets = []
    for i, start in enumerate(starts):
        later = finished_since[i + 1] if i + 1 < len(starts) else {}
        counts = {s.value: max(0, finished_since[i].get(s, 0) - later.get(s, 0)) for s in sorted(FINAL_STATES)}
        end = starts[i + 1] if i + 1 < len(starts) else now
        buckets.append({"start": iso(start), "end": iso(end), **counts})
    return {"now": iso(now), "bucket_seconds": bucket_seconds, "buckets": buckets}
