"""What each dashboard page shows, as JSON-ready documents built from the public API.

Every page and its ``/api/...`` endpoint are built from the same function here, so the HTML
and the JSON never disagree. Lists are ``{"items": [...], "returned": n, "next_cursor": ...}``
(keyset pages of the store's views, or of ``queue.page_failed_work``). No SQL here: only
``SQLAlchemyMetadataStore`` and ``WorkQueue`` calls.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from nexus.errors import WorkItemNotFoundError
from nexus.storage.metadata_store import SQLAlchemyMetadataStore
from nexus.storage.types import utcnow
from nexus.work import WorkQueue

#: Rows per page unless ``limit`` says otherwise, and the most a page may hold.
PAGE_SIZE = 50
MAX_PAGE = 500
#: Nodes drawn in an item's dependency graph at most.
GRAPH_NODES = 60

VIEW_KEYS = ("path_id", "virtual_path", "status", "priority", "created_at", "updated_at")


def jsonable(value: Any) -> Any:
    """Datetimes as ISO-8601 text, recursively; everything else as it is."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def _seconds_since(moment: datetime | None) -> float | None:
    return None if moment is None else round((utcnow() - moment).total_seconds(), 3)


def _seconds_until(moment: datetime | None) -> float | None:
    return None if moment is None else round((moment - utcnow()).total_seconds(), 3)


def overview(queue: WorkQueue) -> dict[str, Any]:
    stats = queue.work_stats()
    oldest = queue.oldest_ready_at()
    counts = queue.work_event_counts()
    throughput = queue.work_throughput(24)
    return {
        "by_status": stats["by_status"],
        "ready_now": stats["ready_now"],
        "waiting_on_dependencies": stats["waiting_on_dependencies"],
        "pending": stats["pending"],
        "blocked": stats["waiting_on_dependencies"],  # the older name of the same count
        "in_progress": stats["in_progress"],
        "oldest_ready_at": oldest,
        "oldest_ready_age_seconds": _seconds_since(oldest) or 0.0,
        "events": counts["events"],
        "dead_letters": counts["dead_letters"],
        "throughput_hourly": throughput,
    }


def _page(
    store: SQLAlchemyMetadataStore,
    view: str,
    limit: int,
    tags: list[str] | None,
    prefix: str | None,
    after: str | None,
) -> tuple[list[dict[str, Any]], str | None]:
    pager = getattr(store, f"page_{view}")
    items, cursor = pager(limit, tags=tags, path_prefix=prefix, after=after)
    return list(items), cursor


def _listing(items: list[dict[str, Any]], cursor: str | None, **filters: Any) -> dict[str, Any]:
    return {"items": items, "returned": len(items), "next_cursor": cursor, "filters": filters}


def view_page(
    store: SQLAlchemyMetadataStore,
    view: str,
    *,
    limit: int = PAGE_SIZE,
    tags: list[str] | None = None,
    prefix: str | None = None,
    after: str | None = None,
    extra: tuple[str, ...] = (),
) -> dict[str, Any]:
    """A page of one of the store's work views (``view``: ``ready_work``, ``pending_work``,
    ``blocked_work``, ``in_progress_work`` as in ``store.page_<view>``), with the columns
    in ``VIEW_KEYS`` and ``extra``."""
    rows, cursor = _page(store, view, limit, tags, prefix, after)
    keys = VIEW_KEYS + extra
    items = [{key: row.get(key) for key in keys} for row in rows]
    return _listing(items, cursor, tags=tags, prefix=prefix)


def in_progress_page(
    store: SQLAlchemyMetadataStore,
    queue: WorkQueue,
    *,
    limit: int = PAGE_SIZE,
    tags: list[str] | None = None,
    prefix: str | None = None,
    after: str | None = None,
) -> dict[str, Any]:
    """In-progress items with their worker, lease expiry and the lease's seconds left."""
    page = view_page(
        store,
        "in_progress_work",
        limit=limit,
        tags=tags,
        prefix=prefix,
        after=after,
        extra=("worker_id", "started_at"),
    )
    held = {i["path_id"]: i for i in queue.get_work_items([r["path_id"] for r in page["items"]])}
    for row in page["items"]:
        item = held.get(row["path_id"])
        expires = None if item is None else item["lease_expires_at"]
        row["lease_expires_at"] = expires
        row["lease_seconds_left"] = _seconds_until(expires)
        row["attempts"] = None if item is None else item["attempts"]
    return page


