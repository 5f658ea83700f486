"""The catcher: a thread that receives the jobs the store hands a parked worker, and
runs one itself when the worker is idle.

Without it a handed job crosses two threads before it starts: the event loop's wait
returns it, and a task thread takes it from the loop (the pickup of an idle worker paid
for a wake-up and a GIL hand-off there, and a tenth of the pickups a millisecond or
more). With it the thread whose wait returns the job runs it, as a task thread would;
the loop adopts the attempt (lease, heartbeats, outcome) from a callback the catcher
queues just before it starts the job, so the loop wakes while the job starts, not before.

The loop arms the catcher while it waits with a free slot and nothing prefetched, and
disarms it before it claims or starts anything, so a caught job always has a slot. Both
sides decide under one lock: the store asks ``accept`` while no other call can receive
the jobs (``Store.job_handed_wait``), so a job is either caught (the loop learns of it
before it next counts its slots), or passed to the loop (``take``: when disarmed, or
when the job is not one a thread can start alone: an async task, a rate-limited one, one
whose lease is about to expire), or left for the worker's next claim or unpark (once
closed). While it runs a job it reads nothing, so the worker does not park meanwhile
(``current``): a job enqueued then is claimed as usual.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from backbeat.runtime.executor import Attempt, TaskStop
from backbeat.types import JobRecord

if TYPE_CHECKING:
    from backbeat.runtime.threads import TaskThreads
    from backbeat.store.base import Store
    from backbeat.tasks import Task

log = logging.getLogger("backbeat.worker")
RETRY_AFTER = 1.0
"""Seconds the catcher waits after a failed wait before the next (real time: it paces a socket)."""


class Catcher:
    def __init__(
        self,
        worker_id: str,
        store: Store,
        threads: TaskThreads,
        *,
        wait: float,
        runnable: Callable[[JobRecord], Task[Any, Any] | None],
        adopt: Callable[[Attempt], None],
        take: Callable[[list[JobRecord]], None],
    ) -> None:
        self.worker_id = worker_id
        self.store = store
        self.threads = threads
        self.wait = wait
        self.runnable = runnable
        self.adopt = adopt
        self.take = take
        self.current: Attempt | None = None
        """The attempt it caught, until the loop has its outcome (the loop clears it). It
        holds a slot (before the loop adopts it too), and the thread reads nothing
        meanwhile, so the worker must not park (a job handed to it would wait)."""
        self._lock = threading.Lock()
        self._armed = False
        self._closed = threading.Event()
        self._catch: Attempt | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._main, name="backbeat-catch", daemon=True)

    # -- on the loop -------------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """The worker has parked: receive what is handed to it from now on (first call only)."""
        with self._lock:
            if self._loop is None and not self._closed.is_set():
                self._loop = loop
                self._thread.start()

    def arm(self) -> None:
        """The worker waits with a free slot and nothing prefetched: the next job handed
        to it may run here."""
        with self._lock:
            self._armed = not self._closed.is_set()

    def disarm(self) -> None:
        """The loop is about to claim or start jobs (or stop): a job received from now on
        is passed to it."""
        with self._lock:
            self._armed = False

    def close(self) -> None:
        """Receive nothing more (the worker is stopping): what is not received stays for
        ``job_unpark``. Jobs already caught or passed are in the loop's queue of callbacks."""
        with self._lock:
            self._armed = False
            self._closed.set()

    # -- on the catcher's thread -------------------------------------------------------

    def _main(self) -> None:
        failing = False
        while not self._closed.is_set():
            if self._loop is not None and self._loop.is_closed():  # the worker's loop ended without closing this
                return
            try:
                self.store.job_handed_wait(self.worker_id, self.wait, self._accept)
            except Exception as exc:  # noqa: BLE001 - the thread must outlive a failed wait
                if self._closed.is_set():
                    return
                # the loop's own store calls report an outage; say it here once per streak
                (log.debug if failing else log.warning)(
                    "waiting for jobs handed to this worker failed (%s); again in %g s", exc, RETRY_AFTER
                )
                failing = True
                self._closed.wait(RETRY_AFTER)
                continue
            failing = False
            attempt, self._catch = self._catch, None
            if attempt is not None:
                try:
                    self.threads.run(attempt, alone=True)
                except TaskStop:  # a stop that arrived after its attempt ended
                    log.debug("late stop signal ignored")

    def _accept(self, jobs: list[JobRecord]) -> bool:
        """Called by the store while no other call can receive ``jobs``."""
        with self._lock:
            assert self._loop is not None
            if self._closed.is_set() or self._loop.is_closed():
                return False
            task = self.runnable(jobs[0]) if self._armed and len(jobs) == 1 else None
            if task is None:
                self._loop.call_soon_threadsafe(self.take, jobs)
                return True
            attempt = Attempt(job=jobs[0], task=task, began=self.threads.executor.clock.now())
            self._loop.call_soon_threadsafe(self.adopt, attempt)  # raises if the loop closed: not taken
            self._armed = False
            self._catch = self.current = attempt
            return True
