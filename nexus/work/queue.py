"""The work queue: enqueue, atomic claims, leases, retries, promotion and history.

This is a mixin of :class:`~nexus.storage.metadata_store.SQLAlchemyMetadataStore`; it writes
only ``file_metadata`` (the work keys and the ``queue`` state object), ``work_history`` and
``work_idempotency``, and reads the views, so ``ready_work_items`` stays the single definition
of "ready". It imports the storage layer's low-level modules, never the store module itself.

Atomicity: SQLite write transactions start with ``BEGIN IMMEDIATE`` (one writer at a time);
on PostgreSQL claims lock their rows with ``FOR UPDATE ... SKIP LOCKED`` and every lease
check locks the item's ``work_items`` row, so a stale token can never win a race.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from nexus.errors import (
    DependencyCycleError,
    InvalidArgumentError,
    LeaseLostError,
    NexusFileNotFoundError,
    WorkItemNotFoundError,
)
from nexus.storage.schema import (
    file_metadata,
    file_paths,
    ready_work_items,
    tenant_of_path_is,
    work_dependencies,
    work_failures_by_error,
    work_history,
    work_idempotency,
    work_items,
    work_throughput_hourly,
    work_timing_hourly,
)
from nexus.storage.types import (
    JSONValue,
    UTCDateTime,
    new_path_id,
    parse_timestamp,
    to_utc,
    truncate_to_ms,
    utcnow,
)
from nexus.storage.validation import (
    dependency_refs,
    is_path_id,
    validate_depends_on,
    validate_metadata,
    validate_path,
    validate_path_or_id,
    validate_positive_int,
    validate_prefix,
    validate_priority,
    validate_status,
    validate_tags,
)
from nexus.work.retry import RetryPolicy
from nexus.work.wait import ReadyWaiter

T = TypeVar("T")

#: SQLite allows 32766 bound parameters per statement; IN-lists stay far below that.
CHUNK = 500
#: Expired leases reclaimed per claim call (the rest go on the next calls).
RECLAIM_BATCH = 100
#: Bulk calls at least this large check the planner statistics first (PostgreSQL).
STATISTICS_BATCH = 1000
DEFAULT_MAX_ATTEMPTS = 3
_ENQUEUE_KEYS = {
    "path",
    "priority",
    "depends_on",
    "tags",
    "status",
    "run_after",
    "max_attempts",
    "idempotency_key",
}


def _chunks(items: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _queue_state_of(path_id: sa.ColumnElement[Any]) -> sa.ScalarSelect[Any]:
    return (
        sa.select(file_metadata.c.value)
        .where(file_metadata.c.path_id == path_id, file_metadata.c.key == "queue")
        .scalar_subquery()
    )


def _iso(moment: datetime | None) -> str | None:
    return (
        None
        if moment is None
        else truncate_to_ms(to_utc(moment)).isoformat(timespec="milliseconds")
    )


def _initial_state(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "attempts": 0,
        "max_attempts": spec["max_attempts"],
        "run_after": _iso(spec["run_after"]),
    }


def _parse_optional(value: Any) -> datetime | None:
    return parse_timestamp(value) if isinstance(value, str) else None


def _state_columns(change: dict[str, Any]) -> dict[str, Any]:
    """The work_items columns a queue state object projects to (as the triggers would)."""
    state = change["state"]
    attempts = state.get("attempts")
    token = state.get("lease_token")
    columns = {
        "pid": change["path_id"],
        "status": change["status"],
        "lease_token": token if isinstance(token, str) else None,
        "lease_expires_at": _parse_optional(state.get("lease_expires_at")),
        "run_after": _parse_optional(state.get("run_after")),
        "attempts": attempts if isinstance(attempts, int) and not isinstance(attempts, bool) else 0,
    }
    if "worker_id" in change:
        columns["worker_id"] = change["worker_id"]
        columns["started_at"] = change["started_at"]
    return columns


_STATE_VALUES = {
    "status": sa.bindparam("status"),
    "lease_token": sa.bindparam("lease_token"),
    "lease_expires_at": sa.bindparam("lease_expires_at", type_=UTCDateTime()),
    "run_after": sa.bindparam("run_after", type_=UTCDateTime()),
    "attempts": sa.bindparam("attempts"),
}
_STATE_UPDATE = (
    sa.update(work_items).where(work_items.c.path_id == sa.bindparam("pid")).values(_STATE_VALUES)
)
_CLAIM_UPDATE = (
    sa.update(work_items)
    .where(work_items.c.path_id == sa.bindparam("pid"))
    .values(
        {
            **_STATE_VALUES,
            "worker_id": sa.bindparam("worker_id"),
            "started_at": sa.bindparam("started_at", type_=UTCDateTime()),
        }
    )
)
_INSERT_WORK_ITEM = sa.insert(work_items).values(
    {
        "path_id": sa.bindparam("path_id"),
        "tenant_id": sa.bindparam("tenant_id"),
        "created_at": sa.bindparam("created_at", type_=UTCDateTime()),
        "status": sa.bindparam("status"),
        "priority": sa.bindparam("priority"),
        "tags": sa.bindparam("tags", type_=JSONValue),
        "run_after": sa.bindparam("run_after", type_=UTCDateTime()),
        "attempts": sa.bindparam("attempts"),
        "max_attempts": sa.bindparam("max_attempts"),
        "unresolved_count": sa.bindparam("unresolved_count"),
    }
)
_SQLITE_BYPASS_ON = sa.text("INSERT INTO nexus_projection_bypass (id) VALUES (1)")
_SQLITE_BYPASS_OFF = sa.text("DELETE FROM nexus_projection_bypass")
_PG_BYPASS = sa.text("SELECT set_config('nexus.bypass_projection', 'on', true)")
_EXPIRED_LEASES = (
    sa.select(
        work_items.c.path_id,
        work_items.c.worker_id,
        work_items.c.attempts,
        work_items.c.max_attempts,
        _queue_state_of(work_items.c.path_id).label("queue"),
    )
    .where(
        # A literal, not a bound parameter: only then can SQLite use the partial index.
        work_items.c.status == sa.literal_column("'in_progress'"),
        work_items.c.lease_expires_at < sa.bindparam("now", type_=UTCDateTime()),
        # Not indexable on purpose: the partial lease index (in_progress, by expiry) must
        # drive this, not the counts index whose (tenant_id, status) prefix looks selective
        # to a planner without statistics and would visit every in-progress item.
        sa.func.coalesce(work_items.c.tenant_id, "") == sa.bindparam("tenant"),
    )
    .order_by(work_items.c.lease_expires_at)
    .limit(RECLAIM_BATCH)
    .with_for_update(of=work_items, skip_locked=True)
)


class WorkQueueMixin:
    """Queue operations; see docs/work-queue.md for the state machine."""

    retry_policy: RetryPolicy = RetryPolicy()
    _ready_waiter: ReadyWaiter | None = None

    if TYPE_CHECKING:  # provided by the store
        dialect: str
        tenant_id: str
        url: str
        _upsert_metadata_stmt: Any

        def _write(self, work: Callable[[Connection], T]) -> T: ...

        def _reading(self) -> Any: ...

        def _path_filter(self, ref: str) -> sa.ColumnElement[bool]: ...

        def _params(self, ref: str, **extra: Any) -> dict[str, Any]: ...

        def _lock_dependency_writes(self, conn: Connection) -> None: ...

        def _revive_deleted(
            self, conn: Connection, paths: list[str], now: datetime | None = None
        ) -> list[str]: ...

        def _refresh_statistics(self, conn: Connection) -> None: ...

        def _check_no_cycle(
            self, conn: Connection, ref: str, path_id: str, refs: list[str]
        ) -> None: ...

        def get_ready_work(self, limit: int | None = None) -> list[dict[str, Any]]: ...

    # ------------------------------------------------------------------ writing helpers

    def _write_metadata(self, conn: Connection, rows: list[dict[str, Any]], now: datetime) -> None:
        if rows:
            conn.execute(self._upsert_metadata_stmt, rows)

    def _record(
        self,
        conn: Connection,
        events: list[tuple[str, str, str | None, dict[str, Any] | None]],
        now: datetime,
    ) -> None:
        """Append (path_id, event, worker_id, detail) rows to work_history."""
        if events:
            conn.execute(
                sa.insert(work_history),
                [
                    {
                        "path_id": path_id,
                        "tenant_id": self.tenant_id,
                        "event": event,
                        "at": now,
                        "worker_id": worker_id,
                        "detail": detail,
                    }
                    for path_id, event, worker_id, detail in events
                ],
            )

    def _tenant_filter(self, lookup_column: sa.ColumnElement[Any]) -> sa.ColumnElement[bool]:
        """The tenant condition for a batched lookup of file_paths by ``lookup_column``."""
        if lookup_column is file_paths.c.path_id:
            return tenant_of_path_is(self.tenant_id)
        return file_paths.c.tenant_id == self.tenant_id

    def _item_rows(self, conn: Connection, refs: Sequence[str]) -> dict[str, Any]:
        """Work rows of live paths (locked on PostgreSQL), keyed by the ref that found them."""
        columns = (
            work_items.c.path_id,
            file_paths.c.virtual_path,
            work_items.c.status,
            work_items.c.lease_token,
            work_items.c.started_at,
            work_items.c.worker_id,
            work_items.c.attempts,
            work_items.c.max_attempts,
            _queue_state_of(work_items.c.path_id).label("queue"),
        )
        found: dict[str, Any] = {}
        for column, wanted in (
            (file_paths.c.virtual_path, [r for r in refs if not is_path_id(r)]),
            (file_paths.c.path_id, [r for r in refs if is_path_id(r)]),
        ):
            for chunk in _chunks(sorted(set(wanted))):
                stmt = (
                    sa.select(*columns)
                    .select_from(
                        file_paths.join(work_items, work_items.c.path_id == file_paths.c.path_id)
                    )
                    .where(
                        column.in_(chunk),
                        self._tenant_filter(column),
                        file_paths.c.deleted_at.is_(None),
                    )
                    .order_by(work_items.c.path_id)
                    .with_for_update(of=work_items)
                )
                for row in conn.execute(stmt):
                    found[
                        row.virtual_path if column is file_paths.c.virtual_path else row.path_id
                    ] = row
        return found

    def _lock_item(self, conn: Connection, ref: str) -> Any:
        """The item's work row (locked on PostgreSQL); raises if the path has none."""
        row = self._item_rows(conn, [ref]).get(ref)
        if row is None:
            exists = conn.execute(
                sa.select(file_paths.c.path_id).where(self._path_filter(ref)), self._params(ref)
            ).first()
            if exists is None:
                raise NexusFileNotFoundError(ref)
            raise WorkItemNotFoundError(ref)
        return row

    @staticmethod
    def _check_token(lease_token: Any) -> None:
        if not isinstance(lease_token, str) or not lease_token:
            raise InvalidArgumentError("lease_token", lease_token, "must be a non-empty string")

    def _held(self, conn: Connection, ref: str, lease_token: str) -> Any:
        return self._held_many(conn, [(ref, lease_token)])[0]

    def _held_many(self, conn: Connection, leases: Sequence[tuple[str, str]]) -> list[Any]:
        """The rows of items whose lease the caller holds; LeaseLostError on the first not held."""
        for _, token in leases:
            self._check_token(token)
        rows = self._item_rows(conn, [ref for ref, _ in leases])
        held = []
        for ref, token in leases:
            row = rows.get(ref)
            if row is None:
                if (
                    conn.execute(
                        sa.select(file_paths.c.path_id).where(self._path_filter(ref)),
                        self._params(ref),
                    ).first()
                    is None
                ):
                    raise NexusFileNotFoundError(ref)
                raise LeaseLostError(ref, token)
            if row.status != "in_progress" or row.lease_token != token:
                raise LeaseLostError(ref, token)
            held.append(row)
        return held

    @staticmethod
    def _queue_state(row: Any, **changes: Any) -> dict[str, Any]:
        state = dict(row.queue) if isinstance(row.queue, dict) else {}
        state.update(changes)
        return state

    # ------------------------------------------------------------------ enqueue

    def enqueue(
        self,
        path: str,
        *,
        priority: int | None = None,
        depends_on: str | list[str] | None = None,
        tags: list[str] | None = None,
        status: str = "ready",
        run_after: datetime | None = None,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Make ``path`` a work item (creating the path if absent).

        Enqueuing a path that is already a work item, or an ``idempotency_key`` already
        used, is a no-op that returns the existing item.
        """
        return self.enqueue_many(
            [
                {
                    "path": path,
                    "priority": priority,
                    "depends_on": depends_on,
                    "tags": tags,
                    "status": status,
                    "run_after": run_after,
                    "max_attempts": max_attempts,
                    "idempotency_key": idempotency_key,
                }
            ]
        )[0]

    @staticmethod
    def _validate_spec(item: Mapping[str, Any]) -> dict[str, Any]:
        if not isinstance(item, Mapping):
            raise InvalidArgumentError("item", item, "must be a mapping with a 'path'")
        unknown = set(item) - _ENQUEUE_KEYS
        if unknown:
            raise InvalidArgumentError("item", item, f"unknown keys {sorted(unknown)}")
        run_after = item.get("run_after")
        if run_after is not None and not isinstance(run_after, datetime):
            raise InvalidArgumentError("run_after", run_after, "must be a datetime or None")
        key = item.get("idempotency_key")
        if key is not None and (not isinstance(key, str) or not key or len(key) > 255):
            raise InvalidArgumentError("idempotency_key", key, "must be a string of 1-255 chars")
        return {
            "path": validate_path(item.get("path")),
            "priority": validate_priority(item.get("priority")),
            "depends_on": validate_depends_on(item.get("depends_on")),
            "tags": validate_tags(item.get("tags")),
            "status": validate_status(item.get("status", "ready")),
            "run_after": run_after,
            "max_attempts": validate_positive_int(
                "max_attempts", item.get("max_attempts", DEFAULT_MAX_ATTEMPTS)
            ),
            "idempotency_key": key,
        }

    def enqueue_many(self, items: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Enqueue a batch (a whole DAG: nodes and ``depends_on`` edges) in one transaction.

        Returns one item per input, in order. Everything is validated before anything is
        written; a dependency cycle anywhere rejects the whole batch.
        """
        specs = [self._validate_spec(item) for item in items]
        if not specs:
            return []

        def work(conn: Connection) -> list[dict[str, Any]]:
            now = utcnow()
            self._lock_dependency_writes(conn)
            # Idempotency keys already used point at their existing items.
            keyed = [s["idempotency_key"] for s in specs if s["idempotency_key"]]
            known_keys: dict[str, str] = {}
            for chunk in _chunks(keyed):
                for key, path in conn.execute(
                    sa.select(work_idempotency.c.idempotency_key, file_paths.c.virtual_path)
                    .join(file_paths, file_paths.c.path_id == work_idempotency.c.path_id)
                    .where(
                        work_idempotency.c.tenant_id == self.tenant_id,
                        work_idempotency.c.idempotency_key.in_(chunk),
                    )
                ):
                    known_keys[key] = path
            result_paths = [known_keys.get(s["idempotency_key"], s["path"]) for s in specs]
            fresh: dict[str, dict[str, Any]] = {}
            for spec in specs:
                if spec["idempotency_key"] not in known_keys:
                    fresh.setdefault(spec["path"], spec)
            path_ids, blank = self._ensure_paths(conn, list(fresh), now)
            if len(fresh) >= STATISTICS_BATCH:
                self._refresh_statistics(conn)
            already = self._paths_with_status(
                conn, [path_ids[p] for p in fresh if path_ids[p] not in blank]
            )
            new = {p: s for p, s in fresh.items() if path_ids[p] not in already}
            if new:
                self._write_new_items(conn, new, path_ids, blank, now)
            return self._items_by_path(conn, result_paths, path_ids)

        return self._write(work)

    def _ensure_paths(
        self, conn: Connection, paths: list[str], now: datetime
    ) -> tuple[dict[str, str], set[str]]:
        """Create missing paths and revive soft-deleted ones (empty).

        Returns path -> path_id, and the path_ids that are blank: created or revived here, so
        they carry no metadata yet. Only paths that already existed are looked up.
        """
        insert = (
            postgresql.insert(file_paths)
            if self.dialect == "postgresql"
            else sqlite.insert(file_paths)
        )
        found: dict[str, str] = {}
        if paths:
            stmt = insert.on_conflict_do_nothing(
                index_elements=["tenant_id", "virtual_path"]
            ).returning(file_paths.c.path_id, file_paths.c.virtual_path)
            rows = [
                {
                    "path_id": new_path_id(),
                    "tenant_id": self.tenant_id,
                    "virtual_path": path,
                    "size_bytes": 0,
                    "created_at": now,
                    "updated_at": now,
                }
                for path in paths
            ]
            for batch in _chunks(rows, CHUNK * 10):
                for path_id, path in conn.execute(stmt, list(batch)):
                    found[path] = path_id
        blank = set(found.values())
        existed = [path for path in paths if path not in found]
        if existed:
            self._refresh_statistics(conn)
            blank.update(self._revive_deleted(conn, existed, now))
            for chunk in _chunks(existed):
                for path_id, path in conn.execute(
                    sa.select(file_paths.c.path_id, file_paths.c.virtual_path).where(
                        file_paths.c.tenant_id == self.tenant_id,
                        file_paths.c.virtual_path.in_(chunk),
                    )
                ):
                    found[path] = path_id
        return found, blank

    def _paths_with_status(self, conn: Connection, path_ids: list[str]) -> set[str]:
        found: set[str] = set()
        for chunk in _chunks(path_ids):
            found.update(
                conn.execute(
                    sa.select(file_metadata.c.path_id).where(
                        file_metadata.c.key == "status", file_metadata.c.path_id.in_(chunk)
                    )
                ).scalars()
            )
        return found

    def _write_new_items(
        self,
        conn: Connection,
        new: dict[str, dict[str, Any]],
        path_ids: dict[str, str],
        blank: set[str],
        now: datetime,
    ) -> None:
        self._check_batch_acyclic(conn, new, path_ids)
        history: list[tuple[str, str, str | None, dict[str, Any] | None]] = [
            (path_ids[p], "enqueued", None, {"status": s["status"]}) for p, s in new.items()
        ]
        keys = [
            {
                "tenant_id": self.tenant_id,
                "idempotency_key": s["idempotency_key"],
                "path_id": path_ids[p],
            }
            for p, s in new.items()
            if s["idempotency_key"]
        ]
        # Paths that already existed may carry metadata from before: the triggers project
        # them (and must run before the bypass, which lasts to the end of the transaction on
        # PostgreSQL). Blank paths are projected here directly, which is much faster.
        existing = {p: s for p, s in new.items() if path_ids[p] not in blank}
        fresh = {p: s for p, s in new.items() if path_ids[p] in blank}
        if existing:
            rows, status_rows = self._item_metadata(existing, path_ids)
            self._write_metadata(conn, rows + status_rows, now)
        if fresh:
            self._project_fresh_items(conn, fresh, path_ids, now)
        if keys:
            conn.execute(sa.insert(work_idempotency), keys)
        self._record(conn, history, now)

    @staticmethod
    def _item_metadata(
        specs: dict[str, dict[str, Any]], path_ids: dict[str, str]
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        rows: list[dict[str, Any]] = []
        status_rows: list[dict[str, Any]] = []
        for path, spec in specs.items():
            path_id = path_ids[path]
            for key in ("priority", "tags", "depends_on"):
                if spec[key] is not None:
                    rows.append({"path_id": path_id, "key": key, "value": spec[key]})
            rows.append({"path_id": path_id, "key": "queue", "value": _initial_state(spec)})
            # Status last: its trigger builds the work row from every key at once.
            status_rows.append({"path_id": path_id, "key": "status", "value": spec["status"]})
        return rows, status_rows

    def _project_fresh_items(
        self,
        conn: Connection,
        fresh: dict[str, dict[str, Any]],
        path_ids: dict[str, str],
        now: datetime,
    ) -> None:
        """Write work_items rows and dependency edges of blank paths directly."""
        edges = [
            {"path_id": path_ids[path], "depends_on_ref": ref, "tenant_id": self.tenant_id}
            for path, spec in fresh.items()
            for ref in dependency_refs(spec["depends_on"])
        ]
        completed = self._completed_refs(
            conn, fresh, path_ids, [e["depends_on_ref"] for e in edges]
        )
        work_rows = []
        for path, spec in fresh.items():
            refs = dependency_refs(spec["depends_on"])
            work_rows.append(
                {
                    "path_id": path_ids[path],
                    "tenant_id": self.tenant_id,
                    "created_at": now,
                    "status": spec["status"],
                    "priority": spec["priority"],
                    "tags": spec["tags"],
                    "run_after": truncate_to_ms(to_utc(spec["run_after"]))
                    if spec["run_after"]
                    else None,
                    "attempts": 0,
                    "max_attempts": spec["max_attempts"],
                    "unresolved_count": sum(1 for ref in refs if ref not in completed),
                }
            )
        rows, status_rows = self._item_metadata(fresh, path_ids)
        with self._projection_bypassed(conn):
            for chunk in _chunks(work_rows, CHUNK * 10):
                conn.execute(_INSERT_WORK_ITEM, list(chunk))
            for chunk in _chunks(edges, CHUNK * 10):
                conn.execute(sa.insert(work_dependencies), list(chunk))
            # Status rows still fire the refresh of dependents (an item enqueued as completed
            # resolves what already waits for it); they read the rows written above.
            self._write_metadata(conn, rows + status_rows, now)

    def _completed_refs(
        self,
        conn: Connection,
        fresh: dict[str, dict[str, Any]],
        path_ids: dict[str, str],
        refs: list[str],
    ) -> set[str]:
        """The refs (paths or path_ids) whose target is a completed work item."""
        if not refs:
            return set()
        if self.dialect == "postgresql":
            # The same protocol as the triggers: serialise with concurrent status changes of
            # these targets, then read their statuses in a fresh statement.
            conn.execute(sa.text("SELECT nexus_lock_refs(:refs)"), {"refs": sorted(set(refs))})
        completed: set[str] = set()
        for path, spec in fresh.items():
            if spec["status"] == "completed":
                completed.update((path, path_ids[path]))
        outside = sorted({r for r in refs if r not in fresh and r not in path_ids.values()})
        by_id = [r for r in outside if is_path_id(r)]
        by_path = [r for r in outside if not is_path_id(r)]
        for column, wanted in ((file_paths.c.path_id, by_id), (file_paths.c.virtual_path, by_path)):
            for chunk in _chunks(wanted):
                completed.update(
                    conn.execute(
                        sa.select(column)
                        .select_from(
                            file_paths.join(
                                work_items, work_items.c.path_id == file_paths.c.path_id
                            )
                        )
                        .where(
                            column.in_(chunk),
                            self._tenant_filter(column),
                            work_items.c.status == "completed",
                        )
                    ).scalars()
                )
        return completed

    def _check_batch_acyclic(
        self, conn: Connection, new: dict[str, dict[str, Any]], path_ids: dict[str, str]
    ) -> None:
        by_id = {path_ids[path]: path for path in new}
        graph: dict[str, list[str]] = {}
        for path, spec in new.items():
            targets = []
            for ref in dependency_refs(spec["depends_on"]):
                target = by_id.get(ref, ref) if is_path_id(ref) else ref
                if target == path:
                    raise DependencyCycleError(path, spec["depends_on"])
                if target in new:
                    targets.append(target)
            graph[path] = targets
        # Iterative DFS over the batch's own edges.
        state: dict[str, int] = {}
        for root in graph:
            if state.get(root):
                continue
            stack = [(root, iter(graph[root]))]
            state[root] = 1
            while stack:
                node, children = stack[-1]
                child = next(children, None)
                if child is None:
                    state[node] = 2
                    stack.pop()
                elif state.get(child) == 1:
                    raise DependencyCycleError(child, new[child]["depends_on"])
                elif not state.get(child):
                    state[child] = 1
                    stack.append((child, iter(graph[child])))
        # Cycles through existing items need an existing edge naming a new path.
        external = False
        for chunk in _chunks(list(new)):
            if conn.execute(
                sa.select(work_dependencies.c.path_id)
                .where(
                    work_dependencies.c.depends_on_ref.in_(chunk),
                    work_dependencies.c.tenant_id == self.tenant_id,
                )
                .limit(1)
            ).first():
                external = True
                break
        if external:
            for path, spec in new.items():
                refs = dependency_refs(spec["depends_on"])
                if refs:
                    self._check_no_cycle(conn, path, path_ids[path], refs)

    # ------------------------------------------------------------------ reading items

    def _item_query(self) -> sa.Select[Any]:
        depends = (
            sa.select(file_metadata.c.value)
            .where(
                file_metadata.c.path_id == work_items.c.path_id, file_metadata.c.key == "depends_on"
            )
            .scalar_subquery()
        )
        return sa.select(
            work_items.c.path_id,
            file_paths.c.virtual_path,
            work_items.c.status,
            work_items.c.priority,
            work_items.c.tags,
            depends.label("depends_on"),
            work_items.c.worker_id,
            work_items.c.started_at,
            work_items.c.run_after,
            work_items.c.lease_expires_at,
            work_items.c.attempts,
            work_items.c.max_attempts,
            work_items.c.unresolved_count.label("blocker_count"),
            work_items.c.created_at,
            _queue_state_of(work_items.c.path_id).label("queue"),
        ).select_from(file_paths.join(work_items, work_items.c.path_id == file_paths.c.path_id))

    @staticmethod
    def _item_dict(row: Any) -> dict[str, Any]:
        item = dict(row._mapping)
        state = item.pop("queue") or {}
        item["last_error"] = state.get("last_error") if isinstance(state, dict) else None
        return item

    def _items_by_path(
        self, conn: Connection, paths: list[str], path_ids: dict[str, str] | None = None
    ) -> list[dict[str, Any]]:
        """Items in the order of ``paths``; by primary key where the path_id is known."""
        known = path_ids or {}
        found: dict[str, dict[str, Any]] = {}
        unique = list(dict.fromkeys(paths))
        by_id = [known[p] for p in unique if p in known]
        by_path = [p for p in unique if p not in known]
        for column, wanted in ((file_paths.c.path_id, by_id), (file_paths.c.virtual_path, by_path)):
            for chunk in _chunks(wanted):
                for row in conn.execute(
                    self._item_query().where(
                        column.in_(chunk),
                        self._tenant_filter(column),
                        file_paths.c.deleted_at.is_(None),
                    )
                ):
                    found[row.virtual_path] = self._item_dict(row)
        return [found[path] for path in paths]

    def get_work_item(self, path: str) -> dict[str, Any] | None:
        """The work item at ``path`` (status, priority, attempts, lease, last_error...)."""
        ref = validate_path_or_id(path)
        with self._reading() as conn:
            row = conn.execute(
                self._item_query().where(self._path_filter(ref)), self._params(ref)
            ).first()
        return None if row is None else self._item_dict(row)

    # ------------------------------------------------------------------ claims and leases
    #
    # The hot paths write work_items themselves (typed values, one UPDATE per batch) and the
    # matching file_metadata rows, with the projection triggers switched off for their own
    # transaction only; file_metadata stays the source of truth and the two always agree.

    @contextmanager
    def _projection_bypassed(self, conn: Connection) -> Iterator[None]:
        if self.dialect == "postgresql":
            # Transaction-local: it ends with the transaction, so no reset round trip. The
            # queue's transactions make no trigger-projected writes after their transitions.
            conn.execute(_PG_BYPASS)
            yield
        else:
            conn.execute(_SQLITE_BYPASS_ON)
            try:
                yield
            finally:
                conn.execute(_SQLITE_BYPASS_OFF)

    def _transition(self, conn: Connection, changes: list[dict[str, Any]], now: datetime) -> None:
        """Apply status/queue-state changes: ``{"path_id", "status", "state"}`` plus, for
        claims, ``"worker_id"`` and ``"started_at"``, and optionally ``"result"``."""
        if not changes:
            return
        claims = [c for c in changes if "worker_id" in c]
        others = [c for c in changes if "worker_id" not in c]
        rows: list[dict[str, Any]] = []
        status_rows: list[dict[str, Any]] = []
        with self._projection_bypassed(conn):
            for stmt, batch in ((_CLAIM_UPDATE, claims), (_STATE_UPDATE, others)):
                if batch:
                    conn.execute(stmt, [_state_columns(c) for c in batch])
            for change in changes:
                path_id = change["path_id"]
                rows.append({"path_id": path_id, "key": "queue", "value": change["state"]})
                if "worker_id" in change:
                    rows.append(
                        {"path_id": path_id, "key": "worker_id", "value": change["worker_id"]}
                    )
                    rows.append(
                        {
                            "path_id": path_id,
                            "key": "started_at",
                            "value": change["started_at"].isoformat(timespec="milliseconds"),
                        }
                    )
                if change.get("result") is not None:
                    rows.append({"path_id": path_id, "key": "result", "value": change["result"]})
                status_rows.append({"path_id": path_id, "key": "status", "value": change["status"]})
            # Status rows last: their trigger refreshes the blocker counts of dependents from
            # the work_items rows written above.
            self._write_metadata(conn, rows + status_rows, now)

    def claim_ready_work(
        self,
        worker_id: str,
        *,
        limit: int = 1,
        lease_seconds: float = 300,
        tags: list[str] | None = None,
        path_prefix: str | None = None,
    ) -> list[dict[str, Any]]:
        """Atomically move up to ``limit`` items, in ``ready_work_items`` order, to in_progress.

        Each returned item carries a ``lease_token`` that heartbeat/complete/fail/release
        need. Expired leases are reclaimed first, so no sweeper process is required.
        ``tags`` keeps items having at least one of the tags; ``path_prefix`` keeps paths
        starting with it.
        """
        if not isinstance(worker_id, str) or not worker_id:
            raise InvalidArgumentError("worker_id", worker_id, "must be a non-empty string")
        validate_positive_int("limit", limit)
        lease = self._validate_lease(lease_seconds)
        wanted_tags = validate_tags(tags)
        prefix = validate_prefix(path_prefix) if path_prefix is not None else None

        view = ready_work_items
        stmt = sa.select(
            view.c.path_id,
            view.c.virtual_path,
            view.c.priority,
            view.c.created_at,
            _queue_state_of(view.c.path_id).label("queue"),
        ).where(sa.func.coalesce(view.c.tenant_id, "") == self.tenant_id)  # see _view
        if prefix is not None:
            stmt = stmt.where(sa.func.substr(view.c.virtual_path, 1, len(prefix)) == prefix)
        if wanted_tags:
            stmt = stmt.where(self._has_any_tag(view.c.path_id, wanted_tags))
        stmt = stmt.limit(limit).with_for_update(of=view, skip_locked=True)

        def work(conn: Connection) -> list[dict[str, Any]]:
            now = truncate_to_ms(utcnow())
            self._reclaim(conn, now)
            picked = conn.execute(stmt).all()
            expires = now + timedelta(seconds=lease)
            changes: list[dict[str, Any]] = []
            history: list[tuple[str, str, str | None, dict[str, Any] | None]] = []
            claimed = []
            for row in picked:
                state = dict(row.queue) if isinstance(row.queue, dict) else {}
                attempt = int(state.get("attempts") or 0) + 1
                token = uuid.uuid4().hex
                state.update(
                    attempts=attempt,
                    lease_token=token,
                    lease_expires_at=expires.isoformat(timespec="milliseconds"),
                    lease_seconds=lease,
                    run_after=None,
                )
                state.setdefault("max_attempts", DEFAULT_MAX_ATTEMPTS)
                changes.append(
                    {
                        "path_id": row.path_id,
                        "status": "in_progress",
                        "state": state,
                        "worker_id": worker_id,
                        "started_at": now,
                    }
                )
                wait = (now - row.created_at).total_seconds()
                history.append(
                    (row.path_id, "claimed", worker_id, {"attempt": attempt, "wait_seconds": wait})
                )
                claimed.append(
                    {
                        "path_id": row.path_id,
                        "virtual_path": row.virtual_path,
                        "priority": row.priority,
                        "status": "in_progress",
                        "worker_id": worker_id,
                        "started_at": now,
                        "lease_token": token,
                        "lease_expires_at": expires,
                        "attempts": attempt,
                        "max_attempts": state["max_attempts"],
                    }
                )
            self._transition(conn, changes, now)
            self._record(conn, history, now)
            return claimed

        return self._write(work)

    def _has_any_tag(
        self, path_id: sa.ColumnElement[Any], tags: list[str]
    ) -> sa.ColumnElement[bool]:
        item_tags = sa.select(work_items.c.tags).where(work_items.c.path_id == path_id)
        if self.dialect == "postgresql":
            return sa.exists(
                item_tags.where(
                    work_items.c.tags.op("?|")(sa.cast(sa.literal(tags), sa.ARRAY(sa.Text())))
                )
            )
        each = sa.func.json_each(work_items.c.tags).table_valued("value")
        return sa.exists(
            sa.select(sa.literal(1))
            .select_from(work_items.join(each, sa.true()))
            .where(work_items.c.path_id == path_id, each.c.value.in_(tags))
        )

    @staticmethod
    def _validate_lease(lease_seconds: Any) -> float:
        if (
            isinstance(lease_seconds, bool)
            or not isinstance(lease_seconds, (int, float))
            or not 0 < lease_seconds <= 86_400 * 365
        ):
            raise InvalidArgumentError(
                "lease_seconds", lease_seconds, "must be a positive number of seconds"
            )
        return float(lease_seconds)

    def heartbeat(
        self, path: str, lease_token: str, *, lease_seconds: float | None = None
    ) -> datetime:
        """Extend the lease (by ``lease_seconds``, default the claim's); returns the new expiry."""
        ref = validate_path_or_id(path)
        lease = None if lease_seconds is None else self._validate_lease(lease_seconds)

        def work(conn: Connection) -> datetime:
            now = truncate_to_ms(utcnow())
            row = self._held(conn, ref, lease_token)
            seconds = lease or float(self._queue_state(row).get("lease_seconds") or 300)
            expires = now + timedelta(seconds=seconds)
            state = self._queue_state(
                row, lease_expires_at=expires.isoformat(timespec="milliseconds")
            )
            self._transition(
                conn, [{"path_id": row.path_id, "status": "in_progress", "state": state}], now
            )
            self._record(
                conn, [(row.path_id, "heartbeat", row.worker_id, {"lease_seconds": seconds})], now
            )
            return expires

        return self._write(work)

    def complete_work(self, path: str, lease_token: str, *, result: Any = None) -> list[str]:
        """Mark the item completed; returns the blocked dependents promoted to ready."""
        return self.complete_work_many([(path, lease_token, result)])

    def complete_work_many(
        self, items: Iterable[tuple[str, str] | tuple[str, str, Any]]
    ) -> list[str]:
        """Complete several held items in one transaction (all or nothing); returns the
        blocked dependents promoted to ready. Durable when it returns."""
        work_list = []
        for item in items:
            path, token = item[0], item[1]
            result = item[2] if len(item) > 2 else None
            if result is not None:
                validate_metadata("result", result)
            work_list.append((validate_path_or_id(path), token, result))
        # A stable order keeps concurrent batches from deadlocking on PostgreSQL.
        work_list.sort(key=lambda entry: entry[0])

        def work(conn: Connection) -> list[str]:
            now = truncate_to_ms(utcnow())
            changes: list[dict[str, Any]] = []
            history: list[tuple[str, str, str | None, dict[str, Any] | None]] = []
            done: list[tuple[str, str]] = []
            held = self._held_many(conn, [(ref, token) for ref, token, _ in work_list])
            for row, (_, _, result) in zip(held, work_list, strict=True):
                state = self._queue_state(row, lease_token=None, lease_expires_at=None)
                changes.append(
                    {
                        "path_id": row.path_id,
                        "status": "completed",
                        "state": state,
                        "result": result,
                    }
                )
                run = (now - row.started_at).total_seconds() if row.started_at else None
                history.append(
                    (
                        row.path_id,
                        "completed",
                        row.worker_id,
                        {"attempt": row.attempts, "run_seconds": run},
                    )
                )
                done.append((row.path_id, row.virtual_path))
            self._transition(conn, changes, now)
            self._record(conn, history, now)
            return self._promote(conn, done, now)

        return self._write(work)

    def _promote(self, conn: Connection, done: list[tuple[str, str]], now: datetime) -> list[str]:
        """Dependents with status blocked and nothing left unresolved become ready."""
        refs = [ref for pair in done for ref in pair]
        promoted: dict[str, tuple[str, Any]] = {}
        for chunk in _chunks(refs):
            for path_id, path, state in conn.execute(
                sa.select(
                    work_items.c.path_id,
                    file_paths.c.virtual_path,
                    _queue_state_of(work_items.c.path_id),
                )
                .select_from(
                    work_dependencies.join(
                        work_items, work_items.c.path_id == work_dependencies.c.path_id
                    ).join(file_paths, file_paths.c.path_id == work_items.c.path_id)
                )
                .where(
                    work_dependencies.c.depends_on_ref.in_(chunk),
                    work_items.c.status == "blocked",
                    work_items.c.unresolved_count == 0,
                )
            ):
                promoted[path_id] = (path, state)
        if promoted:
            self._transition(
                conn,
                [
                    {
                        "path_id": pid,
                        "status": "ready",
                        "state": state if isinstance(state, dict) else {},
                    }
                    for pid, (_, state) in sorted(promoted.items())
                ],
                now,
            )
            self._record(conn, [(pid, "promoted", None, None) for pid in promoted], now)
        return sorted(path for path, _ in promoted.values())

    def fail_work(self, path: str, lease_token: str, error: Any, *, retry: bool = True) -> str:
        """Record a failure. Retries with back-off while attempts remain, else ``failed``.

        Returns the item's new status: ``"ready"`` (to be retried after ``run_after``) or
        ``"failed"`` (dead letter; the error is kept in ``last_error``).
        """
        ref = validate_path_or_id(path)
        message = str(error)[:4000]

        def work(conn: Connection) -> str:
            now = truncate_to_ms(utcnow())
            row = self._held(conn, ref, lease_token)
            max_attempts = row.max_attempts or DEFAULT_MAX_ATTEMPTS
            if retry and row.attempts < max_attempts:
                delay = self.retry_policy.delay(row.attempts)
                run_after = truncate_to_ms(now + timedelta(seconds=delay))
                state = self._queue_state(
                    row,
                    lease_token=None,
                    lease_expires_at=None,
                    last_error=message,
                    run_after=run_after.isoformat(timespec="milliseconds"),
                )
                new_status, event = "ready", "retried"
                detail = {"error": message, "attempt": row.attempts, "delay_seconds": delay}
            else:
                state = self._queue_state(
                    row, lease_token=None, lease_expires_at=None, last_error=message
                )
                new_status, event = "failed", "failed"
                detail = {"error": message, "attempt": row.attempts}
            self._transition(
                conn, [{"path_id": row.path_id, "status": new_status, "state": state}], now
            )
            self._record(conn, [(row.path_id, event, row.worker_id, detail)], now)
            return new_status

        return self._write(work)

    def release_work(self, path: str, lease_token: str) -> None:
        """Give a held item back untouched: ready again, the attempt not counted."""
        ref = validate_path_or_id(path)

        def work(conn: Connection) -> None:
            now = truncate_to_ms(utcnow())
            row = self._held(conn, ref, lease_token)
            state = self._queue_state(
                row, lease_token=None, lease_expires_at=None, attempts=max(0, row.attempts - 1)
            )
            self._transition(
                conn, [{"path_id": row.path_id, "status": "ready", "state": state}], now
            )
            self._record(conn, [(row.path_id, "released", row.worker_id, None)], now)

        self._write(work)

    def cancel_work(self, path: str) -> None:
        """Stop an item for good: status ``failed`` with last_error ``"cancelled"``.

        A worker holding it loses its lease (its complete/fail raise LeaseLostError).
        Completed items cannot be cancelled.
        """
        ref = validate_path_or_id(path)

        def work(conn: Connection) -> None:
            now = truncate_to_ms(utcnow())
            row = self._lock_item(conn, ref)
            if row.status == "completed":
                raise WorkItemNotFoundError(ref, "is completed and cannot be cancelled")
            state = self._queue_state(
                row,
                lease_token=None,
                lease_expires_at=None,
                last_error="cancelled",
                cancelled=True,
            )
            self._transition(
                conn, [{"path_id": row.path_id, "status": "failed", "state": state}], now
            )
            self._record(conn, [(row.path_id, "cancelled", None, {"from": row.status})], now)

        self._write(work)

    def reclaim_expired_leases(self) -> int:
        """Return expired in_progress items to ready (or failed when out of attempts)."""
        total = 0
        while True:
            count = self._write(lambda conn: self._reclaim(conn, truncate_to_ms(utcnow())))
            total += count
            if count < RECLAIM_BATCH:
                return total

    def _reclaim(self, conn: Connection, now: datetime) -> int:
        expired = conn.execute(_EXPIRED_LEASES, {"now": now, "tenant": self.tenant_id}).all()
        changes: list[dict[str, Any]] = []
        history: list[tuple[str, str, str | None, dict[str, Any] | None]] = []
        for row in expired:
            out_of_attempts = row.attempts >= (row.max_attempts or DEFAULT_MAX_ATTEMPTS)
            new_status = "failed" if out_of_attempts else "ready"
            updates: dict[str, Any] = {"lease_token": None, "lease_expires_at": None}
            if out_of_attempts:
                updates["last_error"] = "lease expired"
            changes.append(
                {
                    "path_id": row.path_id,
                    "status": new_status,
                    "state": self._queue_state(row, **updates),
                }
            )
            history.append(
                (
                    row.path_id,
                    "reclaimed",
                    row.worker_id,
                    {"to": new_status, "attempt": row.attempts},
                )
            )
        self._transition(conn, changes, now)
        self._record(conn, history, now)
        return len(expired)

    # ------------------------------------------------------------------ insight

    def explain_blocked(self, path: str) -> list[dict[str, Any]]:
        """The chain of unresolved blockers behind ``path``, nearest first.

        Each entry: ``path`` (the dependency as written), ``path_id`` (None if missing),
        ``status``, ``why``, ``depth`` (1 = direct) and ``blocks`` (the path it holds up).
        """
        ref = validate_path_or_id(path)
        with self._reading() as conn:
            start = conn.execute(
                sa.select(file_paths.c.path_id, file_paths.c.virtual_path).where(
                    self._path_filter(ref)
                ),
                self._params(ref),
            ).first()
            if start is None:
                raise NexusFileNotFoundError(ref)
            chain: list[dict[str, Any]] = []
            seen = {start.path_id}
            frontier = [(start.path_id, start.virtual_path)]
            depth = 0
            while frontier and depth < 100:
                depth += 1
                next_frontier = []
                for path_id, holder in frontier:
                    for dep_ref in conn.execute(
                        sa.select(work_dependencies.c.depends_on_ref)
                        .where(work_dependencies.c.path_id == path_id)
                        .order_by(work_dependencies.c.depends_on_ref)
                    ).scalars():
                        entry = self._blocker(conn, dep_ref)
                        if entry is None:
                            continue
                        entry.update(depth=depth, blocks=holder)
                        chain.append(entry)
                        if entry["path_id"] and entry["path_id"] not in seen:
                            seen.add(entry["path_id"])
                            next_frontier.append((entry["path_id"], entry["path"]))
                frontier = next_frontier
        return chain

    def _blocker(self, conn: Connection, dep_ref: str) -> dict[str, Any] | None:
        column = file_paths.c.path_id if is_path_id(dep_ref) else file_paths.c.virtual_path
        target = conn.execute(
            sa.select(
                file_paths.c.path_id,
                file_paths.c.virtual_path,
                file_paths.c.deleted_at,
                work_items.c.status,
            )
            .select_from(
                file_paths.outerjoin(work_items, work_items.c.path_id == file_paths.c.path_id)
            )
            .where(column == dep_ref, file_paths.c.tenant_id == self.tenant_id)
        ).first()
        if target is None:
            return {"path": dep_ref, "path_id": None, "status": None, "why": "missing"}
        if target.deleted_at is not None:
            return {
                "path": target.virtual_path,
                "path_id": target.path_id,
                "status": None,
                "why": "deleted",
            }
        if target.status == "completed":
            return None
        why = (
            "has no status"
            if target.status is None
            else f"status is {target.status}, needs completed"
        )
        return {
            "path": target.virtual_path,
            "path_id": target.path_id,
            "status": target.status,
            "why": why,
        }

    def get_work_history(self, path: str) -> list[dict[str, Any]]:
        """Every recorded transition of the item, oldest first."""
        ref = validate_path_or_id(path)
        with self._reading() as conn:
            path_id = conn.execute(
                sa.select(file_paths.c.path_id).where(self._path_filter(ref)), self._params(ref)
            ).scalar()
            if path_id is None:
                raise NexusFileNotFoundError(ref)
            rows = conn.execute(
                sa.select(
                    work_history.c.event,
                    work_history.c.at,
                    work_history.c.worker_id,
                    work_history.c.detail,
                )
                .where(work_history.c.path_id == path_id)
                .order_by(work_history.c.id)
            ).mappings()
            return [dict(row) for row in rows]

    def work_stats(self) -> dict[str, Any]:
        """Counts without fetching lists: ``ready``, ``pending``, ``blocked``, ``in_progress``
        (each equal to the number of rows the matching view returns) and ``by_status``."""
        ready_now = sa.and_(
            work_items.c.unresolved_count == 0,
            sa.or_(work_items.c.run_after.is_(None), work_items.c.run_after <= sa.bindparam("now")),
        )
        stmt = (
            sa.select(
                work_items.c.status,
                sa.func.count().label("total"),
                sa.func.sum(sa.case((ready_now, 1), else_=0)).label("ready_now"),
                sa.func.sum(sa.case((work_items.c.unresolved_count > 0, 1), else_=0)).label(
                    "blocked"
                ),
            )
            .where(work_items.c.tenant_id == sa.bindparam("tenant"))
            .group_by(work_items.c.status)
        )
        by_status = {
            status: 0
            for status in ("ready", "pending", "blocked", "in_progress", "completed", "failed")
        }
        ready = blocked = 0
        with self._reading() as conn:
            for row in conn.execute(stmt, {"now": utcnow(), "tenant": self.tenant_id}):
                by_status[row.status] = int(row.total)
                if row.status == "ready":
                    ready = int(row.ready_now or 0)
                if row.status in ("ready", "pending", "blocked"):
                    blocked += int(row.blocked or 0)
        return {
            "ready": ready,
            "pending": by_status["pending"],
            "blocked": blocked,
            "in_progress": by_status["in_progress"],
            "by_status": by_status,
        }

    def wait_for_ready_work(self, timeout: float) -> bool:
        """Block until ``ready_work_items`` is non-empty (True) or ``timeout`` seconds pass."""
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0:
            raise InvalidArgumentError("timeout", timeout, "must be a non-negative number")
        waiter = self._ready_waiter
        if waiter is None:
            waiter = ReadyWaiter(self.url, lambda: bool(self.get_ready_work(limit=1)))
            self._ready_waiter = waiter
        return waiter.wait(float(timeout))

    def _close_queue(self) -> None:
        waiter = self._ready_waiter
        if waiter is not None:
            waiter.close()
            self._ready_waiter = None

    def work_analytics(self) -> dict[str, list[dict[str, Any]]]:
        """The history views: ``throughput_hourly``, ``failures_by_error``, ``timing_hourly``."""
        with self._reading() as conn:
            return {
                name: [dict(row) for row in conn.execute(sa.select(view)).mappings()]
                for name, view in (
                    ("throughput_hourly", work_throughput_hourly),
                    ("failures_by_error", work_failures_by_error),
                    ("timing_hourly", work_timing_hourly),
                )
            }
