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
``backbeat_autopilot_needed_workers``  ―                what the demand needs, before the bounds
``backbeat_sla_schedules``             status           schedules with an SLA: ``ok``, ``breach``, ``paused``
``backbeat_sla_compliance_ratio``      ―                share of the last 24 h within SLA (active schedules)
``backbeat_sla_breach_seconds``        ―                seconds of breach in the last 24 h, summed
``backbeat_schedule_staleness_seconds`` ―               histogram over the (10,000 worst) active SLA schedules
=====================================  ===============  ==========================================

The worker-side counters and histograms (``backbeat.metrics``) come from this process's
registry, or, when ``metrics_dir`` names a prometheus-client multiprocess directory
(``PROMETHEUS_MULTIPROC_DIR`` shared with ``backbeat run`` on this machine), from the sum
over every process that writes there.

Labels stay bounded: never a schedule key or a job id. The scheduler counts
``backbeat_sla_breaches_total`` and workers ``backbeat_rate_limit_wait_seconds{limiter}``
(``backbeat.metrics``).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Iterator

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from backbeat import sla as sla_math
from backbeat.autopilot import PUBLISHED
from backbeat.errors import BackbeatError, StoreError
from backbeat.reports import SLA_WINDOW
from backbeat.shapes import STATES
from backbeat.types import JobCount, QueueInfo, ScheduleRecord, SlaStats, StateValue, WorkerInfo
from backbeat.web.api.common import api_error
from backbeat.web.context import Dashboard, dashboard

log = logging.getLogger("backbeat.web")
STALENESS_SAMPLE = 10_000
"""Most schedules (the worst) read for the staleness histogram at one scrape."""
STALENESS_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0, 86400.0)


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
    document = json.loads(published.value)
    out: list[Metric] = []
    for name, key, doc in (
        ("backbeat_autopilot_desired_workers", "desired_workers", "Worker processes the autopilot wants now "
         "(scale replicas to it; compare backbeat_workers{status=\"alive\"})."),
        ("backbeat_autopilot_needed_workers", "needed_workers", "Worker processes the demand needs, before bounds."),
    ):  # fmt: skip
        if isinstance(document.get(key), int):
            out.append(GaugeMetricFamily(name, doc, value=document[key]))
    return out


def sla_families(stats: SlaStats, worst: list[ScheduleRecord], *, now: float, window: float) -> list[Metric]:
    """SLA gauges over every schedule with an SLA, and the staleness histogram over the
    active ones among ``worst`` (at most ``STALENESS_SAMPLE``: one scrape must stay cheap
    with a million schedules). One series per bucket, never one per schedule key."""
    by_status = GaugeMetricFamily("backbeat_sla_schedules", "Schedules with an SLA, by status now.", labels=["status"])
    by_status.add_metric(["ok"], stats.schedules - stats.paused - stats.breached)
    by_status.add_metric(["breach"], stats.breached)
    by_status.add_metric(["paused"], stats.paused)
    families: list[Metric] = [by_status]
    ratio = sla_math.overall(stats.schedules, stats.paused, stats.breach_seconds, window)
    if ratio is not None:
        families.append(
            GaugeMetricFamily(
                "backbeat_sla_compliance_ratio",
                f"Share of the last {window / 3600:g} h active SLA schedules spent within their SLA (0..1).",
                value=ratio,
            )
        )
    families.append(
        GaugeMetricFamily(
            "backbeat_sla_breach_seconds",
            f"Seconds of breach in the last {window / 3600:g} h, summed over schedules.",
            value=stats.breach_seconds,
        )
    )
    stale = [sla_math.staleness(r, now) for r in worst if not r.paused]
    buckets = [(floatToGoString(b), sum(1 for v in stale if v <= b)) for b in STALENESS_BUCKETS]  # type: ignore[no-untyped-call]  # untyped upstream
    buckets.append(("+Inf", len(stale)))
    families.append(
        HistogramMetricFamily(
            "backbeat_schedule_staleness_seconds",
            f"Staleness (seconds since the last success) of active SLA schedules, the {STALENESS_SAMPLE:,} "
            "worst at most.",
            buckets=buckets,
            sum_value=sum(stale),
        )
    )
    return families


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
        now = d.now()
        stats = await store.sla_stats(now=now, since=now - SLA_WINDOW)
        worst = await store.sla_list(limit=STALENESS_SAMPLE) if stats.schedules else []
        families += sla_families(stats, worst, now=now, window=SLA_WINDOW)
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
