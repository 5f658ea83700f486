"""Helpers for testing an application's own jobs, without a worker process.

    from backbeat import App, ManualClock
    from backbeat.testing import run_until_idle, eager

    clock = ManualClock()
    app = App("memory://", clock=clock)          # or a SQLite file in a temp dir
    job = send_email.enqueue(user_id=1, delay=90)
    run_until_idle(app)                           # runs what is due now: nothing yet
    clock.advance(90)
    run_until_idle(app)                           # runs it, with retries as configured
    assert job.result() is None

Schedules too: ``run_for(app, 3600)`` fires schedules and runs jobs through an hour of
the manual clock, jumping from one due time to the next (jobs take no clock time).

Jobs run through the real executor (JSON round trip, retries, timeouts), so a test sees
what production will. ``backbeat.testing.conformance`` is the store conformance suite.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from backbeat.app import App
from backbeat.clock import ManualClock

__all__ = ["ManualClock", "arun_for", "arun_until_idle", "eager", "run_for", "run_until_idle"]


async def arun_until_idle(app: App, *, advance: bool = False) -> int:
    """Run every due job of ``app``'s tasks in this process; return the attempts run.

    With ``advance=True`` and a ``ManualClock``, the clock then jumps to each delayed job
    (and retry) in turn until none is left, so a test can run a whole backoff sequence.
    """
    total = 0
    while True:
        total += await app.arun_until_idle()
        if not advance:
            return total
        if not isinstance(app.clock, ManualClock):
            raise TypeError("advance=True needs an App built with clock=ManualClock()")
        store = await app.client.astore()
        queues = sorted({t.info.queue for t in app.tasks.values()} | set(app.settings.worker.queues))
        due = await store.job_next_due(queues)
        if due is None:
            return total
        app.clock.set(max(due, app.clock.now()))


async def arun_for(app: App, seconds: float) -> int:
    """Fire schedules and run jobs for ``seconds`` of ``app``'s ``ManualClock``, stepping
    to each time something is due; return the attempts run. Declared schedules are synced
    first, as a scheduler does at start."""
    from backbeat.runtime.scheduler import Scheduler

    clock = app.clock
    if not isinstance(clock, ManualClock):
        raise TypeError("run_for needs an App built with clock=ManualClock()")
    end = clock.now() + seconds
    scheduler = Scheduler(app)
    await app.schedules.async_declared()
    store = await app.client.astore()
    queues = sorted({t.info.queue for t in app.tasks.values()} | set(app.settings.worker.queues))
    total = 0
    while True:
        while True:  # everything due at this instant, including what it enqueues
            fired = await scheduler.tick(store)
            ran = await app.arun_until_idle()
            total += ran
            if not fired and not ran:
                break
        await scheduler.watch_sla(store)  # breaches are opened (and hooks called) at the instants visited
        now = clock.now()
        ahead = [t for t in (await store.job_next_due(queues), await store.schedule_next_due()) if t and t > now]
        if not ahead or min(ahead) > end:
            clock.set(max(end, now))
            return total
        clock.set(min(ahead))


def run_for(app: App, seconds: float) -> int:
    """The sync form of ``arun_for``."""
    return app.client.sync(arun_for, app, seconds)


def run_until_idle(app: App, *, advance: bool = False) -> int:
    """The sync form of ``arun_until_idle``."""
    return app.client.sync(arun_until_idle, app, advance=advance)


@contextmanager
def eager(app: App) -> Iterator[App]:
    """Within the block, each ``enqueue`` of the app runs its job (and any it enqueues)
    before returning. Delayed jobs still wait for their time."""
    previous, app.eager = app.eager, True
    try:
        yield app
    finally:
        app.eager = previous
