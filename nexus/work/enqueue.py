"""Enqueue: make paths work items, a whole DAG per transaction.

A batch is a few statements whatever its size: the paths (created, revived or locked), which
of them already are items, the new work rows in one typed multi-row statement, the metadata
rows in one statement per 5,000 rows (the database's rules see each batch at once), and only
when needed: the idempotency keys' locks and look-up, the stored-graph cycle check, the
queue columns of existing paths, the promotion of items enqueued after their dependencies
completed, the read of items that already existed and of dependencies that name no path.
It runs on the same transaction path as every other write of the queue.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from nexus.errors import DependencyCycleError, InvalidArgumentError, WorkItemNotFoundError
from nexus.storage.calls import Body
from nexus.storage.validation import (
    dependency_refs,
    is_path_id,
    validate_depends_on,
    validate_path,
    validate_positive_int,
    validate_priority,
    validate_status,
    validate_tags,
    validate_text,
)
from nexus.work.context import QueueContext
from nexus.work.drivers import NewItem
from nexus.work.drivers.statements import DEFAULT_MAX_ATTEMPTS
from nexus.work.items import EnqueuedItem, WorkItem, item_from_row

#: The metadata value of a key whose value lives in work_items (revision 0005).
ROUTED = {"$nexus": "work_items"}
ENQUEUE_KEYS = frozenset(
    {
        "path",
        "priority",
        "depends_on",
        "tags",
        "status",
        "run_after",
        "max_attempts",
        "idempotency_key",
    }
)
Spec = dict[str, Any]


def validate_spec(item: Mapping[str, Any]) -> Spec:
    """One enqueue_many entry, checked and completed with its defaults."""
    if not isinstance(item, Mapping):
        raise InvalidArgumentError("item", item, "must be a mapping with a 'path'")
    unknown = set(item) - ENQUEUE_KEYS
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


class Enqueue:
    """enqueue_many (and enqueue, a batch of one)."""

    def __init__(self, ctx: QueueContext) -> None:
        self.ctx = ctx
        self.driver = ctx.driver
        self.blocks = ctx.store.blocks

    def enqueue(self, specs: list[Spec]) -> list[EnqueuedItem]:
        # Each attempt starts from the specs as given (the body rewrites duplicate keys).
        return self.ctx.run(lambda: self._body([dict(spec) for spec in specs]))

    def _body(self, specs: list[Spec]) -> Body[list[EnqueuedItem]]:
        """The enqueue transaction: see the module docstring for its statements."""
        now = self.ctx.now()
        if any(s["depends_on"] is not None for s in specs):
            yield from self.blocks.lock_dependency_writes()
        known_keys = yield from self._known_keys(specs)
        fresh: dict[str, Spec] = {}
        first_of_key: dict[str, str] = {}
        for spec in specs:
            key = spec["idempotency_key"]
            if key in known_keys:
                continue
            if key is not None:
                # A key used twice in the batch names the first entry's item.
                spec["path"] = first_of_key.setdefault(key, spec["path"])
            fresh.setdefault(spec["path"], spec)
        path_ids, blank = yield from self.blocks.ensure_paths(list(fresh), now)
        existing = yield from self._work_rows(
            [path_ids[p] for p in fresh if path_ids[p] not in blank]
        )
        new = {p: s for p, s in fresh.items() if path_ids[p] not in existing}
        promoted: set[str] = set()
        if new:
            check_batch_acyclic(new, path_ids)
            yield from self._write_new_items(new, path_ids, blank, now)
            promoted = yield from self._promote_resolved(new, path_ids, now)
        results: dict[str, WorkItem] = {
            path: self._new_item(spec, path_ids[path]) for path, spec in new.items()
        }
        for path in promoted:
            results[path]["status"] = "ready"
        for path in dict.fromkeys(_item_path(spec, known_keys) for spec in specs):
            if path not in results:
                results[path] = yield from self._existing_item(path)
        missing = yield from self._missing_refs(results.values(), path_ids)
        enqueued: list[EnqueuedItem] = []
        reported: set[str] = set()
        for spec in specs:
            path = _item_path(spec, known_keys)
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

    def _known_keys(self, specs: list[Spec]) -> Body[dict[str, str]]:
        """Idempotency keys already used -> the paths of their items. A concurrent transaction
        using one of the keys waits in the lock until the other commits, and then finds its
        key (PostgreSQL; SQLite writers are serialised anyway)."""
        keys = list(dict.fromkeys(s["idempotency_key"] for s in specs if s["idempotency_key"]))
        if not keys:
            return {}
        yield from self.driver.lock_idempotency_keys(keys)
        found = yield self.driver.call(
            "known_keys", {"tenant": self.ctx.tenant_id, "keys": self.driver.array(keys)}
        )
        return {row["idempotency_key"]: row["virtual_path"] for row in found.rows}

    def _work_rows(self, path_ids: list[str]) -> Body[set[str]]:
        """The path_ids among ``path_ids`` that already are work items."""
        if not path_ids:
            return set()
        found = yield self.driver.call("work_rows", {"ids": self.driver.array(path_ids)})
        return set(found.column("path_id"))

    def _existing_item(self, path: str) -> Body[WorkItem]:
        row = yield from self.ctx.item(path)
        if row is None:  # pragma: no cover - the path was just found or made
            raise WorkItemNotFoundError(path)
        return item_from_row(self.driver, row)

    def _missing_refs(
        self, items: Iterable[WorkItem], path_ids: Mapping[str, str]
    ) -> Body[set[str]]:
        """The dependency references of ``items`` that name no live path of the tenant
        (references to the batch's own paths are known to be live)."""
        live = set(path_ids) | set(path_ids.values())
        refs = {
            ref for item in items for ref in dependency_refs(item["depends_on"]) if ref not in live
        }
        if not refs:
            return set()
        found = yield self.driver.call(
            "live_refs", {"refs": self.driver.array(sorted(refs)), "tenant": self.ctx.tenant_id}
        )
        return refs - set(found.column("ref"))

    def _write_new_items(
        self, new: dict[str, Spec], path_ids: dict[str, str], blank: set[str], now: datetime
    ) -> Body[None]:
        """Blank paths (made or revived here) carry no metadata: their work rows are written
        directly, typed, in one statement. A path that existed may carry keys from before, so
        it becomes a work item the way any writer makes one: by its status, routed."""
        fresh = [
            self._typed_row(spec, path_ids[p]) for p, spec in new.items() if path_ids[p] in blank
        ]
        if fresh:
            yield from self.driver.insert_items(
                fresh, self.ctx.tenant_id, self.driver.timestamp(now)
            )
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
        yield from self.blocks.write_metadata(rows + status_rows)
        # A cycle through stored items needs a stored edge from outside the batch naming a
        # batch item; only then is the stored graph (which now holds the batch's edges)
        # walked, from every batch item with dependencies at once.
        with_deps = {path_ids[p]: (p, s["depends_on"]) for p, s in new.items() if s["depends_on"]}
        if with_deps:
            batch_ids = [path_ids[p] for p in new]
            if (yield from self.blocks.is_referenced(list(new) + batch_ids, batch_ids)):
                yield from self.blocks.check_acyclic_stored(with_deps)
        yield from self._existing_paths_settings(new, path_ids, blank)
        keys = [
            {"tenant_id": self.ctx.tenant_id, "idempotency_key": key, "path_id": path_ids[path]}
            for path, spec in new.items()
            if (key := spec["idempotency_key"])
        ]
        if keys:
            yield self.driver.call("insert_key", keys, many=True)

    def _existing_paths_settings(
        self, new: dict[str, Spec], path_ids: dict[str, str], blank: set[str]
    ) -> Body[None]:
        """max_attempts and run_after of items made on paths that existed (routed rows)."""
        settings = [
            {
                "path_id": path_ids[path],
                "max_attempts": spec["max_attempts"],
                "run_after": self._bound(spec["run_after"]),
            }
            for path, spec in new.items()
            if path_ids[path] not in blank
            and (spec["run_after"] is not None or spec["max_attempts"] != DEFAULT_MAX_ATTEMPTS)
        ]
        if settings:
            yield self.driver.call("set_queue_columns", settings, many=True)

    def _promote_resolved(
        self, new: dict[str, Spec], path_ids: dict[str, str], now: datetime
    ) -> Body[set[str]]:
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
        ids = yield from self.driver.promote_resolved(
            list(candidates), self.driver.timestamp(now), self.ctx.tenant_id
        )
        return {candidates[path_id] for path_id in ids}

    def _bound(self, moment: datetime | None) -> Any:
        return None if moment is None else self.driver.timestamp(moment)

    def _typed_row(self, spec: Spec, path_id: str) -> NewItem:
        max_attempts = spec["max_attempts"]
        return NewItem(
            path_id=path_id,
            status=spec["status"],
            priority=spec["priority"],
            tags=spec["tags"],
            max_attempts=None if max_attempts == DEFAULT_MAX_ATTEMPTS else int(max_attempts),
            run_after=self._bound(spec["run_after"]),
        )

    def _new_item(self, spec: Spec, path_id: str) -> WorkItem:
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
            "run_after": self.driver.read_timestamp(self._bound(run_after)) if run_after else None,
            "lease_token": None,
            "lease_expires_at": None,
            "attempts": 0,
            "max_attempts": spec["max_attempts"],
            "blocker_count": None,
            "last_error": None,
            "created_at": None,
            "finished_at": None,
        }


def _item_path(spec: Spec, known_keys: Mapping[str, str]) -> str:
    """The path of the item an entry gets: its key's item if the key was used before."""
    key = spec["idempotency_key"]
    return known_keys[key] if key in known_keys else str(spec["path"])


def check_batch_acyclic(new: dict[str, Spec], path_ids: dict[str, str]) -> None:
    """Reject self-references and cycles among the batch's own edges (cheap, in Python);
    cycles through stored items are checked against the stored graph once it holds the
    batch's edges."""
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
