"""The driver interface: everything the work queue says to one kind of database.

The queue above (:mod:`nexus.work.queue` and its rooms) decides *what* happens; a driver says
it in its dialect. A driver owns:

* its statement texts, by name (:meth:`Driver.sql`): the shared templates of
  :mod:`.statements`, rendered in its placeholder style, plus its own where the dialects
  differ;
* parameter shaping: lists (a JSON array on SQLite, an array on PostgreSQL), timestamps
  (sortable UTC text on SQLite, ``datetime`` on PostgreSQL), JSON columns, cursor keys;
* the operations whose *statements* differ per dialect, as transaction bodies
  (:mod:`nexus.storage.calls`): a claim, a completion, the rescue of expired leases, the
  promotion of items enqueued resolved, the typed insert of new items, the idempotency-key
  locks. On PostgreSQL most are one statement (data-modifying CTEs write the history); on
  SQLite, one more for the history rows.

Rows come back as dicts by column name (:class:`~nexus.storage.calls.Result`); every
statement names what it returns. Drivers hold no connection and no state beyond their
rendered texts, so one instance per dialect serves every queue (:func:`driver_for`). Because
operations are bodies, not calls on a cursor, an asyncio queue is a second *runner* of the
same bodies (an ``await``-ing :func:`~nexus.storage.calls.drive`), not a second driver; a
faster driver (one round trip per claim, pipeline mode) is a subclass that overrides the
operation it speeds up.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from nexus.storage.calls import Body, Call
from nexus.storage.types import parse_timestamp, to_utc


@dataclass(frozen=True)
class Statement:
    """A named statement: one line on what it does, and its text with ``:name`` placeholders
    (``::`` stays a PostgreSQL cast)."""

    name: str
    doc: str
    text: str


@dataclass(frozen=True)
class Lease:
    """A lease a call names: the item by path_id or by virtual path (one of them), and the
    token that must hold it."""

    path_id: str | None
    path: str | None
    token: str


@dataclass(frozen=True)
class Completion:
    """What a completion statement did. ``held``: the path_ids whose leases were held; when
    fewer than the leases given, nothing was completed (the caller raises for the first
    lease not held). ``has_dependents``: a completed item has dependents (then read the
    promoted ones after ``mark``, the id of the last ``completed`` history row)."""

    held: list[str]
    has_dependents: bool
    mark: Any


@dataclass(frozen=True)
class NewItem:
    """A work row for a blank path (typed values, written by :meth:`Driver.insert_items`)."""

    path_id: str
    status: str
    priority: int | None
    tags: list[str] | None
    max_attempts: int | None
    run_after: Any  # already bound by :meth:`Driver.timestamp`, or None


class Driver(ABC):
    """One dialect's statements, parameter shapes and multi-statement operations."""

    #: The SQLAlchemy dialect name this driver speaks.
    name: ClassVar[str]
    #: One writer at a time (SQLite): a loop of write transactions pauses between them so
    #: that other writers get the lock.
    serialises_writers: ClassVar[bool]

    def __init__(self) -> None:
        from nexus.work.drivers.statements import SHARED

        self._sql: dict[str, str] = {}
        for statement in (*SHARED, *self.own_statements()):
            if statement.name in self._sql:
                raise ValueError(f"statement {statement.name!r} defined twice")
            self._sql[statement.name] = self.render(statement.text)

    # ------------------------------------------------------------------ statements

    @staticmethod
    @abstractmethod
    def render(text: str) -> str:
        """A neutral text in this driver's placeholder style."""

    @abstractmethod
    def own_statements(self) -> Iterable[Statement]:
        """The statements whose text is this dialect's own."""

    def sql(self, name: str) -> str:
        """The text of a named statement."""
        return self._sql[name]

    def statement_names(self) -> set[str]:
        return set(self._sql)

    def call(self, name: str, params: Any = None, *, many: bool = False) -> Call:
        """A named statement with its parameters, ready to yield from a body."""
        return Call(self._sql[name], params, many)

    # ------------------------------------------------------------------ values

    @abstractmethod
    def timestamp(self, moment: datetime) -> Any:
        """A datetime as this driver binds it."""

    @staticmethod
    def read_timestamp(value: Any) -> datetime | None:
        """A timestamp column as an aware UTC datetime (None stays None)."""
        if value is None:
            return None
        if isinstance(value, str):
            return parse_timestamp(value)
        return to_utc(value)

    @abstractmethod
    def array(self, values: Sequence[Any]) -> Any:
        """A list parameter."""

    @abstractmethod
    def read_json(self, value: Any) -> Any:
        """A JSON column as Python."""

    @staticmethod
    def json_param(value: Any) -> str | None:
        """A JSON parameter (history ``detail``) as compact text."""
        return None if value is None else json.dumps(value, separators=(",", ":"))

    @abstractmethod
    def cursor_key(self, value: Any) -> str:
        """A timestamp column value as the text a page cursor carries."""

    @abstractmethod
    def cursor_bound(self, text: str, moment: datetime) -> Any:
        """A cursor's key (its text, and that text parsed) as the statement binds it."""

    # ------------------------------------------------------------------ operations

    @abstractmethod
    def claim_sql(self, *, prefix: bool, tags: bool) -> str:
        """The claim statement for these filters (for plans and budgets)."""

    @abstractmethod
    def claim(
        self, params: dict[str, Any], *, prefix: bool, tags: bool
    ) -> Body[list[dict[str, Any]]]:
        """Move up to ``limit`` ready items to in_progress with new leases and record the
        claims. Params: worker, now, expires, lease, tenant, limit (+ prefix, tags shaped by
        :meth:`array`). Rows: path_id, priority, created_at, tags, lease_token,
        lease_expires_at, attempts, max_attempts, virtual_path."""

    @abstractmethod
    def complete(self, leases: Sequence[Lease], now: Any, tenant: str) -> Body[Completion]:
        """Complete every lease, fenced by token, or none if one is not held; record the
        completions."""

    @abstractmethod
    def reclaim(self, now: Any, tenant: str, batch: int) -> Body[list[dict[str, Any]]]:
        """Return up to ``batch`` expired leases to ready (failed when out of attempts) and
        record it. Rows: path_id, status, worker_id, attempts."""

    @abstractmethod
    def promote_resolved(self, ids: Sequence[str], now: Any, tenant: str) -> Body[list[str]]:
        """Of these items just enqueued blocked, promote those whose dependencies have all
        completed (history ``promoted``); returns their path_ids."""

    @abstractmethod
    def insert_items(self, items: Sequence[NewItem], tenant: str, now: Any) -> Body[None]:
        """Insert the work rows of blank paths, one statement per batch."""

    @abstractmethod
    def lock_idempotency_keys(self, keys: Sequence[str]) -> Body[None]:
        """Serialise transactions using the same idempotency keys until they end."""
