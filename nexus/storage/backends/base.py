"""The interface of a storage backend (one per database)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, ClassVar, TypeVar

import sqlalchemy as sa

T = TypeVar("T")


class Backend(ABC):
    """One database's side of the storage layer."""

    #: The SQLAlchemy dialect name.
    name: ClassVar[str]
    #: Driver errors of this database's DB-API module.
    errors: ClassVar[tuple[type[BaseException], ...]]
    #: View filters selecting few paths are read through their own index (revision 0008).
    reads_filters_by_index: ClassVar[bool]
    #: `` FOR UPDATE`` where the database locks rows read for update, else "".
    for_update: ClassVar[str]

    # ------------------------------------------------------------------ values

    @abstractmethod
    def timestamp(self, moment: datetime) -> Any:
        """A datetime as the driver binds it."""

    @abstractmethod
    def array(self, values: Sequence[Any]) -> Any:
        """A list parameter."""

    @abstractmethod
    def rows_param(self, columns: dict[str, list[Any]]) -> dict[str, Any]:
        """Parameters of a multi-row statement: per column a list of values (SQLite: one
        JSON array of rows, ``rows``, in the columns' order)."""

    @abstractmethod
    def member(self, param: str) -> str:
        """SQL for "is one of the list parameter ``param``" (``:param`` placeholders)."""

    @abstractmethod
    def render(self, text: str) -> str:
        """A text with ``:name`` placeholders in the driver's style."""

    # ------------------------------------------------------------------ statements

    #: The store's driver-level statements whose texts differ (see nexus.storage.blocks).
    create_paths: ClassVar[str]
    upsert_metadata: ClassVar[str]
    #: PostgreSQL: the advisory lock serialising writers of depends_on; else None.
    lock_dependency_writes: ClassVar[str | None]
    #: PostgreSQL: the tables whose planner statistics are stale; else None.
    stale_tables: ClassVar[str | None]

    # ------------------------------------------------------------------ driver connections

    @abstractmethod
    def prepare(self, connection: Any) -> None:
        """Set up a new driver connection for :class:`~nexus.storage.database.Database`."""

    @abstractmethod
    def run(
        self,
        connection: Any,
        cursor: Any,
        work: Callable[[Any], T],
        write: bool,
        tenant_setting: str | None,
    ) -> T:
        """Run ``work(cursor)`` in one transaction on ``connection``."""

    @abstractmethod
    def is_broken(self, connection: Any) -> bool:
        """Whether the connection can no longer be used (after an error)."""

    # ------------------------------------------------------------------ SQLAlchemy

    @abstractmethod
    def insert(self, table: sa.Table) -> Any:
        """The dialect's INSERT construct (with ``on_conflict_do_*``)."""

    @abstractmethod
    def server_now(self) -> sa.ColumnElement[Any]:
        """The database clock as a timestamp value of this dialect."""

    @abstractmethod
    def path_order(self, column: sa.ColumnElement[str]) -> sa.ColumnElement[str]:
        """The order of paths in listings (code points)."""

    @abstractmethod
    def has_any_tag(self, view: sa.Table, tags: list[str]) -> sa.ColumnElement[bool]:
        """The view row's work item has one of ``tags``."""

    def tagged(self, tags: list[str] | None) -> sa.Select[Any] | None:
        """The tenant's work items with any of ``tags`` through their own index (None where
        filters are not read by index)."""
        return None

    def path_id_among(self, view: sa.Table, selected: sa.Select[Any]) -> sa.ColumnElement[bool]:
        """``view.path_id`` is one of the ``selected`` path_ids (only where
        :attr:`reads_filters_by_index`)."""
        raise NotImplementedError(self.name)
