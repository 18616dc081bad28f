"""The SQLite driver: JSON arrays for lists, sortable UTC text for timestamps, ``INDEXED BY``
for the plans, and one more statement where PostgreSQL writes history in a CTE.

SQLite has no data-modifying CTEs, so a claim, a completion, a rescue and a promotion at
enqueue write their history rows in a second statement of the same transaction (computed in
SQL from the rows just changed). Writers are serialised (``BEGIN IMMEDIATE``): a trigger
always sees the latest committed state, and every history row after a completion's own is
its own.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from nexus.storage.calls import Body, Call, nothing
from nexus.storage.types import sqlite_timestamp, to_utc
from nexus.work.drivers.base import Completion, Driver, Lease, NewItem, Statement
from nexus.work.drivers.statements import (
    DEFAULT_MAX_ATTEMPTS,
    HAS_DEPENDENTS,
    HELD_BY_DEPENDENT,
    ITEM_COLUMNS,
)

# The ready index gives the order and the LIMIT stops the scan: the tenant is compared
# plainly; SQLite is told the index.
_READY = """
    SELECT w.path_id FROM work_items w INDEXED BY ix_work_items_ready
    WHERE w.status = 'ready' AND w.unresolved_count = 0
      AND (w.run_after IS NULL OR w.run_after <= :now)
      AND w.tenant_id = :tenant{filters}
    ORDER BY w.priority IS NULL, w.priority, w.created_at, w.path_id
    LIMIT :limit"""
_PREFIX = """
      AND EXISTS (SELECT 1 FROM file_paths p WHERE p.path_id = w.path_id
                  AND substr(p.virtual_path, 1, length(:prefix)) = :prefix)"""
_TAGS = """
      AND EXISTS (SELECT 1 FROM json_each(w.tags) e
                  WHERE e.value IN (SELECT t.value FROM json_each(:tags) t))"""


def _claim(filters: str) -> str:
    return f"""
    UPDATE work_items SET status = 'in_progress', worker_id = :worker, started_at = :now,
        attempts = attempts + 1, lease_token = lower(hex(randomblob(16))),
        lease_expires_at = :expires, lease_seconds = :lease, run_after = NULL
    WHERE path_id IN ({_READY.format(filters=filters)})
    RETURNING path_id, priority, created_at, tags, lease_token, lease_expires_at, attempts,
        max_attempts,
        (SELECT p.virtual_path FROM file_paths p WHERE p.path_id = work_items.path_id)
            AS virtual_path"""


# Leases come as a JSON array of [path_id or NULL, virtual path or NULL, token].
_HELD = """
    SELECT w.path_id FROM json_each(:leases) j
    JOIN work_items w ON w.path_id = coalesce(
        json_extract(j.value, '$[0]'),
        (SELECT p.path_id FROM file_paths p
         WHERE p.tenant_id = :tenant AND p.virtual_path = json_extract(j.value, '$[1]')
           AND p.deleted_at IS NULL))
    WHERE w.lease_token = json_extract(j.value, '$[2]') AND w.status = 'in_progress'
      AND w.tenant_id = :tenant"""

_STATEMENTS = (
    *(
        Statement(
            f"claim{'_prefix' if prefix else ''}{'_tags' if tags else ''}",
            "Move up to :limit ready items, in ready-view order, to in_progress with a new lease.",
            _claim((_PREFIX if prefix else "") + (_TAGS if tags else "")),
        )
        for prefix in (False, True)
        for tags in (False, True)
    ),
    Statement(
        "record_claims",
        "History rows of the items a claim just took.",
        """
        INSERT INTO work_history (path_id, tenant_id, event, at, worker_id, detail)
        SELECT w.path_id, :tenant, 'claimed', :now, :worker,
               json_object('attempt', w.attempts, 'wait_seconds',
                           round((julianday(:now) - julianday(w.created_at)) * 86400.0, 3))
        FROM work_items w WHERE w.path_id IN (SELECT value FROM json_each(:ids))""",
    ),
    Statement(
        "record_completions",
        "History rows of the held leases of a completion, before `complete` finishes them:"
        " one row per lease held, so a shorter result means a lease is not held.",
        f"""
        INSERT INTO work_history (path_id, tenant_id, event, at, worker_id, detail)
        SELECT w.path_id, :tenant, 'completed', :now, w.worker_id,
               json_object('attempt', w.attempts, 'run_seconds',
                           round((julianday(:now) - julianday(w.started_at)) * 86400.0, 3))
        FROM work_items w WHERE w.path_id IN ({_HELD})
        RETURNING id, path_id""",
    ),
    Statement(
        "complete",
        "Complete the items record_completions found held.",
        f"""
        UPDATE work_items SET status = 'completed', lease_token = NULL,
            lease_expires_at = NULL, finished_at = :now
        WHERE path_id IN (SELECT value FROM json_each(:ids))
        RETURNING path_id, {HAS_DEPENDENTS.format(w="work_items")} AS has_dependents""",
    ),
    Statement(
        "promoted",
        # The writer holds the write lock for the whole transaction: every row after the
        # mark is its own.
        "The items this transaction promoted since history row :mark (its last completed).",
        """
        SELECT DISTINCT h.path_id, p.virtual_path
        FROM work_history h JOIN file_paths p ON p.path_id = h.path_id
        WHERE h.id > :mark AND h.event = 'promoted'
        ORDER BY p.virtual_path""",
    ),
    Statement(
        "record",
        "Append one history row (executemany).",
        """
        INSERT INTO work_history (path_id, tenant_id, event, at, worker_id, detail)
        VALUES (:path_id, :tenant, :event, :now, :worker_id, :detail)""",
    ),
    Statement(
        "promote_resolved",
        "Items just enqueued blocked whose dependencies have all completed already: ready.",
        """
        UPDATE work_items SET status = 'ready'
        WHERE path_id IN (SELECT value FROM json_each(:ids))
          AND status = 'blocked' AND unresolved_count = 0
          AND EXISTS (SELECT 1 FROM work_dependencies d WHERE d.path_id = work_items.path_id)
        RETURNING path_id""",
    ),
    Statement(
        "lock_held",
        "The held item for heartbeat/fail/release; no row if not held.",
        """
        SELECT w.path_id, w.worker_id, w.attempts, w.max_attempts, w.lease_seconds,
            w.started_at, w.last_error
        FROM work_items w
        WHERE w.path_id = coalesce(:path_id,
                (SELECT p.path_id FROM file_paths p WHERE p.tenant_id = :tenant
                 AND p.virtual_path = :path AND p.deleted_at IS NULL))
          AND w.tenant_id = :tenant AND w.status = 'in_progress' AND w.lease_token = :token""",
    ),
    Statement(
        "end_lease",
        "End a held lease: to ready (retry, release) or failed (dead letter).",
        """
        UPDATE work_items SET status = :status, lease_token = NULL, lease_expires_at = NULL,
            run_after = :run_after, attempts = :attempts, last_error = :error,
            finished_at = CASE WHEN :status = 'failed' THEN :now END
        WHERE path_id = :path_id AND lease_token = :token""",
    ),
    Statement(
        "revoke",
        "An operator's release: an in-progress item back to ready, the attempt not counted.",
        """
        UPDATE work_items SET status = 'ready', lease_token = NULL, lease_expires_at = NULL,
            attempts = max(attempts - 1, 0), run_after = NULL
        WHERE path_id = :path_id AND status = 'in_progress'
        RETURNING worker_id""",
    ),
    Statement(
        "reclaim",
        "Return up to :batch expired leases to ready, or to failed when out of attempts.",
        f"""
        UPDATE work_items SET
            status = CASE WHEN attempts >= coalesce(max_attempts, {DEFAULT_MAX_ATTEMPTS})
                          THEN 'failed' ELSE 'ready' END,
            last_error = CASE WHEN attempts >= coalesce(max_attempts, {DEFAULT_MAX_ATTEMPTS})
                              THEN 'lease expired' ELSE last_error END,
            finished_at = CASE WHEN attempts >= coalesce(max_attempts, {DEFAULT_MAX_ATTEMPTS})
                               THEN :now END,
            lease_token = NULL, lease_expires_at = NULL
        WHERE path_id IN (
            -- In-progress rows are few (one per held lease): their partial index is the plan.
            SELECT w.path_id FROM work_items w INDEXED BY ix_work_items_in_progress
            WHERE w.status = 'in_progress' AND w.lease_expires_at < :now
              AND w.tenant_id = :tenant
            ORDER BY w.lease_expires_at LIMIT :batch)
        RETURNING path_id, status, worker_id, attempts""",
    ),
    Statement(
        "prune",
        "Delete up to :batch finished items (their paths, and with them everything of the"
        " path) finished before :cutoff that no unfinished item depends on.",
        f"""
        DELETE FROM file_paths WHERE path_id IN (
            SELECT w.path_id FROM work_items w
            WHERE w.tenant_id = :tenant AND w.status IN (:first, :second)
              AND w.finished_at < :cutoff
              AND NOT {HELD_BY_DEPENDENT}
            LIMIT :batch)""",
    ),
    Statement(
        "counters",
        "The maintained counters of a tenant (summed over shards).",
        """SELECT counter, sum(n) AS n FROM work_counters WHERE tenant_id = :tenant
        GROUP BY counter""",
    ),
    Statement(
        "deferred",
        "Ready items whose run_after is still ahead (counted on the small deferred index).",
        """SELECT count(*) AS n FROM work_items INDEXED BY ix_work_items_deferred
        WHERE tenant_id = :tenant AND status = 'ready' AND unresolved_count = 0
          AND run_after IS NOT NULL AND run_after > :now""",
    ),
    Statement(
        "insert_items",
        "Work rows of new (blank) paths, typed values built in Python: one statement.",
        """
        INSERT INTO work_items (path_id, tenant_id, created_at, status, priority, tags,
                                attempts, max_attempts, run_after, unresolved_count)
        SELECT json_extract(j.value, '$[0]'), :tenant, :now, json_extract(j.value, '$[1]'),
               json_extract(j.value, '$[2]'), json_extract(j.value, '$[3]'), 0,
               json_extract(j.value, '$[4]'), json_extract(j.value, '$[5]'), 0
        FROM json_each(:items) j""",
    ),
    Statement(
        "live_refs",
        "The dependency references that name a live path of the tenant.",
        """SELECT j.value AS ref FROM json_each(:refs) j
        WHERE EXISTS (SELECT 1 FROM file_paths p WHERE p.tenant_id = :tenant
                      AND p.virtual_path = j.value AND p.deleted_at IS NULL)
           OR EXISTS (SELECT 1 FROM file_paths p WHERE p.path_id = j.value
                      AND p.tenant_id = :tenant AND p.deleted_at IS NULL)""",
    ),
    Statement(
        "work_rows",
        "Which of these path_ids already are work items.",
        """SELECT path_id FROM work_items WHERE path_id IN (SELECT value FROM json_each(:ids))""",
    ),
    Statement(
        "known_keys",
        "The paths of the items these idempotency keys already name.",
        """SELECT k.idempotency_key, p.virtual_path
        FROM work_idempotency k JOIN file_paths p ON p.path_id = k.path_id
        WHERE k.tenant_id = :tenant
          AND k.idempotency_key IN (SELECT value FROM json_each(:keys))""",
    ),
    Statement(
        "event_counts",
        "The maintained event counters of a tenant (summed over shards): n and total.",
        """SELECT counter, sum(n) AS n, sum(total) AS total FROM work_event_counts
        WHERE tenant_id = :tenant GROUP BY counter""",
    ),
    Statement(
        "events_hourly",
        "Completed / failed / retried per UTC hour since :since (maintained, a key range).",
        """SELECT hour, event, sum(n) AS n FROM work_event_hourly
        WHERE tenant_id = :tenant AND hour >= :since GROUP BY hour, event ORDER BY hour""",
    ),
    Statement(
        "oldest_ready",
        "When the longest-waiting ready item became ready: the first entry of its index.",
        """SELECT coalesce(run_after, created_at) AS since
        FROM work_items INDEXED BY ix_work_items_ready_since
        WHERE tenant_id = :tenant AND status = 'ready' AND unresolved_count = 0
        ORDER BY coalesce(run_after, created_at) LIMIT 1""",
    ),
    Statement(
        "items_by_ids",
        "Work items by a list of path_ids.",
        f"""SELECT {ITEM_COLUMNS} FROM work_items w JOIN file_paths p ON p.path_id = w.path_id
        WHERE w.path_id IN (SELECT value FROM json_each(:ids)) AND w.tenant_id = :tenant""",
    ),
    Statement(
        "failed_page",
        "A page of failed items, most recently finished first (keyset on the failed index).",
        f"""SELECT {ITEM_COLUMNS}, coalesce(w.finished_at, w.created_at) AS failed_key
        FROM work_items w INDEXED BY ix_work_items_failed
        JOIN file_paths p ON p.path_id = w.path_id
        WHERE w.tenant_id = :tenant AND w.status = 'failed'
          AND (:after_key IS NULL OR coalesce(w.finished_at, w.created_at) < :after_key
               OR (coalesce(w.finished_at, w.created_at) = :after_key
                   AND w.path_id < :after_id))
        ORDER BY coalesce(w.finished_at, w.created_at) DESC, w.path_id DESC LIMIT :limit""",
    ),
    Statement(
        "holders",
        "Items held per worker, and the soonest lease expiry of each (the in-progress index).",
        """SELECT worker_id, count(*) AS holding, min(lease_expires_at) AS next_expiry
        FROM work_items INDEXED BY ix_work_items_in_progress
        WHERE tenant_id = :tenant AND status = 'in_progress' GROUP BY worker_id""",
    ),
)


class SQLiteDriver(Driver):
    """SQLite (the sqlite3 module, ``:name`` placeholders)."""

    name = "sqlite"
    serialises_writers = True

    @staticmethod
    def render(text: str) -> str:
        return text

    def own_statements(self) -> Iterable[Statement]:
        return _STATEMENTS

    # ------------------------------------------------------------------ values

    def timestamp(self, moment: datetime) -> Any:
        return sqlite_timestamp(to_utc(moment))

    def array(self, values: Sequence[Any]) -> Any:
        return json.dumps(list(values))

    def read_json(self, value: Any) -> Any:
        return None if value is None else json.loads(value)

    def cursor_key(self, value: Any) -> str:
        return value if isinstance(value, str) else value.isoformat()

    def cursor_bound(self, text: str, moment: datetime) -> Any:
        return text

    # ------------------------------------------------------------------ operations

    def claim_sql(self, *, prefix: bool, tags: bool) -> str:
        return self.sql(f"claim{'_prefix' if prefix else ''}{'_tags' if tags else ''}")

    def claim(
        self, params: dict[str, Any], *, prefix: bool, tags: bool
    ) -> Body[list[dict[str, Any]]]:
        claimed = (yield Call(self.claim_sql(prefix=prefix, tags=tags), params)).rows
        if claimed:
            yield self.call(
                "record_claims",
                {
                    "tenant": params["tenant"],
                    "now": params["now"],
                    "worker": params["worker"],
                    "ids": json.dumps([row["path_id"] for row in claimed]),
                },
            )
        return claimed

    def complete(self, leases: Sequence[Lease], now: Any, tenant: str) -> Body[Completion]:
        # History first: its rows say which leases are held, and the id of the last marks
        # where the promotions of the completion below start.
        leased = json.dumps([[lease.path_id, lease.path, lease.token] for lease in leases])
        logged = (
            yield self.call("record_completions", {"leases": leased, "now": now, "tenant": tenant})
        ).rows
        held = [row["path_id"] for row in logged]
        if len(logged) != len(leases):
            return Completion(held, False, None)
        done = (yield self.call("complete", {"now": now, "ids": json.dumps(held)})).rows
        return Completion(
            held, any(row["has_dependents"] for row in done), max(row["id"] for row in logged)
        )

    def _record(self, rows: list[dict[str, Any]]) -> Body[None]:
        if rows:
            yield self.call("record", rows, many=True)

    def reclaim(self, now: Any, tenant: str, batch: int) -> Body[list[dict[str, Any]]]:
        moved = (yield self.call("reclaim", {"now": now, "tenant": tenant, "batch": batch})).rows
        yield from self._record(
            [
                {
                    "path_id": row["path_id"],
                    "tenant": tenant,
                    "event": "reclaimed",
                    "now": now,
                    "worker_id": row["worker_id"],
                    "detail": self.json_param({"to": row["status"], "attempt": row["attempts"]}),
                }
                for row in moved
            ]
        )
        return moved

    def promote_resolved(self, ids: Sequence[str], now: Any, tenant: str) -> Body[list[str]]:
        promoted = (yield self.call("promote_resolved", {"ids": self.array(ids)})).column("path_id")
        yield from self._record(
            [
                {
                    "path_id": path_id,
                    "tenant": tenant,
                    "event": "promoted",
                    "now": now,
                    "worker_id": None,
                    "detail": None,
                }
                for path_id in promoted
            ]
        )
        return [str(path_id) for path_id in promoted]

    def insert_items(self, items: Sequence[NewItem], tenant: str, now: Any) -> Body[None]:
        rows = [
            [
                item.path_id,
                item.status,
                item.priority,
                None if item.tags is None else json.dumps(item.tags),
                item.max_attempts,
                item.run_after,
            ]
            for item in items
        ]
        yield self.call("insert_items", {"tenant": tenant, "now": now, "items": json.dumps(rows)})

    def lock_idempotency_keys(self, keys: Sequence[str]) -> Body[None]:
        # Writers are serialised already.
        return nothing()
