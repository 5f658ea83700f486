"""``/metrics``: gauges read from the store at scrape time, plus the worker-side counters.

Store gauges (one dashboard per store exports them; they are cluster-wide):

=====================================  ===============  ==========================================
name                                   labels           meaning
=====================================  ===============  ==========================================
``backbeat_jobs``                      queue, state     jobs in the store, every state
``backbeat_queue_paused``              queue            1 while the queue is paused
``backbeat_workers``                   status           registered workers, ``alive`` or ``stale``
``backbeat_worker_slots``              ―                job slots of live workers (concurrency)
``backbeat_worker_jobs_in_flight``     ―                jobs live workers are running
``backbeat_healthy``                   ―                1 while /healthz would answer 200
``backbeat_store_up``                  ―                0 when the store could not be read
``backbeat_autopilot_desired_workers`` ―                worker processes the autopilot wants (once one runs)
=====================================  ===============  ==========================================

The worker-side counters and histograms (``backbeat.metrics``) come from this process's
registry, or, when ``metrics_dir`` names a prometheus-client multiprocess directory
(``PROMETHEUS_MULTIPROC_DIR`` shared with ``backbeat run`` on this machine), from the sum
over every process that writes there.

Room for what comes next, with the same rule of bounded labels (never a schedule key or a
job id): SLA compliance and staleness per task, rate-limit waits per limiter name.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Iterator

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from backbeat.autopilot import PUBLISHED
from backbeat.errors import BackbeatError, StoreError
from backbeat.shapes import STATES
from backbeat.types import JobCount, QueueInfo, StateValue, WorkerInfo
from backbeat.web.api.common import api_error
from backbeat.web.context import Dashboard, dashboard

log = logging.getLogger("backbeat.web")


class _Families(Collector):
    def __init__(self, families: Iterable[Metric]) -> None:
        self.families = list(families)

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


def store_families(
    counts: list[JobCount], queues: list[QueueInfo], workers: list[WorkerInfo], *, now: float, stale_after: float
) -> list[Metric]:
    jobs = GaugeMetricFamily("backbeat_jobs", "Jobs in the store by queue and state.", labels=["queue", "state"])
    by_queue: dict[str, dict[str, int]] = {q.name: dict.fromkeys(STATES, 0) for q in queues}
    for c in counts:
        by_queue.setdefault(c.queue, dict.fromkeys(STATES, 0))[c.state.value] += c.count
    for queue, states in sorted(by_queue.items()):
        for state, n in states.items():
            jobs.add_metric([queue, state], n)
    paused = GaugeMetricFamily("backbeat_queue_paused", "1 while the queue is paused.", labels=["queue"])
    for q in queues:
        paused.add_metric([q.name], 1 if q.paused else 0)
    live = [w for w in workers if w.heartbeat_at >= now - stale_after]
    by_status = GaugeMetricFamily("backbeat_workers", "Registered workers, alive or stale.", labels=["status"])
    by_status.add_metric(["alive"], len(live))
    by_status.add_metric(["stale"], len(workers) - len(live))
    return [
        jobs,
        paused,
        by_status,
        GaugeMetricFamily(
            "backbeat_worker_slots", "Job slots of live workers.", value=sum(w.concurrency for w in live)
        ),
        GaugeMetricFamily(
            "backbeat_worker_jobs_in_flight", "Jobs live workers are running.", value=sum(w.in_flight for w in live)
        ),
        GaugeMetricFamily("backbeat_healthy", "1 while a worker heartbeats within the window.", value=int(bool(live))),
    ]


def autopilot_families(published: StateValue | None) -> list[Metric]:
    if published is None:
        return []
    desired = json.loads(published.value).get("desired_workers")
    if not isinstance(desired, int):
        return []
    return [
        GaugeMetricFamily(
            "backbeat_autopilot_desired_workers",
            "Worker processes the autopilot wants now (scale replicas to it).",
            value=desired,
        )
    ]


async def _store_text(d: Dashboard) -> bytes:
    registry = CollectorRegistry()
    try:
        store = await d.store()
        families = store_families(
            await store.job_counts(),
            await store.queue_list(),
            await store.worker_list(),
            now=d.now(),
            stale_after=d.stale_after,
        )
        families += autopilot_families(await store.state_get(PUBLISHED))
        up = 1
    except StoreError as exc:
        log.warning("metrics: the store could not be read: %s", exc)
        families, up = [], 0
    families.append(GaugeMetricFamily("backbeat_store_up", "0 when the store could not be read.", value=up))
    registry.register(_Families(families))
    return generate_latest(registry)


def _process_text(metrics_dir: str | None) -> bytes:
    if metrics_dir is None:
        return generate_latest(REGISTRY)
    if not os.path.isdir(metrics_dir):
        log.warning("metrics: %s is not a directory; worker metrics left out", metrics_dir)
        return b""
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=metrics_dir)  # type: ignore[no-untyped-call]  # untyped upstream
    return generate_latest(registry)


async def metrics(request: Request) -> Response:
    d = dashboard(request)
    try:
        d.guard.check_read(request, d.now())
    except BackbeatError as exc:
        return api_error(exc)
    body = await _store_text(d) + _process_text(d.settings.metrics_dir)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


ROUTES = [Route("/metrics", metrics, methods=["GET"], name="metrics")]
