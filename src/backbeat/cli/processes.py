"""``backbeat worker`` and ``backbeat run``: the long-running processes."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import click

from backbeat.app import App
from backbeat.autopilot import Scaler
from backbeat.cli.loader import load_app
from backbeat.cli.logs import log_options, setup_logging
from backbeat.cli.main import cli, url_option
from backbeat.config import WorkerSettings
from backbeat.errors import ConfigError
from backbeat.runtime.autopilot import Autopilot, scaler
from backbeat.runtime.consumer import Consumer
from backbeat.runtime.scheduler import Scheduler
from backbeat.runtime.supervisor import Supervisor, worker_argv
from backbeat.runtime.worker import Worker

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
source_option = click.option(
    "--source",
    "sources",
    multiple=True,
    metavar="URL",
    help="Also consume events from this broker: amqp://... (RabbitMQ) or nats://... (NATS JetStream); "
    "repeatable. The store's own events are always consumed.",
)


def worker_options(fn: Any) -> Any:
    options: list[Callable[[Any], Any]] = [
        click.option(
            "--queues",
            "-q",
            multiple=True,
            metavar="NAMES",
            help="Queues to take jobs from, comma-separated or repeated (default: every queue "
            "the app's tasks name, and 'default').",
        ),
        click.option(
            "--concurrency",
            "-c",
            type=click.IntRange(min=1),
            default=None,
            help="Job slots per process: async tasks on the loop, sync tasks in threads (default 10).",
        ),
        click.option(
            "--lease",
            type=click.FloatRange(min=0.1),
            default=None,
            help="Seconds a job stays claimed without a heartbeat (default 30).",
        ),
        click.option(
            "--shutdown-grace",
            type=click.FloatRange(min=0),
            default=None,
            help="On SIGTERM, seconds running jobs get to finish (default 30).",
        ),
        click.option(
            "--metrics-port",
            type=click.IntRange(1, 65535),
            default=None,
            help="Serve Prometheus metrics (job counters, run time) on this port.",
        ),
        click.option("--metrics-host", default="127.0.0.1", show_default=True, help="Address for --metrics-port."),
        log_options,
        url_option,
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def start_metrics(port: int | None, host: str, *, multiprocess_dir: str | None = None) -> None:
    if port is None:
        return
    try:
        from backbeat.metrics import serve
    except ImportError:  # pragma: no cover - prometheus-client is part of backbeat[web]
        raise ConfigError("--metrics-port needs prometheus-client: pip install 'backbeat[web]'") from None
    try:
        serve(port, host, multiprocess_dir=multiprocess_dir)
    except OSError as exc:
        raise ConfigError(f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}") from None
    logging.getLogger("backbeat.metrics").info("Prometheus metrics on http://%s:%d/metrics", host, port)


def multiprocess_metrics_dir() -> tuple[str, bool]:
    """The directory ``backbeat run``'s workers write their metrics to, and whether it is
    ours to delete. A directory given in $PROMETHEUS_MULTIPROC_DIR (so a dashboard on this
    machine can read it too) is emptied of old files first, as prometheus-client requires."""
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        os.makedirs(given, exist_ok=True)
        for name in os.listdir(given):
            if name.endswith(".db"):
                os.remove(os.path.join(given, name))
        return given, False
    path = tempfile.mkdtemp(prefix="backbeat-metrics-")
    os.environ[MULTIPROC_ENV] = path  # before any worker starts: they inherit it
    return path, True


def worker_settings(
    app: App, queues: tuple[str, ...], concurrency: int | None, lease: float | None, shutdown_grace: float | None
) -> WorkerSettings:
    names = tuple(q.strip() for group in queues for q in group.split(",") if q.strip())
    if not names:
        names = tuple(sorted({t.info.queue for t in app.tasks.values()} | set(app.settings.worker.queues)))
    changes: dict[str, Any] = {"queues": names}
    if concurrency is not None:
        changes["concurrency"] = concurrency
    if lease is not None:
        changes["lease"] = lease
        if app.settings.worker.heartbeat is not None and app.settings.worker.heartbeat >= lease:
            changes["heartbeat"] = None
    if shutdown_grace is not None:
        changes["shutdown_grace"] = shutdown_grace
    try:
        return replace(app.settings.worker, **changes)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(str(exc)) from None


@cli.command()
@click.argument("app_ref", metavar="APP")
@worker_options
@click.option("--burst", is_flag=True, help="Exit once no job is due and none is running.")
def worker(
    app_ref: str,
    queues: tuple[str, ...],
    concurrency: int | None,
    lease: float | None,
    shutdown_grace: float | None,
    metrics_port: int | None,
    metrics_host: str,
    log_level: str,
    log_format: str,
    url: str | None,
    burst: bool,
) -> None:
    """Run one worker process for APP (module:attribute)."""
    setup_logging(log_level, log_format)
    app = load_app(app_ref, url)
    start_metrics(metrics_port, metrics_host)
    runner = Worker(app, worker_settings(app, queues, concurrency, lease, shutdown_grace), burst=burst)
    asyncio.run(_serve(app, runner))
    if runner.recycle_requested:
        logging.getLogger("backbeat.worker").info("re-executing this worker process")
        os.execv(sys.executable, [sys.executable, "-m", "backbeat", *sys.argv[1:]])


async def _serve(app: App, runner: Worker) -> None:
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if runner.stopping:
            logging.getLogger("backbeat.worker").warning("second signal: handing back running jobs now")
        runner.stop(hard=runner.stopping)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    try:
        await runner.run()
    finally:
        await app.aclose()


@cli.command("run")
@click.argument("app_ref", metavar="APP")
@click.option(
    "--workers",
    "-w",
    default="1",
    show_default=True,
    metavar="N|auto",
    help="Worker processes, or 'auto': the autopilot sizes them to the load (within --min/--max-workers).",
)
@click.option("--min-workers", type=click.IntRange(min=1), default=1, show_default=True, help="With --workers auto.")
@click.option(
    "--max-workers", type=click.IntRange(min=1), default=None, help="With --workers auto (default: 4 x CPUs)."
)
@source_option
@worker_options
def run_cmd(
    app_ref: str,
    workers: str,
    min_workers: int,
    max_workers: int | None,
    sources: tuple[str, ...],
    queues: tuple[str, ...],
    concurrency: int | None,
    lease: float | None,
    shutdown_grace: float | None,
    metrics_port: int | None,
    metrics_host: str,
    log_level: str,
    log_format: str,
    url: str | None,
) -> None:
    """Run everything for APP in one command: worker processes (kept alive), a scheduler and
    the event consumers."""
    setup_logging(log_level, log_format)
    app = load_app(app_ref, url)  # fail here, once, if APP does not load
    slots = worker_settings(app, queues, concurrency, lease, shutdown_grace).concurrency
    pilot, start = _scaler(app, workers, min_workers, max_workers, slots)
    consumer = Consumer(app, sources)
    argv = worker_argv(
        app_ref,
        log_level=log_level,
        log_format=log_format,
        url=url,
        concurrency=concurrency,
        lease=lease,
        shutdown_grace=shutdown_grace,
    )
    for group in queues:
        argv += ["--queues", group]
    metrics_dir, owned = multiprocess_metrics_dir() if metrics_port is not None else (None, False)
    try:
        start_metrics(metrics_port, metrics_host, multiprocess_dir=metrics_dir)
        logging.getLogger("backbeat.run").info(
            "running %s with %s worker process(es), a scheduler, event consumers and the autopilot",
            app_ref,
            f"{start} (auto: {pilot.minimum}..{pilot.maximum})" if workers == "auto" else start,
        )
        supervisor = Supervisor(argv, start)
        autopilot = Autopilot(app, scaler=pilot, resize=supervisor.resize if workers == "auto" else None)
        code = asyncio.run(_run_all(app, supervisor, consumer, autopilot))
    finally:
        if owned and metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    sys.exit(code)


def _scaler(app: App, workers: str, minimum: int, maximum: int | None, slots: int) -> tuple[Scaler, int]:
    """The autopilot's scaler for ``--workers`` and the count to start with."""
    if workers == "auto":
        top = maximum if maximum is not None else 4 * (os.cpu_count() or 1)
        if top < minimum:
            raise ConfigError(f"--max-workers {top} is below --min-workers {minimum}")
        return scaler(app, minimum=minimum, maximum=top, concurrency=slots), minimum
    if not workers.isdigit() or int(workers) < 1:
        raise ConfigError(f"--workers must be a number >= 1 or 'auto', got {workers!r}")
    if maximum is not None or minimum != 1:
        raise ConfigError("--min-workers and --max-workers go with --workers auto")
    return scaler(app, minimum=int(workers), maximum=int(workers), concurrency=slots), int(workers)


