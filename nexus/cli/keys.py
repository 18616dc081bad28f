"""The documented keys of every ``--json`` document, in one place.

``DOCUMENT_KEYS[command]`` is the exact set of top-level keys the command prints;
``ITEM_KEYS[command]`` (for commands whose document holds ``items``) the keys of each item.
The commands build their documents from these tuples, the contract test checks the output
against them, and the same test checks that docs/cli.md names each of them in the command's
section, so code, tests and documentation cannot drift apart.
"""

from __future__ import annotations

PAGE = ("items", "returned", "next_cursor")

FILE_KEYS = (
    "path_id",
    "virtual_path",
    "tenant_id",
    "size_bytes",
    "content_hash",
    "file_type",
    "created_at",
    "updated_at",
)

VIEW_KEYS = (
    "path_id",
    "virtual_path",
    "tenant_id",
    "status",
    "priority",
    "created_at",
    "updated_at",
    "size_bytes",
    "content_hash",
)

WORK_ITEM_KEYS = (
    "path_id",
    "virtual_path",
    "status",
    "priority",
    "tags",
    "depends_on",
    "worker_id",
    "started_at",
    "run_after",
    "lease_token",
    "lease_expires_at",
    "attempts",
    "max_attempts",
    "blocker_count",
    "last_error",
    "created_at",
    "finished_at",
)

# What enqueue did besides the item: whether it made it, which dependencies name no path.
ENQUEUE_KEYS = (*WORK_ITEM_KEYS, "created", "missing_dependencies")

BLOCKER_KEYS = ("path", "path_id", "status", "why", "depth", "blocks")
HISTORY_KEYS = ("event", "at", "worker_id", "detail")
# ready_now / waiting_on_dependencies name what ready / blocked (their older names) count.
STATS_KEYS = (
    "ready_now",
    "waiting_on_dependencies",
    "ready",
    "pending",
    "blocked",
    "in_progress",
    "by_status",
)
REVISION_KEYS = ("revision", "head", "up_to_date")
GRAPH_KEYS = ("root", "tag", "direction", "nodes", "edges", "truncated")
GRAPH_NODE_KEYS = ("path", "path_id", "status", "priority", "tags")
GRAPH_EDGE_KEYS = ("from", "to")
PRUNE_KEYS = ("pruned", "statuses", "cutoff")
WORKER_KEYS = (
    "worker_id",
    "claimed",
    "completed",
    "promoted",
    "failed",
    "lost",
    "released",
    "seconds",
)

# The five work views, by command name: (store page method, extra columns of the view).
VIEWS: dict[str, tuple[str, tuple[str, ...]]] = {
    "ready": ("page_ready_work", ()),
    "pending": ("page_pending_work", ()),
    "blocked": ("page_blocked_work", ("blocker_count",)),
    "in-progress": ("page_in_progress_work", ("worker_id", "started_at")),
    "by-priority": ("page_work_by_priority", ("tags",)),
}

DOCUMENT_KEYS: dict[str, tuple[str, ...]] = {
    "db upgrade": REVISION_KEYS,
    "db downgrade": REVISION_KEYS,
    "db current": REVISION_KEYS,
    "db check": REVISION_KEYS,
    "db enable-rls": ("row_level_security",),
    "db disable-rls": ("row_level_security",),
    "put": FILE_KEYS,
    "get": (*FILE_KEYS, "metadata"),
    "ls": PAGE,
    "rm": ("path", "deleted"),
    "meta get": ("path", "metadata"),
    "meta set": ("path", "key", "value"),
    "meta rm": ("path", "key", "removed"),
    **{f"work {name}": PAGE for name in VIEWS},
    "work enqueue": ENQUEUE_KEYS,
    "work show": (*WORK_ITEM_KEYS, "metadata"),
    "work claim": PAGE,
    "work complete": ("path", "status", "promoted"),
    "work fail": ("path", "status"),
    "work release": ("path", "status"),
    "work cancel": ("path", "status"),
    "work retry": ("path", "status"),
    "work reclaim": ("reclaimed",),
    "work explain": PAGE,
    "work history": PAGE,
    "work graph": GRAPH_KEYS,
    "work stats": STATS_KEYS,
    "work prune": PRUNE_KEYS,
    "worker run": WORKER_KEYS,
}

ITEM_KEYS: dict[str, tuple[str, ...]] = {
    "ls": FILE_KEYS,
    **{f"work {name}": (*VIEW_KEYS, *extra) for name, (_, extra) in VIEWS.items()},
    "work claim": WORK_ITEM_KEYS,
    "work explain": BLOCKER_KEYS,
    "work history": HISTORY_KEYS,
}
