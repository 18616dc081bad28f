"""Transaction bodies as generators: what a transaction sends, apart from how it is sent.

A *body* is a generator that yields :class:`Call` objects (a statement and its parameters)
and receives, for each, a :class:`Result` (the rows as dicts by column name, and the row
count); its return value is the transaction's result::

    def body() -> Body[int]:
        result = yield Call("UPDATE ... RETURNING path_id", params)
        return len(result.rows)

Bodies never touch a connection. A runner sends their calls: :func:`drive` on a DB-API
cursor (sqlite3 or psycopg, what :meth:`Database.transaction
<nexus.storage.database.Database.transaction>` hands out), :func:`drive_connection` on a
SQLAlchemy ``Connection`` (the store's own write transactions). An asyncio runner is the
same dozen lines with ``await`` on an async cursor: every body of the store and of the work
queue runs there unchanged. Bodies compose with ``yield from``, so one transaction can run
several of them (a completion and a claim, an enqueue and the store's path helpers).
"""

from __future__ import annotations

import re
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")

_NEUTRAL_PARAM = re.compile(r"(?<![:\w]):(?!:)([A-Za-z_]\w*)")


def pyformat(text: str) -> str:
    """A text with neutral ``:name`` placeholders (``::`` stays a PostgreSQL cast) in
    psycopg's ``%(name)s`` style (a literal ``%`` doubled)."""
    return _NEUTRAL_PARAM.sub(r"%(\1)s", text.replace("%", "%%"))


@dataclass(frozen=True, slots=True)
class Call:
    """One statement to send: driver-level SQL text in the connection's own placeholder style,
    its parameters, and ``many`` for an ``executemany`` over a list of parameter sets."""

    sql: str
    params: Any = None
    many: bool = False


class Result:
    """What a :class:`Call` gave back: its rows (dicts keyed by column name; empty for a
    statement that returns none) and the driver's row count."""

    __slots__ = ("rowcount", "rows")

    def __init__(self, rows: list[dict[str, Any]], rowcount: int) -> None:
        self.rows = rows
        self.rowcount = rowcount

    def first(self) -> dict[str, Any] | None:
        """The first row, or None."""
        return self.rows[0] if self.rows else None

    def column(self, name: str) -> list[Any]:
        """One column of every row."""
        return [row[name] for row in self.rows]


#: A transaction body returning ``T``.
Body = Generator[Call, Result, T]


def nothing() -> Body[None]:
    """A body that sends nothing (a step one dialect does not need)."""
    return
    yield  # pragma: no cover - makes this a generator


def rows_of(cursor: Any) -> list[dict[str, Any]]:
    """Every row of the cursor's current result as dicts by column name ([] without one)."""
    description = cursor.description
    if description is None:
        return []
    names = [column[0] for column in description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def drive(body: Body[T], cursor: Any) -> T:
    """Run a body on a DB-API cursor (inside the caller's transaction)."""
    try:
        call = next(body)
        while True:
            if call.many:
                cursor.executemany(call.sql, call.params)
                result = Result([], cursor.rowcount)
            else:
                if call.params is None:
                    cursor.execute(call.sql)
                else:
                    cursor.execute(call.sql, call.params)
                result = Result(rows_of(cursor), cursor.rowcount)
            call = body.send(result)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


def drive_connection(body: Body[T], conn: Any) -> T:
    """Run a body on a SQLAlchemy ``Connection`` (``exec_driver_sql``: the same driver-level
    text and parameters as :func:`drive`)."""
    try:
        call = next(body)
        while True:
            found = conn.exec_driver_sql(call.sql, call.params)
            rows = [dict(row) for row in found.mappings()] if found.returns_rows else []
            call = body.send(Result(rows, found.rowcount))
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
