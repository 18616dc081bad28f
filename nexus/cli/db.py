"""``nexus db``: the schema's revision (upgrade, downgrade, current, check) and the
row-level security switch (PostgreSQL).

These commands open an engine, not a store, because opening a store migrates to head.
SQLAlchemy and Alembic are imported when a command runs, not for ``nexus db --help``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click

from nexus.cli.common import (
    CommandGroup,
    database,
    database_option,
    emit,
    json_option,
    refuse,
)
from nexus.cli.keys import REVISION_KEYS

if TYPE_CHECKING:
    from sqlalchemy import Engine


@contextmanager
def _engine(db: str | None, *, create: bool = False) -> Iterator[Engine]:
    """An engine on the database; only ``db upgrade`` may create a SQLite file."""
    from nexus.storage.engine import create_engine, resolve_database_url

    engine = create_engine(resolve_database_url(database(db), create=create))
    try:
        yield engine
    finally:
        engine.dispose()


def revision_document(engine: Engine) -> dict[str, Any]:
    from nexus.storage import migrate

    current = migrate.current_revision(engine)
    head = migrate.head_revision()
    values = {"revision": current, "head": head, "up_to_date": current == head}
    return {key: values[key] for key in REVISION_KEYS}


def _report(engine: Engine, as_json: bool, describe: Callable[[dict[str, Any]], str]) -> None:
    document = revision_document(engine)
    emit(document, as_json, describe(document))


def _at(document: dict[str, Any]) -> str:
    return f"at revision {document['revision'] or 'base'}"


@click.group(cls=CommandGroup)
def db() -> None:
    """The database schema: upgrade, downgrade, current revision, check; row-level security."""


@db.command()
@database_option
@click.option("--revision", default="head", show_default=True, help="Target revision.")
@json_option
def upgrade(db: str | None, revision: str, as_json: bool) -> None:
    """Upgrade the schema (the same revisions as `alembic upgrade`); creates the database."""
    from nexus.storage import migrate

    with _engine(db, create=True) as engine:
        migrate.upgrade(engine, revision)
        _report(engine, as_json, _at)


@db.command()
@database_option
@click.option("--revision", required=True, help='Target revision; "base" removes everything.')
@json_option
def downgrade(db: str | None, revision: str, as_json: bool) -> None:
    """Downgrade the schema (with "base": every nexus table and the data in it)."""
    from nexus.storage import migrate

    with _engine(db) as engine:
        migrate.downgrade(engine, revision)
        _report(engine, as_json, _at)


@db.command()
@database_option
@json_option
def current(db: str | None, as_json: bool) -> None:
    """Print the database's revision and the head this version of nexus ships."""
    with _engine(db) as engine:
        _report(engine, as_json, lambda d: f"{d['revision'] or 'base'} (head {d['head']})")


@db.command()
@database_option
@json_option
def check(db: str | None, as_json: bool) -> None:
    """Exit 0 if the schema is at head, 1 if it needs `nexus db upgrade`."""
    with _engine(db) as engine:
        document = revision_document(engine)
    if not document["up_to_date"]:
        refuse(
            f"database is at revision {document['revision'] or 'base'}, "
            f"head is {document['head']}: run nexus db upgrade",
            value=document["revision"],
            details=document,
        )
    emit(document, as_json, f"up to date (revision {document['head']})")


def _switch_rls(db: str | None, on: bool, as_json: bool) -> None:
    from nexus.storage import security

    with _engine(db) as engine:
        if on:
            security.enable_row_level_security(engine)
        else:
            security.disable_row_level_security(engine)
        enabled = security.row_level_security_enabled(engine)
    emit(
        {"row_level_security": enabled}, as_json, f"row-level security {'on' if enabled else 'off'}"
    )


@db.command("enable-rls")
@database_option
@json_option
def enable_rls(db: str | None, as_json: bool) -> None:
    """PostgreSQL: switch on row-level security keyed on the tenant (docs/security.md)."""
    _switch_rls(db, True, as_json)


@db.command("disable-rls")
@database_option
@json_option
def disable_rls(db: str | None, as_json: bool) -> None:
    """PostgreSQL: switch row-level security off again (the policies stay, dormant)."""
    _switch_rls(db, False, as_json)
