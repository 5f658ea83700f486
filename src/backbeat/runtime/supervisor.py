"""The supervisor behind ``backbeat run``: keeps N worker processes alive.

Each worker is a ``backbeat worker`` child process. A child that exits unexpectedly is
restarted after a backoff that grows while it keeps failing (so a broken deploy does not
spin). (A worker that must recycle itself re-executes in place; the supervisor does not
see it.) ``stop()`` (the CLI calls it on SIGTERM/SIGINT) passes SIGTERM on to the children, which
drain gracefully; a second ``stop()`` passes it on again (children then stop at once).
``resize(n)`` (the autopilot's ``--workers auto``) starts slots or retires the highest
ones: a retired child gets SIGTERM and drains like at shutdown, and is not restarted.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from typing import IO, Any

from backbeat.clock import Clock, SystemClock

log = logging.getLogger("backbeat.run")
HEALTHY_AFTER = 60.0
"""A child that ran this long before exiting resets the restart backoff."""


class Supervisor:
    def __init__(
        self, argv: Sequence[str], count: int, *, clock: Clock | None = None, output: IO[Any] | None = None
    ) -> None:
        self.argv = list(argv)
        self.count = count
        self.clock = clock or SystemClock()
        self.output = output
        """Where the children's stdout and stderr go (default: this process's)."""
        self.children: dict[asyncio.Task[int], asyncio.subprocess.Process] = {}
        """The child each slot's task runs now."""
        self._slots: dict[int, asyncio.Task[int]] = {}
        self._retiring: set[asyncio.Task[int]] = set()
        """Slots given up by ``resize``: their children drain and are not restarted."""
        self._stopping = asyncio.Event()
        self._signals = 0

    def stop(self) -> None:
        self._signals += 1
        self._stopping.set()
        for child in self.children.values():
            if child.returncode is None:
                child.send_signal(signal.SIGTERM)

    def resize(self, count: int) -> None:
        """Run ``count`` worker processes from now on."""
        if self._stopping.is_set() or count == self.count:
            return
        if self._slots:
            log.info("resizing from %d to %d worker process(es)", self.count, count)
            for slot in range(self.count, count):
                self._start(slot)
            for slot in range(count, self.count):
                task = self._slots.pop(slot)
                self._retiring.add(task)
                child = self.children.get(task)
                if child is not None and child.returncode is None:
                    child.send_signal(signal.SIGTERM)
        self.count = count

    def _start(self, slot: int) -> None:
        self._slots[slot] = asyncio.create_task(self._keep(slot), name=f"worker-slot-{slot}")

    async def run(self) -> int:
        for slot in range(self.count):
            self._start(slot)
        await self._stopping.wait()
        results = await asyncio.gather(*self._slots.values(), *self._retiring, return_exceptions=True)
        return 0 if all(r == 0 for r in results) else 1

    async def _keep(self, slot: int) -> int:
        """Run one worker slot until stopped; returns the last child's exit code."""
        failures = 0
        while True:
            started = self.clock.now()
            child = await asyncio.create_subprocess_exec(*self.argv, stdout=self.output, stderr=self.output)
            me = asyncio.current_task()
            assert me is not None
            self.children[me] = child
            log.info("worker %d started (pid %d)", slot, child.pid)
            if me in self._retiring or self._stopping.is_set():
                child.send_signal(signal.SIGTERM)  # resized away or stopped while it was starting
            code = await child.wait()
            if self._stopping.is_set() or me in self._retiring:
                del self.children[me]
                return 0 if code in (0, -signal.SIGTERM, -signal.SIGINT) else code
            failures = 1 if self.clock.now() - started > HEALTHY_AFTER else failures + 1
            backoff = min(30.0, 0.5 * 2 ** min(failures, 6))
            log.error("worker %d (pid %d) exited with %s; restarting in %.1f s", slot, child.pid, code, backoff)
            await self.clock.wait(self._stopping, backoff)
            if self._stopping.is_set():
                return code


def worker_argv(app_ref: str, *, log_level: str, log_format: str, **options: object) -> list[str]:
    """The command line of one ``backbeat worker`` child: ``--name value`` for each option
    that is not ``None`` (``shutdown_grace`` becomes ``--shutdown-grace``)."""
    argv = [sys.executable, "-m", "backbeat", "worker", app_ref, "--log-level", log_level, "--log-format", log_format]
    for name, value in options.items():
        if value is not None:
            argv += [f"--{name.replace('_', '-')}", str(value)]
    return argv
