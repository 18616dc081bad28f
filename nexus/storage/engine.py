"""Engine creation: URL resolution and per-connection settings.

SQLite connections run in WAL mode with ``busy_timeout``, ``synchronous=NORMAL`` and
``foreign_keys=ON`` set on every connection (pragmas are per connection). The driver's own
transaction handling is switched off so that SQLAlchemy's ``begin`` emits ``BEGIN`` for reads
and ``BEGIN IMMEDIATE`` for writes (engines created with ``execution_options(nexus_write=True)``):
a write transaction takes the write lock up front instead of failing to upgrade later.

Switching a file to WAL can fail with "database is locked" *without* waiting for the busy
timeout while other processes open the same fresh file, so the switch is retried until the
timeout instead.

Read-only databases (a SQLite ``mode=ro`` or ``immutable=1`` URI, a file the process cannot
write, a PostgreSQL session with ``default_transaction_read_only``) open for reads: the switch
to WAL is skipped when it would be a write, and a write that reaches the database is raised as
:class:`~nexus.errors.ReadOnlyDatabaseError` (a ``handle_error`` listener here for the
SQLAlchemy path; :mod:`nexus.storage.database` uses :func:`is_read_only_error` for its own).
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.pool import StaticPool

from nexus.errors import NexusConfigError, ReadOnlyDatabaseError

SQLITE_BUSY_TIMEOUT_MS = 30_000
#: SQLite's primary result code for a write to a read-only database (SQLITE_READONLY).
SQLITE_READONLY = 8
#: PostgreSQL's SQLSTATE for a write in a read-only transaction (read_only_sql_transaction).
PG_READ_ONLY_SQLSTATE = "25006"


def json_text(value: Any) -> str:
    """JSON as nexus writes it: compact, UTF-8 kept, no NaN."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def resolve_database_url(target: str | os.PathLike[str]) -> str:
    """Turn a SQLite file path or a database URL into a SQLAlchemy URL.

    ``postgresql://`` and ``postgres://`` select the psycopg 3 driver. The parent directory
    of a SQLite file is created if missing, except for a SQLite URI filename
    (``sqlite:///file:/path?mode=ro&uri=true``), which names a file that must exist.
    """
    text = os.fspath(target)
    if not text:
        raise NexusConfigError("empty database path or URL", value=target)
    if "://" not in text:
        if text == ":memory:":
            return "sqlite://"
        path = Path(text).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{path.resolve()}"
    try:
        url = sa.engine.make_url(text)
        url.port  # noqa: B018 - a port that is not a number fails here, not at connect
    except (sa.exc.ArgumentError, ValueError) as exc:
        raise NexusConfigError(f"not a database URL: {text!r}", value=target) from exc
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    elif url.get_backend_name() not in ("sqlite", "postgresql"):
        raise NexusConfigError(
            f"unsupported database {url.get_backend_name()!r}: use SQLite or PostgreSQL",
            value=target,
        )
    if (
        url.get_backend_name() == "sqlite"
        and url.database not in (None, "", ":memory:")
        and not _is_sqlite_uri(url)
    ):
        Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    return url.render_as_string(hide_password=False)


def _is_sqlite_uri(url: sa.engine.URL) -> bool:
    """Whether the driver reads the database name as a ``file:`` URI (``uri=true``)."""
    flag = url.query.get("uri", "")
    text = flag if isinstance(flag, str) else flag[-1]
    return text.lower() in ("1", "true", "yes", "on")


def is_read_only_error(exc: BaseException) -> bool:
    """Whether a driver error says the database (or the transaction) is read-only."""
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+
        if code is not None:
            return bool(code & 0xFF == SQLITE_READONLY)
        return "readonly database" in str(exc)
    return getattr(exc, "sqlstate", None) == PG_READ_ONLY_SQLSTATE


def display_url(url: str | sa.engine.URL) -> str:
    """The database as messages name it: a SQLite file's path (or ``file:`` URI) as given,
    any other URL with its password hidden."""
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database:
        return parsed.database
    return parsed.render_as_string(hide_password=True)


def _on_sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        _switch_to_wal(cursor)
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
    finally:
        cursor.close()


def _switch_to_wal(cursor: sqlite3.Cursor) -> None:
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    delay = 0.001
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if is_read_only_error(exc):
                # A read-only database keeps its journal mode; reads work in any of them.
                return
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            if time.monotonic() >= deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def _on_sqlite_begin(connection: sa.Connection) -> None:
    write = connection.get_execution_options().get("nexus_write", False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _translate_read_only(context: sa.engine.ExceptionContext) -> BaseException | None:
    if not is_read_only_error(context.original_exception):
        return None
    engine = context.engine
    where = display_url(engine.url) if engine is not None else "(unknown database)"
    return ReadOnlyDatabaseError(where, str(context.original_exception).strip())


def create_engine(url: str, **options: Any) -> Engine:
    """Create an engine for a URL produced by :func:`resolve_database_url`."""
    parsed = sa.engine.make_url(url)
    options.setdefault("json_serializer", json_text)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database in (None, "", ":memory:"):
            options.setdefault("poolclass", StaticPool)
            options.setdefault("connect_args", {"check_same_thread": False})
        engine = sa.create_engine(url, **options)
        sa.event.listen(engine, "connect", _on_sqlite_connect)
        sa.event.listen(engine, "begin", _on_sqlite_begin)
    else:
        options.setdefault("pool_pre_ping", True)
        try:
            engine = sa.create_engine(url, **options)
        except (sa.exc.NoSuchModuleError, sa.exc.ArgumentError, ImportError) as exc:
            raise NexusConfigError(f"cannot use database URL {parsed!r}: {exc}", value=url) from exc
    # Raised instead of the DBAPIError, so store writes (which wrap DBAPIErrors) pass it on.
    sa.event.listen(engine, "handle_error", _translate_read_only, retval=True)
    return engine
