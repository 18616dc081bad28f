"""Every statement the work queue sends, by name, with its two dialects side by side.

Each entry of :data:`QUERIES` is a :class:`Query`: a name, one line on what it does, and the
SQLite and PostgreSQL texts at driver level (SQLite ``:name`` parameters, psycopg
``%(name)s``). The texts are built once at import; the queue only says
``QUERIES["claim"].sql(dialect)``. What the database does on its own when these statements
change ``work_items`` (dependents' counts, promotions and their history, counters) is written
in the Alembic revision 0005, once per dialect.

The claim and the completion are one statement each on PostgreSQL (history rows are written
by a data-modifying CTE of the same statement); on SQLite, which has no data-modifying CTEs,
the history rows are one more statement in the same transaction.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Query:
    name: str
    doc: str
    sqlite: str | None
    postgresql: str | None

    def sql(self, dialect: str) -> str:
        text = self.postgresql if dialect == "postgresql" else self.sqlite
        if text is None:
            raise LookupError(f"query {self.name!r} has no {dialect} variant")
        return text


DEFAULT_MAX_ATTEMPTS = 3
DEFAULT_LEASE_SECONDS = 300

# ---------------------------------------------------------------------------------- claims

# The ready index gives the order and the LIMIT stops the scan: the tenant is compared
# plainly (a tenant compared through an expression looks so selective to PostgreSQL that it
# would rather sort every ready row); SQLite is told the index.
_SQLITE_READY = """
    SELECT w.path_id FROM work_items w INDEXED BY ix_work_items_ready
    WHERE w.status = 'ready' AND w.unresolved_count = 0
      AND (w.run_after IS NULL OR w.run_after <= :now)
      AND w.tenant_id = :tenant{filters}
    ORDER BY w.priority IS NULL, w.priority, w.created_at, w.path_id
    LIMIT :limit"""
_SQLITE_PREFIX = """
      AND EXISTS (SELECT 1 FROM file_paths p WHERE p.path_id = w.path_id
                  AND substr(p.virtual_path, 1, length(:prefix)) = :prefix)"""
_SQLITE_TAGS = """
      AND EXISTS (SELECT 1 FROM json_each(w.tags) e
                  WHERE e.value IN (SELECT t.value FROM json_each(:tags) t))"""

_PG_READY = """
    SELECT w.path_id FROM work_items w
    WHERE w.status = 'ready' AND w.unresolved_count = 0
      AND (w.run_after IS NULL OR w.run_after <= %(now)s)
      AND w.tenant_id = %(tenant)s{filters}
    ORDER BY w.priority ASC NULLS LAST, w.created_at, w.path_id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED"""
_PG_PREFIX = """
      AND EXISTS (SELECT 1 FROM file_paths p WHERE p.path_id = w.path_id
                  AND starts_with(p.virtual_path, %(prefix)s))"""
_PG_TAGS = """
      AND w.tags ?| %(tags)s::text[]"""

_CLAIMED_COLUMNS = (
    "path_id, priority, created_at, tags, lease_token, lease_expires_at, attempts, max_attempts"
)


def _sqlite_claim(filters: str) -> str:
    return f"""
    UPDATE work_items SET status = 'in_progress', worker_id = :worker, started_at = :now,
        attempts = attempts + 1, lease_token = lower(hex(randomblob(16))),
        lease_expires_at = :expires, lease_seconds = :lease, run_after = NULL
    WHERE path_id IN ({_SQLITE_READY.format(filters=filters)})
    RETURNING {_CLAIMED_COLUMNS},
        (SELECT p.virtual_path FROM file_paths p WHERE p.path_id = work_items.path_id)"""


def _pg_claim(filters: str) -> str:
    # MATERIALIZED: the locking subquery runs once, so LIMIT holds under any plan.
    return f"""
    WITH picked AS MATERIALIZED ({_PG_READY.format(filters=filters)}
    ), claimed AS (
        UPDATE work_items w SET status = 'in_progress', worker_id = %(worker)s,
            started_at = %(now)s, attempts = w.attempts + 1,
            lease_token = replace(gen_random_uuid()::text, '-', ''),
            lease_expires_at = %(expires)s, lease_seconds = %(lease)s, run_after = NULL
        FROM picked WHERE w.path_id = picked.path_id
        RETURNING w.path_id, w.priority, w.created_at, w.tags, w.lease_token,
                  w.lease_expires_at, w.attempts, w.max_attempts
    ), logged AS (
        INSERT INTO work_history (path_id, tenant_id, event, at, worker_id, detail)
        SELECT path_id, %(tenant)s, 'claimed', %(now)s, %(worker)s,
               jsonb_build_object('attempt', attempts,
                                  'wait_seconds', extract(epoch FROM %(now)s - created_at))
        FROM claimed
    )
    SELECT c.path_id, c.priority, c.created_at, c.tags, c.lease_token, c.lease_expires_at,
           c.attempts, c.max_attempts, p.virtual_path
    FROM claimed c JOIN file_paths p ON p.path_id = c.path_id"""


def claim_query(prefix: bool, tags: bool) -> Query:
    sqlite_filters = (_SQLITE_PREFIX if prefix else "") + (_SQLITE_TAGS if tags else "")
    pg_filters = (_PG_PREFIX if prefix else "") + (_PG_TAGS if tags else "")
    return Query(
        f"claim{'_prefix' if prefix else ''}{'_tags' if tags else ''}",
        "Move up to :limit ready items, in ready-view order, to in_progress with a new lease.",
        _sqlite_claim(sqlite_filters),
        _pg_claim(pg_filters),
    )


# ------------------------------------------------------------------------------ completion

# Leases come as a JSON array (SQLite) or three arrays (PostgreSQL) of (path_id or NULL,
# virtual path or NULL, token): a batch is one statement, whatever its size.
_SQLITE_HELD = """
    SELECT w.path_id FROM json_each(:leases) j
    JOIN work_items w ON w.path_id = coalesce(
        json_extract(j.value, '$[0]'),
        (SELECT p.path_id FROM file_paths p
         WHERE p.tenant_id = :tenant AND p.virtual_path = json_extract(j.value, '$[1]')
           AND p.deleted_at IS NULL))
    WHERE w.lease_token = json_extract(j.value, '$[2]') AND w.status = 'in_progress'
      AND w.tenant_id = :tenant"""
_PG_HELD = """
    SELECT w.path_id FROM unnest(%(ids)s::text[], %(paths)s::text[], %(tokens)s::text[])
        AS u(id, vp, token)
    JOIN work_items w ON w.path_id = coalesce(
        u.id,
        (SELECT p.path_id FROM file_paths p
         WHERE p.tenant_id = %(tenant)s AND p.virtual_path = u.vp AND p.deleted_at IS NULL))
    WHERE w.lease_token = u.token AND w.status = 'in_progress' AND w.tenant_id = %(tenant)s
    ORDER BY w.path_id
    FOR UPDATE OF w"""

# Whether anything depends on the item, so that the promoted list is read only then.
_SQLITE_HAS_DEPENDENTS = """EXISTS (
        SELECT 1 FROM work_dependencies d
        WHERE d.tenant_id = work_items.tenant_id
          AND d.depends_on_ref IN (work_items.path_id,
              (SELECT p.virtual_path FROM file_paths p WHERE p.path_id = work_items.path_id)))"""
_PG_HAS_DEPENDENTS = """EXISTS (
        SELECT 1 FROM work_dependencies d
        WHERE d.tenant_id = w.tenant_id
          AND d.depends_on_ref IN (w.path_id,
              (SELECT p.virtual_path FROM file_paths p WHERE p.path_id = w.path_id)))"""

# The 'promoted' history rows a completion's rules write come after its own 'completed'
# rows (SQLite: the completed rows are written first; PostgreSQL: the triggers fire at the end
# of the statement that wrote them), so the id of its last 'completed' row marks where this
# transaction's promotions start.
COMPLETE = Query(
    "complete",
    "Complete every held lease of the batch, or none if any is not held (fenced by token);"
    " SQLite: the items RECORD_COMPLETIONS found held.",
    f"""
    UPDATE work_items SET status = 'completed', lease_token = NULL, lease_expires_at = NULL,
        finished_at = :now
    WHERE path_id IN (SELECT value FROM json_each(:ids))
    RETURNING path_id, {_SQLITE_HAS_DEPENDENTS} AS has_dependents""",
    f"""
    WITH held AS MATERIALIZED ({_PG_HELD}
    ), done AS (
        UPDATE work_items w SET status = 'completed', lease_token = NULL,
            lease_expires_at = NULL, finished_at = %(now)s
        FROM held
        WHERE w.path_id = held.path_id AND (SELECT count(*) FROM held) = %(n)s
        RETURNING w.path_id, w.worker_id, w.attempts, w.started_at,
            {_PG_HAS_DEPENDENTS} AS has_dependents
    ), logged AS (
        INSERT INTO work_history (path_id, tenant_id, event, at, worker_id, detail)
        SELECT path_id, %(tenant)s, 'completed', %(now)s, worker_id,
               jsonb_build_object('attempt', attempts,
                                  'run_seconds', extract(epoch FROM %(now)s - started_at))
        FROM done
        RETURNING id
    )
    SELECT d.path_id, d.has_dependents, (SELECT max(id) FROM logged) FROM done d""",
)

PROMOTED = Query(
    "promoted",
    "The items this transaction promoted since history row :mark (its last 'completed' row).",
    """
    SELECT DISTINCT h.path_id, p.virtual_path
    FROM work_history h JOIN file_paths p ON p.path_id = h.path_id
    WHERE h.id > :mark AND h.event = 'promoted'
    ORDER BY p.virtual_path""",
    # A writer of SQLite holds the write lock for the whole transaction, so every row after
    # the mark is its own. PostgreSQL numbers the rows of concurrent transactions from the same
    # sequence: only the rows this transaction wrote count (their xmin is its id; the queue's
    # transactions open no savepoint, whose rows would carry a subtransaction's id).
    """
    SELECT DISTINCT h.path_id, p.virtual_path
    FROM work_history h JOIN file_paths p ON p.path_id = h.path_id
    WHERE h.id > %(mark)s AND h.event = 'promoted' AND h.xmin = pg_current_xact_id()::xid
    ORDER BY p.virtual_path""",
)

# SQLite has no data-modifying CTEs: its claims and completions write their history rows in
# one more statement, computed in SQL from the rows just changed.
RECORD_CLAIMS = Query(
    "record_claims",
    "History rows of the items a claim just took (SQLite).",
    """
    INSERT INTO work_history (path_id, tenant_id, event, at, worker_id, detail)
    SELECT w.path_id, :tenant, 'claimed', :now, :worker,
           json_object('attempt', w.attempts, 'wait_seconds',
                       round((julianday(:now) - julianday(w.created_at)) * 86400.0, 3))
    FROM work_items w WHERE w.path_id IN (SELECT value FROM json_each(:ids))""",
    None,
)

RECORD_COMPLETIONS = Query(
    "record_completions",
    "History rows of the held leases of a completion, before COMPLETE finishes them"
    " (SQLite): one row per lease held, so a shorter result means a lease is not held.",
    f"""
    INSERT INTO work_history (path_id, tenant_id, event, at, worker_id, detail)
    SELECT w.path_id, :tenant, 'completed', :now, w.worker_id,
           json_object('attempt', w.attempts, 'run_seconds',
                       round((julianday(:now) - julianday(w.started_at)) * 86400.0, 3))
    FROM work_items w WHERE w.path_id IN ({_SQLITE_HELD})
    RETURNING id, path_id""",
    None,
)

RECORD = Query(
    "record",
    "Append one history row (SQLite: claims and completions; both: the other transitions).",
    """
    INSERT INTO work_history (path_id, tenant_id, event, at, worker_id, detail)
    VALUES (:path_id, :tenant, :event, :now, :worker_id, :detail)""",
    """
    INSERT INTO work_history (path_id, tenant_id, event, at, worker_id, detail)
    VALUES (%(path_id)s, %(tenant)s, %(event)s, %(now)s, %(worker_id)s, %(detail)s::jsonb)""",
)

PROMOTE_RESOLVED = Query(
    "promote_resolved",
    "Items just enqueued blocked whose dependencies have all completed already: ready now"
    " (the database promotes only when an unresolved count drops to 0), with history.",
    """
    UPDATE work_items SET status = 'ready'
    WHERE path_id IN (SELECT value FROM json_each(:ids))
      AND status = 'blocked' AND unresolved_count = 0
      AND EXISTS (SELECT 1 FROM work_dependencies d WHERE d.path_id = work_items.path_id)
    RETURNING path_id""",
    """
    WITH promoted AS (
        UPDATE work_items w SET status = 'ready'
        WHERE w.path_id = ANY(%(ids)s) AND w.status = 'blocked' AND w.unresolved_count = 0
          AND EXISTS (SELECT 1 FROM work_dependencies d WHERE d.path_id = w.path_id)
        RETURNING w.path_id, w.tenant_id)
    INSERT INTO work_history (path_id, tenant_id, event, at)
    SELECT path_id, tenant_id, 'promoted', %(now)s FROM promoted
    RETURNING path_id""",
)

# ---------------------------------------------------------------------- single-lease calls

LOCK_HELD = Query(
    "lock_held",
    "The held item (locked on PostgreSQL) for heartbeat/fail/release; no row if not held.",
    """
    SELECT w.path_id, w.worker_id, w.attempts, w.max_attempts, w.lease_seconds, w.started_at,
        w.last_error
    FROM work_items w
    WHERE w.path_id = coalesce(:path_id,
            (SELECT p.path_id FROM file_paths p WHERE p.tenant_id = :tenant
             AND p.virtual_path = :path AND p.deleted_at IS NULL))
      AND w.tenant_id = :tenant AND w.status = 'in_progress' AND w.lease_token = :token""",
    """
    SELECT w.path_id, w.worker_id, w.attempts, w.max_attempts, w.lease_seconds, w.started_at,
        w.last_error
    FROM work_items w
    WHERE w.path_id = coalesce(%(path_id)s,
            (SELECT p.path_id FROM file_paths p WHERE p.tenant_id = %(tenant)s
             AND p.virtual_path = %(path)s AND p.deleted_at IS NULL))
      AND w.tenant_id = %(tenant)s AND w.status = 'in_progress' AND w.lease_token = %(token)s
    FOR UPDATE""",
)

WAS_CLAIMED = Query(
    "was_claimed",
    "Whether the item was ever claimed (its history records a claim): a lease call it refuses"
    " then lost its lease, rather than naming an item that never had one.",
    """
    SELECT 1 FROM work_history WHERE path_id = :path_id AND event = 'claimed' LIMIT 1""",
    """
    SELECT 1 FROM work_history WHERE path_id = %(path_id)s AND event = 'claimed' LIMIT 1""",
)

EXTEND_LEASE = Query(
    "extend_lease",
    "Heartbeat: move the lease expiry of a held item.",
    """
    UPDATE work_items SET lease_expires_at = :expires, lease_seconds = :lease
    WHERE path_id = :path_id AND lease_token = :token""",
    """
    UPDATE work_items SET lease_expires_at = %(expires)s, lease_seconds = %(lease)s
    WHERE path_id = %(path_id)s AND lease_token = %(token)s""",
)

SETTLE = Query(
    "settle",
    "End a held lease: to ready (retry, release) or failed (dead letter).",
    """
    UPDATE work_items SET status = :status, lease_token = NULL, lease_expires_at = NULL,
        run_after = :run_after, attempts = :attempts, last_error = :error,
        finished_at = CASE WHEN :status = 'failed' THEN :now END
    WHERE path_id = :path_id AND lease_token = :token""",
    """
    UPDATE work_items SET status = %(status)s::text, lease_token = NULL,
        lease_expires_at = NULL, run_after = %(run_after)s::timestamptz,
        attempts = %(attempts)s, last_error = %(error)s,
        finished_at = CASE WHEN %(status)s::text = 'failed' THEN %(now)s::timestamptz END
    WHERE path_id = %(path_id)s AND lease_token = %(token)s""",
)

CANCEL = Query(
    "cancel",
    "Stop an item for good (failed, last_error 'cancelled'); a holder loses its lease.",
    """
    UPDATE work_items SET status = 'failed', lease_token = NULL, lease_expires_at = NULL,
        last_error = 'cancelled', finished_at = :now
    WHERE path_id = :path_id AND status <> 'completed'
    RETURNING status""",
    """
    UPDATE work_items SET status = 'failed', lease_token = NULL, lease_expires_at = NULL,
        last_error = 'cancelled', finished_at = %(now)s
    WHERE path_id = %(path_id)s AND status <> 'completed'
    RETURNING status""",
)

RETRY = Query(
    "retry",
    "Put a failed item back to ready with its attempts reset.",
    """
    UPDATE work_items SET status = 'ready', attempts = 0, last_error = NULL, run_after = NULL,
        finished_at = NULL
    WHERE path_id = :path_id AND status = 'failed'""",
    """
    UPDATE work_items SET status = 'ready', attempts = 0, last_error = NULL, run_after = NULL,
        finished_at = NULL
    WHERE path_id = %(path_id)s AND status = 'failed'""",
)

REVOKE = Query(
    "revoke",
    "An operator's release: an in-progress item back to ready, the attempt not counted.",
    """
    UPDATE work_items SET status = 'ready', lease_token = NULL, lease_expires_at = NULL,
        attempts = max(attempts - 1, 0), run_after = NULL
    WHERE path_id = :path_id AND status = 'in_progress'
    RETURNING worker_id""",
    """
    UPDATE work_items SET status = 'ready', lease_token = NULL, lease_expires_at = NULL,
        attempts = greatest(attempts - 1, 0), run_after = NULL
    WHERE path_id = %(path_id)s AND status = 'in_progress'
    RETURNING worker_id""",
)

# ------------------------------------------------------------------------------- rescue

RECLAIM = Query(
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
    f"""
    WITH expired AS MATERIALIZED (
        SELECT w.path_id FROM work_items w
        WHERE w.status = 'in_progress' AND w.lease_expires_at < %(now)s
          AND w.tenant_id = %(tenant)s
        ORDER BY w.lease_expires_at LIMIT %(batch)s
        FOR UPDATE SKIP LOCKED
    ), moved AS (
        UPDATE work_items w SET
            status = CASE WHEN w.attempts >= coalesce(w.max_attempts, {DEFAULT_MAX_ATTEMPTS})
                          THEN 'failed' ELSE 'ready' END,
            last_error = CASE WHEN w.attempts >= coalesce(w.max_attempts,
                                                          {DEFAULT_MAX_ATTEMPTS})
                              THEN 'lease expired' ELSE w.last_error END,
            finished_at = CASE WHEN w.attempts >= coalesce(w.max_attempts,
                                                           {DEFAULT_MAX_ATTEMPTS})
                               THEN %(now)s END,
            lease_token = NULL, lease_expires_at = NULL
        FROM expired WHERE w.path_id = expired.path_id
        RETURNING w.path_id, w.status, w.worker_id, w.attempts
    ), logged AS (
        INSERT INTO work_history (path_id, tenant_id, event, at, worker_id, detail)
        SELECT path_id, %(tenant)s, 'reclaimed', %(now)s, worker_id,
               jsonb_build_object('to', status, 'attempt', attempts)
        FROM moved
    )
    SELECT * FROM moved""",
)

# ---------------------------------------------------------------------------- retention

# A finished item stays while anything of its tenant depends on it that is not completed
# (waiting, ready, running, failed and perhaps retried, or a path that is no work item): a
# reference to a path that no longer exists is unresolved, so pruning the item would block
# its dependents again. The same text on both databases.
_HELD_BY_DEPENDENT = """EXISTS (
        SELECT 1 FROM work_dependencies d
        WHERE d.tenant_id = w.tenant_id
          AND d.depends_on_ref IN (w.path_id,
              (SELECT p.virtual_path FROM file_paths p WHERE p.path_id = w.path_id))
          AND NOT EXISTS (SELECT 1 FROM work_items x
                          WHERE x.path_id = d.path_id AND x.status = 'completed'))"""

PRUNE = Query(
    "prune",
    "Delete up to :batch finished items (their paths, and with them everything of the path)"
    " finished before :cutoff that no unfinished item depends on.",
    f"""
    DELETE FROM file_paths WHERE path_id IN (
        SELECT w.path_id FROM work_items w
        WHERE w.tenant_id = :tenant AND w.status IN (:first, :second)
          AND w.finished_at < :cutoff
          AND NOT {_HELD_BY_DEPENDENT}
        LIMIT :batch)""",
    f"""
    WITH doomed AS MATERIALIZED (
        SELECT w.path_id FROM work_items w
        WHERE w.tenant_id = %(tenant)s AND w.status IN (%(first)s, %(second)s)
          AND w.finished_at < %(cutoff)s
          AND NOT {_HELD_BY_DEPENDENT}
        LIMIT %(batch)s
        FOR UPDATE OF w SKIP LOCKED
    )
    DELETE FROM file_paths p USING doomed WHERE p.path_id = doomed.path_id""",
)

# ------------------------------------------------------------------------------- reading

_ITEM_COLUMNS = """w.path_id, p.virtual_path, w.status, w.priority, w.tags,
        (SELECT m.value FROM file_metadata m
         WHERE m.path_id = w.path_id AND m.key = 'depends_on') AS depends_on,
        w.worker_id, w.started_at, w.run_after, w.lease_expires_at, w.attempts,
        w.max_attempts, w.unresolved_count, w.last_error, w.created_at, w.finished_at"""

ITEM_BY_ID = Query(
    "item_by_id",
    "One work item by path_id.",
    f"""SELECT {_ITEM_COLUMNS} FROM work_items w JOIN file_paths p ON p.path_id = w.path_id
    WHERE w.path_id = :ref AND w.tenant_id = :tenant""",
    f"""SELECT {_ITEM_COLUMNS} FROM work_items w JOIN file_paths p ON p.path_id = w.path_id
    WHERE w.path_id = %(ref)s AND w.tenant_id = %(tenant)s""",
)

ITEM_BY_PATH = Query(
    "item_by_path",
    "One work item by virtual path.",
    f"""SELECT {_ITEM_COLUMNS} FROM file_paths p JOIN work_items w ON w.path_id = p.path_id
    WHERE p.tenant_id = :tenant AND p.virtual_path = :ref AND p.deleted_at IS NULL""",
    f"""SELECT {_ITEM_COLUMNS} FROM file_paths p JOIN work_items w ON w.path_id = p.path_id
    WHERE p.tenant_id = %(tenant)s AND p.virtual_path = %(ref)s AND p.deleted_at IS NULL""",
)

PATH_ID_BY_ID = Query(
    "path_id_by_id",
    "Whether a live path with this path_id exists in the tenant.",
    """SELECT path_id FROM file_paths
    WHERE path_id = :ref AND tenant_id = :tenant AND deleted_at IS NULL""",
    """SELECT path_id FROM file_paths
    WHERE path_id = %(ref)s AND tenant_id = %(tenant)s AND deleted_at IS NULL""",
)

PATH_ID_BY_PATH = Query(
    "path_id_by_path",
    "The path_id of a live virtual path in the tenant.",
    """SELECT path_id FROM file_paths
    WHERE tenant_id = :tenant AND virtual_path = :ref AND deleted_at IS NULL""",
    """SELECT path_id FROM file_paths
    WHERE tenant_id = %(tenant)s AND virtual_path = %(ref)s AND deleted_at IS NULL""",
)

COUNTERS = Query(
    "counters",
    "The maintained counters of a tenant (summed over shards).",
    """SELECT counter, sum(n) FROM work_counters WHERE tenant_id = :tenant GROUP BY counter""",
    """SELECT counter, sum(n)::bigint FROM work_counters WHERE tenant_id = %(tenant)s
    GROUP BY counter""",
)

DEFERRED = Query(
    "deferred",
    "Ready items whose run_after is still ahead (counted on the small deferred index).",
    """SELECT count(*) FROM work_items INDEXED BY ix_work_items_deferred
    WHERE tenant_id = :tenant AND status = 'ready' AND unresolved_count = 0
      AND run_after IS NOT NULL AND run_after > :now""",
    """SELECT count(*) FROM work_items
    WHERE tenant_id = %(tenant)s AND status = 'ready' AND unresolved_count = 0
      AND run_after IS NOT NULL AND run_after > %(now)s""",
)

HISTORY = Query(
    "history",
    "Every recorded transition of one item, oldest first.",
    """SELECT event, at, worker_id, detail FROM work_history
    WHERE path_id = :path_id ORDER BY id""",
    """SELECT event, at, worker_id, detail FROM work_history
    WHERE path_id = %(path_id)s ORDER BY id""",
)

EDGES = Query(
    "edges",
    "The dependency references of one item.",
    """SELECT depends_on_ref FROM work_dependencies WHERE path_id = :path_id
    ORDER BY depends_on_ref""",
    """SELECT depends_on_ref FROM work_dependencies WHERE path_id = %(path_id)s
    ORDER BY depends_on_ref""",
)

DEPENDENTS = Query(
    "dependents",
    "The live paths whose depends_on names a path, by its virtual path or its path_id.",
    """SELECT p.path_id, p.virtual_path, w.status
    FROM work_dependencies d
    JOIN file_paths p ON p.path_id = d.path_id AND p.deleted_at IS NULL
    LEFT JOIN work_items w ON w.path_id = d.path_id
    WHERE d.depends_on_ref IN (:path, :path_id) AND d.tenant_id = :tenant
    ORDER BY p.virtual_path""",
    """SELECT p.path_id, p.virtual_path, w.status
    FROM work_dependencies d
    JOIN file_paths p ON p.path_id = d.path_id AND p.deleted_at IS NULL
    LEFT JOIN work_items w ON w.path_id = d.path_id
    WHERE d.depends_on_ref IN (%(path)s, %(path_id)s) AND d.tenant_id = %(tenant)s
    ORDER BY p.virtual_path""",
)

TARGET_BY_ID = Query(
    "target_by_id",
    "A dependency target by path_id, with its work status (NULL if none).",
    """SELECT p.path_id, p.virtual_path, p.deleted_at, w.status
    FROM file_paths p LEFT JOIN work_items w ON w.path_id = p.path_id
    WHERE p.path_id = :ref AND p.tenant_id = :tenant""",
    """SELECT p.path_id, p.virtual_path, p.deleted_at, w.status
    FROM file_paths p LEFT JOIN work_items w ON w.path_id = p.path_id
    WHERE p.path_id = %(ref)s AND p.tenant_id = %(tenant)s""",
)

TARGET_BY_PATH = Query(
    "target_by_path",
    "A dependency target by virtual path, with its work status (NULL if none).",
    """SELECT p.path_id, p.virtual_path, p.deleted_at, w.status
    FROM file_paths p LEFT JOIN work_items w ON w.path_id = p.path_id
    WHERE p.virtual_path = :ref AND p.tenant_id = :tenant""",
    """SELECT p.path_id, p.virtual_path, p.deleted_at, w.status
    FROM file_paths p LEFT JOIN work_items w ON w.path_id = p.path_id
    WHERE p.virtual_path = %(ref)s AND p.tenant_id = %(tenant)s""",
)

INSERT_ITEMS = Query(
    "insert_items",
    "Work rows of new (blank) paths, typed values built in Python: one statement per batch.",
    """
    INSERT INTO work_items (path_id, tenant_id, created_at, status, priority, tags, attempts,
                            max_attempts, run_after, unresolved_count)
    SELECT json_extract(j.value, '$[0]'), :tenant, :now, json_extract(j.value, '$[1]'),
           json_extract(j.value, '$[2]'), json_extract(j.value, '$[3]'), 0,
           json_extract(j.value, '$[4]'), json_extract(j.value, '$[5]'), 0
    FROM json_each(:items) j""",
    """
    INSERT INTO work_items (path_id, tenant_id, created_at, status, priority, tags, attempts,
                            max_attempts, run_after, unresolved_count)
    SELECT u.path_id, %(tenant)s, %(now)s, u.status, u.priority, u.tags, 0, u.max_attempts,
           u.run_after, 0
    FROM unnest(%(ids)s::text[], %(statuses)s::text[], %(priorities)s::bigint[],
                %(tags)s::jsonb[], %(max_attempts)s::integer[], %(run_afters)s::timestamptz[])
        AS u(path_id, status, priority, tags, max_attempts, run_after)""",
)

#: Namespace of the advisory locks on idempotency keys (PostgreSQL), and their buckets.
KEY_LOCK_NS = 7_400_003
KEY_LOCK_BUCKETS = 512

LOCK_KEYS = Query(
    "lock_keys",
    "Serialise enqueues using the same idempotency keys until commit (PostgreSQL).",
    None,
    f"""SELECT pg_advisory_xact_lock({KEY_LOCK_NS}, h) FROM (
        SELECT DISTINCT abs(hashtext(k) %% {KEY_LOCK_BUCKETS}) AS h
        FROM unnest(%(keys)s::text[]) AS k ORDER BY 1) AS locks""",
)

LIVE_REFS = Query(
    "live_refs",
    "The dependency references that name a live path of the tenant (virtual path or path_id).",
    """SELECT j.value FROM json_each(:refs) j
    WHERE EXISTS (SELECT 1 FROM file_paths p WHERE p.tenant_id = :tenant
                  AND p.virtual_path = j.value AND p.deleted_at IS NULL)
       OR EXISTS (SELECT 1 FROM file_paths p WHERE p.path_id = j.value
                  AND p.tenant_id = :tenant AND p.deleted_at IS NULL)""",
    """SELECT r FROM unnest(%(refs)s::text[]) AS r
    WHERE EXISTS (SELECT 1 FROM file_paths p WHERE p.tenant_id = %(tenant)s
                  AND p.virtual_path = r AND p.deleted_at IS NULL)
       OR EXISTS (SELECT 1 FROM file_paths p WHERE p.path_id = r
                  AND p.tenant_id = %(tenant)s AND p.deleted_at IS NULL)""",
)

SET_QUEUE_COLUMNS = Query(
    "set_queue_columns",
    "Queue-owned settings of a freshly enqueued item (max_attempts, run_after).",
    """UPDATE work_items SET max_attempts = :max_attempts, run_after = :run_after
    WHERE path_id = :path_id""",
    """UPDATE work_items SET max_attempts = %(max_attempts)s, run_after = %(run_after)s
    WHERE path_id = %(path_id)s""",
)

# ----------------------------------------------------------------- metrics and dashboard
# Maintained by revision 0006's triggers on work_history; read without scanning history.

#: Upper bounds (seconds) of the claim-to-complete buckets counted by revision 0006.
RUN_SECONDS_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0)

EVENT_COUNTS = Query(
    "event_counts",
    "The maintained event counters of a tenant (summed over shards): n and total.",
    """SELECT counter, sum(n), sum(total) FROM work_event_counts WHERE tenant_id = :tenant
    GROUP BY counter""",
    """SELECT counter, sum(n)::bigint, sum(total) FROM work_event_counts
    WHERE tenant_id = %(tenant)s GROUP BY counter""",
)

EVENTS_HOURLY = Query(
    "events_hourly",
    "Completed / failed / retried per UTC hour since :since (maintained, a key range).",
    """SELECT hour, event, sum(n) FROM work_event_hourly
    WHERE tenant_id = :tenant AND hour >= :since GROUP BY hour, event ORDER BY hour""",
    """SELECT hour, event, sum(n)::bigint FROM work_event_hourly
    WHERE tenant_id = %(tenant)s AND hour >= %(since)s GROUP BY hour, event ORDER BY hour""",
)

OLDEST_READY = Query(
    "oldest_ready",
    "When the longest-waiting ready item became ready: the first entry of its index.",
    """SELECT coalesce(run_after, created_at) FROM work_items INDEXED BY ix_work_items_ready_since
    WHERE tenant_id = :tenant AND status = 'ready' AND unresolved_count = 0
    ORDER BY coalesce(run_after, created_at) LIMIT 1""",
    """SELECT coalesce(run_after, created_at) FROM work_items
    WHERE tenant_id = %(tenant)s AND status = 'ready' AND unresolved_count = 0
    ORDER BY coalesce(run_after, created_at) LIMIT 1""",
)

ITEMS_BY_IDS = Query(
    "items_by_ids",
    "Work items by a list of path_ids.",
    f"""SELECT {_ITEM_COLUMNS} FROM work_items w JOIN file_paths p ON p.path_id = w.path_id
    WHERE w.path_id IN (SELECT value FROM json_each(:ids)) AND w.tenant_id = :tenant""",
    f"""SELECT {_ITEM_COLUMNS} FROM work_items w JOIN file_paths p ON p.path_id = w.path_id
    WHERE w.path_id = ANY (%(ids)s::text[]) AND w.tenant_id = %(tenant)s""",
)

_FAILED_KEY = "coalesce(w.finished_at, w.created_at)"
FAILED_PAGE = Query(
    "failed_page",
    "A page of failed items, most recently finished first (keyset on the failed index).",
    f"""SELECT {_ITEM_COLUMNS}, {_FAILED_KEY}
    FROM work_items w INDEXED BY ix_work_items_failed JOIN file_paths p ON p.path_id = w.path_id
    WHERE w.tenant_id = :tenant AND w.status = 'failed'
      AND (:after_key IS NULL OR {_FAILED_KEY} < :after_key
           OR ({_FAILED_KEY} = :after_key AND w.path_id < :after_id))
    ORDER BY {_FAILED_KEY} DESC, w.path_id DESC LIMIT :limit""",
    f"""SELECT {_ITEM_COLUMNS}, {_FAILED_KEY}
    FROM work_items w JOIN file_paths p ON p.path_id = w.path_id
    WHERE w.tenant_id = %(tenant)s AND w.status = 'failed'
      AND (%(after_key)s::timestamptz IS NULL OR {_FAILED_KEY} < %(after_key)s::timestamptz
           OR ({_FAILED_KEY} = %(after_key)s::timestamptz AND w.path_id < %(after_id)s::text))
    ORDER BY {_FAILED_KEY} DESC, w.path_id DESC LIMIT %(limit)s""",
)

HOLDERS = Query(
    "holders",
    "Items held per worker, and the soonest lease expiry of each (the in-progress index).",
    """SELECT worker_id, count(*), min(lease_expires_at)
    FROM work_items INDEXED BY ix_work_items_in_progress
    WHERE tenant_id = :tenant AND status = 'in_progress' GROUP BY worker_id""",
    """SELECT worker_id, count(*), min(lease_expires_at) FROM work_items
    WHERE tenant_id = %(tenant)s AND status = 'in_progress' GROUP BY worker_id""",
)

_RECENT_WORKERS = """SELECT h.worker_id, max(h.at) AS last_seen, count(*) AS events,
        sum(CASE WHEN h.event = 'claimed' THEN 1 ELSE 0 END),
        sum(CASE WHEN h.event = 'completed' THEN 1 ELSE 0 END),
        sum(CASE WHEN h.event IN ('failed', 'retried') THEN 1 ELSE 0 END)
    FROM (SELECT worker_id, at, event FROM work_history WHERE tenant_id = {tenant}
          ORDER BY id DESC LIMIT {window}) h
    WHERE h.worker_id IS NOT NULL
    GROUP BY h.worker_id ORDER BY last_seen DESC, h.worker_id LIMIT {limit}"""
RECENT_WORKERS = Query(
    "recent_workers",
    "Workers named in the last :window history rows (newest first), with their event counts.",
    _RECENT_WORKERS.format(tenant=":tenant", window=":window", limit=":limit"),
    _RECENT_WORKERS.format(tenant="%(tenant)s", window="%(window)s", limit="%(limit)s"),
)

QUERIES: dict[str, Query] = {
    query.name: query
    for query in (
        *(claim_query(prefix, tags) for prefix in (False, True) for tags in (False, True)),
        COMPLETE,
        PROMOTED,
        DEPENDENTS,
        RECORD,
        RECORD_CLAIMS,
        RECORD_COMPLETIONS,
        PROMOTE_RESOLVED,
        LOCK_HELD,
        WAS_CLAIMED,
        EXTEND_LEASE,
        SETTLE,
        CANCEL,
        RETRY,
        REVOKE,
        RECLAIM,
        PRUNE,
        ITEM_BY_ID,
        ITEM_BY_PATH,
        PATH_ID_BY_ID,
        PATH_ID_BY_PATH,
        COUNTERS,
        DEFERRED,
        HISTORY,
        EDGES,
        TARGET_BY_ID,
        TARGET_BY_PATH,
        SET_QUEUE_COLUMNS,
        LOCK_KEYS,
        LIVE_REFS,
        EVENT_COUNTS,
        EVENTS_HOURLY,
        OLDEST_READY,
        ITEMS_BY_IDS,
        FAILED_PAGE,
        HOLDERS,
        RECENT_WORKERS,
    )
}
