"""The queue's statements that are the same on both databases but for placeholder syntax.

Each is a :class:`~nexus.work.drivers.base.Statement` written once with neutral ``:name``
placeholders; a driver renders it in its connection's style (SQLite keeps ``:name``, psycopg
gets ``%(name)s``). Statements whose text differs between the dialects live in the driver
modules (:mod:`.sqlite`, :mod:`.postgresql`), under the same kind of name. Every statement
names the columns it returns, and the queue reads rows by those names.
"""

from __future__ import annotations

from nexus.work.drivers.base import Statement

DEFAULT_MAX_ATTEMPTS = 3
DEFAULT_LEASE_SECONDS = 300
#: Upper bounds (seconds) of the claim-to-complete buckets counted by revision 0006.
RUN_SECONDS_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0)

#: The columns of a work item (WorkItem by name; the ``lease_token`` is never read back).
ITEM_COLUMNS = """w.path_id, p.virtual_path, w.status, w.priority, w.tags,
        (SELECT m.value FROM file_metadata m
         WHERE m.path_id = w.path_id AND m.key = 'depends_on') AS depends_on,
        w.worker_id, w.started_at, w.run_after, w.lease_expires_at, w.attempts,
        w.max_attempts, w.unresolved_count, w.last_error, w.created_at, w.finished_at"""

#: Whether anything depends on the item, so that the promoted list is read only then.
HAS_DEPENDENTS = """EXISTS (
        SELECT 1 FROM work_dependencies d
        WHERE d.tenant_id = {w}.tenant_id
          AND d.depends_on_ref IN ({w}.path_id,
              (SELECT p.virtual_path FROM file_paths p WHERE p.path_id = {w}.path_id)))"""

# A finished item stays while anything of its tenant depends on it that is not completed
# (waiting, ready, running, failed and perhaps retried, or a path that is no work item): a
# reference to a path that no longer exists is unresolved, so pruning the item would block
# its dependents again.
HELD_BY_DEPENDENT = """EXISTS (
        SELECT 1 FROM work_dependencies d
        WHERE d.tenant_id = w.tenant_id
          AND d.depends_on_ref IN (w.path_id,
              (SELECT p.virtual_path FROM file_paths p WHERE p.path_id = w.path_id))
          AND NOT EXISTS (SELECT 1 FROM work_items x
                          WHERE x.path_id = d.path_id AND x.status = 'completed'))"""

