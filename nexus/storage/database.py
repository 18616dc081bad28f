"""Driver-level transactions for the statements that run per work item.

SQLAlchemy's per-statement and per-transaction cost (pool checkout, events, result wrapping)
is several times the cost of a claim itself on SQLite, so the queue's hot statements run on
plain DB-API connections: one per thread, opened through the engine (so every per-connection
setting of :mod:`nexus.storage.engine` applies) and then detached from its pool.

:meth:`Database.transaction` runs a function in one write transaction — SQLite
``BEGIN IMMEDIATE`` (the write lock up front), PostgreSQL the driver's implicit transaction —
retries it on PostgreSQL deadlocks and serialisation failures, and turns every driver error
into a :class:`~nexus.errors.NexusDatabaseError` (a write to a read-only database: its subclass
:class:`~nexus.errors.ReadOnlyDatabaseError`; a connection that cannot be opened:
:class:`~nexus.errors.NexusConnectionError`). A connection that broke (a terminated
backend, a restarted server) is thrown away, so the next call opens a new one.

:func:`retrying` is the one deadlock/serialisation retry loop: :meth:`Database.transaction`
and the store's SQLAlchemy write transactions both run through it. What differs between the
databases (transaction control, connection set-up, value shapes) is the backend's
(:mod:`nexus.storage.backends`).
"""

from __future__ import annotations

import contextlib
import random
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import psycopg
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import StaticPool

from nexus.errors import NexusDatabaseError, NexusError, ReadOnlyDatabaseError
from nexus.storage.backends import backend_for
from nexus.storage.engine import connection_error, display_url, is_read_only_error
from nexus.storage.types import parse_timestamp, to_utc

T = TypeVar("T")

#: PostgreSQL errors worth retrying the whole transaction for: deadlock, serialisation.
RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})
WRITE_ATTEMPTS = 5
#: Every driver error either path can raise (SQLAlchemy wraps the driver's in DBAPIError).
DRIVER_ERRORS = (psycopg.Error, sqlite3.Error, DBAPIError)


def sqlstate_of(exc: BaseException) -> str | None:
    """The SQLSTATE of a driver error, raw or wrapped by SQLAlchemy (None for SQLite)."""
    if isinstance(exc, DBAPIError):
        return getattr(exc.orig, "sqlstate", None)
    return getattr(exc, "sqlstate", None)


def retrying(attempt: Callable[[], T], error: Callable[[BaseException], Exception]) -> T:
    """Run ``attempt()`` (one whole transaction) up to WRITE_ATTEMPTS times while it fails
    with a PostgreSQL deadlock or serialisation failure; any other driver error, or the
    last retryable one, is raised as ``error(exc)``."""
    for attempt_number in range(WRITE_ATTEMPTS):
        try:
            return attempt()
        except DRIVER_ERRORS as exc:
            if sqlstate_of(exc) in RETRYABLE_SQLSTATES and attempt_number + 1 < WRITE_ATTEMPTS:
                time.sleep(random.uniform(0.001, 0.01) * (attempt_number + 1))
                continue
            raise error(exc) from exc
    raise AssertionError("unreachable")  # pragma: no cover


class Database:
    """The engine plus per-thread driver connections, for one store."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        #: What differs between the databases below the layers above.
        self.backend = backend_for(self.dialect)
        self._local = threading.local()
        self._open: list[tuple[weakref.ref[threading.Thread], Any]] = []
        self._lock = threading.Lock()
        self._closed = False
        #: Called with (sql, parameters) for every statement sent at driver level, when set.
        self.tracer: Callable[[str, Any], None] | None = None
        #: The tenant each transaction declares first (``nexus.tenant_id``), set by the store
        #: when the database has row-level security on; None sends nothing.
        self.tenant_setting: str | None = None

    # ------------------------------------------------------------------ values

    def timestamp(self, moment: datetime) -> Any:
        """A datetime as this dialect's driver binds it (SQLite: sortable UTC text)."""
        return self.backend.timestamp(moment)

    @staticmethod
    def read_timestamp(value: Any) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            return parse_timestamp(value)
        return to_utc(value)

    # ------------------------------------------------------------------ connections

    def _connection(self) -> Any:
        conn: Any = getattr(self._local, "conn", None)
        if conn is None:
            if self._closed:
                raise NexusError("the store is closed")
            pooled = self.engine.raw_connection()
            if isinstance(self.engine.pool, StaticPool):
                # An in-memory SQLite database lives in its one shared connection.
                conn = pooled.driver_connection
                self._local.conn = conn
                return conn
            conn = pooled.driver_connection
            pooled.detach()
            self.backend.prepare(conn)
            self._local.conn = conn
            with self._lock:
                # Connections of threads that have ended are closed here, so a process that
                # keeps starting threads does not keep their connections.
                alive = []
                for thread, other in self._open:
                    owner = thread()
                    if owner is None or not owner.is_alive():
                        with contextlib.suppress(Exception):
                            other.close()
                    else:
                        alive.append((thread, other))
                alive.append((weakref.ref(threading.current_thread()), conn))
                self._open = alive
        return conn

    def _discard(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is None:
            return
        with self._lock:
            self._open = [(t, c) for t, c in self._open if c is not conn]
        with contextlib.suppress(Exception):  # closing a broken connection
            conn.close()

    def transaction(self, work: Callable[[Any], T], *, write: bool = True) -> T:
        """Run ``work(cursor)`` in one transaction on this thread's driver connection
        (retried as a whole, see :func:`retrying`)."""
        return retrying(lambda: self._attempt(work, write), self._database_error)

    def _attempt(self, work: Callable[[Any], T], write: bool) -> T:
        try:
            conn = self._connection()
        except DRIVER_ERRORS as exc:
            # The server is away (a restart), or the connection died during the driver's
            # first-connect set-up: as retryable as a write that failed.
            raise connection_error(exc, self.engine.url) from exc
        cursor = conn.cursor()
        if self.tracer is not None:
            cursor = _TracingCursor(cursor, self.tracer)
        try:
            try:
                return self.backend.run(conn, cursor, work, write, self.tenant_setting)
            finally:
                cursor.close()
        except self.backend.errors:
            if self.backend.is_broken(conn):
                self._discard()
            raise

    def _database_error(self, exc: BaseException) -> NexusDatabaseError:
        if is_read_only_error(exc):
            return ReadOnlyDatabaseError(display_url(self.engine.url), str(exc).strip())
        return NexusDatabaseError(f"database write failed: {exc}")

    def close(self) -> None:
        self._closed = True
        with self._lock:
            open_connections, self._open = self._open, []
        for _thread, conn in open_connections:
            # Another thread's SQLite connection refuses to be closed from here; the
            # garbage collector closes it then.
            with contextlib.suppress(Exception):
                conn.close()
        self._local = threading.local()


class _TracingCursor:
    """A driver cursor that reports each statement to a tracer (statement-budget tests)."""

    def __init__(self, cursor: Any, tracer: Callable[[str, Any], None]) -> None:
        self._cursor = cursor
        self._tracer = tracer

    def execute(self, sql: str, params: Any = None) -> Any:
        self._tracer(sql, params)
        return (
            self._cursor.execute(sql, params) if params is not None else self._cursor.execute(sql)
        )

    def executemany(self, sql: str, params: Any) -> Any:
        self._tracer(sql, params)
        return self._cursor.executemany(sql, params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cursor, name)
