"""The PostgreSQL store's plumbing: the pool, statements, the wake-up listener, migrations.

Connections are in autocommit mode: a single statement is its own transaction, and a
method that needs several takes one explicitly (``PostgresBase.tx``). On an event loop
they come from a ``psycopg_pool.AsyncConnectionPool``; a sync call running inline uses
a blocking connection of its thread's own (``SyncTx``: the same statements, run in
place). An instance belongs to the event loop that opened it (``loop_bound``), like the
pool's connections.

Statements name tables unqualified (``backbeat_jobs``); ``qualify`` prefixes them with the
store's schema once per statement text, so no connection depends on a ``search_path``
(the caller's own connection in ``job_enqueue_on`` keeps whatever it has).

Wake-ups: every transaction that makes work appear (a job enqueued, requeued or fired,
an event appended, a queue resumed) also runs ``pg_notify(channel, '')``; PostgreSQL
delivers it when, and only if, that transaction commits. One dedicated connection per
store object LISTENs on the channel (one channel per schema) from ``open`` on, so a
write committed after ``open`` returned is never missed; ``wakeup_wait`` waits for the
next delivery. If the listening connection drops, it reconnects and wakes every waiter
once (something may have been missed while it was down: a spurious wake is allowed).

Migrations (``migrations/NNNN_*.sql``) run in one transaction holding a transaction-level
advisory lock on the schema's name, so processes starting together serialise and each
step is applied once; the versions applied are rows of ``backbeat_migrations``.

Internal module.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from functools import lru_cache
from importlib import resources
from typing import Any, TypeVar

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from backbeat.errors import SchemaTooNew, StoreError
from backbeat.store.base import BLOCKING_OK, Store
from backbeat.store.postgres import PostgresOptions
from backbeat.types import Capability

log = logging.getLogger("backbeat.store.postgres")
Row = tuple[Any, ...]
T = TypeVar("T")
Params = Sequence[Any] | Mapping[str, Any]
TABLES = re.compile(
    r"\bbackbeat_(jobs|queues|workers|tasks|schedules|breaches|decisions|buckets|bucket_starts|events|state"
    r"|migrations|claim|job_counts|job_count_deltas)\b"
)
LAZY_COMMIT = "SELECT set_config('synchronous_commit', 'off', true)"
"""This transaction's commit returns before its WAL reaches the disk (see ``lazy_tx``)."""
CONNECT_TIMEOUT = 10.0
"""Seconds ``open`` waits for the server before ``StoreError``."""


@lru_cache(maxsize=1024)
def qualify(statement: str, schema: str) -> str:
    """``statement`` with every backbeat table prefixed by the quoted schema."""
    return TABLES.sub(lambda m: f'"{schema}".{m.group(0)}', statement)


def channel_of(schema: str) -> str:
    """The NOTIFY channel of a schema (at most 63 bytes, PostgreSQL's identifier limit)."""
    name = f"backbeat.{schema}"
    return name if len(name) <= 63 else "backbeat." + hashlib.sha1(schema.encode()).hexdigest()[:20]


@contextlib.contextmanager
def translated(where: str) -> Iterator[None]:
    """psycopg's errors surface as ``StoreError`` (the worker's loops retry on that).

    A cancellation requested while the block ran is re-raised if the block returned or
    failed instead: on Python 3.11 a cancellation that arrives just as an awaited
    operation completes can be lost inside the driver's waits (``asyncio.wait_for``), and
    a worker loop whose cancellation vanished never stops (seen: a worker's ack loop left
    "cancelling" forever, its ``stop`` waiting on it)."""
    task = asyncio.current_task()
    before = task.cancelling() if task is not None else 0
    try:
        yield
    except psycopg.errors.UniqueViolation as exc:
        _raise_if_cancelled(task, before)
        raise StoreError(f"PostgreSQL refused a duplicate: {exc.diag.message_primary}") from None
    except psycopg.Error as exc:
        _raise_if_cancelled(task, before)
        raise StoreError(f"PostgreSQL at {where}: {exc}") from exc
    _raise_if_cancelled(task, before)