async def _run_all(app: App, supervisor: Supervisor, consumer: Consumer, autopilot: Autopilot) -> int:
    """The supervisor of the worker processes, a scheduler, the event consumer and the
    autopilot, in this process, until a signal."""
    scheduler = Scheduler(app)
    loop = asyncio.get_running_loop()
    parts: list[Scheduler | Consumer | Autopilot] = [scheduler, consumer, autopilot]

    def on_signal() -> None:
        supervisor.stop()
        for part in parts:
            part.stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    helpers = [asyncio.create_task(part.run()) for part in parts]
    try:
        code = await supervisor.run()
        for part in parts:
            part.stop()
        await asyncio.gather(*helpers)
    finally:
        await app.aclose()
    return code


@cli.command()
@click.argument("app_ref", metavar="APP")
@source_option
@log_options
@url_option
def scheduler(app_ref: str, sources: tuple[str, ...], log_level: str, log_format: str, url: str | None) -> None:
    """Run a scheduler and the event consumers for APP: sync its declared schedules, fire
    due ones, turn events into handler jobs. Run as many as you like (on several
    machines): each occurrence fires once, each event is handled once."""
    setup_logging(log_level, log_format)
    app = load_app(app_ref, url)
    wanted = scaler(app, minimum=1, maximum=100_000, concurrency=app.settings.worker.concurrency)
    asyncio.run(_schedule(app, [Scheduler(app), Consumer(app, sources), Autopilot(app, scaler=wanted)]))


async def _schedule(app: App, parts: list[Scheduler | Consumer | Autopilot]) -> None:
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        for part in parts:
            part.stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    try:
        await asyncio.gather(*(part.run() for part in parts))
    finally:
        await app.aclose()
