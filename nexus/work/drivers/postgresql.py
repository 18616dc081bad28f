"""The PostgreSQL driver (psycopg 3): arrays for lists, ``timestamptz`` values, row locks
with ``SKIP LOCKED``, and history written by data-modifying CTEs of the same statement.

A claim, a completion, a rescue and a promotion at enqueue are one statement each: the
``work_history`` rows come from a CTE over the rows the statement changed. ``MATERIALIZED``
makes a locking subquery run once, so its ``LIMIT`` holds under any plan. Rows of concurrent
transactions share the history sequence, so the promotions a completion reports are only
those its own transaction wrote (``xmin``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from nexus.storage.calls import Body, Call, pyformat
from nexus.storage.types import to_utc, truncate_to_ms
from nexus.work.drivers.base import (
    Completion,
    Driver,
    Lease,
    NewItem,
    Statement,
)
from nexus.work.drivers.statements import (
    DEFAULT_MAX_ATTEMPTS,
    HAS_DEPENDENTS,
    HELD_BY_DEPENDENT,
    ITEM_COLUMNS,
)

#: Namespace of the advisory locks on idempotency keys, and their buckets.
KEY_LOCK_NS = 7_400_003
KEY_LOCK_BUCKETS = 512

# The ready index gives the order and the LIMIT stops the scan: the tenant is compared
# plainly (through an expression PostgreSQL would rather sort every ready row).
_READY = """
    SELECT w.path_id FROM work_items w
    WHERE w.status = 'ready' AND w.unresolved_count = 0
      AND (w.run_after IS NULL OR w.run_after <= :now)
      AND w.tenant_id = :tenant{filters}
    ORDER BY w.priority ASC NULLS LAST, w.created_at, w.path_id
    LIMIT :limit
    FOR UPDATE SKIP LOCKED"""
_PREFIX = """
      AND EXISTS (SELECT 1 FROM file_paths p WHERE p.path_id = w.path_id
                  AND starts_with(p.virtual_path, :prefix))"""
_TAGS = """
      AND w.tags ?| :tags::text[]"""


def _claim(filters: str) -> str:
    return f"""
    WITH picked AS MATERIALIZED ({_READY.format(filters=filters)}
    ), claimed AS (
        UPDATE work_items w SET status = 'in_progress', worker_id = :worker,
            started_at = :now, attempts = w.attempts + 1,
            lease_token = replace(gen_random_uuid()::text, '-', ''),
            lease_expires_at = :expires, lease_seconds = :lease, run_after = NULL
        FROM picked WHERE w.path_id = picked.path_id
        RETURNING w.path_id, w.priority, w.created_at, w.tags, w.lease_token,
                  w.lease_expires_at, w.attempts, w.max_attempts
    ), logged AS (
        INSERT INTO work_history (path_id, tenant_id, event, at, worker_id, detail)
        SELECT path_id, :tenant, 'claimed', :now, :worker,
               jsonb_build_object('attempt', attempts,
                                  'wait_seconds', extract(epoch FROM :now - created_at))
        FROM claimed
    )
    SELECT c.path_id, c.priority, c.created_at, c.tags, c.lease_token, c.lease_expires_at,
           c.attempts, c.max_attempts, p.virtual_path
    FROM claimed c JOIN file_paths p ON p.path_id = c.path_id"""


# Leases come as three arrays (path_id or NULL, virtual path or NULL, token).
_HELD = """
    SELECT w.path_id FROM unnest(:ids::text[], :paths::text[], :tokens::text[])
        AS u(id, vp, token)
    JOIN work_items w ON w.path_id = coalesce(
        u.id,
        (SELECT p.path_id FROM file_paths p
         WHERE p.tenant_id = :tenant AND p.virtual_path = u.vp AND p.deleted_at IS NULL))
    WHERE w.lease_token = u.token AND w.status = 'in_progress' AND w.tenant_id = :tenant
    ORDER BY w.path_id
    FOR UPDATE OF w"""

_EXPIRED_TO = f"w.attempts >= coalesce(w.max_attempts, {DEFAULT_MAX_ATTEMPTS})"

_STATEMENTS = (
    *(
        Statement(
            f"claim{'_prefix' if prefix else ''}{'_tags' if tags else ''}",
            "Move up to :limit ready items, in ready-view order, to in_progress with a new"
            " lease, and record the claims.",
            _claim((_PREFIX if prefix else "") + (_TAGS if tags else "")),
        )
        for prefix in (False, True)
        for tags in (False, True)
    ),
    # The 'promoted' history rows a completion's rules write come after its own 'completed'
    # rows (the triggers fire at the end of the statement that wrote them), so the id of its
    # last 'completed' row marks where this transaction's promotions start.
    Statement(
        "complete",
        "Complete every held lease of the batch, or none if any is not held (fenced by"
        " token), and record the completions.",
        f"""
        WITH held AS MATERIALIZED ({_HELD}
        ), done AS (
            UPDATE work_items w SET status = 'completed', lease_token = NULL,
                lease_expires_at = NULL, finished_at = :now
            FROM held
            WHERE w.path_id = held.path_id AND (SELECT count(*) FROM held) = :n
            RETURNING w.path_id, w.worker_id, w.attempts, w.started_at,
                {HAS_DEPENDENTS.format(w="w")} AS has_dependents
        ), logged AS (
            INSERT INTO work_history (path_id, tenant_id, event, at, worker_id, detail)
            SELECT path_id, :tenant, 'completed', :now, worker_id,
                   jsonb_build_object('attempt', attempts,
                                      'run_seconds', extract(epoch FROM :now - started_at))
            FROM done
            RETURNING id
        )
        SELECT d.path_id, d.has_dependents, (SELECT max(id) FROM logged) AS mark
        FROM done d""",
    ),
    # Rows of concurrent transactions take ids from the same sequence: only the rows this
    # transaction wrote count (their xmin is its id; the queue's transactions open no
    # savepoint, whose rows would carry a subtransaction's id).
    Statement(
        "promoted",
        "The items this transaction promoted since history row :mark (its last completed).",
        """
        SELECT DISTINCT h.path_id, p.virtual_path
        FROM work_history h JOIN file_paths p ON p.path_id = h.path_id
        WHERE h.id > :mark AND h.event = 'promoted' AND h.xmin = pg_current_xact_id()::xid
        ORDER BY p.virtual_path""",
    ),
    Statement(
        "record",
        "Append one history row (executemany).",
        """
        INSERT INTO work_history (path_id, tenant_id, event, at, worker_id, detail)
        VALUES (:path_id, :tenant, :event, :now, :worker_id, :detail::jsonb)""",
    ),
    Statement(
        "promote_resolved",
        "Items just enqueued blocked whose dependencies have all completed already: ready,"
        " with history.",
        """
        WITH promoted AS (
            UPDATE work_items w SET status = 'ready'
            WHERE w.path_id = ANY(:ids) AND w.status = 'blocked' AND w.unresolved_count = 0
              AND EXISTS (SELECT 1 FROM work_dependencies d WHERE d.path_id = w.path_id)
            RETURNING w.path_id, w.tenant_id)
        INSERT INTO work_history (path_id, tenant_id, event, at)
        SELECT path_id, tenant_id, 'promoted', :now FROM promoted
        RETURNING path_id""",
    ),
    Statement(
        "lock_held",
        "The held item, locked, for heartbeat/fail/release; no row if not held.",
        """
        SELECT w.path_id, w.worker_id, w.attempts, w.max_attempts, w.lease_seconds,
            w.started_at, w.last_error
        FROM work_items w
        WHERE w.path_id = coalesce(:path_id,
                (SELECT p.path_id FROM file_paths p WHERE p.tenant_id = :tenant
                 AND p.virtual_path = :path AND p.deleted_at IS NULL))
          AND w.tenant_id = :tenant AND w.status = 'in_progress' AND w.lease_token = :token
        FOR UPDATE""",
    ),
    Statement(
        "end_lease",
        "End a held lease: to ready (retry, release) or failed (dead letter).",
        """
        UPDATE work_items SET status = :status::text, lease_token = NULL,
            lease_expires_at = NULL, run_after = :run_after::timestamptz,
            attempts = :attempts, last_error = :error,
            finished_at = CASE WHEN :status::text = 'failed' THEN :now::timestamptz END
        WHERE path_id = :path_id AND lease_token = :token""",
    ),
    Statement(
        "revoke",
        "An operator's release: an in-progress item back to ready, the attempt not counted.",
        """
        UPDATE work_items SET status = 'ready', lease_token = NULL, lease_expires_at = NULL,
            attempts = greatest(attempts - 1, 0), run_after = NULL
        WHERE path_id = :path_id AND status = 'in_progress'
        RETURNING worker_id""",
    ),
    Statement(
        "reclaim",
        "Return up to :batch expired leases to ready, or to failed when out of attempts,"
        " and record it.",
        f"""
        WITH expired AS MATERIALIZED (
            SELECT w.path_id FROM work_items w
            WHERE w.status = 'in_progress' AND w.lease_expires_at < :now
              AND w.tenant_id = :tenant
            ORDER BY w.lease_expires_at LIMIT :batch
            FOR UPDATE SKIP LOCKED
        ), moved AS (
            UPDATE work_items w SET
                status = CASE WHEN {_EXPIRED_TO} THEN 'failed' ELSE 'ready' END,
                last_error = CASE WHEN {_EXPIRED_TO} THEN 'lease expired'
                                  ELSE w.last_error END,
                finished_at = CASE WHEN {_EXPIRED_TO} THEN :now END,
                lease_token = NULL, lease_expires_at = NULL
            FROM expired WHERE w.path_id = expired.path_id
            RETURNING w.path_id, w.status, w.worker_id, w.attempts
        ), logged AS (
            INSERT INTO work_history (path_id, tenant_id, event, at, worker_id, detail)
            SELECT path_id, :tenant, 'reclaimed', :now, worker_id,
                   jsonb_build_object('to', status, 'attempt', attempts)
            FROM moved
        )
        SELECT path_id, status, worker_id, attempts FROM moved""",
    ),
    Statement(
        "prune",
        "Delete up to :batch finished items (their paths, and with them everything of the"
        " path) finished before :cutoff that no unfinished item depends on.",
        f"""
        WITH doomed AS MATERIALIZED (
            SELECT w.path_id FROM work_items w
            WHERE w.tenant_id = :tenant AND w.status IN (:first, :second)
              AND w.finished_at < :cutoff
              AND NOT {HELD_BY_DEPENDENT}
            LIMIT :batch
            FOR UPDATE OF w SKIP LOCKED
        )
        DELETE FROM file_paths p USING doomed WHERE p.path_id = doomed.path_id""",
    ),
    Statement(
        "counters",
        "The maintained counters of a tenant (summed over shards).",
        """SELECT counter, sum(n)::bigint AS n FROM work_counters WHERE tenant_id = :tenant
        GROUP BY counter""",
    ),
    Statement(
        "deferred",
        "Ready items whose run_after is still ahead (counted on the small deferred index).",
        """SELECT count(*) AS n FROM work_items
        WHERE tenant_id = :tenant AND status = 'ready' AND unresolved_count = 0
          AND run_after IS NOT NULL AND run_after > :now""",
    ),
    Statement(
        "insert_items",
        "Work rows of new (blank) paths, typed values built in Python: one statement.",
        """
        INSERT INTO work_items (path_id, tenant_id, created_at, status, priority, tags,
                                attempts, max_attempts, run_after, unresolved_count)
        SELECT u.path_id, :tenant, :now, u.status, u.priority, u.tags, 0, u.max_attempts,
               u.run_after, 0
        FROM unnest(:ids::text[], :statuses::text[], :priorities::bigint[],
                    :tags::jsonb[], :max_attempts::integer[], :run_afters::timestamptz[])
            AS u(path_id, status, priority, tags, max_attempts, run_after)""",
    ),
    Statement(
        "lock_keys",
        "Serialise enqueues using the same idempotency keys until commit (advisory locks,"
        " hashed into buckets like the dependency locks, taken in bucket order).",
        f"""SELECT pg_advisory_xact_lock({KEY_LOCK_NS}, h) AS locked FROM (
            SELECT DISTINCT abs(hashtext(k) % {KEY_LOCK_BUCKETS}) AS h
            FROM unnest(:keys::text[]) AS k ORDER BY 1) AS locks""",
    ),
    Statement(
        "live_refs",
        "The dependency references that name a live path of the tenant.",
        """SELECT r AS ref FROM unnest(:refs::text[]) AS r
        WHERE EXISTS (SELECT 1 FROM file_paths p WHERE p.tenant_id = :tenant
                      AND p.virtual_path = r AND p.deleted_at IS NULL)
           OR EXISTS (SELECT 1 FROM file_paths p WHERE p.path_id = r
                      AND p.tenant_id = :tenant AND p.deleted_at IS NULL)""",
    ),
    Statement(
        "work_rows",
        "Which of these path_ids already are work items.",
        """SELECT path_id FROM work_items WHERE path_id = ANY(:ids::text[])""",
    ),
    Statement(
        "known_keys",
        "The paths of the items these idempotency keys already name.",
        """SELECT k.idempotency_key, p.virtual_path
        FROM work_idempotency k JOIN file_paths p ON p.path_id = k.path_id
        WHERE k.tenant_id = :tenant AND k.idempotency_key = ANY(:keys::text[])""",
    ),
    Statement(
        "event_counts",
        "The maintained event counters of a tenant (summed over shards): n and total.",
        """SELECT counter, sum(n)::bigint AS n, sum(total) AS total FROM work_event_counts
        WHERE tenant_id = :tenant GROUP BY counter""",
    ),
    Statement(
        "events_hourly",
        "Completed / failed / retried per UTC hour since :since (maintained, a key range).",
        """SELECT hour, event, sum(n)::bigint AS n FROM work_event_hourly
        WHERE tenant_id = :tenant AND hour >= :since GROUP BY hour, event ORDER BY hour""",
    ),
    Statement(
        "oldest_ready",
        "When the longest-waiting ready item became ready: the first entry of its index.",
        """SELECT coalesce(run_after, created_at) AS since FROM work_items
        WHERE tenant_id = :tenant AND status = 'ready' AND unresolved_count = 0
        ORDER BY coalesce(run_after, created_at) LIMIT 1""",
    ),
    Statement(
        "items_by_ids",
        "Work items by a list of path_ids.",
        f"""SELECT {ITEM_COLUMNS} FROM work_items w JOIN file_paths p ON p.path_id = w.path_id
        WHERE w.path_id = ANY (:ids::text[]) AND w.tenant_id = :tenant""",
    ),
    Statement(
        "failed_page",
        "A page of failed items, most recently finished first (keyset on the failed index).",
        f"""SELECT {ITEM_COLUMNS}, coalesce(w.finished_at, w.created_at) AS failed_key
        FROM work_items w JOIN file_paths p ON p.path_id = w.path_id
        WHERE w.tenant_id = :tenant AND w.status = 'failed'
          AND (:after_key::timestamptz IS NULL
               OR coalesce(w.finished_at, w.created_at) < :after_key::timestamptz
               OR (coalesce(w.finished_at, w.created_at) = :after_key::timestamptz
                   AND w.path_id < :after_id::text))
        ORDER BY coalesce(w.finished_at, w.created_at) DESC, w.path_id DESC LIMIT :limit""",
    ),
    Statement(
        "holders",
        "Items held per worker, and the soonest lease expiry of each.",
        """SELECT worker_id, count(*) AS holding, min(lease_expires_at) AS next_expiry
        FROM work_items
        WHERE tenant_id = :tenant AND status = 'in_progress' GROUP BY worker_id""",
    ),
)


class PostgreSQLDriver(Driver):
    """PostgreSQL through psycopg 3 (``%(name)s`` placeholders)."""

    name = "postgresql"
    serialises_writers = False

    @staticmethod
    def render(text: str) -> str:
        return pyformat(text)

    def own_statements(self) -> Iterable[Statement]:
        return _STATEMENTS

    # ------------------------------------------------------------------ values

    def timestamp(self, moment: datetime) -> Any:
        return truncate_to_ms(to_utc(moment))

    def array(self, values: Sequence[Any]) -> Any:
        return list(values)

    def read_json(self, value: Any) -> Any:
        return value  # psycopg decodes jsonb

    def cursor_key(self, value: Any) -> str:
        return value if isinstance(value, str) else value.isoformat()

    def cursor_bound(self, text: str, moment: datetime) -> Any:
        return moment

    # ------------------------------------------------------------------ operations

    def claim_sql(self, *, prefix: bool, tags: bool) -> str:
        return self.sql(f"claim{'_prefix' if prefix else ''}{'_tags' if tags else ''}")

    def claim(
        self, params: dict[str, Any], *, prefix: bool, tags: bool
    ) -> Body[list[dict[str, Any]]]:
        return (yield Call(self.claim_sql(prefix=prefix, tags=tags), params)).rows

    def complete(self, leases: Sequence[Lease], now: Any, tenant: str) -> Body[Completion]:
        params = {
            "ids": [lease.path_id for lease in leases],
            "paths": [lease.path for lease in leases],
            "tokens": [lease.token for lease in leases],
            "n": len(leases),
            "now": now,
            "tenant": tenant,
        }
        done = (yield self.call("complete", params)).rows
        return Completion(
            [row["path_id"] for row in done],
            any(row["has_dependents"] for row in done),
            done[0]["mark"] if done else None,
        )

    def reclaim(self, now: Any, tenant: str, batch: int) -> Body[list[dict[str, Any]]]:
        return (yield self.call("reclaim", {"now": now, "tenant": tenant, "batch": batch})).rows

    def promote_resolved(self, ids: Sequence[str], now: Any, tenant: str) -> Body[list[str]]:
        promoted = yield self.call("promote_resolved", {"ids": list(ids), "now": now})
        return [str(path_id) for path_id in promoted.column("path_id")]

    def insert_items(self, items: Sequence[NewItem], tenant: str, now: Any) -> Body[None]:
        import json

        yield self.call(
            "insert_items",
            {
                "tenant": tenant,
                "now": now,
                "ids": [item.path_id for item in items],
                "statuses": [item.status for item in items],
                "priorities": [item.priority for item in items],
                "tags": [None if item.tags is None else json.dumps(item.tags) for item in items],
                "max_attempts": [item.max_attempts for item in items],
                "run_afters": [item.run_after for item in items],
            },
        )

    def lock_idempotency_keys(self, keys: Sequence[str]) -> Body[None]:
        yield self.call("lock_keys", {"keys": list(keys)})
