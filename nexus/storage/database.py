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
from nexus.storage.engine import connection_error, display_url, is_read_only_error
from nexus.storage.security import SET_TENANT_SQL
from nexus.storage.types import parse_timestamp, sqlite_timestamp, to_utc, truncate_to_ms

T = TypeVar("T")

#: PostgreSQL errors worth retrying the whole transaction for: deadlock, serialisation.
RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})
WRITE_ATTEMPTS = 5


class Database:
    """The engine plus per-thread driver connections, for one store."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self.is_postgresql = self.dialect == "postgresql"
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
        moment = to_utc(moment)
        return sqlite_timestamp(moment) if not self.is_postgresql else truncate_to_ms(moment)

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
            if self.is_postgresql:
                conn.autocommit = False
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
        """Run ``work(cursor)`` in one transaction on this thread's driver connection."""
        for attempt in range(WRITE_ATTEMPTS):
            try:
                conn = self._connection()
            except (psycopg.Error, sqlite3.Error, DBAPIError) as exc:
                # The server is away (a restart), or the connection died during the driver's
                # first-connect set-up: as retryable as a write that failed.
                raise connection_error(exc, self.engine.url) from exc
            try:
                return self._run(conn, work, write)
            except psycopg.Error as exc:
                if conn.closed or conn.broken:
                    self._discard()
                if exc.sqlstate in RETRYABLE_SQLSTATES and attempt + 1 < WRITE_ATTEMPTS:
                    time.sleep(random.uniform(0.001, 0.01) * (attempt + 1))
                    continue
                raise self._database_error(exc) from exc
            except sqlite3.Error as exc:
                raise self._database_error(exc) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _database_error(self, exc: Exception) -> NexusDatabaseError:
        if is_read_only_error(exc):
            return ReadOnlyDatabaseError(display_url(self.engine.url), str(exc).strip())
        return NexusDatabaseError(f"database write failed: {exc}")

    def _run(self, conn: Any, work: Callable[[Any], T], write: bool) -> T:
        cursor = conn.cursor()
        if self.tracer is not None:
            cursor = _TracingCursor(cursor, self.tracer)
        if self.is_postgresql:
            try:
                if self.tenant_setting is not None:
                    cursor.execute(SET_TENANT_SQL, (self.tenant_setting,))
                result = work(cursor)
                conn.commit()
                return result
            except BaseException:
                if not conn.closed:
                    conn.rollback()
                raise
            finally:
                cursor.close()
        cursor.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            result = work(cursor)
            cursor.execute("COMMIT")
            return result
        except BaseException:
            if conn.in_transaction:
                cursor.execute("ROLLBACK")
            raise
        finally:
            cursor.close()

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
