"""The sync facade's engine: how a sync call runs an async method to completion.

backbeat has one implementation of everything, async. A sync method is
``client.sync(self.amethod, ...)`` and nothing else (one shortcut: ``Client.submit``, a
sync enqueue, writes with no event loop where the store can); this module decides where
the coroutine runs:

* inline, on a store URL: on a private event loop of the calling thread, with
  ``BLOCKING_OK`` set so the store may do its blocking I/O right there (no thread hop;
  the caller waits anyway). A loop-bound store (Redis, PostgreSQL) gets an instance per
  such thread, closed when the thread ends;
* otherwise (a broker URL), or when the calling thread already runs a loop, on a
  background loop in a daemon thread (the portal), whose store connections stay on that
  loop.

A process forked after sync calls (a web server that imports the app, then forks its
workers) inherits its parent's connections. The child leaves them alone, never using or
closing them (closing a PostgreSQL connection would end the parent's session), and opens
its own on its first call.

Internal module.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import threading
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar

from backbeat.store.base import BLOCKING_OK

P = ParamSpec("P")
T = TypeVar("T")


class _ThreadLoop:
    """A private event loop per thread, closed when the thread's locals go (after the
    closers registered on it, e.g. a loop-bound store's connections, have run), but never
    in a forked child: there its connections are the parent's (a child drops the locals of
    the parent's other threads as it starts)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.closers: list[Callable[[], Awaitable[Any]]] = []
        self.pid = os.getpid()

    def __del__(self) -> None:
        if self.loop.is_closed() or self.pid != os.getpid():
            return
        for closer in self.closers:
            with contextlib.suppress(Exception):  # the thread is going: nothing to report to
                self.loop.run_until_complete(closer())
        self.loop.close()


_local = threading.local()
_portals: weakref.WeakSet[Portal] = weakref.WeakSet()
_inherited: list[object] = []


def keep_inherited(thing: object) -> None:
    """In a forked child: keep ``thing`` (the parent's loops, stores, connections) from the
    garbage collector for good, so nothing of it is ever closed from here."""
    _inherited.append(thing)


def _forget_parent() -> None:
    """In a forked child: start afresh, leaving what the parent opened untouched."""
    holder: _ThreadLoop | None = getattr(_local, "loop", None)
    if holder is not None:
        keep_inherited(holder)
        del _local.loop
    for portal in list(_portals):
        keep_inherited(portal._loop)
        portal._loop = portal._thread = None
        portal._lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_parent)


def close_with_thread(closer: Callable[[], Awaitable[Any]]) -> bool:
    """Run ``closer`` on the running loop when its thread ends, if it is a thread's private
    loop (a sync call running inline); False, doing nothing, on any other loop."""
    holder: _ThreadLoop | None = getattr(_local, "loop", None)
    if holder is None or not _loop_running() or asyncio.get_running_loop() is not holder.loop:
        return False
    holder.closers.append(closer)
    return True


def inline_loop() -> asyncio.AbstractEventLoop | None:
    """The private loop of this thread's sync calls (``run_inline``), if it has one and
    no event loop is running here (a sync call would run inline on it)."""
    holder: _ThreadLoop | None = getattr(_local, "loop", None)
    if holder is None or _loop_running():
        return None
    return holder.loop


def run_inline(coro: Awaitable[T]) -> T:
    holder: _ThreadLoop | None = getattr(_local, "loop", None)
    if holder is None:
        holder = _local.loop = _ThreadLoop()
    token = BLOCKING_OK.set(True)
    try:
        return holder.loop.run_until_complete(coro)
    finally:
        BLOCKING_OK.reset(token)


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class Portal:
    def __init__(self, name: str = "backbeat-portal", *, inline: bool = False) -> None:
        self.inline = inline
        """Run calls on the calling thread's own loop when it has none running."""
        self._name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        _portals.add(self)

    def _ensure(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                ready = threading.Event()
                thread = threading.Thread(target=self._main, args=(loop, ready), name=self._name, daemon=True)
                thread.start()
                ready.wait()
                self._loop, self._thread = loop, thread
                atexit.register(self.close)
            return self._loop

    @staticmethod
    def _main(loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(ready.set)
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    @property
    def started(self) -> bool:
        return self._loop is not None

    def call(self, fn: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn(*args, **kwargs)`` to completion and return its result here."""
        if self.inline and not _loop_running():
            return run_inline(fn(*args, **kwargs))
        loop = self._ensure()
        if threading.current_thread() is self._thread:
            raise RuntimeError("a sync backbeat call was made on backbeat's own event loop; await the a-method")

        async def run() -> T:
            return await fn(*args, **kwargs)

        return asyncio.run_coroutine_threadsafe(run(), loop).result()

    def close(self, cleanup: Callable[[], Awaitable[Any]] | None = None) -> None:
        """Run ``cleanup`` on the loop (if given), then stop the loop and its thread."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        if cleanup is not None and thread is not threading.current_thread():
            asyncio.run_coroutine_threadsafe(_call(cleanup), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        if thread is not threading.current_thread():
            thread.join()


async def _call(fn: Callable[[], Awaitable[Any]]) -> Any:
    return await fn()
