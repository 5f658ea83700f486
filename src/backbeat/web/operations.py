"""What the pages and the API do, once: each returns a shape from ``backbeat.shapes``, so
a page, the API and the CLI's ``--json`` show the same data.

Every list is bounded: jobs are read a keyset page at a time (``JobFilter.before``),
bulk retries take at most ``MAX_BULK`` jobs a call, and the throughput series is at most
``MAX_BUCKETS`` cheap counts over the store's finished-time index.
"""

from __future__ import annotations

from typing import Any

from backbeat import reports, shapes
from backbeat.autopilot import PUBLISHED
from backbeat.errors import InvalidTransition, JobNotFound
from backbeat.types import EventFilter, JobCount, JobFilter, JobState, ScheduleKind, ScheduleRank
from backbeat.web.context import Dashboard

STATUS_WINDOW = 60.0
"""Seconds of throughput in ``status`` (as ``backbeat status``)."""
MAX_BUCKETS = 120
MAX_MINUTES = 24 * 60
BULK_PAGE = 200
EXPLAIN_LIMIT = 100
"""Timeline entries a schedule's page shows (``backbeat explain --limit``)."""


async def list_jobs(d: Dashboard, flt: JobFilter) -> list[dict[str, Any]]:
    store = await d.store()
    return [shapes.job(j) for j in await store.job_list(flt)]


async def get_job(d: Dashboard, job_id: str) -> dict[str, Any]:
    store = await d.store()
    return shapes.job(await store.job_get(job_id), detail=True)


async def retry_job(d: Dashboard, job_id: str) -> dict[str, Any]:
    store = await d.store()
    return shapes.job_action(job_id, (await store.job_retry(job_id, now=d.now())).state)


async def cancel_job(d: Dashboard, job_id: str) -> dict[str, Any]:
    store = await d.store()
    return shapes.job_action(job_id, (await store.job_cancel(job_id, now=d.now())).state)


async def retry_dead(d: Dashboard, *, queue: str | None, task: str | None, limit: int) -> list[dict[str, Any]]:
    """Requeue up to ``limit`` dead jobs (newest first) of ``queue``/``task``. A job that
    another client retried or pruned meanwhile is skipped; call again for more."""
    store = await d.store()
    done: list[dict[str, Any]] = []
    before: str | None = None
    while len(done) < limit:
        page = await store.job_list(
            JobFilter(state=JobState.DEAD, queue=queue, task=task, before=before, limit=min(BULK_PAGE, limit))
        )
        for record in page[: limit - len(done)]:
            try:
                done.append(shapes.job_action(record.id, (await store.job_retry(record.id, now=d.now())).state))
            except (InvalidTransition, JobNotFound):
                continue
        if len(page) < min(BULK_PAGE, limit):
            break
        before = page[-1].id
    return done


async def queues(d: Dashboard, counts: list[JobCount] | None = None) -> list[dict[str, Any]]:
    """Every queue with its counts (``counts``: a ``job_counts`` read already, which reads
    every job: a page reads it once)."""
    store = await d.store()
    return shapes.queues(await store.queue_list(), counts if counts is not None else await store.job_counts())


async def pause_queue(d: Dashboard, name: str) -> dict[str, Any]:
    store = await d.store()
    await store.queue_pause(name, now=d.now())
    return shapes.queue_paused(name, True)


async def resume_queue(d: Dashboard, name: str) -> dict[str, Any]:
    store = await d.store()
    await store.queue_resume(name)
    return shapes.queue_paused(name, False)


async def purge_queue(d: Dashboard, name: str) -> dict[str, Any]:
    store = await d.store()
    return shapes.queue_purged(name, await store.queue_purge(name))


async def workers(d: Dashboard) -> list[dict[str, Any]]:
    store = await d.store()
    now = d.now()
    return [shapes.worker(w, now=now, stale_after=d.stale_after) for w in await store.worker_list()]


async def status(d: Dashboard, counts: list[JobCount] | None = None) -> dict[str, Any]:
    store = await d.store()
    now = d.now()
    return shapes.status(
        counts if counts is not None else await store.job_counts(),
        await store.worker_list(),
        await store.task_list(),
        await store.job_finished_since(now - STATUS_WINDOW),
        now=now,
        window=STATUS_WINDOW,
        stale_after=d.stale_after,
        autopilot=await store.state_get(PUBLISHED),
    )


