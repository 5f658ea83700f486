"""``backbeat explain KEY``: "why didn't key X run at T?" answered from the store.

A schedule's timeline is its jobs (each one a fired occurrence: fired, started, how it
ended, retries) merged with its decision log (what was decided instead of a routine fire:
skips and why, rate-limit waits, pauses, changes, leases lost, breaches). Pure functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from backbeat.types import Decision, JobRecord, JobState


@dataclass(frozen=True, kw_only=True, slots=True)
class Entry:
    at: float
    kind: str
    detail: str
    job_id: str | None = None


def job_entries(job: JobRecord) -> list[Entry]:
    """What a schedule's job says about its occurrence."""
    occurrence = f"occurrence {job.fire_at:.3f}" if job.fire_at is not None else "a run"
    out = [Entry(at=job.created_at, kind="fired", detail=f"{occurrence} fired: job queued", job_id=job.id)]
    if job.started_at is not None:
        out.append(
            Entry(
                at=job.started_at,
                kind="started",
                detail=f"attempt {job.attempts} started on {job.worker_id or 'a worker'}",
                job_id=job.id,
            )
        )
    if job.state.is_final and job.finished_at is not None:
        detail = job.state.value + (f": {job.error}" if job.error and job.state is not JobState.SUCCEEDED else "")
        out.append(Entry(at=job.finished_at, kind=job.state.value, detail=detail, job_id=job.id))
    elif job.state is JobState.SCHEDULED and job.error:
        out.append(Entry(at=job.run_at, kind="retry", detail=f"retry due after {job.error}", job_id=job.id))
    return out


def timeline(jobs: Sequence[JobRecord], decisions: Sequence[Decision]) -> list[Entry]:
    """Every entry, newest first."""
    entries = [e for job in jobs for e in job_entries(job)]
    entries += [Entry(at=d.at, kind=d.kind.value, detail=d.detail, job_id=d.job_id) for d in decisions]
    return sorted(entries, key=lambda e: e.at, reverse=True)
