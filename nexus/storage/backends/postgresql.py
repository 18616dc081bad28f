"""PostgreSQL: psycopg 3, ``%(name)s`` placeholders, arrays for lists, ``timestamptz``
values, concurrent writers (row locks, advisory locks, deadlock retries)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

import psycopg
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from nexus.storage.backends.base import Backend
from nexus.storage.calls import pyformat
from nexus.storage.security import SET_TENANT_SQL
from nexus.storage.types import to_utc, truncate_to_ms

T = TypeVar("T")

#: Transaction-level advisory lock serialising writers of ``depends_on`` (cycle checks).
DEPENDENCY_WRITE_LOCK = (7_400_002, 0)


class PostgreSQLBackend(Backend):
    name = "postgresql"
    errors = (psycopg.Error,)
    reads_filters_by_index = True
    for_update = " FOR UPDATE"

    create_paths = (
        "INSERT INTO file_paths (path_id, tenant_id, virtual_path, size_bytes,"
        " created_at, updated_at)"
        " SELECT u.id, :tenant, u.vp, 0, :now, :now"
        " FROM unnest(:ids::text[], :paths::text[]) AS u(id, vp)"
        " ON CONFLICT (tenant_id, virtual_path) DO NOTHING"
        " RETURNING path_id, virtual_path"
    )
    upsert_metadata = (
        "INSERT INTO file_metadata (path_id, key, value)"
        " SELECT * FROM unnest(:ids::text[], :keys::text[], :values::jsonb[])"
        " ON CONFLICT (path_id, key) DO UPDATE"
        " SET value = excluded.value, updated_at = now()"
    )
    lock_dependency_writes = "SELECT pg_advisory_xact_lock({}, {}) AS locked".format(
        *DEPENDENCY_WRITE_LOCK
    )
    # A bulk call inside one transaction is invisible to autovacuum: file_paths (looked up
    # by virtual path) is ANALYZEd when its statistics are missing or stale.
    stale_tables = """
        SELECT c.relname FROM pg_class c
        WHERE c.relname = 'file_paths'
          AND c.relnamespace = to_regnamespace(current_schema())
          AND (c.reltuples < 0 OR pg_relation_size(c.oid) / 8192 > 2 * c.relpages + 128)
        ORDER BY c.relname"""

    def timestamp(self, moment: datetime) -> Any:
        return truncate_to_ms(to_utc(moment))

    def array(self, values: Sequence[Any]) -> Any:
        return list(values)

    def rows_param(self, columns: dict[str, list[Any]]) -> dict[str, Any]:
        return dict(columns)

    def member(self, param: str) -> str:
        return f"= ANY(:{param}::text[])"

    def render(self, text: str) -> str:
        return pyformat(text)

    def prepare(self, connection: Any) -> None:
        connection.autocommit = False

    def run(
        self,
        connection: Any,
        cursor: Any,
        work: Callable[[Any], T],
        write: bool,
        tenant_setting: str | None,
    ) -> T:
        try:
            if tenant_setting is not None:
                cursor.execute(SET_TENANT_SQL, (tenant_setting,))
            result = work(cursor)
            connection.commit()
            return result
        except BaseException:
            if not connection.closed:
                connection.rollback()
            raise

    def is_broken(self, connection: Any) -> bool:
        return bool(connection.closed or connection.broken)

    def insert(self, table: sa.Table) -> Any:
        return postgresql.insert(table)

    def server_now(self) -> sa.ColumnElement[Any]:
        return sa.func.now()

    def path_order(self, column: sa.ColumnElement[str]) -> sa.ColumnElement[str]:
        return column.collate("C")

    def has_any_tag(self, view: sa.Table, tags: list[str]) -> sa.ColumnElement[bool]:
        """PostgreSQL reads the view's order from the view itself (no outer ORDER BY), so the
        filter must not become a join: an EXISTS is planned as a semi-join, which may hash or
        merge the view's rows out of order. A scalar subquery stays a per-row filter."""
        from nexus.storage.schema import work_items

        item = work_items.alias("tagged")
        item_tags = sa.select(item.c.tags).where(item.c.path_id == view.c.path_id).scalar_subquery()
        wanted = sa.bindparam(None, tags, type_=postgresql.ARRAY(sa.Text))
        return sa.func.coalesce(item_tags.op("?|")(wanted), sa.false())

    def tagged(self, tags: list[str] | None) -> sa.Select[Any] | None:
        """Work items of the tenant with any of ``tags``, through ix_work_items_tags (GIN)."""
        from nexus.storage.schema import work_items

        if tags is None:
            return None
        return sa.select(work_items.c.path_id).where(
            work_items.c.tenant_id == sa.bindparam("tenant"),
            work_items.c.tags.op("?|")(sa.bindparam(None, tags, type_=postgresql.ARRAY(sa.Text))),
        )

    def path_id_among(self, view: sa.Table, selected: sa.Select[Any]) -> sa.ColumnElement[bool]:
        """``view.path_id`` is one of the ``selected`` path_ids, as ``= ANY (array)`` of a
        subquery run once: ``IN (subquery)`` is planned as a join above the view, and a hash
        join there loses the view's order."""
        listed = selected.subquery()
        ids = sa.select(sa.func.array_agg(listed.c.path_id)).scalar_subquery()
        # The cast makes it "= ANY (array)", not "= ANY (subquery)" (a join again).
        return view.c.path_id == sa.any_(sa.cast(ids, postgresql.ARRAY(sa.String)))