async def throughput(d: Dashboard, *, minutes: int, buckets: int) -> dict[str, Any]:
    """Jobs finished per bucket over the last ``minutes``: one count per bucket boundary."""
    store = await d.store()
    now = d.now()
    step = minutes * 60.0 / buckets
    starts = [now - minutes * 60.0 + i * step for i in range(buckets)]
    counts = [await store.job_finished_since(start) for start in starts]
    return shapes.throughput(counts, starts=starts, now=now, bucket_seconds=step)


async def health(d: Dashboard) -> dict[str, Any]:
    store = await d.store()
    return shapes.health(await store.worker_list(), now=d.now(), stale_after=d.stale_after)


async def queue_names(d: Dashboard) -> list[str]:
    """Every queue's name (no counts: counting reads every job, too slow for a filter form)."""
    store = await d.store()
    return [q.name for q in await store.queue_list()]


async def task_names(d: Dashboard) -> list[str]:
    store = await d.store()
    return [t.name for t in await store.task_list()]


# -- schedules: read through backbeat.reports, changed through app.schedules ------------


async def list_schedules(
    d: Dashboard, *, after: ScheduleRank | None, search: str | None, limit: int
) -> tuple[list[dict[str, Any]], str | None]:
    """Worst first (``backbeat schedules list --worst``); the next page's cursor."""
    return await reports.worst_rows(await d.store(), now=d.now(), after=after, search=search, limit=limit)


async def explain_schedule(d: Dashboard, key: str, *, limit: int = EXPLAIN_LIMIT) -> dict[str, Any]:
    """``backbeat explain KEY``: the schedule's row and its timeline, newest first."""
    return await reports.explain_data(d.client, key, limit)


async def pause_schedule(d: Dashboard, key: str) -> dict[str, Any]:
    return shapes.schedule_paused(key, (await d.app.schedules.apause(key)).paused)


async def resume_schedule(d: Dashboard, key: str) -> dict[str, Any]:
    return shapes.schedule_paused(key, (await d.app.schedules.aresume(key)).paused)


async def remove_schedule(d: Dashboard, key: str) -> dict[str, Any]:
    return shapes.schedule_removed(key, await d.app.schedules.aremove(key))


async def run_schedule(d: Dashboard, key: str) -> dict[str, Any]:
    return shapes.run_now(key, await d.app.schedules.arun_now(key))


async def set_interval(d: Dashboard, key: str, every: float | str) -> dict[str, Any]:
    """``backbeat schedules update KEY --every ...``: the schedule as it is now. A cron
    schedule is refused (the CLI's ``update --every`` would turn it into an every-schedule:
    not what an interval field should do)."""
    record = await d.app.schedules.aget(key)
    if record.spec.kind is not ScheduleKind.EVERY:
        raise InvalidTransition(f"schedule {key!r} runs on cron {record.spec.cron!r}: it has no interval to change")
    return shapes.schedule(await d.app.schedules.aupdate(key, every=every))


async def sla(d: Dashboard, *, limit: int) -> dict[str, Any]:
    """``backbeat sla --json``: the summary over the last 24 h and the ``limit`` worst SLA schedules."""
    return await reports.sla_data(d.client, reports.SLA_WINDOW, limit)


# -- events ----------------------------------------------------------------------------


async def list_events(d: Dashboard, flt: EventFilter) -> list[dict[str, Any]]:
    """``backbeat events list --json``: newest first, a keyset page."""
    store = await d.store()
    return [shapes.event(e) for e in await store.event_list(flt)]


async def get_event(d: Dashboard, event_id: str) -> dict[str, Any]:
    store = await d.store()
    return shapes.event(await store.event_get(event_id))


async def replay_event(d: Dashboard, event_id: str) -> dict[str, Any]:
    """``backbeat events replay ID --json`` (one element): the event, pending again."""
    store = await d.store()
    return shapes.event(await store.event_replay(event_id))
