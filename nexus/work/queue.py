"""The work queue: enqueue, atomic claims, leases, retries, promotion and history.

``WorkQueue(store)`` holds a :class:`~nexus.storage.metadata_store.SQLAlchemyMetadataStore`
and its driver-level :class:`~nexus.storage.database.Database`; it never reaches into the
store's private members. Its statements are the named ones of :mod:`nexus.work.queries`.

State: ``work_items`` is the source of truth. A claim, a completion, a failure... each writes
the typed row in one statement per batch; the database recounts and promotes dependents,
writes promotion history and keeps the counters in the same transaction (revision 0005).
``path_metadata`` shows the keys a transition changes (``status``, ``worker_id``,
``started_at``) from the row. Items on new paths are inserted typed, in one statement per
batch; a path that already exists becomes an item by its status, routed like any writer's.

Atomicity: SQLite write transactions start with ``BEGIN IMMEDIATE`` (one writer at a time);
on PostgreSQL claims lock their rows with ``FOR UPDATE SKIP LOCKED`` inside the claim statement
and every lease check locks the item's row, so a stale token can never win a race.
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, TypedDict

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from nexus.errors import (
    DependencyCycleError,
    InvalidArgumentError,
    InvalidCursorError,
    LeaseLostError,
    NexusFileNotFoundError,
    WorkItemNotFoundError,
    WorkItemStateError,
)
from nexus.storage.metadata_store import SQLAlchemyMetadataStore
from nexus.storage.schema import (
    work_failures_by_error,
    work_idempotency,
    work_items,
    work_throughput_hourly,
    work_timing_hourly,
)
from nexus.storage.types import to_utc, truncate_to_ms, utcnow
from nexus.storage.validation import (
    MAX_LIMIT,
    dependency_refs,
    is_path_id,
    validate_batch,
    validate_depends_on,
    validate_metadata,
    validate_path,
    validate_path_or_id,
    validate_positive_int,
    validate_prefix,
    validate_priority,
    validate_status,
    validate_tags,
    validate_text,
)
from nexus.work.queries import (
    CANCEL,
    COMPLETE,
    COUNTERS,
    DEFAULT_LEASE_SECONDS,
    DEFAULT_MAX_ATTEMPTS,
    DEFERRED,
    DEPENDENTS,
    EDGES,
    EVENT_COUNTS,
    EVENTS_HOURLY,
    EXTEND_LEASE,
    FAILED_PAGE,
    HISTORY,
    HOLDERS,
    INSERT_ITEMS,
    ITEM_BY_ID,
    ITEM_BY_PATH,
    ITEMS_BY_IDS,
    LIVE_REFS,
    LOCK_HELD,
    LOCK_KEYS,
    OLDEST_READY,
    PATH_ID_BY_ID,
    PATH_ID_BY_PATH,
    PROMOTE_RESOLVED,
    PROMOTED,
    PRUNE,
    RECENT_WORKERS,
    RECLAIM,
    RECORD,
    RECORD_CLAIMS,
    RECORD_COMPLETIONS,
    RETRY,
    REVOKE,
    RUN_SECONDS_BUCKETS,
    SET_QUEUE_COLUMNS,
    SETTLE,
    TARGET_BY_ID,
    TARGET_BY_PATH,
    WAS_CLAIMED,
    Query,
    claim_query,
)
from nexus.work.retry import RetryPolicy
from nexus.work.wait import ReadyWaiter

#: Expired leases reclaimed per statement (the rest go on the next ones).
RECLAIM_BATCH = 100
#: How often claims look for expired leases (seconds); the lease index makes each look cheap.
RECLAIM_INTERVAL = 1.0
#: SQLite allows 32766 bound parameters per statement; IN-lists stay far below that.
CHUNK = 500
STATUSES = ("ready", "pending", "blocked", "in_progress", "completed", "failed")
#: The statuses :meth:`WorkQueue.cancel_work` accepts: an item not yet completed.
CANCELLABLE = tuple(status for status in STATUSES if status != "completed")
#: The statuses :meth:`WorkQueue.prune` may delete: an item in them is finished.
FINISHED_STATUSES = ("completed", "failed")
#: Longest pause between two prune batches on SQLite (seconds), for other writers.
PRUNE_MAX_PAUSE = 0.25
#: The metadata value of a key whose value lives in work_items (revision 0005).
ROUTED = {"$nexus": "work_items"}
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


class WorkItem(TypedDict):
    """The one shape of a work item returned by the queue.

    ``lease_token`` is set only in the items :meth:`WorkQueue.claim_ready_work` returns (the
    fencing secret goes to the claimer alone); ``blocker_count`` is None in the items
    :meth:`WorkQueue.enqueue_many` has just created (the database counts them).
    """

    path_id: str
    virtual_path: str
    status: str
    priority: int | None
    tags: list[str] | None
    depends_on: str | list[str] | None
    worker_id: str | None
    started_at: datetime | None
    run_after: datetime | None
    lease_token: str | None
    lease_expires_at: datetime | None
    attempts: int
    max_attempts: int
    blocker_count: int | None
    last_error: str | None
    created_at: datetime | None
    finished_at: datetime | None


class EnqueuedItem(WorkItem):
    """What :meth:`WorkQueue.enqueue` and :meth:`WorkQueue.enqueue_many` return: the item,
    plus what the call did.

    ``created`` is True when this call made the item; False when the path already was a work
    item, or the ``idempotency_key`` already named one, or an earlier entry of the same batch
    named the same path or key: that item is returned as it is, and the call's other fields
    are not applied. ``missing_dependencies`` lists the references of the item's
    ``depends_on`` (as written) that name no live path of the tenant when the call commits:
    such a dependency is kept, and blocks the item until a path of that name is enqueued and
    completed.
    """

    created: bool
    missing_dependencies: list[str]


def _check_token(lease_token: Any) -> str:
    return validate_text("lease_token", lease_token, max_length=64)


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


class WorkQueue:
    """Queue operations over a store; see docs/work-queue.md for the state machine.

    ``WorkQueue(store)``; ``nexus.connect(...)`` gives one as ``nx.queue``.
    """

    def __init__(
        self, store: SQLAlchemyMetadataStore, *, retry_policy: RetryPolicy | None = None
    ) -> None:
        self.store = store
        self.db = store.database
        self.dialect = self.db.dialect
        self.tenant_id = store.tenant_id
        self.retry_policy = retry_policy or RetryPolicy()
        self._claims = {
            (prefix, tags): claim_query(prefix, tags).sql(self.dialect)
            for prefix in (False, True)
            for tags in (False, True)
        }
        if not self.db.is_postgresql:
            self._record_claims = RECORD_CLAIMS.sql(self.dialect)
            self._record_completions = RECORD_COMPLETIONS.sql(self.dialect)
        self._last_reclaim = 0.0
        self._reclaim_lock = threading.Lock()
        self._waiter: ReadyWaiter | None = None

    # ------------------------------------------------------------------ plumbing

    def _json(self, value: Any) -> Any:
        """A JSON column value as Python (SQLite hands back text, psycopg decodes jsonb)."""
        if self.db.is_postgresql or value is None:
            return value
        return json.loads(value)

    def _sql(self, query: Query) -> str:
        return query.sql(self.dialect)

    def _array(self, values: Sequence[Any]) -> Any:
        """A list parameter: a JSON array on SQLite, an array on PostgreSQL."""
        return list(values) if self.db.is_postgresql else json.dumps(list(values))

    def _detail(self, detail: Mapping[str, Any] | None) -> str | None:
        return None if detail is None else json.dumps(detail, separators=(",", ":"))

    def _record(
        self,
        cur: Any,
        events: list[tuple[str, str, str | None, dict[str, Any] | None]],
        now: Any,
    ) -> None:
        """Append (path_id, event, worker_id, detail) history rows."""
        if events:
            cur.executemany(
                self._sql(RECORD),
                [
                    {
                        "path_id": path_id,
                        "tenant": self.tenant_id,
                        "event": event,
                        "now": now,
                        "worker_id": worker_id,
                        "detail": self._detail(detail),
                    }
                    for path_id, event, worker_id, detail in events
                ],
            )

    def _path_id(self, cur: Any, ref: str) -> str | None:
        query = PATH_ID_BY_ID if is_path_id(ref) else PATH_ID_BY_PATH
        cur.execute(self._sql(query), {"ref": ref, "tenant": self.tenant_id})
        row = cur.fetchone()
        return None if row is None else str(row[0])

    def _not_held(self, cur: Any, ref: str, token: str, operation: str) -> Exception:
        """Why ``token`` does not hold ``ref`` (see "Which error" in docs/work-queue.md): no
        such path (NexusFileNotFoundError), no work item (WorkItemNotFoundError), a lease that
        existed and is not this token's (LeaseLostError: the item is in_progress under
        another lease, or was claimed once and has been settled, rescued, revoked or
        cancelled since), or an item never claimed (WorkItemStateError: no lease ever
        existed). Ended leases leave no token behind, so a mistyped token on an item claimed
        before is a lost lease too; the queue cannot tell the two apart."""
        item = self._require_item(cur, ref)  # raises when there is no path or no item
        status = item["status"]
        if status == "in_progress":
            return LeaseLostError(ref, token, status)
        cur.execute(self._sql(WAS_CLAIMED), {"path_id": item["path_id"]})
        if cur.fetchone() is not None:
            return LeaseLostError(ref, token, status)
        return WorkItemStateError(ref, status, ("in_progress",), operation)

    def _raise_not_held(
        self, cur: Any, leases: list[tuple[str, str]], done: set[str], operation: str
    ) -> None:
        """Raise for the first lease of a batch that is not held (nothing is kept then)."""
        for ref, token in leases:
            path_id = ref if is_path_id(ref) else self._path_id(cur, ref)
            if path_id not in done:
                self._lock_held(cur, ref, token, operation)  # raises unless this lease is held
        ref, token = leases[0]
        raise LeaseLostError(ref, token)  # pragma: no cover - some lease was not held

    def _lock_held(self, cur: Any, ref: str, token: str, operation: str) -> Any:
        cur.execute(
            self._sql(LOCK_HELD),
            {
                "path_id": ref if is_path_id(ref) else None,
                "path": None if is_path_id(ref) else ref,
                "tenant": self.tenant_id,
                "token": token,
            },
        )
        row = cur.fetchone()
        if row is None:
            raise self._not_held(cur, ref, token, operation)
        return row

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
    ) -> EnqueuedItem:
        """Make ``path`` a work item (creating the path if absent).

        Enqueuing a path that is already a work item, or an ``idempotency_key`` already
        used, is a no-op that returns the existing item (``created`` False). Dependencies
        on paths that do not exist are kept (they block) and listed in
        ``missing_dependencies``.
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
        if key is not None:
            validate_text("idempotency_key", key, max_length=255)
        depends_on = validate_depends_on(item.get("depends_on"))
        return {
            "path": validate_path(item.get("path")),
            "priority": validate_priority(item.get("priority")),
            "depends_on": depends_on,
            "tags": validate_tags(item.get("tags")),
            "status": validate_status(item.get("status", "ready")),
            "run_after": run_after,
            "max_attempts": validate_positive_int(
                "max_attempts", item.get("max_attempts", DEFAULT_MAX_ATTEMPTS)
            ),
            "idempotency_key": key,
        }

    def enqueue_many(self, items: Iterable[Mapping[str, Any]]) -> list[EnqueuedItem]:
        """Enqueue a batch (a whole DAG: nodes and ``depends_on`` edges) in one transaction.

        Returns one item per input, in order, each with ``created`` and
        ``missing_dependencies`` (see :class:`EnqueuedItem`); an entry naming the path or
        the idempotency key of an earlier entry of the batch gets that item, not created.
        Everything is validated before anything is written; a dependency cycle anywhere —
        inside the batch or through items already stored — rejects the whole batch.
        """
        specs = [self._validate_spec(item) for item in validate_batch("items", items)]
        if not specs:
            return []
        return self.store.write(lambda conn: self._enqueue(conn, specs))

    def _enqueue(self, conn: Connection, specs: list[dict[str, Any]]) -> list[EnqueuedItem]:
        store = self.store
        now = truncate_to_ms(utcnow())
        if any(s["depends_on"] is not None for s in specs):
            store.lock_dependency_writes(conn)
        # Idempotency keys already used point at their existing items. A concurrent
        # transaction using one of the keys waits here until the other commits, and then
        # finds its key (PostgreSQL; SQLite writers are serialised anyway).
        keyed = list(dict.fromkeys(s["idempotency_key"] for s in specs if s["idempotency_key"]))
        if keyed:
            self._lock_keys(conn, keyed)
        known_keys = self._known_keys(conn, keyed) if keyed else {}
        fresh: dict[str, dict[str, Any]] = {}
        first_of_key: dict[str, str] = {}
        for spec in specs:
            key = spec["idempotency_key"]
            if key in known_keys:
                continue
            if key is not None:
                # A key used twice in the batch names the first entry's item.
                spec["path"] = first_of_key.setdefault(key, spec["path"])
            fresh.setdefault(spec["path"], spec)
        path_ids, blank = store.ensure_paths(conn, list(fresh), now)
        existing = self._work_rows(conn, [path_ids[p] for p in fresh if path_ids[p] not in blank])
        new = {p: s for p, s in fresh.items() if path_ids[p] not in existing}
        promoted: set[str] = set()
        if new:
            self._check_batch_acyclic(new, path_ids)
            self._write_new_items(conn, new, path_ids, blank, now)
            promoted = self._promote_resolved(conn, new, path_ids, now)
        results: dict[str, WorkItem] = {
            path: self._new_item(spec, path_ids[path]) for path, spec in new.items()
        }
        for path in promoted:
            results[path]["status"] = "ready"
        wanted = [
            known_keys.get(s["idempotency_key"], s["path"])
            for s in specs
            if known_keys.get(s["idempotency_key"], s["path"]) not in results
        ]
        for path in dict.fromkeys(wanted):
            row = conn.exec_driver_sql(
                self._sql(ITEM_BY_PATH), {"ref": path, "tenant": self.tenant_id}
            ).first()
            if row is None:  # pragma: no cover - the path was just found or made
                raise WorkItemNotFoundError(path)
            results[path] = self._item(row)
        missing = self._missing_refs(conn, results.values(), path_ids)
        enqueued: list[EnqueuedItem] = []
        reported: set[str] = set()
        for spec in specs:
            path = known_keys.get(spec["idempotency_key"], spec["path"])
            item = results[path]
            enqueued.append(
                {
                    **item,
                    "created": path in new and path not in reported,
                    "missing_dependencies": [
                        ref for ref in dependency_refs(item["depends_on"]) if ref in missing
                    ],
                }
            )
            reported.add(path)
        return enqueued

    def _lock_keys(self, conn: Connection, keys: list[str]) -> None:
        """PostgreSQL: serialise the transactions using the same idempotency keys (advisory
        locks, hashed into buckets like the dependency locks, taken in bucket order)."""
        if self.db.is_postgresql:
            conn.exec_driver_sql(self._sql(LOCK_KEYS), {"keys": keys})

    def _missing_refs(
        self, conn: Connection, items: Iterable[WorkItem], path_ids: Mapping[str, str]
    ) -> set[str]:
        """The dependency references of ``items`` that name no live path of the tenant
        (references to the batch's own paths are known to be live)."""
        live = set(path_ids) | set(path_ids.values())
        refs = {
            ref
            for item in items
            for ref in dependency_refs(item["depends_on"])
            if ref not in live
        }
        if not refs:
            return set()
        found = conn.exec_driver_sql(
            self._sql(LIVE_REFS), {"refs": self._array(sorted(refs)), "tenant": self.tenant_id}
        ).scalars()
        return refs - set(found)

    @staticmethod
    def _work_rows(conn: Connection, path_ids: list[str]) -> set[str]:
        """The path_ids among ``path_ids`` that already are work items."""
        found: set[str] = set()
        for start in range(0, len(path_ids), CHUNK):
            found.update(
                conn.execute(
                    sa.select(work_items.c.path_id).where(
                        work_items.c.path_id.in_(path_ids[start : start + CHUNK])
                    )
                ).scalars()
            )
        return found

    def _known_keys(self, conn: Connection, keys: list[str]) -> dict[str, str]:
        from nexus.storage.schema import file_paths

        known: dict[str, str] = {}
        for start in range(0, len(keys), CHUNK):
            for key, path in conn.execute(
                sa.select(work_idempotency.c.idempotency_key, file_paths.c.virtual_path)
                .join(file_paths, file_paths.c.path_id == work_idempotency.c.path_id)
                .where(
                    work_idempotency.c.tenant_id == self.tenant_id,
                    work_idempotency.c.idempotency_key.in_(keys[start : start + CHUNK]),
                )
            ):
                known[key] = path
        return known

    def _check_batch_acyclic(
        self, new: dict[str, dict[str, Any]], path_ids: dict[str, str]
    ) -> None:
        """Reject self-references and cycles among the batch's own edges (cheap, in Python);
        cycles through stored items are checked against the stored graph once it holds the
        batch's edges (:meth:`_write_new_items`)."""
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

    def _write_new_items(
        self,
        conn: Connection,
        new: dict[str, dict[str, Any]],
        path_ids: dict[str, str],
        blank: set[str],
        now: datetime,
    ) -> None:
        store = self.store
        # Blank paths (made or revived here) carry no metadata: their work rows are written
        # directly, typed, in one statement. A path that existed may carry keys from before,
        # so it becomes a work item the way any writer makes one: by its status, routed.
        fresh = [(p, s) for p, s in new.items() if path_ids[p] in blank]
        if fresh:
            conn.exec_driver_sql(self._sql(INSERT_ITEMS), self._item_rows(fresh, path_ids, now))
        rows: list[dict[str, Any]] = []
        status_rows: list[dict[str, Any]] = []
        for path, spec in new.items():
            path_id = path_ids[path]
            for key in ("priority", "tags", "depends_on"):
                if spec[key] is not None:
                    rows.append({"path_id": path_id, "key": key, "value": spec[key]})
            # A new item's status lives in its row; its metadata row points there (so plain
            # SQL can still UPDATE it). An existing path's status is routed like any write.
            status = ROUTED if path_id in blank else spec["status"]
            status_rows.append({"path_id": path_id, "key": "status", "value": status})
        # Status last: its route builds each work row once, from every key.
        store.write_metadata_rows(conn, rows + status_rows)
        # A cycle through stored items needs a stored edge from outside the batch naming a
        # batch item; only then is the stored graph (which now holds the batch's edges)
        # walked, from every batch item with dependencies at once.
        with_deps = {path_ids[p]: (p, s["depends_on"]) for p, s in new.items() if s["depends_on"]}
        if with_deps:
            batch_ids = [path_ids[p] for p in new]
            if store.is_referenced(conn, list(new) + batch_ids, batch_ids):
                store.check_acyclic_stored(conn, with_deps)
        settings = [
            {
                "path_id": path_ids[path],
                "max_attempts": spec["max_attempts"],
                "run_after": self.db.timestamp(spec["run_after"]) if spec["run_after"] else None,
            }
            for path, spec in new.items()
            if path_ids[path] not in blank
            and (spec["run_after"] is not None or spec["max_attempts"] != DEFAULT_MAX_ATTEMPTS)
        ]
        if settings:
            conn.exec_driver_sql(self._sql(SET_QUEUE_COLUMNS), settings)
        keys = [
            {
                "tenant_id": self.tenant_id,
                "idempotency_key": spec["idempotency_key"],
                "path_id": path_ids[path],
            }
            for path, spec in new.items()
            if spec["idempotency_key"]
        ]
        if keys:
            conn.execute(sa.insert(work_idempotency), keys)

    def _promote_resolved(
        self,
        conn: Connection,
        new: dict[str, dict[str, Any]],
        path_ids: dict[str, str],
        now: datetime,
    ) -> set[str]:
        """Promote the batch's ``blocked`` items whose dependencies have all completed already.

        The database promotes an item when its unresolved count drops to 0; an item enqueued
        after its dependencies finished starts at 0, so nothing would ever promote it (it
        would stay blocked, in no view). Returns the promoted paths."""
        candidates = {
            path_ids[path]: path
            for path, spec in new.items()
            if spec["status"] == "blocked" and spec["depends_on"]
        }
        if not candidates:
            return set()
        at = self.db.timestamp(now)
        rows = conn.exec_driver_sql(
            self._sql(PROMOTE_RESOLVED), {"ids": self._array(list(candidates)), "now": at}
        ).all()
        ids = [str(row[0]) for row in rows]
        if ids and not self.db.is_postgresql:
            conn.exec_driver_sql(
                self._sql(RECORD),
                [
                    {
                        "path_id": path_id,
                        "tenant": self.tenant_id,
                        "event": "promoted",
                        "now": at,
                        "worker_id": None,
                        "detail": None,
                    }
                    for path_id in ids
                ],
            )
        return {candidates[path_id] for path_id in ids}

    def _item_rows(
        self, fresh: list[tuple[str, dict[str, Any]]], path_ids: dict[str, str], now: datetime
    ) -> dict[str, Any]:
        """INSERT_ITEMS parameters: a JSON array of rows (SQLite) or column arrays."""

        def max_attempts(spec: dict[str, Any]) -> int | None:
            value = spec["max_attempts"]
            return None if value == DEFAULT_MAX_ATTEMPTS else int(value)

        def run_after(spec: dict[str, Any]) -> Any:
            return self.db.timestamp(spec["run_after"]) if spec["run_after"] else None

        params: dict[str, Any] = {"tenant": self.tenant_id, "now": self.db.timestamp(now)}
        if self.db.is_postgresql:
            params.update(
                ids=[path_ids[p] for p, _ in fresh],
                statuses=[s["status"] for _, s in fresh],
                priorities=[s["priority"] for _, s in fresh],
                tags=[None if s["tags"] is None else json.dumps(s["tags"]) for _, s in fresh],
                max_attempts=[max_attempts(s) for _, s in fresh],
                run_afters=[run_after(s) for _, s in fresh],
            )
        else:
            params["items"] = json.dumps(
                [
                    [
                        path_ids[p],
                        s["status"],
                        s["priority"],
                        None if s["tags"] is None else json.dumps(s["tags"]),
                        max_attempts(s),
                        run_after(s),
                    ]
                    for p, s in fresh
                ]
            )
        return params

    def _new_item(self, spec: dict[str, Any], path_id: str) -> WorkItem:
        run_after = spec["run_after"]
        return {
            "path_id": path_id,
            "virtual_path": spec["path"],
            "status": spec["status"],
            "priority": spec["priority"],
            "tags": spec["tags"],
            "depends_on": spec["depends_on"],
            "worker_id": None,
            "started_at": None,
            "run_after": self.db.read_timestamp(self.db.timestamp(run_after))
            if run_after
            else None,
            "lease_token": None,
            "lease_expires_at": None,
            "attempts": 0,
            "max_attempts": spec["max_attempts"],
            "blocker_count": None,
            "last_error": None,
            "created_at": None,
            "finished_at": None,
        }

    # ------------------------------------------------------------------ reading items

    def _item(self, row: Any) -> WorkItem:
        read = self.db.read_timestamp
        return {
            "path_id": row[0],
            "virtual_path": row[1],
            "status": row[2],
            "priority": row[3],
            "tags": self._json(row[4]),
            "depends_on": self._json(row[5]),
            "worker_id": row[6],
            "started_at": read(row[7]),
            "run_after": read(row[8]),
            "lease_token": None,
            "lease_expires_at": read(row[9]),
            "attempts": row[10],
            "max_attempts": row[11] or DEFAULT_MAX_ATTEMPTS,
            "blocker_count": row[12],
            "last_error": row[13],
            "created_at": read(row[14]),
            "finished_at": read(row[15]),
        }

    def get_work_item(self, path: str) -> WorkItem | None:
        """The work item at ``path`` (status, priority, attempts, lease expiry, last_error...)."""
        ref = validate_path_or_id(path)
        query = ITEM_BY_ID if is_path_id(ref) else ITEM_BY_PATH

        def work(cur: Any) -> WorkItem | None:
            cur.execute(self._sql(query), {"ref": ref, "tenant": self.tenant_id})
            row = cur.fetchone()
            return None if row is None else self._item(row)

        return self.db.transaction(work, write=False)

    # ------------------------------------------------------------------ claims

    def claim_ready_work(
        self,
        worker_id: str,
        *,
        limit: int = 1,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        tags: list[str] | None = None,
        path_prefix: str | None = None,
    ) -> list[WorkItem]:
        """Atomically move up to ``limit`` items, in ``ready_work_items`` order, to in_progress.

        Each returned item carries a ``lease_token`` that heartbeat/complete/fail/release
        need. Expired leases are reclaimed first (looked for at most every
        ``RECLAIM_INTERVAL`` seconds), so no sweeper process is required. ``tags`` keeps
        items having at least one of the tags; ``path_prefix`` keeps paths starting with it.
        """
        claim = self._prepare_claim(worker_id, limit, lease_seconds, tags, path_prefix)
        return self._sorted(self.db.transaction(claim))

    def _prepare_claim(
        self,
        worker_id: str,
        limit: int,
        lease_seconds: float,
        tags: list[str] | None,
        path_prefix: str | None,
    ) -> Callable[[Any], list[WorkItem]]:
        """Validate a claim and return the function that runs it on a cursor."""
        validate_text("worker_id", worker_id)
        limit = min(validate_positive_int("limit", limit), MAX_LIMIT)
        lease = _validate_lease(lease_seconds)
        wanted_tags = validate_tags(tags)
        prefix = validate_prefix(path_prefix) if path_prefix is not None else None
        sql = self._claims[(prefix is not None, bool(wanted_tags))]
        now_dt = truncate_to_ms(utcnow())
        expires_dt = now_dt + timedelta(seconds=lease)
        now, expires = self.db.timestamp(now_dt), self.db.timestamp(expires_dt)
        params: dict[str, Any] = {
            "worker": worker_id,
            "now": now,
            "expires": expires,
            "lease": lease,
            "tenant": self.tenant_id,
            "limit": limit,
        }
        if prefix is not None:
            params["prefix"] = prefix
        if wanted_tags:
            params["tags"] = self._array(wanted_tags)
        reclaim = self._reclaim_due()

        def work(cur: Any) -> list[WorkItem]:
            if reclaim:
                self._reclaim(cur, now)
            cur.execute(sql, params)
            rows = cur.fetchall()
            if rows and not self.db.is_postgresql:
                cur.execute(
                    self._record_claims,
                    {
                        "tenant": self.tenant_id,
                        "now": now,
                        "worker": worker_id,
                        "ids": json.dumps([row[0] for row in rows]),
                    },
                )
            return [self._claimed(row, worker_id, now_dt) for row in rows]

        return work

    @staticmethod
    def _sorted(items: list[WorkItem]) -> list[WorkItem]:
        """Claimed items in ready-view order (RETURNING gives them in no order)."""
        items.sort(
            key=lambda i: (i["priority"] is None, i["priority"] or 0, i["created_at"], i["path_id"])
        )
        return items

    def _claimed(self, row: Any, worker_id: str, now: datetime) -> WorkItem:
        read = self.db.read_timestamp
        return {
            "path_id": row[0],
            "virtual_path": row[8],
            "status": "in_progress",
            "priority": row[1],
            "tags": self._json(row[3]),
            "depends_on": None,
            "worker_id": worker_id,
            "started_at": now,
            "run_after": None,
            "lease_token": row[4],
            "lease_expires_at": read(row[5]),
            "attempts": row[6],
            "max_attempts": row[7] or DEFAULT_MAX_ATTEMPTS,
            "blocker_count": 0,
            "last_error": None,
            "created_at": read(row[2]),
            "finished_at": None,
        }

    def _reclaim_due(self) -> bool:
        moment = time.monotonic()
        with self._reclaim_lock:
            if moment - self._last_reclaim < RECLAIM_INTERVAL:
                return False
            self._last_reclaim = moment
            return True

    def _reclaim(self, cur: Any, now: Any) -> int:
        cur.execute(
            self._sql(RECLAIM), {"now": now, "tenant": self.tenant_id, "batch": RECLAIM_BATCH}
        )
        rows = cur.fetchall()
        if not self.db.is_postgresql and rows:
            self._record(
                cur,
                [(r[0], "reclaimed", r[2], {"to": r[1], "attempt": r[3]}) for r in rows],
                now,
            )
        return len(rows)

    def reclaim_expired_leases(self) -> int:
        """Return expired in_progress items to ready (or failed when out of attempts)."""
        total = 0
        while True:
            now = self.db.timestamp(truncate_to_ms(utcnow()))

            def work(cur: Any, at: Any = now) -> int:
                return self._reclaim(cur, at)

            count = self.db.transaction(work)
            total += count
            if count < RECLAIM_BATCH:
                return total

    # ------------------------------------------------------------------ leases

    def heartbeat(
        self, path: str, lease_token: str, *, lease_seconds: float | None = None
    ) -> datetime:
        """Extend the lease (by ``lease_seconds``, default the claim's); returns the new expiry."""
        ref = validate_path_or_id(path)
        token = _check_token(lease_token)
        lease = None if lease_seconds is None else _validate_lease(lease_seconds)

        def work(cur: Any) -> datetime:
            now_dt = truncate_to_ms(utcnow())
            row = self._lock_held(cur, ref, token, "heartbeat")
            seconds = lease or float(row[4] or DEFAULT_LEASE_SECONDS)
            expires = now_dt + timedelta(seconds=seconds)
            cur.execute(
                self._sql(EXTEND_LEASE),
                {
                    "expires": self.db.timestamp(expires),
                    "lease": seconds,
                    "path_id": row[0],
                    "token": token,
                },
            )
            self._record(
                cur,
                [(row[0], "heartbeat", row[1], {"lease_seconds": seconds})],
                self.db.timestamp(now_dt),
            )
            return expires

        return self.db.transaction(work)

    def complete_work(self, path: str, lease_token: str, *, result: Any = None) -> list[str]:
        """Mark the item completed; returns the blocked dependents promoted to ready."""
        return self._complete([(path, lease_token, result)], "complete_work")

    def complete_work_many(
        self, items: Iterable[tuple[str, str] | tuple[str, str, Any]]
    ) -> list[str]:
        """Complete several held items in one transaction (all or nothing); returns the
        blocked dependents promoted to ready. Durable when it returns."""
        return self._complete(items, "complete_work_many")

    def _complete(
        self, items: Iterable[tuple[str, str] | tuple[str, str, Any]], operation: str
    ) -> list[str]:
        completion = self._prepare_completion(items, operation)
        return self.db.transaction(completion) if completion is not None else []

    def complete_and_claim(
        self,
        items: Iterable[tuple[str, str] | tuple[str, str, Any]],
        worker_id: str,
        *,
        limit: int = 1,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        tags: list[str] | None = None,
        path_prefix: str | None = None,
    ) -> tuple[list[str], list[WorkItem]]:
        """Complete held items and claim the next ones in one transaction (a worker's loop:
        one commit per round instead of two). Returns (promoted paths, claimed items); if a
        lease is not held, nothing is completed or claimed (LeaseLostError)."""
        completion = self._prepare_completion(items, "complete_and_claim")
        claim = self._prepare_claim(worker_id, limit, lease_seconds, tags, path_prefix)

        def work(cur: Any) -> tuple[list[str], list[WorkItem]]:
            promoted = completion(cur) if completion is not None else []
            return promoted, claim(cur)

        promoted, claimed = self.db.transaction(work)
        return promoted, self._sorted(claimed)

    def _prepare_completion(
        self, items: Iterable[tuple[str, str] | tuple[str, str, Any]], operation: str
    ) -> Callable[[Any], list[str]] | None:
        """Validate completions and return the function that runs them on a cursor (None
        when there is nothing to complete)."""
        leases: list[tuple[str, str]] = []
        results: list[tuple[str, Any]] = []
        for item in validate_batch("items", items):
            if not isinstance(item, (tuple, list)) or len(item) not in (2, 3):
                raise InvalidArgumentError(
                    "item", item, "must be a (path, lease_token) or (path, lease_token, result)"
                )
            ref, token = validate_path_or_id(item[0]), _check_token(item[1])
            leases.append((ref, token))
            if len(item) == 3 and item[2] is not None:
                results.append((ref, validate_metadata("result", item[2])))
        if len({ref for ref, _ in leases}) != len(leases):
            raise InvalidArgumentError("items", leases, "name the same item more than once")
        if not leases:
            return None
        leases.sort()  # a stable order keeps concurrent batches from deadlocking
        now_dt = truncate_to_ms(utcnow())
        now = self.db.timestamp(now_dt)
        if self.db.is_postgresql:
            params: dict[str, Any] = {
                "ids": [ref if is_path_id(ref) else None for ref, _ in leases],
                "paths": [None if is_path_id(ref) else ref for ref, _ in leases],
                "tokens": [token for _, token in leases],
                "n": len(leases),
            }
        else:
            params = {
                "leases": json.dumps(
                    [
                        [ref if is_path_id(ref) else None, None if is_path_id(ref) else ref, tok]
                        for ref, tok in leases
                    ]
                )
            }
        params.update(now=now, tenant=self.tenant_id)

        def work(cur: Any) -> list[str]:
            if self.db.is_postgresql:
                cur.execute(self._sql(COMPLETE), params)
                done = cur.fetchall()
                if len(done) != len(leases):
                    self._raise_not_held(cur, leases, {row[0] for row in done}, operation)
                mark = done[0][2]
            else:
                # History first: the rows say which leases are held, and the id of the last
                # marks where the promotions of the completion below start.
                cur.execute(self._record_completions, params)
                logged = cur.fetchall()
                if len(logged) != len(leases):
                    self._raise_not_held(cur, leases, {row[1] for row in logged}, operation)
                mark = max(row[0] for row in logged)
                cur.execute(
                    self._sql(COMPLETE),
                    {"now": now, "ids": json.dumps([row[1] for row in logged])},
                )
                done = cur.fetchall()
            if results:
                ids = {
                    ref: ref if is_path_id(ref) else self._path_id(cur, ref) for ref, _ in results
                }
                self.store.write_metadata_driver(
                    cur, [(str(ids[ref]), "result", value) for ref, value in results]
                )
            if not any(row[1] for row in done):
                return []
            cur.execute(self._sql(PROMOTED), {"mark": mark})
            return [row[1] for row in cur.fetchall()]

        return work

    def fail_work(self, path: str, lease_token: str, error: Any, *, retry: bool = True) -> str:
        """Record a failure. Retries with back-off while attempts remain, else ``failed``.

        Returns the item's new status: ``"ready"`` (to be retried after ``run_after``) or
        ``"failed"`` (dead letter; the error is kept in ``last_error``).
        """
        ref = validate_path_or_id(path)
        token = _check_token(lease_token)
        # An error's text is recorded, never refused: what no database can store (a NUL, a
        # lone surrogate) is escaped.
        message = (
            str(error)[:4000]
            .replace("\x00", "\\x00")
            .encode("utf-8", "backslashreplace")
            .decode("utf-8")
        )

        def work(cur: Any) -> str:
            now_dt = truncate_to_ms(utcnow())
            now = self.db.timestamp(now_dt)
            row = self._lock_held(cur, ref, token, "fail_work")
            path_id, worker_id, attempts, max_attempts = row[0], row[1], row[2], row[3]
            if retry and attempts < (max_attempts or DEFAULT_MAX_ATTEMPTS):
                delay = self.retry_policy.delay(attempts)
                run_after = self.db.timestamp(now_dt + timedelta(seconds=delay))
                status, event = "ready", "retried"
                detail = {"error": message, "attempt": attempts, "delay_seconds": delay}
            else:
                run_after, status, event = None, "failed", "failed"
                detail = {"error": message, "attempt": attempts}
            self._settle(cur, path_id, token, status, attempts, message, run_after, now)
            self._record(cur, [(path_id, event, worker_id, detail)], now)
            return status

        return self.db.transaction(work)

    def _settle(
        self,
        cur: Any,
        path_id: str,
        token: str,
        status: str,
        attempts: int,
        error: str | None,
        run_after: Any,
        now: Any,
    ) -> None:
        cur.execute(
            self._sql(SETTLE),
            {
                "status": status,
                "run_after": run_after,
                "attempts": attempts,
                "error": error,
                "now": now,
                "path_id": path_id,
                "token": token,
            },
        )

    def release_work(self, path: str, lease_token: str) -> None:
        """Give a held item back untouched: ready again, the attempt not counted."""
        ref = validate_path_or_id(path)
        token = _check_token(lease_token)

        def work(cur: Any) -> None:
            now = self.db.timestamp(truncate_to_ms(utcnow()))
            row = self._lock_held(cur, ref, token, "release_work")
            self._settle(cur, row[0], token, "ready", max(0, row[2] - 1), row[6], None, now)
            self._record(cur, [(row[0], "released", row[1], None)], now)

        self.db.transaction(work)

    def cancel_work(self, path: str) -> None:
        """Stop an item for good: status ``failed`` with last_error ``"cancelled"``.

        A worker holding it loses its lease (its complete/fail raise LeaseLostError).
        Completed items cannot be cancelled (WorkItemStateError).
        """
        ref = validate_path_or_id(path)

        def work(cur: Any) -> None:
            now = self.db.timestamp(truncate_to_ms(utcnow()))
            item = self._require_item(cur, ref)
            cur.execute(self._sql(CANCEL), {"path_id": item["path_id"], "now": now})
            if cur.fetchone() is None:
                raise self._wrong_state(cur, ref, CANCELLABLE, "cancel_work")
            self._record(cur, [(item["path_id"], "cancelled", None, {"from": item["status"]})], now)

        self.db.transaction(work)

    def retry_work(self, path: str) -> None:
        """Put a failed (dead-lettered or cancelled) item back to ready, attempts reset;
        any other status is refused (WorkItemStateError)."""
        ref = validate_path_or_id(path)

        def work(cur: Any) -> None:
            now = self.db.timestamp(truncate_to_ms(utcnow()))
            item = self._require_item(cur, ref)
            cur.execute(self._sql(RETRY), {"path_id": item["path_id"]})
            if cur.rowcount != 1:
                raise self._wrong_state(cur, ref, ("failed",), "retry_work")
            self._record(cur, [(item["path_id"], "requeued", None, None)], now)

        self.db.transaction(work)

    def revoke_lease(self, path: str) -> None:
        """Take an in_progress item back from its worker (an operator's release, no token
        needed): ready again, the attempt not counted. The worker's complete/fail/heartbeat
        raise LeaseLostError from then on; an item not in_progress is refused
        (WorkItemStateError)."""
        ref = validate_path_or_id(path)

        def work(cur: Any) -> None:
            now = self.db.timestamp(truncate_to_ms(utcnow()))
            item = self._require_item(cur, ref)
            cur.execute(self._sql(REVOKE), {"path_id": item["path_id"]})
            row = cur.fetchone()
            if row is None:
                raise self._wrong_state(cur, ref, ("in_progress",), "revoke_lease")
            self._record(cur, [(item["path_id"], "released", row[0], {"by": "operator"})], now)

        self.db.transaction(work)

    def _wrong_state(
        self, cur: Any, ref: str, required: tuple[str, ...], operation: str
    ) -> WorkItemStateError:
        """The refusal of an operation whose statement changed nothing: the item's status
        (read now, after the statement) is not among ``required``. The statement decides,
        not an earlier read, so an item that changes status in between is refused too."""
        return WorkItemStateError(ref, self._require_item(cur, ref)["status"], required, operation)

    def _require_item(self, cur: Any, ref: str) -> WorkItem:
        query = ITEM_BY_ID if is_path_id(ref) else ITEM_BY_PATH
        cur.execute(self._sql(query), {"ref": ref, "tenant": self.tenant_id})
        row = cur.fetchone()
        if row is None:
            if self._path_id(cur, ref) is None:
                raise NexusFileNotFoundError(ref)
            raise WorkItemNotFoundError(ref)
        return self._item(row)

    # ------------------------------------------------------------------ retention

    def prune(
        self,
        older_than: timedelta | datetime,
        statuses: Sequence[str] = ("completed",),
        *,
        batch_size: int = 1000,
    ) -> int:
        """Delete this tenant's finished items whose ``finished_at`` is older than the cutoff;
        returns how many were deleted.

        ``older_than`` is an age (``timedelta``, before now) or a moment (``datetime``; naive
        means UTC). ``statuses`` are among ``completed`` and ``failed`` (cancelled items are
        ``failed``). An item goes with its path: metadata, history and idempotency key. An
        item that something not completed still depends on is kept (see docs/work-queue.md).
        Deletes run in batches of ``batch_size`` items, each its own short transaction.
        """
        cutoff = self._prune_cutoff(older_than)
        wanted = self._prune_statuses(statuses)
        batch = min(validate_positive_int("batch_size", batch_size), MAX_LIMIT)
        params = {
            "tenant": self.tenant_id,
            "first": wanted[0],
            "second": wanted[-1],
            "cutoff": self.db.timestamp(cutoff),
            "batch": batch,
        }
        sql = self._sql(PRUNE)

        def work(cur: Any) -> int:
            cur.execute(sql, params)
            return int(cur.rowcount)

        total = 0
        while True:
            # Until a batch finds nothing: a batch can free items for the next one (a failed
            # dependent pruned lets its completed dependency go).
            started = time.monotonic()
            deleted = self.db.transaction(work)
            if deleted == 0:
                return total
            total += deleted
            if not self.db.is_postgresql:
                # SQLite has one writer at a time, and a claimer waiting in its busy handler
                # polls every few ms: without a pause the next batch would always win the
                # lock. Pausing as long as the batch took leaves writers at least half the time.
                time.sleep(min(time.monotonic() - started, PRUNE_MAX_PAUSE))

    @staticmethod
    def _prune_cutoff(older_than: Any) -> datetime:
        if isinstance(older_than, timedelta):
            if older_than < timedelta(0):
                raise InvalidArgumentError("older_than", older_than, "must not be negative")
            try:
                return truncate_to_ms(utcnow() - older_than)
            except OverflowError as exc:
                raise InvalidArgumentError(
                    "older_than", older_than, "reaches back before the year 1"
                ) from exc
        if isinstance(older_than, datetime):
            return truncate_to_ms(to_utc(older_than))
        raise InvalidArgumentError("older_than", older_than, "must be a timedelta or a datetime")

    @staticmethod
    def _prune_statuses(statuses: Any) -> tuple[str, ...]:
        given = (statuses,) if isinstance(statuses, str) else statuses
        if not isinstance(given, (list, tuple)) or not given:
            raise InvalidArgumentError(
                "statuses", statuses, "must be a non-empty sequence of statuses"
            )
        for status in given:
            if status not in FINISHED_STATUSES or not isinstance(status, str):
                raise InvalidArgumentError(
                    "statuses",
                    statuses,
                    f"only finished items can be pruned: {', '.join(FINISHED_STATUSES)}"
                    " (cancelled items are failed)",
                )
        return tuple(sorted(set(given)))

    # ------------------------------------------------------------------ insight

    def explain_blocked(self, path: str) -> list[dict[str, Any]]:
        """The chain of unresolved blockers behind ``path``, nearest first.

        Each entry: ``path`` (the dependency as written), ``path_id`` (None if missing),
        ``status``, ``why``, ``depth`` (1 = direct) and ``blocks`` (the path it holds up).
        """
        ref = validate_path_or_id(path)

        def work(cur: Any) -> list[dict[str, Any]]:
            start = self._path_id(cur, ref)
            if start is None:
                raise NexusFileNotFoundError(ref)
            holder_path = ref
            if is_path_id(ref):
                cur.execute(self._sql(TARGET_BY_ID), {"ref": ref, "tenant": self.tenant_id})
                holder_path = cur.fetchone()[1]
            chain: list[dict[str, Any]] = []
            seen = {start}
            frontier = [(start, holder_path)]
            depth = 0
            while frontier and depth < 100:
                depth += 1
                next_frontier = []
                for path_id, holder in frontier:
                    cur.execute(self._sql(EDGES), {"path_id": path_id})
                    for (dep_ref,) in cur.fetchall():
                        entry = self._dependency(cur, dep_ref)
                        if entry["why"] is None:
                            continue
                        entry.update(depth=depth, blocks=holder)
                        chain.append(entry)
                        if entry["path_id"] and entry["path_id"] not in seen:
                            seen.add(entry["path_id"])
                            next_frontier.append((entry["path_id"], entry["path"]))
                frontier = next_frontier
            return chain

        return self.db.transaction(work, write=False)

    def _dependency(self, cur: Any, dep_ref: str) -> dict[str, Any]:
        """One dependency target: ``why`` is None when it is resolved (completed)."""
        query = TARGET_BY_ID if is_path_id(dep_ref) else TARGET_BY_PATH
        cur.execute(self._sql(query), {"ref": dep_ref, "tenant": self.tenant_id})
        target = cur.fetchone()
        if target is None:
            return {"path": dep_ref, "path_id": None, "status": None, "why": "missing"}
        path_id, virtual_path, deleted_at, status = target
        if deleted_at is not None:
            return {"path": virtual_path, "path_id": path_id, "status": None, "why": "deleted"}
        if status == "completed":
            why = None
        elif status is None:
            why = "has no status"
        else:
            why = f"status is {status}, needs completed"
        return {"path": virtual_path, "path_id": path_id, "status": status, "why": why}

    def get_dependencies(self, path: str) -> list[dict[str, Any]]:
        """Every direct dependency of ``path``, resolved or not, ordered by reference.

        Each entry: ``path`` (the target's virtual path; the reference as written if no such
        path exists), ``path_id`` (None if missing), ``status`` (None if missing, deleted or
        not a work item) and ``why`` (None when resolved, else as in :meth:`explain_blocked`).
        """
        ref = validate_path_or_id(path)

        def work(cur: Any) -> list[dict[str, Any]]:
            path_id = self._path_id(cur, ref)
            if path_id is None:
                raise NexusFileNotFoundError(ref)
            cur.execute(self._sql(EDGES), {"path_id": path_id})
            return [self._dependency(cur, dep_ref) for (dep_ref,) in cur.fetchall()]

        return self.db.transaction(work, write=False)

    def get_dependents(self, path: str) -> list[dict[str, Any]]:
        """The live paths whose ``depends_on`` names ``path`` (by virtual path or path_id),
        ordered by virtual path: ``path``, ``path_id`` and ``status`` (None if not a work
        item)."""
        ref = validate_path_or_id(path)

        def work(cur: Any) -> list[dict[str, Any]]:
            path_id = self._path_id(cur, ref)
            if path_id is None:
                raise NexusFileNotFoundError(ref)
            virtual_path = ref
            if is_path_id(ref):
                cur.execute(self._sql(TARGET_BY_ID), {"ref": ref, "tenant": self.tenant_id})
                virtual_path = cur.fetchone()[1]
            cur.execute(
                self._sql(DEPENDENTS),
                {"tenant": self.tenant_id, "path": virtual_path, "path_id": path_id},
            )
            return [
                {"path": dependent_path, "path_id": dependent_id, "status": status}
                for dependent_id, dependent_path, status in cur.fetchall()
            ]

        return self.db.transaction(work, write=False)

    def get_work_history(self, path: str) -> list[dict[str, Any]]:
        """Every recorded transition of the item, oldest first."""
        ref = validate_path_or_id(path)

        def work(cur: Any) -> list[dict[str, Any]]:
            path_id = self._path_id(cur, ref)
            if path_id is None:
                raise NexusFileNotFoundError(ref)
            cur.execute(self._sql(HISTORY), {"path_id": path_id})
            return [
                {
                    "event": event,
                    "at": self.db.read_timestamp(at),
                    "worker_id": worker_id,
                    "detail": self._json(detail),
                }
                for event, at, worker_id, detail in cur.fetchall()
            ]

        return self.db.transaction(work, write=False)

    def work_stats(self) -> dict[str, Any]:
        """Counts from maintained counters (O(1) in the number of items).

        ``ready_now`` (the rows of ``ready_work_items``: claimable now) and
        ``waiting_on_dependencies`` (the rows of ``blocked_work_items``, whatever their
        status); ``ready`` and ``blocked``, their older names, kept for compatibility;
        ``pending`` and ``in_progress`` (the rows of those views) and ``by_status`` (the
        status counts: items per value of the ``status`` key). docs/views.md's glossary
        tells the two ideas apart."""

        def work(cur: Any) -> tuple[dict[str, int], int]:
            cur.execute(self._sql(COUNTERS), {"tenant": self.tenant_id})
            counters = {str(name): int(n) for name, n in cur.fetchall()}
            now = self.db.timestamp(utcnow())
            cur.execute(self._sql(DEFERRED), {"tenant": self.tenant_id, "now": now})
            return counters, int(cur.fetchone()[0])

        counters, deferred = self.db.transaction(work, write=False)
        by_status = {status: counters.get(status, 0) for status in STATUSES}
        ready_now = counters.get("eligible", 0) - deferred
        waiting = counters.get("waiting", 0)
        return {
            "ready_now": ready_now,
            "waiting_on_dependencies": waiting,
            "ready": ready_now,
            "pending": by_status["pending"],
            "blocked": waiting,
            "in_progress": by_status["in_progress"],
            "by_status": by_status,
        }

    def work_analytics(self) -> dict[str, list[dict[str, Any]]]:
        """The history views: ``throughput_hourly``, ``failures_by_error``, ``timing_hourly``."""
        return self.store.read_views(
            {
                "throughput_hourly": work_throughput_hourly,
                "failures_by_error": work_failures_by_error,
                "timing_hourly": work_timing_hourly,
            }
        )

    # ------------------------------------------------------------------ metrics and dashboard

    def work_event_counts(self) -> dict[str, Any]:
        """The history's maintained counters (revision 0006; O(1) in items and history).

        ``events``: {event: count} of every history event ever recorded (``claimed``,
        ``completed``, ``retried``, ``failed``...; pruning the history does not lower them);
        ``dead_letters``: items that ran out of attempts; ``run_seconds``: claim-to-complete
        times of completions, ``{"count", "sum", "buckets"}`` with ``buckets`` a list of
        (upper bound, cumulative count) ending with ``(inf, count)``.
        """

        def work(cur: Any) -> list[tuple[str, int, float]]:
            cur.execute(self._sql(EVENT_COUNTS), {"tenant": self.tenant_id})
            return [(str(name), int(n), float(total)) for name, n, total in cur.fetchall()]

        rows = self.db.transaction(work, write=False)
        events: dict[str, int] = {}
        by_bound: dict[float, int] = {}
        run_count, run_sum, dead_letters = 0, 0.0, 0
        for name, n, total in rows:
            if name.startswith("run_le:"):
                by_bound[float(name[len("run_le:") :])] = n
            elif name == "run_seconds":
                run_count, run_sum = n, total
            elif name == "dead_letter":
                dead_letters = n
            else:
                events[name] = n
        buckets: list[tuple[float, int]] = []
        cumulative = 0
        for bound in (*RUN_SECONDS_BUCKETS, float("inf")):
            cumulative += by_bound.get(bound, 0)
            buckets.append((bound, cumulative))
        return {
            "events": events,
            "dead_letters": dead_letters,
            "run_seconds": {"count": run_count, "sum": run_sum, "buckets": buckets},
        }

    def oldest_ready_at(self) -> datetime | None:
        """When the longest-waiting item of ``ready_work_items`` became ready (its
        ``run_after`` if it had one, else its ``created_at``); None when nothing is ready.
        One index look-up."""

        def work(cur: Any) -> Any:
            cur.execute(self._sql(OLDEST_READY), {"tenant": self.tenant_id})
            row = cur.fetchone()
            return None if row is None else row[0]

        since = self.db.read_timestamp(self.db.transaction(work, write=False))
        if since is None or since > utcnow():
            return None  # the first entry is deferred: every ready item is
        return since

    def work_throughput(self, hours: int = 24) -> list[dict[str, Any]]:
        """Completed / failed / retried per UTC hour over the last ``hours`` hours, oldest
        first, one entry per hour (zeros included), from maintained counters."""
        hours = min(validate_positive_int("hours", hours), 24 * 366)
        now = utcnow().replace(minute=0, second=0, microsecond=0)
        since = now - timedelta(hours=hours - 1)

        def work(cur: Any) -> list[tuple[Any, str, int]]:
            cur.execute(
                self._sql(EVENTS_HOURLY),
                {"tenant": self.tenant_id, "since": self.db.timestamp(since)},
            )
            return list(cur.fetchall())

        counts: dict[datetime, dict[str, Any]] = {
            since + timedelta(hours=i): {
                "hour": since + timedelta(hours=i),
                "completed": 0,
                "failed": 0,
                "retried": 0,
            }
            for i in range(hours)
        }
        for hour, event, n in self.db.transaction(work, write=False):
            entry = counts.get(self.db.read_timestamp(hour))  # type: ignore[arg-type]
            if entry is not None and event in entry:
                entry[event] = int(n)
        return list(counts.values())

    def get_work_items(self, path_ids: Sequence[str]) -> list[WorkItem]:
        """The work items with these path_ids, in the order given (ids that are no work item
        of this tenant are left out)."""
        if isinstance(path_ids, str) or not isinstance(path_ids, Sequence):
            raise InvalidArgumentError("path_ids", path_ids, "must be a list of path_ids")
        for path_id in path_ids:
            if not isinstance(path_id, str) or not is_path_id(path_id):
                raise InvalidArgumentError("path_ids", path_id, "is not a path_id")
        ids = list(dict.fromkeys(path_ids))

        def work(cur: Any) -> dict[str, WorkItem]:
            found: dict[str, WorkItem] = {}
            for start in range(0, len(ids), CHUNK):
                cur.execute(
                    self._sql(ITEMS_BY_IDS),
                    {"ids": self._array(ids[start : start + CHUNK]), "tenant": self.tenant_id},
                )
                for row in cur.fetchall():
                    item = self._item(row)
                    found[item["path_id"]] = item
            return found

        found = self.db.transaction(work, write=False) if ids else {}
        return [found[path_id] for path_id in ids if path_id in found]

    def page_failed_work(
        self, limit: int = 100, *, after: str | None = None
    ) -> tuple[list[WorkItem], str | None]:
        """A page of failed (dead-lettered or cancelled) items, most recently finished
        first, and the cursor of the next page (None after the last). ``after`` is a cursor
        returned here; a page deep in the list costs what the first one costs."""
        limit = min(validate_positive_int("limit", limit), 10_000)
        after_key: Any = None
        after_id: str | None = None
        if after is not None:
            after_key, after_id = self._decode_failed_cursor(after)

        def work(cur: Any) -> list[Any]:
            cur.execute(
                self._sql(FAILED_PAGE),
                {
                    "tenant": self.tenant_id,
                    "after_key": after_key,
                    "after_id": after_id,
                    "limit": limit + 1,
                },
            )
            return list(cur.fetchall())

        rows = self.db.transaction(work, write=False)
        items = [self._item(row) for row in rows[:limit]]
        cursor = None
        if len(rows) > limit:
            last = rows[limit - 1]
            key = last[16] if isinstance(last[16], str) else last[16].isoformat()
            cursor = base64.urlsafe_b64encode(json.dumps([key, last[0]]).encode()).decode()
        return items, cursor

    def _decode_failed_cursor(self, cursor: Any) -> tuple[Any, str]:
        try:
            key, path_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
            if not isinstance(key, str) or not isinstance(path_id, str):
                raise ValueError(cursor)
            moment = datetime.fromisoformat(key)
        except (ValueError, TypeError, AttributeError, binascii.Error) as exc:
            raise InvalidCursorError(cursor, "is not a cursor of the failed list") from exc
        return (moment if self.db.is_postgresql else key), path_id

    def recent_workers(self, *, window: int = 10_000, limit: int = 100) -> list[dict[str, Any]]:
        """Workers seen recently: those named in the last ``window`` history rows, newest
        first, each with ``last_seen``, ``events``, ``claimed``, ``completed``, ``failed``
        (in that window), ``holding`` (items it holds now) and ``next_lease_expiry``."""
        window = min(validate_positive_int("window", window), 1_000_000)
        limit = min(validate_positive_int("limit", limit), 10_000)

        def work(cur: Any) -> tuple[list[Any], list[Any]]:
            cur.execute(
                self._sql(RECENT_WORKERS),
                {"tenant": self.tenant_id, "window": window, "limit": limit},
            )
            seen = list(cur.fetchall())
            cur.execute(self._sql(HOLDERS), {"tenant": self.tenant_id})
            return seen, list(cur.fetchall())

        seen, holders = self.db.transaction(work, write=False)
        held = {worker: (int(n), expiry) for worker, n, expiry in holders}
        read = self.db.read_timestamp
        workers = []
        for worker, last_seen, events, claimed, completed, failed in seen:
            holding, expiry = held.pop(worker, (0, None))
            workers.append(
                {
                    "worker_id": worker,
                    "last_seen": read(last_seen),
                    "events": int(events),
                    "claimed": int(claimed or 0),
                    "completed": int(completed or 0),
                    "failed": int(failed or 0),
                    "holding": holding,
                    "next_lease_expiry": read(expiry),
                }
            )
        # Holders whose last event is older than the window are still seen.
        for worker, (holding, expiry) in sorted(held.items(), key=lambda kv: str(kv[0])):
            if worker is not None and len(workers) < limit:
                workers.append(
                    {
                        "worker_id": worker,
                        "last_seen": None,
                        "events": 0,
                        "claimed": 0,
                        "completed": 0,
                        "failed": 0,
                        "holding": holding,
                        "next_lease_expiry": read(expiry),
                    }
                )
        return workers

    def wait_for_ready_work(self, timeout: float) -> bool:
        """Block until ``ready_work_items`` is non-empty (True) or ``timeout`` seconds pass."""
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0:
            raise InvalidArgumentError("timeout", timeout, "must be a non-negative number")
        waiter = self._waiter
        if waiter is None:
            waiter = ReadyWaiter(self.store.url, lambda: bool(self.store.get_ready_work(limit=1)))
            self._waiter = waiter
        return waiter.wait(float(timeout))

    def close(self) -> None:
        """Close the waiter's connection (the store owns everything else)."""
        waiter, self._waiter = self._waiter, None
        if waiter is not None:
            waiter.close()
