"""SQLite plumbing: the connection thread, the change watcher, migrations.

SQLite calls block, so each store owns one thread that owns its connection; coroutines
hand it work and await the answer, and the event loop never waits on a file lock.

Wake-ups: SQLite has no notifications. ``PRAGMA data_version`` changes for a connection
whenever *another* connection commits, so a watcher thread with its own connection reads
it every ``poll_ms`` (a few microseconds each) and wakes the waiting coroutines only when
it changed. An idle worker therefore costs a sleeping thread, not a loop of queries
through the event loop, and a job enqueued by another process is seen within ``poll_ms``.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import resources
from typing import Any, TypeVar

from backbeat.errors import SchemaTooNew, StoreError

T = TypeVar("T")


@dataclass(frozen=True, kw_only=True, slots=True)
class SQLiteOptions:
    synchronous: str = "normal"
    """``normal`` (default, as Rails and Litestream use with WAL): a commit survives the
    crash or SIGKILL of any process; after an OS crash or power loss the last commits may
    roll back. ``full``: every commit is fsynced to the WAL, so it survives power loss too,
    at several times the cost per commit (see benchmarks/README.md)."""
    busy_timeout_ms: int = 10_000
    poll_ms: float = 5.0
    """How often an idle worker checks whether another process wrote."""


def connect(path: str, options: SQLiteOptions) -> sqlite3.Connection:
    try:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {int(options.busy_timeout_ms)}")
        _ensure_wal(conn, path, options.busy_timeout_ms / 1000)
        conn.execute(f"PRAGMA synchronous = {options.synchronous.upper()}")
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open SQLite file {path!r}: {exc} (does its directory exist?)") from None
    return conn


def _ensure_wal(conn: sqlite3.Connection, path: str, patience: float) -> None:
    """Switch the file to WAL once; it stays so. The switch needs a moment alone with the
    file and does not wait on the busy timeout, so retry while others hold it."""
    deadline = time.monotonic() + patience
    while True:
        try:
            mode = str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower()
            if mode != "wal":
                mode = str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]).lower()
        except sqlite3.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)
            continue
        if mode != "wal":
            raise StoreError(f"SQLite file {path!r} could not switch to WAL mode (got {mode!r})")
        return


@contextlib.contextmanager
def write_tx(conn: sqlite3.Connection) -> Iterator[None]:
    """A write transaction taken up front (BEGIN IMMEDIATE): no deadlock upgrading a read."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


class ConnectionThread:
    """One thread, one connection; ``await run(fn)`` runs ``fn(conn)`` there."""

    def __init__(
        self,
        path: str,
        options: SQLiteOptions,
        *,
        setup: Callable[[sqlite3.Connection], None] | None = None,
        name: str = "backbeat-sqlite",
    ) -> None:
        self._path = path
        self._options = options
        self._setup = setup
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._started = threading.Event()
        self._error: BaseException | None = None

    def start(self) -> None:
        self._thread.start()
        self._started.wait()
        if self._error is not None:
            raise self._error

    def _main(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            conn = connect(self._path, self._options)
            if self._setup is not None:
                self._setup(conn)
        except BaseException as exc:  # noqa: BLE001 - reported to start()
            if conn is not None:
                conn.close()
            self._error = translate(exc)
            self._started.set()
            return
        self._started.set()
        try:
            while (item := self._queue.get()) is not None:
                fn, loop, fut = item
                try:
                    result = fn(conn)
                except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine
                    _complete(loop, fut, None, translate(exc))
                else:
                    _complete(loop, fut, result, None)
        finally:
            conn.close()

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        self._queue.put((fn, loop, fut))
        return await fut

    def stop(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()


def _complete(
    loop: asyncio.AbstractEventLoop, fut: asyncio.Future[Any], result: Any, exc: BaseException | None
) -> None:
    def settle() -> None:
        if fut.done():
            return
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(result)

    if not loop.is_closed():
        loop.call_soon_threadsafe(settle)


def translate(exc: BaseException) -> BaseException:
    if isinstance(exc, sqlite3.OperationalError):
        return StoreError(f"SQLite: {exc}")
    if isinstance(exc, sqlite3.IntegrityError):
        return StoreError(f"SQLite integrity error: {exc}")
    return exc


class ChangeWatcher:
    """Polls ``PRAGMA data_version`` on its own connection while anyone waits."""

    def __init__(self, path: str, options: SQLiteOptions) -> None:
        self._path = path
        self._options = options
        self._lock = threading.Lock()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._wanted = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None

    async def wait(self, timeout: float) -> bool:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if self._thread is None:
                # the baseline version is read before the first wait begins, so a commit
                # made after wait() was called is never mistaken for the baseline
                ready = threading.Event()
                self._thread = threading.Thread(
                    target=self._main, args=(ready,), name="backbeat-sqlite-watch", daemon=True
                )
                self._thread.start()
                ready.wait()
            self._waiters.append((loop, fut))
            self._wanted.set()
        try:
            async with asyncio.timeout(timeout):
                await fut
        except TimeoutError:
            return False
        finally:
            with self._lock:
                if (loop, fut) in self._waiters:
                    self._waiters.remove((loop, fut))
        return True

    def poke(self) -> None:
        """Wake local waiters at once (a write through this process's own connection)."""
        self._wake()

    def _wake(self) -> None:
        with self._lock:
            waiters, self._waiters = self._waiters, []
            self._wanted.clear()
        for loop, fut in waiters:
            _complete(loop, fut, None, None)

    def _main(self, ready: threading.Event) -> None:
        try:
            conn = connect(self._path, self._options)
            last = conn.execute("PRAGMA data_version").fetchone()[0]
        finally:
            ready.set()  # on failure waiters only time out: wake-ups are a hint
        interval = self._options.poll_ms / 1000
        try:
            while not self._stopping:
                if not self._wanted.wait(timeout=1.0) or self._stopping:
                    continue
                version = conn.execute("PRAGMA data_version").fetchone()[0]
                if version != last:
                    last = version
                    self._wake()
                else:
                    time.sleep(interval)
        finally:
            conn.close()

    def stop(self) -> None:
        self._stopping = True
        self._wanted.set()
        if self._thread is not None:
            self._thread.join()


# -- migrations ----------------------------------------------------------------------


def migrations() -> list[tuple[int, str]]:
    """(version, script) for every numbered file in ``migrations/``, in order."""
    folder = resources.files("backbeat.store.sqlite") / "migrations"
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            found.append((int(entry.name.split("_", 1)[0]), entry.read_text()))
    return sorted(found)


def statements(script: str) -> Iterator[str]:
    """Split a script into complete statements (``sqlite3.complete_statement`` decides)."""
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            if pending.strip():
                yield pending
            pending = ""
    if pending.strip() and not all(part.strip().startswith("--") or not part.strip() for part in pending.splitlines()):
        raise StoreError(f"incomplete statement at the end of a migration: {pending[:80]!r}")


def migrate(conn: sqlite3.Connection, path: str) -> int:
    """Bring the schema to the newest version; safe when several processes start at once."""
    known = migrations()
    newest = known[-1][0] if known else 0
    current = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if current > newest:
        raise SchemaTooNew(
            f"SQLite file {path!r} has backbeat schema version {current}, but this backbeat knows only "
            f"up to {newest}: upgrade backbeat on this machine"
        )
    if current == newest:
        return current
    with write_tx(conn):
        # re-read under the write lock: another process may have migrated meanwhile
        current = conn.execute("PRAGMA user_version").fetchone()[0]
        for version, script in known:
            if version > current:
                for statement in statements(script):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {version}")
    return newest
