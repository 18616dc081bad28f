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

A connection that cannot be opened is raised as :class:`~nexus.errors.NexusConnectionError`
(:func:`connection_error`: which database, password hidden, and why in plain words), by the
same listener for every SQLAlchemy connection and by the callers that open driver
connections themselves, so a refused port is never reported as, say, a failed migration.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import time
import urllib.parse
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.pool import StaticPool

from nexus.errors import (
    DatabaseNotFoundError,
    NexusConfigError,
    NexusConnectionError,
    ReadOnlyDatabaseError,
)

SQLITE_BUSY_TIMEOUT_MS = 30_000
#: SQLite's primary result code for a write to a read-only database (SQLITE_READONLY).
SQLITE_READONLY = 8
#: PostgreSQL's SQLSTATE for a write in a read-only transaction (read_only_sql_transaction).
PG_READ_ONLY_SQLSTATE = "25006"


def json_text(value: Any) -> str:
    """JSON as nexus writes it: compact, UTF-8 kept, no NaN."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


#: A value that starts like a URL (``scheme:/``); a one-letter scheme is a Windows drive.
_LOOKS_LIKE_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:/")
_URL_PREFIX = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
EXPECTED_FORMS = (
    "expected a SQLite file path, sqlite:///relative/path.db, sqlite:////absolute/path.db"
    " or postgresql://user[:password]@host[:port]/database"
)


def resolve_database_url(target: str | os.PathLike[str], *, create: bool = True) -> str:
    """Turn a SQLite file path or a database URL into a SQLAlchemy URL.

    ``postgresql://`` and ``postgres://`` select the psycopg 3 driver. A value that starts
    like a URL (``scheme:/``) must be one of the supported URLs, else
    :class:`~nexus.errors.NexusConfigError` with the expected forms: a mistyped URL is never
    taken for a file name.

    With ``create`` the parent directory of a SQLite file is created if missing (except for
    a SQLite URI filename, ``sqlite:///file:/path?mode=ro&uri=true``, which names a file
    that must exist). Without it nothing is created: a SQLite file that does not exist raises
    :class:`~nexus.errors.DatabaseNotFoundError` naming its path.
    """
    text = os.fspath(target)
    if not text:
        raise NexusConfigError("empty database path or URL", value=target)
    if text == ":memory:":
        return "sqlite://"
    if "://" not in text and not _LOOKS_LIKE_URL.match(text):
        path = Path(text).expanduser()
        if create:
            path.parent.mkdir(parents=True, exist_ok=True)
        elif not path.exists():
            raise DatabaseNotFoundError(str(path.resolve()), "no such file")
        return f"sqlite:///{path.resolve()}"
    if not _URL_PREFIX.match(text):
        raise NexusConfigError(f"not a database URL: {text!r}; {EXPECTED_FORMS}", value=target)
    try:
        url = sa.engine.make_url(text)
        url.port  # noqa: B018 - a port that is not a number fails here, not at connect
    except (sa.exc.ArgumentError, ValueError) as exc:
        raise NexusConfigError(
            f"not a database URL: {text!r}; {EXPECTED_FORMS}", value=target
        ) from exc
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    elif url.get_backend_name() not in ("sqlite", "postgresql"):
        raise NexusConfigError(
            f"unsupported database {url.get_backend_name()!r}: use SQLite or PostgreSQL",
            value=target,
        )
    if url.get_backend_name() == "sqlite":
        if url.host:
            # sqlite://name.db parses as a host and an in-memory database: a lost file.
            raise NexusConfigError(
                f"not a database URL: {text!r}; a SQLite URL has no host; {EXPECTED_FORMS}",
                value=target,
            )
        _check_sqlite_file(url, create)
    return url.render_as_string(hide_password=False)


def _check_sqlite_file(url: sa.engine.URL, create: bool) -> None:
    if url.database in (None, "", ":memory:"):
        return
    if not _is_sqlite_uri(url):
        path = Path(url.database).expanduser()
        if create:
            path.parent.mkdir(parents=True, exist_ok=True)
        elif not path.exists():
            raise DatabaseNotFoundError(str(path), "no such file")
        return
    mode = url.query.get("mode", "rwc")
    mode_text = mode if isinstance(mode, str) else mode[-1]
    if create or mode_text in ("ro", "rw", "memory"):
        return  # SQLite itself creates nothing in these modes
    location = urllib.parse.urlparse(url.database)
    path = Path(urllib.parse.unquote(location.path))
    if not path.exists():
        raise DatabaseNotFoundError(str(path), "no such file")


def _is_sqlite_uri(url: sa.engine.URL) -> bool:
    """Whether the driver reads the database name as a ``file:`` URI (``uri=true``)."""
    flag = url.query.get("uri", "")
    text = flag if isinstance(flag, str) else flag[-1]
    return text.lower() in ("1", "true", "yes", "on")


_PYSQLITE_ARGS = {"uri", "timeout", "isolation_level", "detect_types", "check_same_thread"}


def sqlite_file_uri(url: str | sa.engine.URL) -> str:
    """A ``file:`` URI for ``sqlite3.connect(..., uri=True)`` that opens the SQLite database
    of ``url`` the way its engine does but never creates it (``mode=rw`` unless the URL
    names a mode of its own)."""
    parsed = sa.engine.make_url(url)
    if _is_sqlite_uri(parsed):
        extra = {
            key: value for key, value in parsed.query.items() if key not in _PYSQLITE_ARGS
        }
        query = urllib.parse.urlencode(extra, doseq=True)
        return f"{parsed.database}?{query}" if query else str(parsed.database)
    path = Path(str(parsed.database)).expanduser().resolve()
    return f"file:{urllib.parse.quote(str(path))}?mode=rw"


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
    if "password" in parsed.query:  # libpq also takes it as a query parameter
        parsed = parsed.update_query_dict({"password": "HIDDEN"})
        shown = parsed.render_as_string(hide_password=True)
        return shown.replace("password=HIDDEN", "password=***")
    return parsed.render_as_string(hide_password=True)


# libpq's wording around the reason: "connection failed: connection to server at "h", port
# 5432 failed: FATAL:  <reason>" (several lines when several addresses were tried).
_PG_NOISE = re.compile(
    r"^(?:connection (?:failed|is bad): )?(?:connection to server (?:at|on) .*? failed: )?"
    r"(?:FATAL:\s+)?",
    re.DOTALL,
)
_HOST_NOT_FOUND = (
    "failed to resolve host",
    "could not translate host name",
    "name or service not known",
    "nodename nor servname",
    "name resolution",
)


def connection_error(exc: BaseException, url: str | sa.engine.URL) -> NexusConnectionError:
    """The driver's failure to open a connection to ``url``, as nexus reports it: which
    database (password hidden) and why in plain words, without the driver's boilerplate.
    The caller raises it ``from exc``."""
    original = getattr(exc, "orig", None) or exc  # a SQLAlchemy DBAPIError wraps the driver's
    parsed = sa.engine.make_url(url)
    where = display_url(parsed)
    if isinstance(original, sqlite3.Error):
        return NexusConnectionError(where, _sqlite_reason(original, parsed))
    lines = [line.strip() for line in _PG_NOISE.sub("", str(original).strip()).splitlines()]
    detail = next((line for line in lines if line), type(original).__name__)
    for secret in (parsed.password, parsed.query.get("password")):
        if isinstance(secret, str) and secret:
            detail = detail.replace(secret, "***")
    lowered = detail.lower()
    sqlstate = getattr(original, "sqlstate", None)
    if sqlstate == "3D000" or (lowered.startswith("database ") and "does not exist" in lowered):
        return DatabaseNotFoundError(
            where, f"the server has no database {parsed.database or detail!r}"
        )
    user = parsed.username or "(default)"
    if sqlstate == "28P01" or "password authentication failed" in lowered:
        reason = f"authentication failed: the server rejected the password of user {user!r}"
    elif lowered.startswith("role ") and "does not exist" in lowered:
        reason = f"authentication failed: the server has no role {user!r}"
    elif "no password supplied" in lowered:
        reason = f"authentication failed: the server wants a password for user {user!r}"
    elif "pg_hba.conf" in lowered:
        reason = "authentication failed: the server's pg_hba.conf refuses this host and user"
    elif (sqlstate or "").startswith("28"):
        reason = f"authentication failed: {detail}"
    elif "connection refused" in lowered:
        reason = (
            f"connection refused: no server is accepting connections on"
            f" {parsed.host or 'localhost'}:{parsed.port or 5432}"
        )
    elif any(marker in lowered for marker in _HOST_NOT_FOUND):
        reason = f"host {parsed.host!r} not found"
    elif "timeout" in lowered or "timed out" in lowered:
        reason = "timed out waiting for the server"
    elif "no such file or directory" in lowered:
        reason = "no server is listening on the local socket"
    else:
        reason = detail
    return NexusConnectionError(where, reason)


def _sqlite_reason(exc: sqlite3.Error, url: sa.engine.URL) -> str:
    text = str(exc).strip()
    if "file is not a database" in text:
        return "the file is not a SQLite database"
    if "unable to open database file" in text and url.database and not _is_sqlite_uri(url):
        path = Path(url.database)
        if path.is_dir():
            return "it is a directory, not a SQLite file"
        if not path.parent.is_dir():
            return f"the directory {path.parent} does not exist"
        return "the file cannot be opened (check the permissions of the file and its directory)"
    return text


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


def _translate_errors(context: sa.engine.ExceptionContext) -> BaseException | None:
    """A write to a read-only database, and a connection that could not be opened, become
    nexus errors on every SQLAlchemy path (store reads and writes, migrations)."""
    engine = context.engine
    if is_read_only_error(context.original_exception):
        where = display_url(engine.url) if engine is not None else "(unknown database)"
        return ReadOnlyDatabaseError(where, str(context.original_exception).strip())
    # No connection yet: opening one failed (a pool's pre-ping is left to the pool, which
    # reconnects). Only driver errors: anything else is not about the connection.
    if (
        context.connection is None
        and not context.is_pre_ping
        and context.sqlalchemy_exception is not None
        and engine is not None
    ):
        return connection_error(context.original_exception, engine.url)
    return None


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
    # Raised instead of the DBAPIError, so store reads and writes (which wrap DBAPIErrors)
    # pass them on.
    sa.event.listen(engine, "handle_error", _translate_errors, retval=True)
    return engine
