"""What every ``nexus`` command shares: choosing the database, opening the store and queue,
printing one JSON document or a rich table, and turning failures into exit codes.

Exit codes: 0 ok; 1 the operation was refused (a nexus error such as a lost lease or a
missing path, nothing ready to claim, a check that failed); 2 a usage error (click's own).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, is_dataclass
from datetime import date, datetime
from typing import Any, NoReturn, TypeVar

import click
from rich.console import Console
from rich.table import Table

from nexus.connect import DEFAULT_DATA_DIR
from nexus.errors import InvalidCursorError, NexusError
from nexus.storage.metadata_store import SQLAlchemyMetadataStore
from nexus.work import WorkQueue

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_DATABASE = os.path.join(DEFAULT_DATA_DIR, "metadata.db")


class Refused(click.ClickException):
    """The operation was refused (exit code 1): nothing to claim, a check failed..."""

    exit_code = 1


def refuse(message: str) -> NoReturn:
    raise Refused(message)


def one_line(text: str) -> str:
    return " ".join(str(text).split())


class NexusGroup(click.Group):
    """A group whose commands report a NexusError as one line on stderr with exit code 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except NexusError as exc:
            raise click.ClickException(one_line(f"{type(exc).__name__}: {exc}")) from exc


TENANT_KEY = "nexus.tenant"


def _remember_tenant(ctx: click.Context, _param: click.Parameter, value: str) -> str:
    ctx.meta[TENANT_KEY] = value
    return value


def database_option(command: F) -> F:
    """``--db`` alone (the schema commands, which see every tenant)."""
    return click.option(
        "--db",
        "db",
        envvar="NEXUS_DATABASE_URL",
        default=None,
        metavar="PATH_OR_URL",
        help="SQLite path or database URL [env NEXUS_DATABASE_URL; "
        "default ./nexus-data/metadata.db]",
    )(command)


def db_option(command: F) -> F:
    """``--db`` (passed to the command) and ``--tenant`` (kept for :func:`open_store`)."""
    command = click.option(
        "--tenant",
        envvar="NEXUS_TENANT",
        default="default",
        show_default=True,
        expose_value=False,
        callback=_remember_tenant,
        help="The tenant whose paths and items the command sees [env NEXUS_TENANT].",
    )(command)
    return database_option(command)


def tenant() -> str:
    """The --tenant of the running command."""
    ctx = click.get_current_context(silent=True)
    return str(ctx.meta.get(TENANT_KEY, "default")) if ctx is not None else "default"


def json_option(command: F) -> F:
    return click.option(
        "--json",
        "as_json",
        is_flag=True,
        help="Print one JSON document (keys: docs/cli.md) instead of a table.",
    )(command)


def database(db: str | None) -> str:
    return db or DEFAULT_DATABASE


def open_store(db: str | None, *, create: bool = False) -> SQLAlchemyMetadataStore:
    """The store at ``db``. Only a command that puts something new into the database opens
    it with ``create`` (``put``, ``work enqueue``); every other one needs a nexus database
    that exists, so a mistyped --db is an error instead of a new empty database."""
    return SQLAlchemyMetadataStore(database(db), tenant_id=tenant(), create=create)


@contextmanager
def open_queue(db: str | None, *, create: bool = False) -> Iterator[WorkQueue]:
    """A work queue over the store at ``db``; closes both (the queue first)."""
    with open_store(db, create=create) as store:
        queue = WorkQueue(store)
        try:
            yield queue
        finally:
            queue.close()


# ------------------------------------------------------------------------------ JSON output


def plain(value: Any) -> Any:
    """``value`` as JSON-ready data: datetimes as ISO 8601 strings, dataclasses as dicts."""
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if is_dataclass(value) and not isinstance(value, type):
        return plain(asdict(value))
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def emit_json(document: Mapping[str, Any]) -> None:
    click.echo(json.dumps(plain(document), ensure_ascii=False))


def emit(document: Mapping[str, Any], as_json: bool, text: str) -> None:
    """Print ``document`` as JSON, or ``text`` for people."""
    if as_json:
        emit_json(document)
    else:
        click.echo(text)


def page_document(items: Sequence[Mapping[str, Any]], next_cursor: str | None) -> dict[str, Any]:
    return {"items": list(items), "returned": len(items), "next_cursor": next_cursor}


def pick(row: Mapping[str, Any], keys: Sequence[str]) -> dict[str, Any]:
    """Exactly ``keys`` of ``row`` (absent ones as None), so every document has every key."""
    return {key: row.get(key) for key in keys}


# ---------------------------------------------------------------------------- human output

console = Console()


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, dict):
        return json.dumps(plain(value), ensure_ascii=False)
    return str(value)


def table(
    title: str,
    columns: Sequence[str],
    rows: Iterable[Mapping[str, Any]],
    *,
    out: Console | None = None,
) -> Table:
    """Print (and return) a table of ``rows``; an empty one says ``(none)``."""
    grid = Table(title=title, title_justify="left")
    for column in columns:
        grid.add_column(column)
    count = 0
    for row in rows:
        grid.add_row(*(cell(row.get(column)) for column in columns))
        count += 1
    if count == 0:
        grid.add_row(*(["(none)"] + [""] * (len(columns) - 1)))
    (out or console).print(grid)
    return grid


def print_fields(
    title: str, record: Mapping[str, Any], keys: Sequence[str], metadata: Mapping[str, Any]
) -> None:
    """One record as a field/value table, then its metadata as a key/value table."""
    table(title, ["field", "value"], [{"field": key, "value": record[key]} for key in keys])
    table("metadata", ["key", "value"], [{"key": k, "value": v} for k, v in metadata.items()])


def print_next_cursor(next_cursor: str | None) -> None:
    if next_cursor is not None:
        click.echo(f"more: --after {next_cursor}")


# --------------------------------------------------------------------------------- cursors


def encode_cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode("utf-8")).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> str:
    """The position a cursor from :func:`encode_cursor` names; InvalidCursorError if it was
    not made by it."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        text = base64.urlsafe_b64decode(padded.encode("ascii")).decode("utf-8")
    except (binascii.Error, UnicodeError, ValueError) as exc:
        raise InvalidCursorError(cursor, "not a cursor nexus ls returned") from exc
    if not text.startswith("/"):
        raise InvalidCursorError(cursor, "not a cursor nexus ls returned")
    return text


def parse_json_value(text: str) -> Any:
    """A command-line value as JSON (``42``, ``true``, ``["a"]``, ``{"k": 1}``, ``"s"``);
    anything that is not JSON is taken as a plain string."""
    try:
        return json.loads(text)
    except ValueError:
        return text
