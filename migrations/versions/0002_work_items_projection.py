"""work_items projection, dependency edges and the triggers that keep them in step

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24

``file_metadata`` stays the source of truth. ``work_items`` holds one typed row per live path
whose ``status`` is one of the six statuses; ``work_dependencies`` holds one row per
``depends_on`` reference. Triggers on ``file_metadata`` and ``file_paths`` maintain both, so
rows written with plain SQL (the sqlite3 shell, psql) are projected exactly like the API's.

``unresolved_count`` is the number of dependencies whose target is not a live path with status
``completed``; it is stored so that the ready/blocked views are index-driven instead of
evaluating dependency subqueries per row.

Work keys projected: status, priority (JSON integer), tags (JSON array of strings), worker_id,
started_at (ISO-8601 text), and ``queue`` (an object the work queue maintains: attempts,
max_attempts, run_after, lease_token, lease_expires_at). Values of the wrong JSON type
project to NULL instead of failing the write.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

STATUSES = "('ready', 'pending', 'blocked', 'in_progress', 'completed', 'failed')"
WORK_KEYS = "('status', 'priority', 'tags', 'worker_id', 'started_at', 'queue')"
# The work queue writes work_items itself, in the same transaction as its file_metadata rows,
# and switches the projection triggers off for that transaction only: SQLite with a row in
# nexus_projection_bypass (inserted and deleted inside the transaction, so no other
# connection ever sees it), PostgreSQL with a transaction-local setting. Dependency counts of
# dependents are still maintained by the triggers.
SQLITE_PROJECTING = "NOT EXISTS (SELECT 1 FROM nexus_projection_bypass)"
PG_BYPASSED = "coalesce(current_setting('nexus.bypass_projection', true), '') = 'on'"
# Namespace for transaction-level advisory locks on dependency references (PostgreSQL).
DEPENDENCY_LOCK_NS = 7_400_001
DEPENDENCY_LOCK_BUCKETS = 512


def _create_tables(dialect: str) -> None:
    pg = dialect == "postgresql"
    ts: sa.types.TypeEngine[object] = postgresql.TIMESTAMP(timezone=True) if pg else sa.Text()
    tags: sa.types.TypeEngine[object] = postgresql.JSONB() if pg else sa.Text()
    op.create_table(
        "work_items",
        sa.Column(
            "path_id",
            sa.String(36),
            sa.ForeignKey("file_paths.path_id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("tenant_id", sa.String(255), nullable=False),
        sa.Column("created_at", ts, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("priority", sa.BigInteger(), nullable=True),
        sa.Column("tags", tags, nullable=True),
        sa.Column("worker_id", sa.Text(), nullable=True),
        sa.Column("started_at", ts, nullable=True),
        sa.Column("run_after", ts, nullable=True),
        sa.Column("lease_token", sa.String(64), nullable=True),
        sa.Column("lease_expires_at", ts, nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("max_attempts", sa.Integer(), nullable=True),
        sa.Column("unresolved_count", sa.Integer(), nullable=False, server_default="0"),
    )
    op.create_table(
        "work_dependencies",
        sa.Column(
            "path_id",
            sa.String(36),
            sa.ForeignKey("file_paths.path_id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("depends_on_ref", sa.Text(), nullable=False),
        sa.Column("tenant_id", sa.String(255), nullable=False),
        sa.PrimaryKeyConstraint("path_id", "depends_on_ref", name="pk_work_dependencies"),
    )
    op.create_index("ix_work_dependencies_ref", "work_dependencies", ["depends_on_ref"])
    if not pg:
        op.create_table("nexus_projection_bypass", sa.Column("id", sa.Integer(), primary_key=True))


# --------------------------------------------------------------------------------------------
# SQLite: no stored procedures, so the trigger bodies are assembled from these fragments.
# --------------------------------------------------------------------------------------------


def _sqlite_unresolved_count(path_id: str) -> str:
    return f"""(SELECT count(*) FROM work_dependencies d
        WHERE d.path_id = {path_id}
          AND NOT EXISTS (SELECT 1 FROM work_items tw
                          WHERE tw.path_id = d.depends_on_ref AND tw.status = 'completed')
          AND NOT EXISTS (SELECT 1 FROM file_paths tp JOIN work_items tw ON tw.path_id = tp.path_id
                          WHERE tp.tenant_id = d.tenant_id AND tp.virtual_path = d.depends_on_ref
                            AND tw.status = 'completed'))"""


def _sqlite_live_status(path_id: str) -> str:
    return f"""FROM file_paths p
    JOIN file_metadata s ON s.path_id = p.path_id AND s.key = 'status'
    LEFT JOIN file_metadata q ON q.path_id = p.path_id AND q.key = 'queue'
         AND json_type(q.value) = 'object'
    WHERE p.path_id = {path_id} AND p.deleted_at IS NULL AND json_type(s.value) = 'text'
      AND json_extract(s.value, '$') IN {STATUSES}"""


def _sqlite_guarded(statement_where: str) -> str:
    return f"{statement_where} AND {SQLITE_PROJECTING}"


def _sqlite_ts(expr: str) -> str:
    # SQLite's date functions accept impossible days such as 2026-02-30 as they are; a round
    # trip through julianday() normalises them, so a mismatch means the date does not exist.
    return (
        f"CASE WHEN date(julianday(substr({expr}, 1, 10))) = substr({expr}, 1, 10)"
        f" THEN strftime('%Y-%m-%d %H:%M:%f', {expr}) END"
    )


def _sqlite_meta(
    key: str,
    json_type: str,
    owner: str,
    select: str = "json_extract(m.value, '$')",
    extra: str = "",
) -> str:
    return f"""(SELECT {select} FROM file_metadata m
        WHERE m.path_id = {owner} AND m.key = '{key}' AND json_type(m.value) = '{json_type}'
        {extra})"""


def _sqlite_queue(field: str, json_type: str, select: str | None = None) -> str:
    value = select or f"json_extract(q.value, '$.{field}')"
    return f"CASE WHEN json_type(q.value, '$.{field}') = '{json_type}' THEN {value} END"


def _sqlite_key_columns(owner: str) -> dict[str, str]:
    """Projected column of each non-status work key, for the path ``owner``."""
    tags = f"""(SELECT m.value FROM file_metadata m
        WHERE m.path_id = {owner} AND m.key = 'tags' AND json_type(m.value) = 'array'
          AND NOT EXISTS (SELECT 1 FROM json_each(m.value) e WHERE e.type <> 'text'))"""
    return {
        # json_type() says 'integer' for digits beyond 64 bits, which json_extract() turns
        # into a REAL: only true 64-bit integers are priorities.
        "priority": _sqlite_meta(
            "priority",
            "integer",
            owner,
            extra="AND typeof(json_extract(m.value, '$')) = 'integer'",
        ),
        "tags": tags,
        "worker_id": _sqlite_meta("worker_id", "text", owner),
        "started_at": _sqlite_meta(
            "started_at", "text", owner, _sqlite_ts("json_extract(m.value, '$')")
        ),
    }


QUEUE_COLUMNS = ("run_after", "lease_token", "lease_expires_at", "attempts", "max_attempts")


def _sqlite_queue_values() -> str:
    """The queue columns from a row ``q`` of the 'queue' key (NULLs, attempts 0, if none)."""
    return ",\n        ".join(
        [
            _sqlite_queue("run_after", "text", _sqlite_ts("json_extract(q.value, '$.run_after')")),
            _sqlite_queue("lease_token", "text"),
            _sqlite_queue(
                "lease_expires_at",
                "text",
                _sqlite_ts("json_extract(q.value, '$.lease_expires_at')"),
            ),
            f"coalesce({_sqlite_queue('attempts', 'integer')}, 0)",
            _sqlite_queue("max_attempts", "integer"),
        ]
    )


def _sqlite_upsert_work_items(
    path_id: str, only_if_missing: bool = False, guarded: bool = False
) -> str:
    columns = (
        "path_id, tenant_id, created_at, status, priority, tags, worker_id, started_at, "
        "run_after, lease_token, lease_expires_at, attempts, max_attempts, unresolved_count"
    )
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns.split(", ")[1:])
    keys = _sqlite_key_columns("p.path_id")
    missing = (
        "\n      AND NOT EXISTS (SELECT 1 FROM work_items x WHERE x.path_id = p.path_id)"
        if only_if_missing
        else ""
    )
    if guarded:
        missing += f"\n      AND {SQLITE_PROJECTING}"
    return f"""
    INSERT INTO work_items ({columns})
    SELECT p.path_id, p.tenant_id, p.created_at, json_extract(s.value, '$'),
        {keys["priority"]}, {keys["tags"]}, {keys["worker_id"]}, {keys["started_at"]},
        {_sqlite_queue_values()},
        {_sqlite_unresolved_count("p.path_id")}
    {_sqlite_live_status(path_id)}{missing}
    ON CONFLICT (path_id) DO UPDATE SET {updates};"""


def _sqlite_rebuild(path_id: str, only_if_missing: bool = False) -> str:
    return f"""{_sqlite_upsert_work_items(path_id, only_if_missing, guarded=True)}
    DELETE FROM work_items WHERE path_id = {path_id} AND {SQLITE_PROJECTING}
      AND NOT EXISTS (SELECT 1 {_sqlite_live_status(path_id)});"""


def _sqlite_update_key(key: str, path_id: str) -> str:
    """Refresh the columns of one non-status key; a no-op when the path has no work row."""
    if key == "queue":
        return f"""
    UPDATE work_items SET ({", ".join(QUEUE_COLUMNS)}) = (
        SELECT {_sqlite_queue_values()}
        FROM (SELECT 1) AS one
        LEFT JOIN file_metadata q ON q.path_id = work_items.path_id AND q.key = 'queue'
             AND json_type(q.value) = 'object')
    WHERE path_id = {path_id};"""
    column = _sqlite_key_columns("work_items.path_id")[key]
    return f"UPDATE work_items SET {key} = {column} WHERE path_id = {path_id};"


def _sqlite_refresh_dependents(refs: str, condition: str = "1") -> str:
    return f"""
    UPDATE work_items SET unresolved_count = {_sqlite_unresolved_count("work_items.path_id")}
    WHERE path_id IN (
        SELECT d.path_id FROM work_dependencies d
        WHERE d.depends_on_ref IN ({refs}) AND ({condition}));"""


def _sqlite_rebuild_dependencies(path_id: str) -> str:
    return f"""
    DELETE FROM work_dependencies WHERE path_id = {path_id};
    INSERT OR IGNORE INTO work_dependencies (path_id, depends_on_ref, tenant_id)
    SELECT m.path_id, e.value, p.tenant_id
    FROM file_metadata m JOIN file_paths p ON p.path_id = m.path_id, json_each(m.value) e
    WHERE m.path_id = {path_id} AND m.key = 'depends_on'
      AND json_type(m.value) IN ('text', 'array') AND e.type = 'text';
    UPDATE work_items SET unresolved_count = {_sqlite_unresolved_count("work_items.path_id")}
    WHERE path_id = {path_id};"""


def _completed(value: str) -> str:
    return f"coalesce(json_extract({value}, '$') = 'completed', 0)"


NON_STATUS_KEYS = ("priority", "tags", "worker_id", "started_at", "queue")


def _sqlite_triggers() -> dict[str, str]:
    new_refs = "NEW.path_id, (SELECT virtual_path FROM file_paths WHERE path_id = NEW.path_id)"
    old_refs = "OLD.path_id, (SELECT virtual_path FROM file_paths WHERE path_id = OLD.path_id)"
    same_row = "OLD.key = NEW.key AND OLD.path_id = NEW.path_id"
    triggers = {
        # Under the bypass a status row fires only when it may change dependents' counts.
        "trg_file_metadata_status_insert": f"""AFTER INSERT ON file_metadata
        WHEN NEW.key = 'status' AND ({SQLITE_PROJECTING} OR {_completed("NEW.value")})
        BEGIN {_sqlite_rebuild("NEW.path_id")}
        {_sqlite_refresh_dependents(new_refs, _completed("NEW.value"))}
        END""",
        # A status change on an existing row touches one column; a first valid status (or
        # an invalid one) rebuilds or removes the row.
        "trg_file_metadata_status_update": f"""AFTER UPDATE OF value ON file_metadata
        WHEN NEW.key = 'status' AND {same_row} AND OLD.value IS NOT NEW.value
             AND ({SQLITE_PROJECTING} OR {_completed("OLD.value")} <> {_completed("NEW.value")})
        BEGIN
        UPDATE work_items SET status = json_extract(NEW.value, '$')
        WHERE path_id = NEW.path_id AND json_type(NEW.value) = 'text'
          AND json_extract(NEW.value, '$') IN {STATUSES} AND {SQLITE_PROJECTING};
        {_sqlite_rebuild("NEW.path_id", only_if_missing=True)}
        {
            _sqlite_refresh_dependents(
                new_refs, f"{_completed('OLD.value')} <> {_completed('NEW.value')}"
            )
        }
        END""",
        "trg_file_metadata_status_delete": f"""AFTER DELETE ON file_metadata
        WHEN OLD.key = 'status' AND ({SQLITE_PROJECTING} OR {_completed("OLD.value")})
        BEGIN {_sqlite_rebuild("OLD.path_id")}
        {_sqlite_refresh_dependents(old_refs, _completed("OLD.value"))}
        END""",
        # With the projection bypassed, the writer (enqueue_many) inserts the edges itself.
        "trg_file_metadata_deps_insert": f"""AFTER INSERT ON file_metadata
        WHEN NEW.key = 'depends_on' AND {SQLITE_PROJECTING}
        BEGIN {_sqlite_rebuild_dependencies("NEW.path_id")} END""",
        "trg_file_metadata_deps_update": f"""AFTER UPDATE OF value ON file_metadata
        WHEN NEW.key = 'depends_on' AND {same_row} AND {SQLITE_PROJECTING}
        BEGIN {_sqlite_rebuild_dependencies("NEW.path_id")} END""",
        "trg_file_metadata_deps_delete": f"""AFTER DELETE ON file_metadata
        WHEN OLD.key = 'depends_on' AND {SQLITE_PROJECTING}
        BEGIN {_sqlite_rebuild_dependencies("OLD.path_id")} END""",
        # Moving a row to another key or path (plain SQL only): rebuild both sides fully.
        "trg_file_metadata_work_move": f"""AFTER UPDATE OF key, path_id ON file_metadata
        WHEN OLD.key IS NOT NEW.key OR OLD.path_id IS NOT NEW.path_id
        BEGIN {_sqlite_rebuild_dependencies("OLD.path_id")} {_sqlite_rebuild("OLD.path_id")}
        {_sqlite_refresh_dependents(old_refs)}
        {_sqlite_rebuild_dependencies("NEW.path_id")} {_sqlite_rebuild("NEW.path_id")}
        {_sqlite_refresh_dependents(new_refs)}
        END""",
        "trg_file_paths_work_update": f"""
        AFTER UPDATE OF deleted_at, virtual_path, tenant_id, created_at ON file_paths
        WHEN OLD.deleted_at IS NOT NEW.deleted_at OR OLD.virtual_path IS NOT NEW.virtual_path
             OR OLD.tenant_id IS NOT NEW.tenant_id OR OLD.created_at IS NOT NEW.created_at
        BEGIN
        UPDATE work_dependencies SET tenant_id = NEW.tenant_id
        WHERE path_id = NEW.path_id AND tenant_id IS NOT NEW.tenant_id;
        {_sqlite_rebuild("NEW.path_id")}
        {_sqlite_refresh_dependents("NEW.path_id, OLD.virtual_path, NEW.virtual_path")}
        END""",
        "trg_file_paths_work_delete": f"""AFTER DELETE ON file_paths
        BEGIN
        DELETE FROM file_metadata WHERE path_id = OLD.path_id;
        DELETE FROM work_items WHERE path_id = OLD.path_id;
        DELETE FROM work_dependencies WHERE path_id = OLD.path_id;
        {_sqlite_refresh_dependents("OLD.path_id, OLD.virtual_path")}
        END""",
    }
    for key in NON_STATUS_KEYS:
        triggers[f"trg_file_metadata_{key}_insert"] = f"""AFTER INSERT ON file_metadata
        WHEN NEW.key = '{key}' AND {SQLITE_PROJECTING}
        BEGIN {_sqlite_update_key(key, "NEW.path_id")} END"""
        triggers[f"trg_file_metadata_{key}_update"] = f"""AFTER UPDATE OF value ON file_metadata
        WHEN NEW.key = '{key}' AND {same_row} AND OLD.value IS NOT NEW.value
             AND {SQLITE_PROJECTING}
        BEGIN {_sqlite_update_key(key, "NEW.path_id")} END"""
        triggers[f"trg_file_metadata_{key}_delete"] = f"""AFTER DELETE ON file_metadata
        WHEN OLD.key = '{key}' AND {SQLITE_PROJECTING}
        BEGIN {_sqlite_update_key(key, "OLD.path_id")} END"""
    return triggers


SQLITE_INDEXES = [
    # NULL priorities last: "priority IS NULL" leads each ordering index.
    # run_after is carried so the ready view filters on it without visiting the table.
    """CREATE INDEX ix_work_items_ready ON work_items
       (priority IS NULL, priority, created_at, path_id, run_after)
       WHERE status = 'ready' AND unresolved_count = 0""",
    """CREATE INDEX ix_work_items_pending ON work_items
       (priority IS NULL, priority, created_at, path_id) WHERE status = 'pending'""",
    """CREATE INDEX ix_work_items_blocked ON work_items
       (unresolved_count DESC, priority IS NULL, priority, created_at, path_id)
       WHERE unresolved_count > 0 AND status IN ('ready', 'pending', 'blocked')""",
    """CREATE INDEX ix_work_items_in_progress ON work_items (started_at DESC, path_id)
       WHERE status = 'in_progress'""",
    """CREATE INDEX ix_work_items_priority ON work_items
       (priority IS NULL, priority, created_at, path_id)""",
    # Covering index for the per-status counts.
    "CREATE INDEX ix_work_items_counts ON work_items"
    " (tenant_id, status, unresolved_count, run_after)",
    """CREATE INDEX ix_work_items_lease ON work_items (lease_expires_at)
       WHERE status = 'in_progress'""",
]

# --------------------------------------------------------------------------------------------
# PostgreSQL: plpgsql functions, one trigger per event.
# --------------------------------------------------------------------------------------------


def _pg_key_columns(owner: str) -> dict[str, str]:
    """Projected column of each non-status work key, for the path ``owner`` (PostgreSQL)."""
    return {
        "priority": f"""(SELECT (m.value #>> '{{}}')::bigint FROM file_metadata m
              WHERE m.path_id = {owner} AND m.key = 'priority'
                AND jsonb_typeof(m.value) = 'number' AND (m.value #>> '{{}}') ~ '^-?\\d{{1,19}}$'
                AND (m.value #>> '{{}}')::numeric
                    BETWEEN -9223372036854775808 AND 9223372036854775807)""",
        "tags": f"""(SELECT m.value FROM file_metadata m
              WHERE m.path_id = {owner} AND m.key = 'tags' AND jsonb_typeof(m.value) = 'array'
                AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements(m.value) e
                                WHERE jsonb_typeof(e) <> 'string'))""",
        "worker_id": f"""(SELECT m.value #>> '{{}}' FROM file_metadata m
              WHERE m.path_id = {owner} AND m.key = 'worker_id'
                AND jsonb_typeof(m.value) = 'string')""",
        "started_at": f"""(SELECT nexus_parse_ts(m.value #>> '{{}}') FROM file_metadata m
              WHERE m.path_id = {owner} AND m.key = 'started_at'
                AND jsonb_typeof(m.value) = 'string')""",
    }


PG_QUEUE_VALUES = """CASE WHEN jsonb_typeof(q.value -> 'run_after') = 'string'
                 THEN nexus_parse_ts(q.value ->> 'run_after') END,
            CASE WHEN jsonb_typeof(q.value -> 'lease_token') = 'string'
                 THEN q.value ->> 'lease_token' END,
            CASE WHEN jsonb_typeof(q.value -> 'lease_expires_at') = 'string'
                 THEN nexus_parse_ts(q.value ->> 'lease_expires_at') END,
            CASE WHEN (q.value ->> 'attempts') ~ '^\\d{1,9}$'
                 THEN (q.value ->> 'attempts')::integer ELSE 0 END,
            CASE WHEN (q.value ->> 'max_attempts') ~ '^\\d{1,9}$'
                 THEN (q.value ->> 'max_attempts')::integer END"""
_PG_ROW = _pg_key_columns("p.path_id")
_PG_ONE = _pg_key_columns("p_path_id")

PG_FUNCTIONS = [
    r"""CREATE FUNCTION nexus_parse_ts(s text) RETURNS timestamptz
    LANGUAGE plpgsql STABLE AS $$
    DECLARE
        y integer;
        m integer;
        d integer;
        parsed timestamptz;
    BEGIN
        -- Exactly the forms SQLite's date functions read, so both databases project alike;
        -- anything else (and impossible dates) is NULL rather than an error in a trigger.
        IF s IS NULL OR s !~ '^\d{4}-\d{2}-\d{2}([ T]([01]\d|2[0-3]):[0-5]\d(:[0-5]\d(\.\d+)?)?([Zz]|[+-]([01]\d|2[0-3]):[0-5]\d)?)?$' THEN
            RETURN NULL;
        END IF;
        y := substr(s, 1, 4)::integer;
        m := substr(s, 6, 2)::integer;
        d := substr(s, 9, 2)::integer;
        IF y < 1 OR m < 1 OR m > 12 OR d < 1
           OR d > extract(day FROM make_date(y, m, 1) + interval '1 month - 1 day') THEN
            RETURN NULL;
        END IF;
        IF s ~ '([Zz]|[+-]\d{2}:\d{2})$' THEN
            parsed := s::timestamptz;
        ELSE
            -- Naive timestamps are UTC, as on SQLite.
            parsed := s::timestamp AT TIME ZONE 'UTC';
        END IF;
        RETURN date_trunc('milliseconds', parsed);
    END $$""",
    """CREATE FUNCTION nexus_unresolved_count(p_path_id text) RETURNS integer
    LANGUAGE sql STABLE AS $$
        SELECT count(*)::integer FROM work_dependencies d
        WHERE d.path_id = p_path_id
          AND NOT EXISTS (SELECT 1 FROM work_items tw
                          WHERE tw.path_id = d.depends_on_ref AND tw.status = 'completed')
          AND NOT EXISTS (SELECT 1 FROM file_paths tp JOIN work_items tw ON tw.path_id = tp.path_id
                          WHERE tp.tenant_id = d.tenant_id AND tp.virtual_path = d.depends_on_ref
                            AND tw.status = 'completed')
    $$""",
    f"""CREATE FUNCTION nexus_lock_refs(p_refs text[]) RETURNS void
    LANGUAGE sql VOLATILE AS $$
        -- Serialises a status change of a dependency target with concurrent writers of
        -- edges naming it, so neither computes a count from a stale snapshot.
        SELECT count(pg_advisory_xact_lock({DEPENDENCY_LOCK_NS}, h))::integer * 0 FROM (
            -- Bucketed, so a bulk transaction naming many refs holds at most
            -- DEPENDENCY_LOCK_BUCKETS locks (the shared lock table is finite); a bucket
            -- collision only serialises two unrelated writers a little more.
            SELECT DISTINCT abs(hashtext(r) % {DEPENDENCY_LOCK_BUCKETS}) AS h
            FROM unnest(p_refs) AS r WHERE r IS NOT NULL ORDER BY 1) AS locks;
    $$""",
    f"""CREATE FUNCTION nexus_rebuild_work_item(p_path_id text) RETURNS void
    LANGUAGE plpgsql VOLATILE AS $$
    BEGIN
        INSERT INTO work_items (path_id, tenant_id, created_at, status, priority, tags,
            worker_id, started_at, run_after, lease_token, lease_expires_at, attempts,
            max_attempts, unresolved_count)
        SELECT p.path_id, p.tenant_id, p.created_at, s.value #>> '{{}}',
            {_PG_ROW["priority"]}, {_PG_ROW["tags"]}, {_PG_ROW["worker_id"]},
            {_PG_ROW["started_at"]},
            {PG_QUEUE_VALUES},
            nexus_unresolved_count(p.path_id)
        FROM file_paths p
        JOIN file_metadata s ON s.path_id = p.path_id AND s.key = 'status'
        LEFT JOIN file_metadata q ON q.path_id = p.path_id AND q.key = 'queue'
             AND jsonb_typeof(q.value) = 'object'
        WHERE p.path_id = p_path_id AND p.deleted_at IS NULL
          AND jsonb_typeof(s.value) = 'string' AND (s.value #>> '{{}}') IN {STATUSES}
        ON CONFLICT (path_id) DO UPDATE SET
            tenant_id = excluded.tenant_id, created_at = excluded.created_at,
            status = excluded.status, priority = excluded.priority, tags = excluded.tags,
            worker_id = excluded.worker_id, started_at = excluded.started_at,
            run_after = excluded.run_after, lease_token = excluded.lease_token,
            lease_expires_at = excluded.lease_expires_at, attempts = excluded.attempts,
            max_attempts = excluded.max_attempts, unresolved_count = excluded.unresolved_count;
        IF NOT FOUND THEN
            DELETE FROM work_items WHERE path_id = p_path_id;
        END IF;
    END $$""",
    f"""CREATE FUNCTION nexus_refresh_work_key(p_path_id text, p_key text) RETURNS void
    LANGUAGE plpgsql VOLATILE AS $$
    BEGIN
        -- A no-op when the path has no work row: setting its status builds the whole row.
        IF p_key = 'priority' THEN
            UPDATE work_items SET priority = {_PG_ONE["priority"]} WHERE path_id = p_path_id;
        ELSIF p_key = 'tags' THEN
            UPDATE work_items SET tags = {_PG_ONE["tags"]} WHERE path_id = p_path_id;
        ELSIF p_key = 'worker_id' THEN
            UPDATE work_items SET worker_id = {_PG_ONE["worker_id"]} WHERE path_id = p_path_id;
        ELSIF p_key = 'started_at' THEN
            UPDATE work_items SET started_at = {_PG_ONE["started_at"]}
            WHERE path_id = p_path_id;
        ELSIF p_key = 'queue' THEN
            UPDATE work_items SET ({", ".join(QUEUE_COLUMNS)}) = (
                SELECT {PG_QUEUE_VALUES}
                FROM (SELECT 1) AS one
                LEFT JOIN file_metadata q ON q.path_id = p_path_id AND q.key = 'queue'
                     AND jsonb_typeof(q.value) = 'object')
            WHERE path_id = p_path_id;
        END IF;
    END $$""",
    """CREATE FUNCTION nexus_refresh_dependents(p_refs text[]) RETURNS void
    LANGUAGE plpgsql VOLATILE AS $$
    BEGIN
        PERFORM nexus_lock_refs(p_refs);
        -- A new statement, so a fresh snapshot: it sees edges committed while we waited.
        -- Rows whose path is being deleted in the same statement are skipped: their
        -- work_items row goes with it.
        UPDATE work_items w SET unresolved_count = nexus_unresolved_count(w.path_id)
        WHERE w.path_id IN (SELECT d.path_id FROM work_dependencies d
                            WHERE d.depends_on_ref = ANY (p_refs))
          AND EXISTS (SELECT 1 FROM file_paths p WHERE p.path_id = w.path_id);
    END $$""",
    """CREATE FUNCTION nexus_rebuild_dependencies(p_path_id text) RETURNS void
    LANGUAGE plpgsql VOLATILE AS $$
    BEGIN
        DELETE FROM work_dependencies WHERE path_id = p_path_id;
        INSERT INTO work_dependencies (path_id, depends_on_ref, tenant_id)
        SELECT DISTINCT m.path_id, r.ref, p.tenant_id
        FROM file_metadata m JOIN file_paths p ON p.path_id = m.path_id,
        LATERAL (
            SELECT m.value #>> '{}' AS ref WHERE jsonb_typeof(m.value) = 'string'
            UNION ALL
            SELECT e #>> '{}' FROM jsonb_array_elements(
                CASE WHEN jsonb_typeof(m.value) = 'array' THEN m.value ELSE '[]'::jsonb END) e
            WHERE jsonb_typeof(e) = 'string'
        ) r
        WHERE m.path_id = p_path_id AND m.key = 'depends_on';
        PERFORM nexus_lock_refs(ARRAY(SELECT depends_on_ref FROM work_dependencies
                                      WHERE path_id = p_path_id));
        UPDATE work_items SET unresolved_count = nexus_unresolved_count(p_path_id)
        WHERE path_id = p_path_id;
    END $$""",
    """CREATE FUNCTION nexus_metadata_changed(p_path_id text, p_key text, p_old jsonb,
                                              p_new jsonb) RETURNS void
    LANGUAGE plpgsql VOLATILE AS $$
    BEGIN
        IF p_key = 'depends_on' THEN
            IF coalesce(current_setting('nexus.bypass_projection', true), '') <> 'on' THEN
                PERFORM nexus_rebuild_dependencies(p_path_id);
            END IF;
            RETURN;
        END IF;
        IF coalesce(current_setting('nexus.bypass_projection', true), '') = 'on' THEN
            -- The work queue wrote work_items itself; only dependents are left to refresh.
            NULL;
        ELSIF p_key <> 'status' THEN
            PERFORM nexus_refresh_work_key(p_path_id, p_key);
            RETURN;
        ELSE
            -- A status change on an existing row touches one column; otherwise rebuild.
            UPDATE work_items SET status = p_new #>> '{}'
            WHERE path_id = p_path_id AND jsonb_typeof(p_new) = 'string'
              AND (p_new #>> '{}') IN ('ready', 'pending', 'blocked', 'in_progress',
                                       'completed', 'failed');
            IF NOT FOUND THEN
                PERFORM nexus_rebuild_work_item(p_path_id);
            END IF;
        END IF;
        IF p_key = 'status' AND coalesce(p_old #>> '{}' = 'completed', false)
               <> coalesce(p_new #>> '{}' = 'completed', false) THEN
            PERFORM nexus_refresh_dependents(ARRAY(
                SELECT p_path_id UNION ALL
                SELECT virtual_path FROM file_paths WHERE path_id = p_path_id));
        END IF;
    END $$""",
    """CREATE FUNCTION nexus_file_metadata_trigger() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'INSERT' THEN
            PERFORM nexus_metadata_changed(NEW.path_id, NEW.key, NULL, NEW.value);
        ELSIF TG_OP = 'DELETE' THEN
            PERFORM nexus_metadata_changed(OLD.path_id, OLD.key, OLD.value, NULL);
        ELSIF OLD.key <> NEW.key OR OLD.path_id <> NEW.path_id THEN
            PERFORM nexus_metadata_changed(OLD.path_id, OLD.key, OLD.value, NULL);
            PERFORM nexus_metadata_changed(NEW.path_id, NEW.key, NULL, NEW.value);
        ELSE
            PERFORM nexus_metadata_changed(NEW.path_id, NEW.key, OLD.value, NEW.value);
        END IF;
        RETURN NULL;
    END $$""",
    """CREATE FUNCTION nexus_file_paths_trigger() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'DELETE' THEN
            DELETE FROM work_items WHERE path_id = OLD.path_id;
            PERFORM nexus_refresh_dependents(ARRAY[OLD.path_id, OLD.virtual_path]);
            RETURN NULL;
        END IF;
        IF NEW.tenant_id IS DISTINCT FROM OLD.tenant_id THEN
            UPDATE work_dependencies SET tenant_id = NEW.tenant_id WHERE path_id = NEW.path_id;
        END IF;
        PERFORM nexus_rebuild_work_item(NEW.path_id);
        PERFORM nexus_refresh_dependents(
            ARRAY[NEW.path_id, OLD.virtual_path, NEW.virtual_path]);
        RETURN NULL;
    END $$""",
]

WORK_KEYS_PG = "('status', 'priority', 'tags', 'worker_id', 'started_at', 'queue', 'depends_on')"

PG_TRIGGERS = [
    f"""CREATE TRIGGER trg_file_metadata_work_insert AFTER INSERT ON file_metadata
    FOR EACH ROW WHEN (NEW.key IN {WORK_KEYS_PG}
        AND (NOT {PG_BYPASSED} OR (NEW.key = 'status' AND NEW.value = '"completed"'::jsonb)))
    EXECUTE FUNCTION nexus_file_metadata_trigger()""",
    f"""CREATE TRIGGER trg_file_metadata_work_update AFTER UPDATE ON file_metadata
    FOR EACH ROW WHEN ((NEW.key IN {WORK_KEYS_PG} OR OLD.key IN {WORK_KEYS_PG})
        AND (OLD.value IS DISTINCT FROM NEW.value OR OLD.key <> NEW.key
             OR OLD.path_id <> NEW.path_id)
        AND (NOT {PG_BYPASSED} OR OLD.key <> NEW.key
             OR (NEW.key = 'status'
                 AND (OLD.value = '"completed"'::jsonb) <> (NEW.value = '"completed"'::jsonb))))
    EXECUTE FUNCTION nexus_file_metadata_trigger()""",
    f"""CREATE TRIGGER trg_file_metadata_work_delete AFTER DELETE ON file_metadata
    FOR EACH ROW WHEN (OLD.key IN {WORK_KEYS_PG})
    EXECUTE FUNCTION nexus_file_metadata_trigger()""",
    """CREATE TRIGGER trg_file_paths_work_update
    AFTER UPDATE OF deleted_at, virtual_path, tenant_id, created_at ON file_paths
    FOR EACH ROW WHEN (OLD.deleted_at IS DISTINCT FROM NEW.deleted_at
        OR OLD.virtual_path IS DISTINCT FROM NEW.virtual_path
        OR OLD.tenant_id IS DISTINCT FROM NEW.tenant_id
        OR OLD.created_at IS DISTINCT FROM NEW.created_at)
    EXECUTE FUNCTION nexus_file_paths_trigger()""",
    """CREATE TRIGGER trg_file_paths_work_delete AFTER DELETE ON file_paths
    FOR EACH ROW EXECUTE FUNCTION nexus_file_paths_trigger()""",
]

PG_TRIGGER_TABLES = {
    "trg_file_metadata_work_insert": "file_metadata",
    "trg_file_metadata_work_update": "file_metadata",
    "trg_file_metadata_work_delete": "file_metadata",
    "trg_file_paths_work_update": "file_paths",
    "trg_file_paths_work_delete": "file_paths",
}
PG_FUNCTION_SIGNATURES = [
    "nexus_file_paths_trigger()",
    "nexus_file_metadata_trigger()",
    "nexus_metadata_changed(text, text, jsonb, jsonb)",
    "nexus_rebuild_dependencies(text)",
    "nexus_refresh_dependents(text[])",
    "nexus_refresh_work_key(text, text)",
    "nexus_rebuild_work_item(text)",
    "nexus_lock_refs(text[])",
    "nexus_unresolved_count(text)",
    "nexus_parse_ts(text)",
]

PG_INDEXES = [
    """CREATE INDEX ix_work_items_ready ON work_items
       (priority ASC NULLS LAST, created_at, path_id) INCLUDE (run_after)
       WHERE status = 'ready' AND unresolved_count = 0""",
    """CREATE INDEX ix_work_items_pending ON work_items
       (priority ASC NULLS LAST, created_at, path_id) WHERE status = 'pending'""",
    """CREATE INDEX ix_work_items_blocked ON work_items
       (unresolved_count DESC, priority ASC NULLS LAST, created_at, path_id)
       WHERE unresolved_count > 0 AND status IN ('ready', 'pending', 'blocked')""",
    """CREATE INDEX ix_work_items_in_progress ON work_items
       (started_at DESC NULLS LAST, path_id) WHERE status = 'in_progress'""",
    """CREATE INDEX ix_work_items_priority ON work_items
       (priority ASC NULLS LAST, created_at, path_id)""",
    "CREATE INDEX ix_work_items_counts ON work_items"
    " (tenant_id, status, unresolved_count, run_after)",
    """CREATE INDEX ix_work_items_lease ON work_items (lease_expires_at)
       WHERE status = 'in_progress'""",
]

INDEX_NAMES = [
    "ix_work_items_ready",
    "ix_work_items_pending",
    "ix_work_items_blocked",
    "ix_work_items_in_progress",
    "ix_work_items_priority",
    "ix_work_items_counts",
    "ix_work_items_lease",
]


def upgrade() -> None:
    dialect = op.get_context().dialect.name
    _create_tables(dialect)
    if dialect == "postgresql":
        statements = PG_INDEXES + PG_FUNCTIONS + PG_TRIGGERS
    else:
        statements = SQLITE_INDEXES + [
            f"CREATE TRIGGER {name} {body}" for name, body in _sqlite_triggers().items()
        ]
    for statement in statements:
        op.execute(statement)
    # Project whatever metadata already exists (a no-op on a fresh database), then count
    # blockers once every target's row exists.
    if dialect == "postgresql":
        op.execute(
            "SELECT nexus_rebuild_dependencies(path_id) FROM file_metadata WHERE key = 'depends_on'"
        )
        op.execute(
            "SELECT nexus_rebuild_work_item(path_id) FROM file_metadata WHERE key = 'status'"
        )
        op.execute("UPDATE work_items SET unresolved_count = nexus_unresolved_count(path_id)")
    else:
        op.execute(
            """INSERT OR IGNORE INTO work_dependencies (path_id, depends_on_ref, tenant_id)
            SELECT m.path_id, e.value, p.tenant_id
            FROM file_metadata m JOIN file_paths p ON p.path_id = m.path_id, json_each(m.value) e
            WHERE m.key = 'depends_on' AND json_type(m.value) IN ('text', 'array')
              AND e.type = 'text'"""
        )
        op.execute(_sqlite_upsert_work_items("p.path_id"))
        op.execute(
            "UPDATE work_items SET unresolved_count = "
            + _sqlite_unresolved_count("work_items.path_id")
        )


def downgrade() -> None:
    dialect = op.get_context().dialect.name
    if dialect == "postgresql":
        for name, table in PG_TRIGGER_TABLES.items():
            op.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
        for signature in PG_FUNCTION_SIGNATURES:
            op.execute(f"DROP FUNCTION IF EXISTS {signature}")
    else:
        for name in _sqlite_triggers():
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    for name in INDEX_NAMES:
        op.drop_index(name, table_name="work_items")
    op.drop_index("ix_work_dependencies_ref", table_name="work_dependencies")
    if dialect != "postgresql":
        op.drop_table("nexus_projection_bypass")
    op.drop_table("work_dependencies")
    op.drop_table("work_items")
