"""The task threads that run sync tasks, and the hand-off to and from the event loop.

The loop puts an attempt on a queue; one of ``concurrency`` threads takes it, runs it
(arguments, function, result, outcome: ``Executor.run_in_thread``) and appends the
outcome to ``done``. (The catcher's thread runs a job handed to an idle worker the same
way, ``run``: ``runtime/catcher.py``.) The loop is woken once per batch of outcomes, not once per job:
a thread schedules ``_collect`` only when none is pending. Ordering that makes this
safe: the thread appends before it checks the flag; the loop clears the flag before it
drains the deque. So an outcome is either drained by a pending collect or schedules one.

Timeouts are timers on the loop, armed when a thread begins the attempt (an attempt can
wait in the queue behind others first): at the deadline the attempt's thread gets
``TaskTimeout`` raised in it; if it is still running ``timeout_grace`` later, the attempt
is reported failed from the loop (``on_stuck``) and whatever the thread reports later is
ignored. Threads are daemons, so one stuck in C cannot keep the process alive.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import queue
import threading
from collections.abc import Callable

from backbeat.runtime.executor import Attempt, Executor, TaskStop, TaskTimeout
from backbeat.types import JobOutcome

log = logging.getLogger("backbeat.worker")

Finish = Callable[[Attempt, JobOutcome | None], None]


class TaskThreads:
    def __init__(
        self,
        count: int,
        executor: Executor,
        finish: Finish,
        on_stuck: Callable[[Attempt], None],
        timeout_grace: float,
    ) -> None:
        self.executor = executor
        self.finish = finish
        self.on_stuck = on_stuck
        self.timeout_grace = timeout_grace
        self._queue: queue.SimpleQueue[Attempt | None] = queue.SimpleQueue()
        self._done: collections.deque[tuple[Attempt, JobOutcome | None]] = collections.deque()
        self._collect_pending = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._threads = [
            threading.Thread(target=self._main, name=f"backbeat-task-{i}", daemon=True) for i in range(count)
        ]

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Let idle threads exit; a thread still in a task finishes it (or dies with the process)."""
        for _ in self._threads:
            self._queue.put(None)

    def submit(self, attempt: Attempt) -> None:
        self._queue.put(attempt)

    # -- on the task threads -----------------------------------------------------------

    def _main(self) -> None:
        while True:
            try:
                attempt = self._queue.get()
                if attempt is None:
                    return
                self.run(attempt)
            except TaskStop:  # a stop that arrived after its attempt ended: nothing to stop
                log.debug("late stop signal ignored")

    def run(self, attempt: Attempt, *, alone: bool = False) -> None:
        """Run ``attempt`` in the calling thread and report its outcome to the loop: with
        the other task threads' outcomes (one wake-up per batch), or ``alone`` in a callback
        of its own, queued after whatever this thread queued for the loop before (the
        catcher's: the loop must adopt the attempt before it hears how it ended)."""
        attempt.began = self.executor.clock.now()
        if attempt.job.timeout is not None:
            self._call_soon(self._arm_timer, attempt)
        outcome = self.executor.run_in_thread(attempt)
        if alone:
            self._call_soon(self._collect_one, attempt, outcome)
        else:
            self._deliver(attempt, outcome)

    def _deliver(self, attempt: Attempt, outcome: JobOutcome | None) -> None:
        self._done.append((attempt, outcome))
        if not self._collect_pending:
            self._collect_pending = True
            self._call_soon(self._collect)

    def _call_soon(self, fn: Callable[..., None], *args: object) -> None:
        assert self._loop is not None
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(fn, *args)

    # -- on the loop -------------------------------------------------------------------

    def _collect(self) -> None:
        self._collect_pending = False
        while self._done:
            self._collect_one(*self._done.popleft())

    def _collect_one(self, attempt: Attempt, outcome: JobOutcome | None) -> None:
        if attempt.timer is not None:
            attempt.timer.cancel()
        if not attempt.finished:
            self.finish(attempt, outcome)

    def _arm_timer(self, attempt: Attempt) -> None:
        """The attempt's thread began it: its timeout counts from then."""
        if attempt.finished or attempt.job.timeout is None:
            return
        assert self._loop is not None
        remaining = attempt.job.timeout - (self.executor.clock.now() - attempt.began)
        attempt.timer = self._loop.call_later(max(0.0, remaining), self._timed_out, attempt)

    def _timed_out(self, attempt: Attempt) -> None:
        if attempt.finished:
            return
        attempt.raise_in_thread(TaskTimeout)
        assert self._loop is not None
        attempt.timer = self._loop.call_later(self.timeout_grace, self._check_stuck, attempt)

    def _check_stuck(self, attempt: Attempt) -> None:
        if attempt.finished:
            return
        attempt.stuck = True
        self.on_stuck(attempt)
        self.finish(attempt, self.executor.timed_out(attempt))