def _raise_if_cancelled(task: asyncio.Task[Any] | None, before: int) -> None:
    if task is not None and task.cancelling() > before:
        raise asyncio.CancelledError


class Tx:
    """Statements on one connection (in the transaction it has open, if any), with the
    store's schema applied to every statement."""

    __slots__ = ("channel", "conn", "schema")

    def __init__(self, conn: psycopg.AsyncConnection[Any], schema: str, channel: str) -> None:
        self.conn = conn
        self.schema = schema
        self.channel = channel

    async def _cursor(self, statement: str, params: Params) -> psycopg.AsyncCursor[Any]:
        query = qualify(statement, self.schema)
        return await self.conn.execute(query, params)

    async def rows(self, statement: str, params: Params = ()) -> list[Row]:
        return await (await self._cursor(statement, params)).fetchall()

    async def row(self, statement: str, params: Params = ()) -> Row | None:
        return await (await self._cursor(statement, params)).fetchone()

    async def run(self, statement: str, params: Params = ()) -> int:
        return (await self._cursor(statement, params)).rowcount

    async def pipelined(self, statement: str, batch: Sequence[Params]) -> list[Row | None]:
        """``statement`` once per parameters in ``batch``, all sent before the first answer
        is read (pipeline mode); the first row of each."""
        query = qualify(statement, self.schema)
        async with self.conn.pipeline():
            cursors = [await self.conn.execute(query, params) for params in batch]
            return [await cursor.fetchone() for cursor in cursors]

    def transaction(self) -> contextlib.AbstractAsyncContextManager[Any]:
        """A transaction, or a savepoint inside the one open."""
        return self.conn.transaction()

    def pipeline(self) -> contextlib.AbstractAsyncContextManager[Any]:
        return self.conn.pipeline()

    async def notify(self) -> None:
        """Wake the store's listeners when this transaction commits."""
        await self.run("SELECT pg_notify(%s, '')", (self.channel,))


class SyncTx(Tx):
    """The same statements on a sync ``psycopg.Connection``: run right here when the caller
    is blocked on this call anyway (``BLOCKING_OK``: a sync call running inline, on the
    store's own connections or the caller's), else each in a thread (a caller's
    connection handed to an async call)."""

    __slots__ = ("sync",)

    def __init__(self, conn: psycopg.Connection[Any], schema: str, channel: str) -> None:
        self.sync = conn
        self.schema = schema
        self.channel = channel

    @staticmethod
    async def _call(fn: Callable[..., T], *args: Any) -> T:
        if BLOCKING_OK.get():
            return fn(*args)
        return await asyncio.to_thread(fn, *args)

    def _fetch(self, statement: str, params: Params, how: str) -> Any:
        cur = self.sync.execute(qualify(statement, self.schema), params)
        if how == "rows":
            return cur.fetchall()
        if how == "row":
            return cur.fetchone()
        return cur.rowcount

    def _pipelined(self, statement: str, batch: Sequence[Params]) -> list[Row | None]:
        query = qualify(statement, self.schema)
        with self.sync.pipeline():
            cursors = [self.sync.execute(query, params) for params in batch]
            return [cursor.fetchone() for cursor in cursors]

    async def rows(self, statement: str, params: Params = ()) -> list[Row]:
        result: list[Row] = await self._call(self._fetch, statement, params, "rows")
        return result

    async def row(self, statement: str, params: Params = ()) -> Row | None:
        result: Row | None = await self._call(self._fetch, statement, params, "row")
        return result

    async def run(self, statement: str, params: Params = ()) -> int:
        result: int = await self._call(self._fetch, statement, params, "run")
        return result

    async def pipelined(self, statement: str, batch: Sequence[Params]) -> list[Row | None]:
        return await self._call(self._pipelined, statement, batch)

    def transaction(self) -> contextlib.AbstractAsyncContextManager[Any]:
        return self._entered(self.sync.transaction())

    def pipeline(self) -> contextlib.AbstractAsyncContextManager[Any]:
        return self._entered(self.sync.pipeline())

    @contextlib.asynccontextmanager
    async def _entered(self, manager: contextlib.AbstractContextManager[Any]) -> AsyncIterator[Any]:
        """A sync context manager entered and left as ``_call`` runs statements."""
        entered = await self._call(manager.__enter__)
        try:
            yield entered
        except BaseException as exc:
            if not await self._call(manager.__exit__, type(exc), exc, exc.__traceback__):
                raise
        else:
            await self._call(manager.__exit__, None, None, None)


