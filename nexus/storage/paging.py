"""Keyset paging of the work views: cursors, and the predicates that continue a view's order.

A cursor names a position in one view's order: the order-key values of the last row of a
page and the view's tag, as urlsafe base64 of compact JSON. The rows after it are read as a
few *branches*, each a plain index range in the view's order (see :func:`after_branches`),
so a page deep in a view costs what the first page costs: no OFFSET, nothing skipped.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import sqlalchemy as sa

from nexus.errors import InvalidArgumentError, InvalidCursorError
from nexus.storage.types import to_utc
from nexus.storage.validation import is_path_id, is_text

#: More tags than this in one filter is refused (each is a bound parameter).
MAX_FILTER_TAGS = 1000


class WorkPage(NamedTuple):
    """One page of a work view: its rows, and the cursor of the next page (None at the end).

    Unpacks as ``items, next_cursor = store.page_ready_work(...)``."""

    items: list[dict[str, Any]]
    next_cursor: str | None


@dataclass(frozen=True)
class SortKey:
    """One column of a view's order. ``nullable`` keys sort NULL last."""

    column: str
    kind: str  # "int", "count", "timestamp" or "path_id": what a cursor value must be
    descending: bool = False
    nullable: bool = False


_BY_PRIORITY = (
    SortKey("priority", "int", nullable=True),
    SortKey("created_at", "timestamp"),
    SortKey("path_id", "path_id"),
)

#: Each view's tag (written into its cursors) and its total order (0003's ORDER BY, with
#: the unique path_id last).
VIEW_ORDERS: dict[str, tuple[str, tuple[SortKey, ...]]] = {
    "ready_work_items": ("ready", _BY_PRIORITY),
    "pending_work_items": ("pending", _BY_PRIORITY),
    "blocked_work_items": (
        "blocked",
        (SortKey("blocker_count", "count", descending=True), *_BY_PRIORITY),
    ),
    "work_by_priority": ("by_priority", _BY_PRIORITY),
    "in_progress_work": (
        "in_progress",
        (
            SortKey("started_at", "timestamp", descending=True, nullable=True),
            SortKey("path_id", "path_id"),
        ),
    ),
}


# ---------------------------------------------------------------------------- cursors


