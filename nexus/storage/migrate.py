"""Running the Alembic revisions from the installed package, serialised by a lock.

The revisions live in ``nexus.migrations`` (the top-level ``migrations/`` directory of a
checkout, mapped into the wheel), so migrating does not depend on the working directory or on
an ``alembic.ini`` being present.

Several processes opening the same fresh database at once all succeed: the migration runs in
one transaction that first takes a lock (PostgreSQL: ``pg_advisory_xact_lock``; SQLite:
``BEGIN IMMEDIATE``), and Alembic reads the current revision only after the lock is held.
Revisions run in that one transaction, so a revision that fails half way leaves the database
at the revision it started from (DDL is transactional on both databases).

A read-only database already at head opens without a write; one below head raises
:class:`~nexus.errors.ReadOnlyMigrationError` (nothing can be migrated).

A connection that cannot be opened is a :class:`~nexus.errors.NexusConnectionError` (the
engine's ``handle_error`` listener), never a :class:`~nexus.errors.MigrationError`: that one
means a migration ran and failed.

``script_location`` (every function taking it) points at another directory of revisions: the
tests use it to run a deliberately failing revision; nexus itself always uses the packaged ones.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, Engine

from nexus.errors import (
    DatabaseNotFoundError,
    MigrationError,
    NexusError,
    ReadOnlyDatabaseError,
    ReadOnlyMigrationError,
)
from nexus.storage.engine import display_url

DEFAULT_ALEMBIC_DB = "nexus-data/metadata.db"
MIGRATION_LOCK_KEY = 7_400_000
NO_SCHEMA = "it has no nexus schema (nexus db upgrade creates it)"


def migrations_directory() -> Path:
    return Path(str(resources.files("nexus.migrations")))


ScriptLocation = str | Path | None


def alembic_config(
    connection: Connection | None = None, *, script_location: ScriptLocation = None
) -> Config:
    config = Config()
    location = migrations_directory() if script_location is None else script_location
    config.set_main_option("script_location", str(location))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision(script_location: ScriptLocation = None) -> str:
    return _head_revision(None if script_location is None else str(script_location))


@functools.lru_cache(maxsize=8)
def _head_revision(script_location: str | None) -> str:
    config = alembic_config(script_location=script_location)
    head = ScriptDirectory.from_config(config).get_current_head()
    if head is None:  # pragma: no cover - the package always ships revisions
        raise MigrationError("no migrations found")
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table("alembic_version"):
            return None
        return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()


@contextmanager
def migration_transaction(connection: Connection) -> Iterator[Connection]:
    """A write transaction holding the migration lock until it commits."""
    connection.execution_options(nexus_write=True)
    with connection.begin():
        if connection.dialect.name == "postgresql":
            connection.execute(
                sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
            )
        yield connection


def upgrade(
    engine: Engine,
    revision: str = "head",
    *,
    script_location: ScriptLocation = None,
    create: bool = True,
) -> None:
    """Bring the database to ``revision`` (default: head). Cheap when already there.

    Without ``create`` a database that has no nexus schema yet is refused
    (:class:`~nexus.errors.DatabaseNotFoundError`) instead of being given one; one that
    has it is still migrated up."""
    if revision == "head":
        try:
            current = current_revision(engine)
        except sa.exc.DBAPIError:
            # E.g. SQLite "database is locked" while another process creates the file: the
            # locked path below reads the revision again once it holds the lock, and fails
            # with a MigrationError of its own if the database really cannot be read.
            pass
        else:
            if current == head_revision(script_location):
                return
            if current is None and not create:
                raise DatabaseNotFoundError(display_url(engine.url), NO_SCHEMA)
    _run(engine, lambda config: command.upgrade(config, revision), script_location)


def downgrade(engine: Engine, revision: str, *, script_location: ScriptLocation = None) -> None:
    """Take the database down to ``revision`` (``"base"`` removes every nexus object)."""
    _run(engine, lambda config: command.downgrade(config, revision), script_location)


def _run(
    engine: Engine, action: Callable[[Config], object], script_location: ScriptLocation
) -> None:
    try:
        with engine.connect() as conn, migration_transaction(conn):
            action(alembic_config(conn, script_location=script_location))
    except ReadOnlyDatabaseError as exc:
        try:
            current = current_revision(engine)
        except (sa.exc.DBAPIError, ReadOnlyDatabaseError):
            current = None
        raise ReadOnlyMigrationError(
            display_url(engine.url), current, head_revision(script_location)
        ) from exc
    except sa.exc.DBAPIError as exc:
        raise MigrationError(f"migration failed: {exc}") from exc
    except NexusError:
        raise
    except Exception as exc:
        # Alembic's own errors and whatever a revision raises: the transaction has been
        # rolled back, so the database is still at the revision it started from.
        raise MigrationError(f"migration failed: {exc}") from exc