class Listener:
    """One connection LISTENing on the store's channel; wakes the waiting coroutines."""

    def __init__(self, options: PostgresOptions, channel: str) -> None:
        self._options = options
        self._channel = channel
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._task: asyncio.Task[None] | None = None
        self._waiters: list[asyncio.Future[None]] = []

    async def start(self) -> None:
        self._conn = await self._listen()
        self._task = asyncio.create_task(self._run(), name="backbeat-pg-listen")

    async def _listen(self) -> psycopg.AsyncConnection[Any]:
        conn = await psycopg.AsyncConnection.connect(
            self._options.conninfo, autocommit=True, connect_timeout=int(CONNECT_TIMEOUT)
        )
        try:
            await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
        except BaseException:  # failed or cancelled (a store closed while reconnecting): not leaked
            await conn.close()
            raise
        return conn

    async def _run(self) -> None:
        backoff = 0.1
        task = asyncio.current_task()
        while True:
            _raise_if_cancelled(task, 0)  # a stop whose cancellation the driver swallowed
            try:
                if self._conn is None:
                    self._conn = await self._listen()
                    self._wake()  # writes may have been missed while the connection was down
                    backoff = 0.1
                async for _ in self._conn.notifies():
                    self._wake()
            except psycopg.Error as exc:
                log.warning("wake-up listener lost its connection (%s); reconnecting in %.1f s", exc, backoff)
                conn, self._conn = self._conn, None
                if conn is not None:
                    await conn.close()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    async def wait(self, timeout: float) -> bool:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            async with asyncio.timeout(timeout):
                await fut
        except TimeoutError:
            return False
        finally:
            if fut in self._waiters:
                self._waiters.remove(fut)
        return True

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, psycopg.Error):
                await task
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()
        self._wake()


# -- migrations ----------------------------------------------------------------------


def migrations() -> list[tuple[int, str]]:
    """(version, script) for every numbered file in ``migrations/``, in order."""
    folder = resources.files("backbeat.store.postgres") / "migrations"
    found = [
        (int(entry.name.split("_", 1)[0]), entry.read_text())
        for entry in folder.iterdir()
        if entry.name.endswith(".sql")
    ]
    return sorted(found)


NEWEST = migrations()[-1][0]


def _too_new(current: int, where: str) -> SchemaTooNew:
    return SchemaTooNew(
        f"PostgreSQL store {where} has backbeat schema version {current}, but this backbeat knows only up to "
        f"{NEWEST}: a newer backbeat migrated it; upgrade backbeat on this machine"
    )


async def schema_version(conn: psycopg.AsyncConnection[Any], schema: str) -> int | None:
    """The schema version applied, or None where backbeat never migrated."""
    row = await (
        await conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f'"{schema}".backbeat_migrations',))
    ).fetchone()
    if row is None or not row[0]:
        return None
    query = qualify("SELECT COALESCE(MAX(version), 0) FROM backbeat_migrations", schema)
    found = await (await conn.execute(query)).fetchone()
    return int(found[0]) if found else 0


async def migrate(conn: psycopg.AsyncConnection[Any], schema: str, where: str) -> int:
    """Bring the schema to the newest version; safe when many processes start at once."""
    current = await schema_version(conn, schema)
    if current is not None and current > NEWEST:
        raise _too_new(current, where)
    if current == NEWEST:
        return NEWEST
    conn.add_notice_handler(_log_warning)
    try:
        async with conn.transaction():
            # one migrator per schema at a time; the lock ends with this transaction
            await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"backbeat.migrate.{schema}",))
            await _migrate_locked(conn, schema, where)
    finally:
        conn.remove_notice_handler(_log_warning)
    return NEWEST