def encode_cursor(view: str, row: Mapping[str, Any]) -> str:
    """The cursor of the position just after ``row`` in ``view``'s order."""
    tag, keys = VIEW_ORDERS[view]
    values = [_to_json(row[key.column]) for key in keys]
    text = json.dumps([tag, values], separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(view: str, cursor: Any) -> list[Any]:
    """The order-key values of ``cursor``; InvalidCursorError unless it is a cursor of
    ``view`` with values of the right types."""
    if not isinstance(cursor, str):
        raise InvalidCursorError(cursor, "must be a string returned as next_cursor")
    tag, keys = VIEW_ORDERS[view]
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        decoded = json.loads(raw.decode())
    except (binascii.Error, ValueError, UnicodeError) as exc:
        raise InvalidCursorError(cursor, "is not a cursor") from exc
    if (
        not isinstance(decoded, list)
        or len(decoded) != 2
        or not isinstance(decoded[0], str)
        or not isinstance(decoded[1], list)
    ):
        raise InvalidCursorError(cursor, "is not a cursor")
    if decoded[0] != tag:
        raise InvalidCursorError(
            cursor, f"is a cursor of another view ({decoded[0]!r}), not {tag!r}"
        )
    if len(decoded[1]) != len(keys):
        raise InvalidCursorError(cursor, "has the wrong number of values")
    return [_from_json(cursor, key, value) for key, value in zip(keys, decoded[1], strict=True)]


def _to_json(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _from_json(cursor: str, key: SortKey, value: Any) -> Any:
    if value is None:
        if key.nullable:
            return None
        raise InvalidCursorError(cursor, f"has no value for {key.column}")
    if key.kind in ("int", "count"):
        low = 0 if key.kind == "count" else -(2**63)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value < 2**63:
            raise InvalidCursorError(cursor, f"has a {key.column} that is no integer")
        return value
    if key.kind == "timestamp":
        if isinstance(value, str):
            try:
                moment = datetime.fromisoformat(value)
            except ValueError:
                pass
            else:
                if moment.tzinfo is not None:
                    return to_utc(moment)
        raise InvalidCursorError(cursor, f"has a {key.column} that is no UTC timestamp")
    if not isinstance(value, str) or not is_path_id(value):
        raise InvalidCursorError(cursor, f"has a {key.column} that is no path id")
    return value


# ---------------------------------------------------------------------------- filters


def validate_tags_filter(tags: Any) -> list[str] | None:
    """None or an iterable of strings; an empty iterable filters nothing out (as None)."""
    if tags is None:
        return None
    if isinstance(tags, (str, bytes)) or not isinstance(tags, Iterable):
        raise InvalidArgumentError("tags", tags, "must be an iterable of strings, or None")
    checked = list(dict.fromkeys(tags))
    for tag in checked:
        if not isinstance(tag, str) or "\x00" in tag or not is_text(tag):
            raise InvalidArgumentError("tags", tags, "must hold strings without NUL characters")
    if len(checked) > MAX_FILTER_TAGS:
        raise InvalidArgumentError("tags", tags, f"at most {MAX_FILTER_TAGS} tags")
    return checked or None


def prefix_upper_bound(prefix: str) -> str | None:
    """The least string after every string that starts with ``prefix``, in code-point order
    (None if there is none): strings with the prefix are ``>= prefix`` and ``<`` this."""
    chars = list(prefix)
    while chars:
        following = ord(chars.pop()) + 1
        if 0xD800 <= following <= 0xDFFF:  # surrogates are no text
            following = 0xE000
        if following <= 0x10FFFF:
            return "".join(chars) + chr(following)
    return None


# ---------------------------------------------------------------------------- keyset


@dataclass(frozen=True)
class Branch:
    """Rows of one index range after the cursor, and the ORDER BY that reads them in the
    view's order."""

    where: list[sa.ColumnElement[bool]]
    order_by: list[sa.ColumnElement[Any]]


def view_order(
    view: sa.Table, keys: tuple[SortKey, ...], dialect: str, fixed: Iterable[str] = ()
) -> list[sa.ColumnElement[Any]]:
    """The ORDER BY a branch adds to the view's own (empty on PostgreSQL).

    PostgreSQL: none. The view's ORDER BY gives the order, and an outer ORDER BY would make
    the planner plan the view for every row (it passes a LIMIT into a subquery only when the
    outer query does no sorting) and sort them. SQLite: the view's order with the leading
    ``col IS NULL`` term of a NULLS LAST key left out once a branch fixes that expression by
    equality (``fixed``); otherwise SQLite does not see that its index (which leads with that
    expression) yields the order, and sorts every row of the range."""
    if dialect == "postgresql":
        return []
    terms: list[sa.ColumnElement[Any]] = []
    for key in keys:
        column = view.c[key.column]
        if key.nullable and not key.descending and key.column not in fixed:
            terms.append(column.is_(None))
        terms.append(column.desc() if key.descending else column)
    return terms


def after_branches(
    view: sa.Table, keys: tuple[SortKey, ...], values: list[Any], dialect: str
) -> list[Branch]:
    """The rows after ``values`` in the order ``keys``, as branches to read one after the
    other (each in the view's order, each a range of the view's index).

    Lexicographically, "after" is: equal on keys[:i] and after on keys[i], for the deepest i
    first. A NULLS LAST key adds its NULL rows after its non-NULL ones. A trailing run of
    ascending keys (non-NULL values) is one row-value comparison, which both databases
    read as one index range."""
    pg = dialect == "postgresql"

    def isnull_fixed(key: SortKey, is_null: bool) -> list[sa.ColumnElement[bool]]:
        # SQLite: equality on its index's leading expression, so the range starts there.
        if pg or not key.nullable or key.descending:
            return []
        return [view.c[key.column].is_(None) == sa.literal(is_null)]

    def equal(key: SortKey, value: Any) -> list[sa.ColumnElement[bool]]:
        column = view.c[key.column]
        if value is None:
            return [*isnull_fixed(key, True), column.is_(None)]
        return [*isnull_fixed(key, False), column == _bind(column, value)]

    tail = len(keys) - 1
    while (
        tail > 0
        and not keys[tail - 1].descending
        and not keys[tail].descending
        and not keys[tail].nullable
        and values[tail - 1] is not None
    ):
        tail -= 1
    branches: list[Branch] = []
    for i in range(tail, -1, -1):
        key, value = keys[i], values[i]
        prefix = [cond for j in range(i) for cond in equal(keys[j], values[j])]
        fixed = {k.column for k in keys[:i]}
        column = view.c[key.column]
        if value is not None:
            if i == tail and tail < len(keys) - 1:
                columns = [view.c[k.column] for k in keys[i:]]
                after = sa.tuple_(*columns) > sa.tuple_(
                    *[_bind(c, v) for c, v in zip(columns, values[i:], strict=True)]
                )
            elif key.descending:
                after = column < _bind(column, value)
            else:
                after = column > _bind(column, value)
            branches.append(
                Branch(
                    [*prefix, *isnull_fixed(key, False), after],
                    view_order(view, keys, dialect, fixed | {key.column}),
                )
            )
        if key.nullable and value is not None:
            branches.append(
                Branch(
                    [*prefix, *isnull_fixed(key, True), column.is_(None)],
                    view_order(view, keys, dialect, fixed | {key.column}),
                )
            )
    return branches


def _bind(column: sa.ColumnElement[Any], value: Any) -> sa.BindParameter[Any]:
    return sa.bindparam(None, value, type_=column.type)
