"""SQLite: the sqlite3 module, ``:name`` placeholders, JSON arrays for lists, sortable UTC
text for timestamps, ``BEGIN IMMEDIATE`` for writes (one writer at a time)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite

from nexus.storage.backends.base import Backend
from nexus.storage.engine import json_text
from nexus.storage.types import sqlite_timestamp, to_utc

T = TypeVar("T")


class SQLiteBackend(Backend):
    name = "sqlite"
    errors = (sqlite3.Error,)
    reads_filters_by_index = False
    for_update = ""

    create_paths = (
        "INSERT INTO file_paths (path_id, tenant_id, virtual_path, size_bytes,"
        " created_at, updated_at)"
        " SELECT json_extract(j.value, '$[0]'), :tenant, json_extract(j.value, '$[1]'),"
        " 0, :now, :now FROM json_each(:rows) j WHERE true"
        " ON CONFLICT (tenant_id, virtual_path) DO NOTHING"
        " RETURNING path_id, virtual_path"
    )
    # Rows in array order, so that triggers see them in the order given.
    upsert_metadata = (
        "INSERT INTO file_metadata (path_id, key, value)"
        " SELECT json_extract(j.value, '$[0]'), json_extract(j.value, '$[1]'),"
        " json_extract(j.value, '$[2]') FROM json_each(:rows) j WHERE true"
        " ON CONFLICT (path_id, key) DO UPDATE"
        " SET value = excluded.value, updated_at = strftime('%Y-%m-%d %H:%M:%f', 'now')"
    )
    lock_dependency_writes = None  # writers are serialised
    stale_tables = None  # the planner reads no statistics unless ANALYZE'd by hand

    def timestamp(self, moment: datetime) -> Any:
        return sqlite_timestamp(to_utc(moment))

    def array(self, values: Sequence[Any]) -> Any:
        return json.dumps(list(values))

    def rows_param(self, columns: dict[str, list[Any]]) -> dict[str, Any]:
        return {"rows": json_text([list(row) for row in zip(*columns.values(), strict=True)])}

    def member(self, param: str) -> str:
        return f"IN (SELECT value FROM json_each(:{param}))"

    def render(self, text: str) -> str:
        return text

    def prepare(self, connection: Any) -> None:
        pass  # the engine's connect event set the pragmas; transactions are explicit

    def run(
        self,
        connection: Any,
        cursor: Any,
        work: Callable[[Any], T],
        write: bool,
        tenant_setting: str | None,
    ) -> T:
        cursor.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            result = work(cursor)
            cursor.execute("COMMIT")
            return result
        except BaseException:
            if connection.in_transaction:
                cursor.execute("ROLLBACK")
            raise

    def is_broken(self, connection: Any) -> bool:
        return False

    def insert(self, table: sa.Table) -> Any:
        return sqlite.insert(table)

    def server_now(self) -> sa.ColumnElement[Any]:
        return sa.func.strftime(sa.literal_column("'%Y-%m-%d %H:%M:%f'"), "now")

    def path_order(self, column: sa.ColumnElement[str]) -> sa.ColumnElement[str]:
        return column

    def has_any_tag(self, view: sa.Table, tags: list[str]) -> sa.ColumnElement[bool]:
        from nexus.storage.schema import work_items

        item = work_items.alias("tagged")
        each = sa.func.json_each(item.c.tags).table_valued("value").alias("tag")
        return sa.exists(
            sa.select(sa.literal(1))
            .select_from(item.join(each, sa.true()))
            .where(item.c.path_id == view.c.path_id, each.c.value.in_(tags))
        )
