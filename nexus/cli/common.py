"""What every ``nexus`` command shares: choosing the database, opening the store and queue,
printing one JSON document or a rich table, and turning failures into exit codes.

Exit codes: 0 ok; 1 the operation was refused (a nexus error such as a lost lease or a
missing path, nothing ready to claim, a check that failed); 2 a usage error (click's own).
With ``--json`` a failure is one JSON document on stdout too (:data:`ERROR_KEYS`).

Nothing heavy is imported at module level (no SQLAlchemy, no rich): ``nexus --help`` loads
only click; a command imports the store, the queue and rich when it runs.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, is_dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from nexus.connect import DEFAULT_DATA_DIR
from nexus.errors import InvalidCursorError, NexusError

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from nexus.storage.metadata_store import SQLAlchemyMetadataStore
    from nexus.work import WorkQueue

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_DATABASE = os.path.join(DEFAULT_DATA_DIR, "metadata.db")


class Refused(click.ClickException):
    """The operation was refused (exit code 1): nothing to claim, a check failed...

    ``value`` is the offending value (if any) and ``details`` what the command would have
    shown; both go into the ``--json`` error document."""

    exit_code = 1

    def __init__(
        self, message: str, *, value: Any = None, details: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.value = value
        self.details = dict(details or {})


def refuse(
    message: str, *, value: Any = None, details: Mapping[str, Any] | None = None
) -> NoReturn:
    raise Refused(message, value=value, details=details)


def one_line(text: str) -> str:
    return " ".join(str(text).split())


#: The keys of the one JSON document a command run with ``--json`` prints when it fails.
ERROR_KEYS = ("error", "message", "value", "details")
JSON_KEY = "nexus.json"
ARGV_KEY = "nexus.argv"


def emit_error(document: Mapping[str, Any]) -> None:
    """Print an error document on stdout, where the command's document would have been."""
    text = json.dumps(document, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate in an offending value
        text = json.dumps(document)
    click.echo(text)


def _jsonable(value: Any) -> Any:
    """``value`` as JSON data, or its repr when it is no JSON (an offending value can be
    anything: bytes, a set, NaN...)."""
    value = plain(value)
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return repr(value)
    return value


def _option_value(argv: Sequence[str], param: click.Parameter) -> Any:
    """The value given on the command line for option ``param`` (its last occurrence), or
    None (an argument, or an option not given)."""
    if not isinstance(param, click.Option):
        return None
    names = [*param.opts, *param.secondary_opts]
    found = None
    for index, token in enumerate(argv):
        for name in names:
            if token == name and index + 1 < len(argv):
                found = argv[index + 1]
            elif token.startswith(f"{name}="):
                found = token[len(name) + 1 :]
    return found


def error_document(exc: Exception, argv: Sequence[str] = ()) -> dict[str, Any]:
    """The JSON document of a failure: ``error`` (the exception's type name), ``message``
    (one line, as it would be printed after ``Error:``), ``value`` (the offending value, or
    None) and ``details`` (what else the error carries: a nexus error's attributes, a
    refusal's document, the parameter of a usage error)."""
    value: Any = None
    details: dict[str, Any] = {}
    if isinstance(exc, NexusError):
        details = {key: item for key, item in vars(exc).items() if not key.startswith("_")}
        for name in ("value", "path", "url"):
            if name in details:
                value = details[name]
                break
        message = str(exc)
    elif isinstance(exc, Refused):
        value, details, message = exc.value, exc.details, exc.message
    elif isinstance(exc, click.ClickException):
        message = exc.format_message()
        if isinstance(exc, (click.NoSuchOption, click.BadOptionUsage)):
            value = exc.option_name
            details = {"option": exc.option_name}
        elif isinstance(exc, click.BadParameter) and exc.param is not None:
            value = _option_value(argv, exc.param)
            param = exc.param
            name = param.opts[0] if isinstance(param, click.Option) else param.human_readable_name
            details = {"param": name}
    else:  # pragma: no cover - only nexus and click errors are turned into documents
        message = str(exc)
    return {
        "error": type(exc).__name__,
        "message": one_line(message),
        "value": _jsonable(value),
        "details": {key: _jsonable(item) for key, item in details.items()},
    }


def _wants_json(ctx: click.Context, exc: Exception) -> bool:
    """Whether the failing command was given ``--json``: its option said so, or (a usage
    error before the option was read) the command has ``--json`` and the command line holds
    it before any ``--``."""
    if ctx.meta.get(JSON_KEY):
        return True
    failed = getattr(exc, "ctx", None)
    if not isinstance(exc, click.UsageError) or failed is None:
        return False
    if not any(getattr(param, "name", None) == "as_json" for param in failed.command.params):
        return False
    return "--json" in _options_part(ctx.meta.get(ARGV_KEY, ()))


def _options_part(argv: Sequence[str]) -> list[str]:
    """The command line up to a ``--`` (after it come a worker's command and its options)."""
    tokens = list(argv)
    return tokens[: tokens.index("--")] if "--" in tokens else tokens


# A token that reads as a negative number: -1, -0.5, -.5, -1e3.
_NEGATIVE_NUMBER = re.compile(r"-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def values_after_options(command: click.Command, ctx: click.Context, args: list[str]) -> list[str]:
    """``args`` of ``command`` such that a negative number is read as a value, not as an
    unknown option (click's reading: ``nexus meta set /a priority -1`` said "No such option:
    -1"): when a positional value is one, the options (with their own values, which may be
    negative numbers already: ``--priority -1``) go first, then ``--``, then the positional
    values in their order. Any other unknown ``-x`` is left for click to refuse; a value
    that starts with ``-`` and is no number goes after ``--`` on the command line."""
    if command.ignore_unknown_options or not command.allow_interspersed_args:
        return args  # e.g. worker run: everything after its options is the command's
    takes: dict[str, int] = {}  # option name -> how many values follow it
    for param in command.get_params(ctx):
        if isinstance(param, click.Option):
            count = 0 if param.is_flag or param.count else param.nargs
            for name in (*param.opts, *param.secondary_opts):
                takes[name] = count
    options: list[str] = []
    values: list[str] = []
    index = 0
    while index < len(args):
        token = args[index]
        if token == "--":
            values.extend(args[index + 1 :])
            break
        name = token.split("=", 1)[0] if token.startswith("--") else token
        if name in takes:
            width = 0 if name != token else takes[name]  # --opt=value carries its value
            options.extend(args[index : index + 1 + width])
            index += 1 + width
            continue
        if token.startswith("-") and len(token) > 1 and not _NEGATIVE_NUMBER.fullmatch(token):
            options.append(token)  # unknown: click says so
        else:
            values.append(token)
        index += 1
    if not any(_NEGATIVE_NUMBER.fullmatch(value) for value in values):
        return args
    return [*options, "--", *values]


class CommandGroup(click.Group):
    """A group of commands whose positional values may be negative numbers (see
    :func:`values_after_options`)."""

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name, command, rest = super().resolve_command(ctx, args)
        if command is not None and not isinstance(command, click.Group):
            rest = values_after_options(command, ctx, rest)
        return name, command, rest


class NexusGroup(CommandGroup):
    """A group whose commands report a NexusError as one line on stderr with exit code 1,
    or, run with ``--json``, every failure (a nexus error, a refusal, a usage error) as one
    JSON document on stdout (:func:`error_document`) with its exit code."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta[ARGV_KEY] = list(args)
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except NexusError as exc:
            if not _wants_json(ctx, exc):
                raise click.ClickException(one_line(f"{type(exc).__name__}: {exc}")) from exc
            emit_error(error_document(exc))
            ctx.exit(1)
        except click.ClickException as exc:
            if not _wants_json(ctx, exc):
                raise
            emit_error(error_document(exc, _options_part(ctx.meta.get(ARGV_KEY, ()))))
            ctx.exit(exc.exit_code)


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


def _remember_json(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    ctx.meta[JSON_KEY] = value
    return value


def json_option(command: F) -> F:
    return click.option(
        "--json",
        "as_json",
        is_flag=True,
        callback=_remember_json,
        help="Print one JSON document (keys: docs/cli.md) instead of a table; a failure too.",
    )(command)


def database(db: str | None) -> str:
    return db or DEFAULT_DATABASE


def open_store(db: str | None, *, create: bool = False) -> SQLAlchemyMetadataStore:
    """The store at ``db``. Only a command that puts something new into the database opens
    it with ``create`` (``put``, ``work enqueue``); every other one needs a nexus database
    that exists, so a mistyped --db is an error instead of a new empty database."""
    from nexus.storage.metadata_store import SQLAlchemyMetadataStore

    return SQLAlchemyMetadataStore(database(db), tenant_id=tenant(), create=create)


@contextmanager
def open_queue(db: str | None, *, create: bool = False) -> Iterator[WorkQueue]:
    """A work queue over the store at ``db``; closes both (the queue first)."""
    from nexus.work import WorkQueue

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


def console() -> Console:
    """A rich console on stdout (rich is imported when a command prints, not for --help)."""
    from rich.console import Console

    return Console()


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
    """Print (and return) a table of ``rows`` under ``title``; an empty one says ``(none)``.

    No value is ever cut short: one wider than its column folds onto the next lines, never
    ends in an ellipsis (a lease token, a path or a cursor is copied from here), and values
    are printed as they are, not read as rich markup (``[x]`` in a path stays). The title
    (often a path) is a line of its own, not the table's: a table title folds at the
    table's width."""
    from rich.table import Table
    from rich.text import Text

    grid = Table()
    for column in columns:
        grid.add_column(column, overflow="fold")
    count = 0
    for row in rows:
        grid.add_row(*(Text(cell(row.get(column))) for column in columns))
        count += 1
    if count == 0:
        grid.add_row(*(["(none)"] + [""] * (len(columns) - 1)))
    printer = out or console()
    printer.print(Text(title), soft_wrap=True)
    printer.print(grid)
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
