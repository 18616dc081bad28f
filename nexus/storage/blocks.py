"""Transaction-level building blocks of writes, shared by the store and the work queue.

Each method returns a transaction body (:mod:`nexus.storage.calls`) of driver-level
statements, so the same block runs inside a queue transaction (on a driver cursor, through
:meth:`Database.transaction <nexus.storage.database.Database.transaction>`) and inside a store
transaction (on a SQLAlchemy connection, :func:`~nexus.storage.calls.drive_connection`).
They validate nothing; their callers have. The texts that differ per database come from the
backend (:mod:`nexus.storage.backends`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from nexus.errors import DependencyCycleError
from nexus.storage.backends import Backend
from nexus.storage.calls import Body, Call
from nexus.storage.engine import json_text
from nexus.storage.types import new_path_id

#: Rows per multi-row INSERT (3 parameters each: within both databases' limits).
BULK_ROWS = 5000

# The tenant's own graph only: a reference resolves inside its tenant. ``{origins}`` and
# ``{refs}`` are the backend's list membership.
_RESOLVED = """CAST(coalesce(
            (SELECT x.path_id FROM file_paths x
             WHERE x.tenant_id = d.tenant_id AND x.virtual_path = d.depends_on_ref),
            d.depends_on_ref) AS TEXT)"""
_CYCLE_CHECK = f"""
    WITH RECURSIVE reach(path_id) AS (
        SELECT CAST(t.path_id AS TEXT) FROM file_paths t
        WHERE t.path_id {{refs}} AND t.tenant_id = :tenant
        UNION
        SELECT CAST(t.path_id AS TEXT) FROM file_paths t
        WHERE t.tenant_id = :tenant AND t.virtual_path {{refs}}
        UNION
        SELECT {_RESOLVED}
        FROM reach r JOIN work_dependencies d ON d.path_id = r.path_id
        WHERE d.tenant_id = :tenant
    )
    SELECT 1 AS found FROM reach WHERE path_id = :self LIMIT 1"""
# The stored graph (already holding a batch's edges) walked from every batch item at once:
# an item that reaches itself closes a cycle, through stored items or not.
_CYCLE_CHECK_STORED = f"""
    WITH RECURSIVE reach(origin, path_id) AS (
        SELECT CAST(d.path_id AS TEXT), {_RESOLVED}
        FROM work_dependencies d WHERE d.path_id {{origins}} AND d.tenant_id = :tenant
        UNION
        SELECT r.origin, {_RESOLVED}
        FROM reach r JOIN work_dependencies d ON d.path_id = r.path_id
        WHERE d.tenant_id = :tenant
    )
    SELECT origin FROM reach WHERE path_id = origin LIMIT 1"""
_REFERENCED = """
    SELECT path_id FROM work_dependencies
    WHERE depends_on_ref {refs} AND tenant_id = :tenant AND NOT (path_id {besides})
    LIMIT 1"""
_DELETED_PATHS = """
    SELECT path_id FROM file_paths
    WHERE tenant_id = :tenant AND virtual_path {paths} AND deleted_at IS NOT NULL
    ORDER BY path_id{for_update}"""
_EXISTING_PATHS = """
    SELECT path_id, virtual_path FROM file_paths
    WHERE tenant_id = :tenant AND virtual_path {paths}
    ORDER BY virtual_path{for_update}"""
_DROP_METADATA = "DELETE FROM file_metadata WHERE path_id {ids}"
_REVIVE = """UPDATE file_paths SET deleted_at = NULL, created_at = :now, updated_at = :now
    WHERE path_id {ids}"""


class Blocks:
    """The blocks of one store (its backend and tenant)."""

    def __init__(self, backend: Backend, tenant_id: str) -> None:
        self.backend = backend
        self.tenant_id = tenant_id
        b = backend
        fill = {
            "refs": b.member("refs"),
            "origins": b.member("origins"),
            "besides": b.member("besides"),
            "paths": b.member("paths"),
            "ids": b.member("ids"),
            "for_update": b.for_update,
        }
        self._sql = {
            name: b.render(text.format(**fill))
            for name, text in {
                "cycle_check": _CYCLE_CHECK,
                "cycle_check_stored": _CYCLE_CHECK_STORED,
                "referenced": _REFERENCED,
                "deleted_paths": _DELETED_PATHS,
                "existing_paths": _EXISTING_PATHS,
                "drop_metadata": _DROP_METADATA,
                "revive": _REVIVE,
                "create_paths": b.create_paths,
                "upsert_metadata": b.upsert_metadata,
            }.items()
        }

    def _call(self, name: str, params: Any) -> Call:
        return Call(self._sql[name], params)

    # ------------------------------------------------------------------ locks, statistics

    def lock_dependency_writes(self) -> Body[None]:
        """Serialise writers of ``depends_on`` (PostgreSQL), so cycle checks see each other."""
        if self.backend.lock_dependency_writes is not None:
            yield Call(self.backend.lock_dependency_writes)

    def refresh_statistics(self) -> Body[None]:
        """PostgreSQL: ANALYZE ``file_paths`` when its planner statistics are missing or stale.

        A bulk call inside one transaction is invisible to autovacuum, and without statistics
        the planner believes the tables are tiny and scans them for every batched lookup. The
        ANALYZE runs in the caller's transaction (it counts the rows inserted so far) and is
        skipped while the statistics are current, as autovacuum would judge. Only
        ``file_paths``, the table looked up by virtual path: statistics of ``work_items`` or
        ``file_metadata`` taken halfway through a load would mislead the planner.
        """
        if self.backend.stale_tables is None:
            return
        stale = yield Call(self.backend.stale_tables)
        for table in stale.column("relname"):  # from the fixed list of the query, not input
            yield Call(f"ANALYZE {table}")

    # ------------------------------------------------------------------ paths

    def ensure_paths(
        self, paths: list[str], now: datetime
    ) -> Body[tuple[dict[str, str], set[str]]]:
        """Create missing paths and revive soft-deleted ones (empty).

        Returns path -> path_id, and the path_ids that are blank: created or revived here, so
        they carry no metadata yet. Only paths that already existed are looked up, and they
        stay locked until the transaction ends (PostgreSQL): a concurrent transaction creating
        the same paths waits for this one, so what it reads next (is the path a work item
        already?) includes what this one wrote.
        """
        found: dict[str, str] = {}
        stamp = self.backend.timestamp(now)
        # One statement per batch: no per-row parameter processing.
        for start in range(0, len(paths), BULK_ROWS):
            chunk = paths[start : start + BULK_ROWS]
            params = self.backend.rows_param(
                {"ids": [new_path_id() for _ in chunk], "paths": chunk}
            )
            created = yield self._call(
                "create_paths", {**params, "tenant": self.tenant_id, "now": stamp}
            )
            for row in created.rows:
                found[row["virtual_path"]] = row["path_id"]
        blank = set(found.values())
        existed = [path for path in paths if path not in found]
        if existed:
            yield from self.refresh_statistics()
            blank.update((yield from self.revive_deleted(existed, now)))
            rows = yield self._call(
                "existing_paths", {"tenant": self.tenant_id, "paths": self.backend.array(existed)}
            )
            for row in rows.rows:
                found[row["virtual_path"]] = row["path_id"]
        return found, blank

    def revive_deleted(self, paths: list[str], now: datetime) -> Body[list[str]]:
        """Bring soft-deleted paths back as new, empty files; returns their path_ids.

        They are locked first (PostgreSQL): a concurrent writer reviving the same path waits,
        then no longer finds it deleted, instead of reviving it a second time."""
        deleted = yield self._call(
            "deleted_paths", {"tenant": self.tenant_id, "paths": self.backend.array(paths)}
        )
        revived = [str(path_id) for path_id in deleted.column("path_id")]
        if revived:
            ids = self.backend.array(revived)
            yield self._call("drop_metadata", {"ids": ids})
            yield self._call("revive", {"ids": ids, "now": self.backend.timestamp(now)})
        return revived

    # ------------------------------------------------------------------ metadata

    def write_metadata(self, rows: list[dict[str, Any]]) -> Body[None]:
        """Upsert ``{"path_id", "key", "value"}`` rows, in order, as multi-row statements.

        One statement per batch of rows (a JSON array on SQLite, arrays on PostgreSQL): the
        database's rules then see each batch at once, which on PostgreSQL (statement
        triggers) is what makes bulk writes set-wise."""
        for start in range(0, len(rows), BULK_ROWS):
            chunk = rows[start : start + BULK_ROWS]
            yield self._call(
                "upsert_metadata",
                self.backend.rows_param(
                    {
                        "ids": [row["path_id"] for row in chunk],
                        "keys": [row["key"] for row in chunk],
                        "values": [json_text(row["value"]) for row in chunk],
                    }
                ),
            )

    # ------------------------------------------------------------------ cycles

    def check_no_cycle(
        self, ref: str, path_id: str, refs: list[str], value: Any = None
    ) -> Body[None]:
        """Raise DependencyCycleError if ``path_id`` is reachable from ``refs``."""
        if not refs:
            return
        found = yield self._call(
            "cycle_check",
            {"refs": self.backend.array(refs), "tenant": self.tenant_id, "self": path_id},
        )
        if found.rows:
            raise DependencyCycleError(ref, value if value is not None else refs)

    def is_referenced(self, refs: list[str], besides: list[str]) -> Body[bool]:
        """Whether a stored edge of this tenant, from a path not in ``besides``, names one of
        ``refs``."""
        found = yield self._call(
            "referenced",
            {
                "refs": self.backend.array(refs),
                "besides": self.backend.array(besides),
                "tenant": self.tenant_id,
            },
        )
        return bool(found.rows)

    def check_acyclic_stored(self, origins: Mapping[str, tuple[str, Any]]) -> Body[None]:
        """Raise DependencyCycleError if any of ``origins`` (path_id -> (path, depends_on))
        reaches itself in the stored graph."""
        found = yield self._call(
            "cycle_check_stored",
            {"origins": self.backend.array(list(origins)), "tenant": self.tenant_id},
        )
        if found.rows:
            path, depends_on = origins[found.rows[0]["origin"]]
            raise DependencyCycleError(path, depends_on)