def _log_warning(diagnostic: psycopg.errors.Diagnostic) -> None:
    """A migration's server-side warning (e.g. an index it could not make) in our log."""
    if diagnostic.severity_nonlocalized == "WARNING":
        log.warning("%s", diagnostic.message_primary)


async def _migrate_locked(conn: psycopg.AsyncConnection[Any], schema: str, where: str) -> None:
    # CREATE SCHEMA needs CREATE on the database even when the schema exists: a schema made
    # beforehand by an administrator lets a role without that right migrate into it
    found = await (await conn.execute("SELECT to_regnamespace(%s) IS NOT NULL", (f'"{schema}"',))).fetchone()
    if not (found and found[0]):
        await conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
    await conn.execute("SELECT set_config('search_path', %s, true)", (f'"{schema}"',))
    await conn.execute(
        "CREATE TABLE IF NOT EXISTS backbeat_migrations (version integer PRIMARY KEY, "
        "applied_at timestamptz NOT NULL DEFAULT now())"
    )
    # re-read under the lock: another process may have migrated meanwhile
    current = await schema_version(conn, schema) or 0
    if current > NEWEST:
        raise _too_new(current, where)
    for version, script in migrations():
        if version > current:
            await conn.execute(script)
            await conn.execute("INSERT INTO backbeat_migrations (version) VALUES (%s)", (version,))


