"""The sync facade's engine: a background event loop that sync calls hand coroutines to.

backbeat has one implementation of everything, async. A sync method is
``portal.call(self.amethod, ...)`` and nothing else. Internal module.
"""

from __future__ import annotations

import asyncio
import atexit
import threading
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


class Portal:
    def __init__(self, name: str = "backbeat-portal") -> None:
        self._name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

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
        """Run ``fn(*args, **kwargs)`` on the portal's loop and wait for its result here."""
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