def failed_page(
    queue: WorkQueue, *, limit: int = PAGE_SIZE, after: str | None = None
) -> dict[str, Any]:
    items, cursor = queue.page_failed_work(limit, after=after)
    keys = ("path_id", "virtual_path", "status", "priority", "tags", "attempts", "max_attempts")
    rows = [
        {
            **{key: item[key] for key in keys},  # type: ignore[literal-required]
            "last_error": item["last_error"],
            "finished_at": item["finished_at"],
            "dead_letter": item["last_error"] != "cancelled",
        }
        for item in items
    ]
    return _listing(rows, cursor)


def workers(queue: WorkQueue) -> dict[str, Any]:
    found = queue.recent_workers()
    for worker in found:
        worker["last_seen_seconds_ago"] = _seconds_since(worker["last_seen"])
    return {"items": found, "returned": len(found), "next_cursor": None}


def item(store: SQLAlchemyMetadataStore, queue: WorkQueue, path_id: str) -> dict[str, Any]:
    """One item: the work item (with ``ready_now``: whether ``ready_work_items`` lists it),
    every metadata key, its history and its blocking chain."""
    work = queue.get_work_item(path_id)
    if work is None:
        raise WorkItemNotFoundError(path_id)
    metadata = store.get_all_file_metadata(path_id)
    chain = queue.explain_blocked(path_id) if work["blocker_count"] else []
    document: dict[str, Any] = dict(work)
    document.pop("lease_token", None)
    document["lease_seconds_left"] = _seconds_until(work["lease_expires_at"])
    run_after = work["run_after"]
    document["ready_now"] = (
        work["status"] == "ready"
        and not work["blocker_count"]
        and (run_after is None or run_after <= utcnow())
    )
    return {
        "item": document,
        "metadata": metadata,
        "history": queue.get_work_history(path_id),
        "blocking_chain": chain,
    }


def graph(queue: WorkQueue, path_id: str, *, max_nodes: int = GRAPH_NODES) -> dict[str, Any]:
    """The dependency graph around an item: what it waits for (transitively) and what waits
    for it directly. Nodes ``{id, path, path_id, status}`` (``status`` ``missing`` for a
    reference to no path); an edge runs from a dependency to its dependent (it must
    complete first). At most ``max_nodes`` nodes (then ``truncated``)."""
    root = queue.get_work_item(path_id)
    if root is None:
        raise WorkItemNotFoundError(path_id)
    nodes: dict[str, dict[str, Any]] = {}
    edges: dict[tuple[str, str], None] = {}
    truncated = False

    def add(found: Mapping[str, Any]) -> str | None:
        """The node's id, or None when the graph is full."""
        nonlocal truncated
        key = str(found["path_id"] or found["path"])
        if key not in nodes:
            if len(nodes) >= max_nodes:
                truncated = True
                return None
            status = found["status"] or ("missing" if found["path_id"] is None else None)
            nodes[key] = {
                "id": key,
                "path": found["path"],
                "path_id": found["path_id"],
                "status": status,
            }
        return key

    root_key = add({"path": root["virtual_path"], "path_id": path_id, "status": root["status"]})
    frontier = [path_id]
    while frontier:
        following = []
        for holder in frontier:
            for dependency in queue.get_dependencies(holder):
                known = (dependency["path_id"] or dependency["path"]) in nodes
                key = add(dependency)
                if key is None:
                    continue
                edges[(key, holder)] = None
                if not known and dependency["path_id"] is not None:
                    following.append(dependency["path_id"])
        frontier = following
    for dependent in queue.get_dependents(path_id):
        key = add(dependent)
        if key is not None and root_key is not None:
            edges[(root_key, key)] = None
    return {
        "root": path_id,
        "nodes": list(nodes.values()),
        "edges": [{"from": a, "to": b} for a, b in edges],
        "truncated": truncated,
    }