class PostgresBase(Store):
    """The connections, the listener and migrations, shared by the store's method groups.

    Two ways to the server, by caller. On an event loop (the worker, async callers): an
    ``AsyncConnectionPool`` and the ``Listener``. From a sync call running inline
    (``BLOCKING_OK``: ``task.enqueue()`` in plain code): a blocking connection of the
    calling thread's own instance (``loop_bound``: one per thread), with no hop to another
    loop or thread; a thread that has made a sync call keeps one connection open until it
    ends or the app is closed. Such an instance listens for wake-ups only from its first
    ``wakeup_wait`` on (a listening connection must be read, and a sync caller's thread
    runs no loop between calls)."""

    capabilities = frozenset({Capability.PERSISTENT, Capability.MULTI_PROCESS})
    loop_bound = True

    def __init__(self, options: PostgresOptions) -> None:
        self.options = options
        self.schema = options.schema
        self.channel = channel_of(options.schema)
        self._pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] | None = None
        self._listener: Listener | None = None
        self._opening = asyncio.Lock()
        self._idle: list[psycopg.Connection[Any]] = []
        """Blocking connections between sync calls (more than one only while calls nest)."""
        self._migrated = False

    def _unreachable(self, exc: psycopg.Error) -> StoreError:
        return StoreError(f"cannot reach PostgreSQL at {self.options.where}: {exc}")

    async def open(self) -> None:
        if BLOCKING_OK.get():  # a sync call: its connection is made when a statement needs it
            if not self._migrated:
                await self.migrate()
            return
        await self._open_pool()

    async def _open_pool(self) -> None:
        """The pool and the listener (on this instance's event loop)."""
        async with self._opening:
            if self._pool is not None:
                return
            pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] = AsyncConnectionPool(
                self.options.conninfo,
                min_size=1,
                max_size=self.options.pool_size,
                kwargs={"autocommit": True},
                open=False,
                name="backbeat",
            )
            try:
                await pool.open(wait=True, timeout=CONNECT_TIMEOUT)
                if not self._migrated:
                    await self.migrate()
                listener = Listener(self.options, self.channel)
                with translated(self.options.where):
                    await listener.start()
            except psycopg.Error as exc:
                await pool.close()
                raise self._unreachable(exc) from None
            except BaseException:
                await pool.close()
                raise
            self._pool, self._listener = pool, listener

    async def close(self) -> None:
        async with self._opening:
            pool, self._pool = self._pool, None
            listener, self._listener = self._listener, None
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
        if listener is not None:
            await listener.stop()
        if pool is not None:
            await pool.close()

    async def migrate(self) -> int:
        """Bring the schema up to date, on a connection of its own."""
        try:
            conn = await psycopg.AsyncConnection.connect(
                self.options.conninfo, autocommit=True, connect_timeout=int(CONNECT_TIMEOUT)
            )
        except psycopg.Error as exc:
            raise self._unreachable(exc) from None
        async with conn:
            with translated(self.options.where):
                version = await migrate(conn, self.schema, self.options.where)
        self._migrated = True
        return version

    async def server_time(self) -> float:
        """The server's clock (``clock_timestamp()``, to the microsecond)."""
        row = await self.row("SELECT extract(epoch FROM clock_timestamp())::float8")
        assert row is not None
        return float(row[0])

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[Tx]:
        """A connection in autocommit mode, each statement its own transaction: this
        thread's blocking one in a sync call running inline, else one from the pool."""
        if BLOCKING_OK.get():
            async with self._blocking() as db:
                yield db
        else:
            if self._pool is None:
                await self.open()
            assert self._pool is not None
            with translated(self.options.where):
                async with self._pool.connection() as conn:
                    yield Tx(conn, self.schema, self.channel)

    @contextlib.asynccontextmanager
    async def _blocking(self) -> AsyncIterator[Tx]:
        await self.open()
        if self._idle:
            conn = self._idle.pop()
        else:
            try:
                conn = psycopg.Connection.connect(
                    self.options.conninfo, autocommit=True, connect_timeout=int(CONNECT_TIMEOUT)
                )
            except psycopg.Error as exc:
                raise self._unreachable(exc) from None
        try:
            with translated(self.options.where):
                yield SyncTx(conn, self.schema, self.channel)
        finally:
            if conn.closed or conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE or self._idle:
                conn.close()  # broken, or left mid-transaction, or one is kept already
            else:
                self._idle.append(conn)

    @contextlib.asynccontextmanager
    async def tx(self) -> AsyncIterator[Tx]:
        """A connection inside one transaction (committed when the block ends)."""
        async with self.connection() as db, db.transaction():
            yield db

    @contextlib.asynccontextmanager
    async def lazy_tx(self) -> AsyncIterator[Tx]:
        """A transaction whose commit does not wait for the disk (``synchronous_commit =
        off``), its statements pipelined: for writes that only *lose* progress if the
        server crashes before it flushes them (acks), never a job. Durability rule: a
        job's existence (enqueue, fire, settle, retry) is always committed synchronously;
        what a lazy commit records can be lost only to be redone (the job runs again:
        at-least-once). A later synchronous commit flushes every earlier one with it."""
        async with self.connection() as db, db.pipeline(), db.transaction():
            await db.run(LAZY_COMMIT)
            yield db

    async def rows(self, statement: str, params: Params = ()) -> list[Row]:
        async with self.connection() as db:
            return await db.rows(statement, params)

    async def row(self, statement: str, params: Params = ()) -> Row | None:
        async with self.connection() as db:
            return await db.row(statement, params)

    async def run(self, statement: str, params: Params = ()) -> int:
        async with self.connection() as db:
            return await db.run(statement, params)

    async def wakeup_wait(self, timeout: float) -> bool:
        if self._listener is None:
            await self._open_pool()  # whoever waits needs the listener, a sync caller too
        assert self._listener is not None
        return await self._listener.wait(timeout)

    async def _check_caller(self, db: Tx, error: type[Exception]) -> None:
        """Refuse a caller's connection that does not reach this store's tables."""
        row = await db.row(
            "SELECT current_database(), to_regclass(%s) IS NOT NULL", (f'"{self.schema}".backbeat_jobs',)
        )
        assert row is not None
        wanted = self.options.database
        if not row[1] or (wanted and row[0] != wanted):
            raise error(
                f"connection= is open on database {row[0]!r}, which has no backbeat store in schema "
                f"{self.schema!r} (the store is {self.options.where}): the write must go to the store's database"
            )

    def caller_tx(self, connection: object) -> Tx | None:
        """A ``Tx`` over a caller's own psycopg connection, or None if it is not one."""
        if isinstance(connection, psycopg.AsyncConnection):
            return Tx(connection, self.schema, self.channel)
        if isinstance(connection, psycopg.Connection):
            return SyncTx(connection, self.schema, self.channel)
        return None