SHARED = (
    # ------------------------------------------------------------------ single leases
    Statement(
        "was_claimed",
        "Whether the item was ever claimed (its history records a claim): a lease call it"
        " refuses then lost its lease, rather than naming an item that never had one.",
        """SELECT 1 AS claimed FROM work_history
        WHERE path_id = :path_id AND event = 'claimed' LIMIT 1""",
    ),
    Statement(
        "extend_lease",
        "Heartbeat: move the lease expiry of a held item.",
        """UPDATE work_items SET lease_expires_at = :expires, lease_seconds = :lease
        WHERE path_id = :path_id AND lease_token = :token""",
    ),
    Statement(
        "cancel",
        "Stop an item for good (failed, last_error 'cancelled'); a holder loses its lease.",
        """UPDATE work_items SET status = 'failed', lease_token = NULL, lease_expires_at = NULL,
            last_error = 'cancelled', finished_at = :now
        WHERE path_id = :path_id AND status <> 'completed'
        RETURNING status""",
    ),
    Statement(
        "retry",
        "Put a failed item back to ready with its attempts reset.",
        """UPDATE work_items SET status = 'ready', attempts = 0, last_error = NULL,
            run_after = NULL, finished_at = NULL
        WHERE path_id = :path_id AND status = 'failed'""",
    ),
    # ------------------------------------------------------------------ reading items
    Statement(
        "item_by_id",
        "One work item by path_id.",
        f"""SELECT {ITEM_COLUMNS} FROM work_items w JOIN file_paths p ON p.path_id = w.path_id
        WHERE w.path_id = :ref AND w.tenant_id = :tenant""",
    ),
    Statement(
        "item_by_path",
        "One work item by virtual path.",
        f"""SELECT {ITEM_COLUMNS} FROM file_paths p JOIN work_items w ON w.path_id = p.path_id
        WHERE p.tenant_id = :tenant AND p.virtual_path = :ref AND p.deleted_at IS NULL""",
    ),
    Statement(
        "path_id_by_id",
        "Whether a live path with this path_id exists in the tenant.",
        """SELECT path_id FROM file_paths
        WHERE path_id = :ref AND tenant_id = :tenant AND deleted_at IS NULL""",
    ),
    Statement(
        "path_id_by_path",
        "The path_id of a live virtual path in the tenant.",
        """SELECT path_id FROM file_paths
        WHERE tenant_id = :tenant AND virtual_path = :ref AND deleted_at IS NULL""",
    ),
    Statement(
        "history",
        "Every recorded transition of one item, oldest first.",
        """SELECT event, at, worker_id, detail FROM work_history
        WHERE path_id = :path_id ORDER BY id""",
    ),
    Statement(
        "edges",
        "The dependency references of one item.",
        """SELECT depends_on_ref FROM work_dependencies WHERE path_id = :path_id
        ORDER BY depends_on_ref""",
    ),
    Statement(
        "dependents",
        "The live paths whose depends_on names a path, by its virtual path or its path_id.",
        """SELECT p.path_id, p.virtual_path, w.status
        FROM work_dependencies d
        JOIN file_paths p ON p.path_id = d.path_id AND p.deleted_at IS NULL
        LEFT JOIN work_items w ON w.path_id = d.path_id
        WHERE d.depends_on_ref IN (:path, :path_id) AND d.tenant_id = :tenant
        ORDER BY p.virtual_path""",
    ),
    Statement(
        "target_by_id",
        "A dependency target by path_id, with its work status (NULL if none).",
        """SELECT p.path_id, p.virtual_path, p.deleted_at, w.status
        FROM file_paths p LEFT JOIN work_items w ON w.path_id = p.path_id
        WHERE p.path_id = :ref AND p.tenant_id = :tenant""",
    ),
    Statement(
        "target_by_path",
        "A dependency target by virtual path, with its work status (NULL if none).",
        """SELECT p.path_id, p.virtual_path, p.deleted_at, w.status
        FROM file_paths p LEFT JOIN work_items w ON w.path_id = p.path_id
        WHERE p.virtual_path = :ref AND p.tenant_id = :tenant""",
    ),
    Statement(
        "recent_workers",
        "Workers named in the last :window history rows (newest first), with event counts.",
        """SELECT h.worker_id, max(h.at) AS last_seen, count(*) AS events,
            sum(CASE WHEN h.event = 'claimed' THEN 1 ELSE 0 END) AS claimed,
            sum(CASE WHEN h.event = 'completed' THEN 1 ELSE 0 END) AS completed,
            sum(CASE WHEN h.event IN ('failed', 'retried') THEN 1 ELSE 0 END) AS failed
        FROM (SELECT worker_id, at, event FROM work_history WHERE tenant_id = :tenant
              ORDER BY id DESC LIMIT :window) h
        WHERE h.worker_id IS NOT NULL
        GROUP BY h.worker_id ORDER BY last_seen DESC, h.worker_id LIMIT :limit""",
    ),
    # ------------------------------------------------------------------ enqueue
    Statement(
        "set_queue_columns",
        "Queue-owned settings of a freshly enqueued item (max_attempts, run_after).",
        """UPDATE work_items SET max_attempts = :max_attempts, run_after = :run_after
        WHERE path_id = :path_id""",
    ),
    Statement(
        "insert_key",
        "Remember an idempotency key (one row per key; executemany).",
        """INSERT INTO work_idempotency (tenant_id, idempotency_key, path_id)
        VALUES (:tenant_id, :idempotency_key, :path_id)""",
    ),
)
