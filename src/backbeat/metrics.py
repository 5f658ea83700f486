"""Job metrics, counted in the process where each thing happens (Prometheus).

Counters and histograms live in prometheus-client's default registry of the process that
does the work: an enqueue is counted by the process that enqueues (``Client.asubmit``),
an attempt by the worker that ran it (``Worker._finish``). How they reach a scrape
(docs/dashboard.md has the whole story):

* ``backbeat worker --metrics-port N`` serves its own process's registry on port N;
* ``backbeat run --metrics-port N`` runs its workers in prometheus-client's multiprocess
  mode (each writes to files under ``PROMETHEUS_MULTIPROC_DIR``) and serves their sum on N;
* ``backbeat dashboard`` given the same ``PROMETHEUS_MULTIPROC_DIR`` adds that sum to its
  ``/metrics``, beside the gauges it reads from the store.

Counting in the store instead would give one cluster-wide scrape, but would put a write
on every job's hot path in every store; counting in process memory costs about a
microsecond per job and is how Prometheus expects short-lived work to be counted.

Labels are ``queue`` and ``task`` (and ``limiter``, a rate limit's declared name). All come
from code (task declarations, queue names), so the number of series stays bounded; job
ids, arguments and errors are never labels. Without prometheus-client installed
(``pip install 'backbeat[web]'``) every hook is a no-op.

The one process-wide instance (``job_metrics()``) is deliberate: a Prometheus registry is
per process by design (multiprocess mode even names its files by pid), so a second
instance would register the same names twice.

Internal module; the metric names are the interface.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from backbeat.types import JobOutcome, JobRecord, Outcome

if TYPE_CHECKING:
    from prometheus_client import Counter, Histogram

LABELS = ("queue", "task")
SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
"""Histogram buckets for run time and pickup latency: 5 ms to an hour (jobs run that long)."""
WAIT_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
"""Histogram buckets for rate-limit waits: 100 ms to an hour."""


class JobMetrics(Protocol):
    def enqueued(self, queue: str, task: str) -> None:
        """A job was written (not counted when its dedup key found a live job)."""

    def attempt_ended(self, job: JobRecord, outcome: JobOutcome | None, *, began: float, ended: float) -> None:
        """An attempt of ``job`` (claimed with ``job.run_at`` as its due time) ran from
        ``began`` to ``ended`` and ended with ``outcome`` (``None``: its lease was lost)."""

    def rate_limit_wait(self, limiter: str, seconds: float) -> None:
        """A job was held back ``seconds`` by the rate limit ``limiter`` (its declared name,
        or ``task:<name>`` when the task raised ``RateLimited`` without one)."""

    def breach_started(self) -> None:
        """A schedule's SLA breach opened (counted once, by the scheduler that opened it)."""


class NoMetrics:
    def enqueued(self, queue: str, task: str) -> None:
        pass

    def attempt_ended(self, job: JobRecord, outcome: JobOutcome | None, *, began: float, ended: float) -> None:
        pass

    def rate_limit_wait(self, limiter: str, seconds: float) -> None:
        pass

    def breach_started(self) -> None:
        pass


@dataclass(frozen=True, slots=True)
class _Series:
    """The labelled children of every metric for one (queue, task): looked up once, so a
    job costs a dict lookup and a few increments."""

    enqueued: Any
    succeeded: Any
    failed: Any
    retried: Any
    dead: Any
    rate_limited: Any
    cancelled: Any
    run_seconds: Any
    pickup_seconds: Any


class PrometheusJobMetrics:
    def __init__(self) -> None:
        from prometheus_client import Counter, Histogram

        def counter(name: str, doc: str) -> Counter:
            return Counter(name, doc, LABELS)

        def histogram(name: str, doc: str) -> Histogram:
            return Histogram(name, doc, LABELS, buckets=SECONDS_BUCKETS)

        self._metrics = (
            counter("backbeat_jobs_enqueued_total", "Jobs enqueued by this process."),
            counter("backbeat_jobs_succeeded_total", "Attempts that succeeded."),
            counter("backbeat_jobs_failed_total", "Attempts that failed (retried or dead)."),
            counter("backbeat_jobs_retried_total", "Failed attempts that were scheduled to run again."),
            counter("backbeat_jobs_dead_total", "Failed attempts that left the job dead (retries exhausted)."),
            counter("backbeat_jobs_rate_limited_total", "Attempts held back by RateLimited (not failures)."),
            counter("backbeat_jobs_cancelled_total", "Attempts stopped by a cancel."),
            histogram("backbeat_job_run_seconds", "Run time of attempts that succeeded or failed."),
            histogram("backbeat_job_pickup_latency_seconds", "From a job's due time to the start of its attempt."),
        )
        self._series: dict[tuple[str, str], _Series] = {}
        self._lock = threading.Lock()
        self._waits = Histogram(
            "backbeat_rate_limit_wait_seconds",
            "How long rate limits held jobs back (until their bucket allowed a start).",
            ["limiter"],
            buckets=WAIT_BUCKETS,
        )
        self._breaches = Counter("backbeat_sla_breaches_total", "SLA breaches opened (by the schedulers).")

    def _for(self, queue: str, task: str) -> _Series:
        series = self._series.get((queue, task))
        if series is None:
            with self._lock:
                series = _Series(*(m.labels(queue, task) for m in self._metrics))
                self._series[(queue, task)] = series
        return series

    def enqueued(self, queue: str, task: str) -> None:
        self._for(queue, task).enqueued.inc()

    def attempt_ended(self, job: JobRecord, outcome: JobOutcome | None, *, began: float, ended: float) -> None:
        if outcome is None or outcome.outcome is Outcome.RELEASED:
            return  # the lease was lost, or the job was handed back: not an attempt that ended
        series = self._for(job.queue, job.task)
        series.pickup_seconds.observe(max(0.0, began - job.run_at))
        match outcome.outcome:
            case Outcome.SUCCEEDED:
                series.succeeded.inc()
            case Outcome.FAILED:
                series.failed.inc()
                (series.retried if outcome.retry_at is not None else series.dead).inc()
            case Outcome.SNOOZED:
                series.rate_limited.inc()
            case Outcome.CANCELLED:
                series.cancelled.inc()
        if outcome.outcome in (Outcome.SUCCEEDED, Outcome.FAILED):
            series.run_seconds.observe(max(0.0, ended - began))

    def rate_limit_wait(self, limiter: str, seconds: float) -> None:
        self._waits.labels(limiter).observe(max(0.0, seconds))

    def breach_started(self) -> None:
        self._breaches.inc()


_instance: JobMetrics | None = None
_instance_lock = threading.Lock()


def job_metrics() -> JobMetrics:
    """This process's job metrics: Prometheus when prometheus-client is installed."""
    global _instance
    if _instance is None:
        with _instance_lock:
            if _instance is None:
                try:
                    _instance = PrometheusJobMetrics()
                except ImportError:
                    _instance = NoMetrics()
    return _instance


def serve(port: int, host: str, *, multiprocess_dir: str | None = None) -> None:
    """Serve ``/metrics`` on ``host:port`` from a daemon thread: this process's registry,
    or the sum of every process writing to ``multiprocess_dir``."""
    from prometheus_client import REGISTRY, CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = REGISTRY
    if multiprocess_dir is not None:
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=multiprocess_dir)  # type: ignore[no-untyped-call]  # untyped upstream
    start_http_server(port, addr=host, registry=registry)
