"""Reading the five work views: the store's ``get_*_work`` and ``page_*_work`` calls.

Without filters or cursor a prepared statement per view serves; filters and cursors walk the
view's order index one keyset branch per statement, or (PostgreSQL) read a filter that
selects few paths through its own index. See docs/views.md.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from nexus.errors import InvalidArgumentError
from nexus.storage.backends import Backend
from nexus.storage.paging import (
    VIEW_ORDERS,
    Branch,
    WorkPage,
    after_branches,
    decode_cursor,
    encode_cursor,
    prefix_upper_bound,
    validate_tags_filter,
    view_order,
)
from nexus.storage.schema import (
    blocked_work_items,
    file_paths,
    in_progress_work,
    pending_work_items,
    ready_work_items,
    starts_with,
    work_by_priority,
)
from nexus.storage.validation import MAX_LIMIT, validate_limit, validate_prefix

#: PostgreSQL: a view filter selecting at most this many paths by its own index is read
#: through it (those rows by primary key, then sorted); a broader one, and every filter on
#: SQLite, is checked on the walk in the view's order.
FEW_FILTERED = 2000


class ViewReader:
    """The work views of one store (its backend, tenant and read connections)."""

    def __init__(
        self,
        backend: Backend,
        tenant_id: str,
        reading: Callable[[], AbstractContextManager[Connection]],
    ) -> None:
        self.backend = backend
        self.tenant_id = tenant_id
        self._reading = reading
        self._view_stmts: dict[tuple[str, bool], sa.Select[Any]] = {}
        self._views: dict[str, sa.Table] = {}
        for view in (
            ready_work_items,
            pending_work_items,
            blocked_work_items,
            work_by_priority,
            in_progress_work,
        ):
            # The views span tenants (as seen from a SQL shell); the store shows its own.
            # The tenant is compared plainly: no index leads with it, so each view's partial
            # index (which gives its order) serves the LIMIT, and PostgreSQL estimates the
            # filter from its statistics (through an expression it guessed 0.5 % of rows and
            # sorted every row instead).
            base = sa.select(view).where(view.c.tenant_id == sa.bindparam("tenant"))
            self._views[view.name] = view
            self._view_stmts[(view.name, False)] = base
            self._view_stmts[(view.name, True)] = base.limit(
                sa.bindparam("limit", type_=sa.Integer)
            )

    def rows(
        self,
        name: str,
        limit: int | None,
        tags: Iterable[str] | None,
        path_prefix: str | None,
        after: str | None,
    ) -> builtins.list[dict[str, Any]]:
        limit = validate_limit(limit)
        return self._read_view(name, limit, tags, path_prefix, after)

    def page(
        self,
        name: str,
        limit: int,
        tags: Iterable[str] | None,
        path_prefix: str | None,
        after: str | None,
    ) -> WorkPage:
        checked = validate_limit(limit)
        if not checked:  # None or 0
            raise InvalidArgumentError("limit", limit, "a page holds at least one row")
        size = min(checked, MAX_LIMIT - 1)
        # One row more than the page: whether a next page exists, without another query.
        rows = self._read_view(name, size + 1, tags, path_prefix, after)
        if len(rows) <= size:
            return WorkPage(rows, None)
        del rows[size:]
        return WorkPage(rows, encode_cursor(name, rows[-1]))

    def _read_view(
        self,
        name: str,
        limit: int | None,
        tags: Iterable[str] | None,
        path_prefix: str | None,
        after: str | None,
    ) -> builtins.list[dict[str, Any]]:
        """The view's rows of this tenant, filtered, after the cursor, in the view's order.

        Everything is validated before the first statement. Without filters or cursor the
        prepared statement serves. A filter that selects few paths (at most
        ``FEW_FILTERED`` by its own index) is read through that index: those rows by primary
        key, sorted. Otherwise the view's order index is walked from the cursor, one keyset
        branch per statement, until ``limit`` rows pass the filters; all in one read
        transaction. (Over 60 lines: the three plans share the validation and the one
        read transaction, and splitting them would pass half a dozen values around.)"""
        tag_list = validate_tags_filter(tags)
        prefix = None if path_prefix is None else validate_prefix(path_prefix)
        view = self._views[name]
        _tag, keys = VIEW_ORDERS[name]
        cursor_values = None if after is None else decode_cursor(name, after)
        params: dict[str, Any] = {"tenant": self.tenant_id}
        if tag_list is None and prefix is None and cursor_values is None:
            stmt = self._view_stmts[(name, limit is not None)]
            if limit is not None:
                params["limit"] = limit
            with self._reading() as conn:
                return [dict(row) for row in conn.execute(stmt, params).mappings()]
        base = self._view_stmts[(name, False)]
        if tag_list is not None:
            base = base.where(self.backend.has_any_tag(view, tag_list))
        if prefix is not None:
            base = base.where(starts_with(view.c.virtual_path, prefix))
        if cursor_values is None:
            branches = [Branch([], view_order(view, keys, self.backend.name))]
        else:
            branches = after_branches(view, keys, cursor_values, self.backend.name)
        rows: builtins.list[dict[str, Any]] = []
        seen: set[str] = set()
        with self._reading() as conn, conn.begin():
            few = self._few_filtered(conn, tag_list, prefix)
            if few is not None:
                stmt = base.where(self.backend.path_id_among(view, few))
                if cursor_values is not None:
                    stmt = stmt.where(sa.or_(*(sa.and_(*b.where) for b in branches)))
                stmt = stmt.order_by(*view_order(view, keys, self.backend.name))
                if limit is not None:
                    stmt = stmt.limit(limit)
                return [dict(row) for row in conn.execute(stmt, params).mappings()]
            for branch in branches:
                stmt = base.where(*branch.where)
                if branch.order_by:
                    stmt = stmt.order_by(*branch.order_by)
                if limit is not None:
                    stmt = stmt.limit(limit - len(rows))
                for row in conn.execute(stmt, params).mappings():
                    # A row whose order key changed between two branches' statements.
                    if row["path_id"] not in seen:
                        seen.add(row["path_id"])
                        rows.append(dict(row))
                if limit is not None and len(rows) >= limit:
                    break
        return rows

    def _few_filtered(
        self, conn: Connection, tags: builtins.list[str] | None, prefix: str | None
    ) -> sa.Select[Any] | None:
        """PostgreSQL: the path_ids a filter selects through its own index (revision 0008),
        if they are few. Counting stops after FEW_FILTERED + 1, so a broad filter costs that
        many index entries here, and is then checked row by row on the walk in the view's
        order. SQLite: always None; its views name their order index (INDEXED BY), which
        rules out reading rows by primary key, so filters are checked on the walk."""
        if not self.backend.reads_filters_by_index:
            return None
        for selected in (self._under_prefix(prefix), self.backend.tagged(tags)):
            if selected is None:
                continue
            count = conn.execute(
                sa.select(sa.func.count()).select_from(selected.limit(FEW_FILTERED + 1).subquery()),
                {"tenant": self.tenant_id},
            ).scalar_one()
            if count <= FEW_FILTERED:
                return selected
        return None

    def _under_prefix(self, prefix: str | None) -> sa.Select[Any] | None:
        """Live paths of this tenant starting with ``prefix``: a range of code points in
        ix_file_paths_prefix (``COLLATE "C"``)."""
        if prefix is None:
            return None
        path = file_paths.c.virtual_path.collate("C")
        stmt = sa.select(file_paths.c.path_id).where(
            file_paths.c.tenant_id == sa.bindparam("tenant"),
            file_paths.c.deleted_at.is_(None),
            path >= prefix,
        )
        upper = prefix_upper_bound(prefix)
        return stmt if upper is None else stmt.where(path < upper)
