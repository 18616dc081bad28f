"""queue engine: typed queue state, one rule per derivation, maintained counters

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01

Where state lives from here on:

* ``work_items`` is the only place of work state. Queue-owned state lives in its typed
  columns (``lease_token``, ``lease_expires_at``, ``lease_seconds``, ``attempts``,
  ``max_attempts``, ``run_after``, ``last_error``, ``finished_at``); the ``queue`` metadata
  object of revisions 0002-0004 is migrated into them and removed, so no metadata read can
  return a lease token. The visible keys a queue transition changes (``status``,
  ``worker_id``, ``started_at``) live there too: a write of one of them into
  ``file_metadata`` (API or plain SQL) is routed into the work row, and the metadata row is
  taken out, so no stale copy exists anywhere.
* ``file_metadata`` holds every other key (``priority``, ``tags`` and ``depends_on`` stay there
  and are projected into ``work_items``), plus values of routed keys that cannot be routed (an
  invalid status, a worker_id of a path that is no work item...).
* ``path_metadata`` (a view) is the one place a reader sees every current key of a path:
  ``file_metadata`` plus the routed keys rendered as JSON from ``work_items``. Deleting from it
  deletes the key wherever it lives (INSTEAD OF triggers).

The derivation rules, each written once per dialect below (SQLite: row triggers; PostgreSQL:
statement triggers over transition tables, so a bulk statement is handled set-wise):

``route``      status/worker_id/started_at written to file_metadata -> work_items (creates,
               updates or removes the work row); the routed metadata row is deleted.
``project``    priority/tags -> work_items columns; depends_on -> work_dependencies.
``path``       a path soft-deleted returns its routed keys to file_metadata and loses its
               work row; restored, it is routed again.
``resolve``    a change of completed-ness -> dependents' ``unresolved_count``; a reference
               resolves only inside its own tenant.
``promote``    a ``blocked`` item whose last blocker resolved -> ``ready`` (history
               ``promoted``).
``count``      work_items rows -> ``work_counters`` (per tenant, status and class;
               sharded by backend on PostgreSQL so concurrent claimers do not queue on one
               row), read by ``work_stats()`` instead of a scan.
``enqueued``   a new work row -> history ``enqueued``.

Nothing is switched off for any writer: the projection bypass of 0002 is gone.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

STATUSES = "('ready', 'pending', 'blocked', 'in_progress', 'completed', 'failed')"
ROUTED_KEYS = ("status", "worker_id", "started_at")
# What file_metadata holds for a routed key once its value lives in work_items: a pointer, so
# that plain SQL can still UPDATE or DELETE the key's row (and a reader of the table is told
# where to look). It is no value a user writes.
ROUTED = '{"$nexus":"work_items"}'
SQLITE_ROUTED = f"'{ROUTED}'"
PG_ROUTED = f"'{ROUTED}'::jsonb"
PROJECTED_KEYS = ("priority", "tags")
SQLITE_NOW = "strftime('%Y-%m-%d %H:%M:%f', 'now')"
DEFAULT_MAX_ATTEMPTS = 3
COUNTER_SHARDS = 64
# Namespace and bucket count of the dependency-reference advisory locks (as in 0002).
DEPENDENCY_LOCK_NS = 7_400_001
DEPENDENCY_LOCK_BUCKETS = 512


def _class_of(row: str) -> str:
    """The counter class of a work row besides its status: 'eligible' or 'waiting'."""
    return (
        f"CASE WHEN {row}.unresolved_count > 0 AND {row}.status IN ('ready', 'pending', 'blocked')"
        f" THEN 'waiting' WHEN {row}.status = 'ready' THEN 'eligible' END"
    )


# ============================================================================================
# SQLite
# ============================================================================================


def _sqlite_ts(expr: str) -> str:
    # SQLite's date functions accept impossible days such as 2026-02-30; a round trip through
    # julianday() normalises them, so a mismatch means the date does not exist.
    return (
        f"CASE WHEN date(julianday(substr({expr}, 1, 10))) = substr({expr}, 1, 10)"
        f" THEN strftime('%Y-%m-%d %H:%M:%f', {expr}) END"
    )


def _sqlite_typed(key: str, value: str) -> str:
    """The work_items column value of metadata ``value`` (JSON text) for ``key``, or NULL."""
    scalar = f"json_extract({value}, '$')"
    if key == "status":
        return f"CASE WHEN json_type({value}) = 'text' AND {scalar} IN {STATUSES} THEN {scalar} END"
    if key == "priority":
        # json_type() says 'integer' for digits beyond 64 bits, which json_extract() turns
        # into a REAL: only true 64-bit integers are priorities.
        return (
            f"CASE WHEN json_type({value}) = 'integer' AND typeof({scalar}) = 'integer'"
            f" THEN {scalar} END"
        )
    if key == "tags":
        return (
            f"CASE WHEN json_type({value}) = 'array' AND NOT EXISTS"
            f" (SELECT 1 FROM json_each({value}) e WHERE e.type <> 'text') THEN {value} END"
        )
    if key == "worker_id":
        return f"CASE WHEN json_type({value}) = 'text' THEN {scalar} END"
    if key == "started_at":
        return f"CASE WHEN json_type({value}) = 'text' THEN {_sqlite_ts(scalar)} END"
    raise ValueError(key)


def _sqlite_meta(key: str, path_id: str) -> str:
    return (
        f"(SELECT {_sqlite_typed(key, 'm.value')} FROM file_metadata m"
        f" WHERE m.path_id = {path_id} AND m.key = '{key}')"
    )


def _sqlite_blockers(path_id: str) -> str:
    """Unresolved dependencies of ``path_id``: targets not a completed item of its tenant."""
    return f"""(SELECT count(*) FROM work_dependencies d
        WHERE d.path_id = {path_id}
          AND NOT EXISTS (SELECT 1 FROM work_items tw
                          WHERE tw.path_id = d.depends_on_ref AND tw.tenant_id = d.tenant_id
                            AND tw.status = 'completed')
          AND NOT EXISTS (SELECT 1 FROM file_paths tp JOIN work_items tw ON tw.path_id = tp.path_id
                          WHERE tp.tenant_id = d.tenant_id AND tp.virtual_path = d.depends_on_ref
                            AND tw.status = 'completed'))"""


def _sqlite_routable(key: str, value: str) -> str:
    """Whether metadata ``value`` of routed ``key`` has a typed value (so it can be routed)."""
    return (
        f"({key} = 'status' AND {_sqlite_typed('status', value)} IS NOT NULL"
        + "".join(
            f" OR {key} = '{k}' AND {_sqlite_typed(k, value)} IS NOT NULL"
            for k in ("worker_id", "started_at")
        )
        + ")"
    )


def _sqlite_route(path_id: str, when: str = "1") -> str:
    """Route the routed keys of ``path_id`` found in file_metadata into its work row.

    A valid status updates or creates the row (built from the path's metadata); an invalid
    one removes it. Routed rows then hold the ROUTED pointer: the work row has the value."""
    status = _sqlite_typed("status", "s.value")
    raw_status = (
        f"FROM file_metadata s WHERE s.path_id = {path_id} AND s.key = 'status'"
        f" AND s.value IS NOT {SQLITE_ROUTED}"
    )
    return f"""
    UPDATE work_items SET status = (SELECT {status} {raw_status})
    WHERE path_id = {path_id} AND ({when})
      AND (SELECT {status} {raw_status}) IS NOT NULL
      AND status IS NOT (SELECT {status} {raw_status});
    INSERT INTO work_items (path_id, tenant_id, created_at, status, priority, tags, worker_id,
                            started_at, attempts, unresolved_count)
    SELECT p.path_id, p.tenant_id, p.created_at, {status},
           {_sqlite_meta("priority", "p.path_id")}, {_sqlite_meta("tags", "p.path_id")},
           {_sqlite_meta("worker_id", "p.path_id")}, {_sqlite_meta("started_at", "p.path_id")},
           0, {_sqlite_blockers("p.path_id")}
    FROM file_paths p JOIN file_metadata s ON s.path_id = p.path_id AND s.key = 'status'
    WHERE p.path_id = {path_id} AND ({when}) AND p.deleted_at IS NULL AND {status} IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM work_items x WHERE x.path_id = {path_id});
    DELETE FROM work_items WHERE path_id = {path_id} AND ({when})
      AND EXISTS (SELECT 1 {raw_status} AND {status} IS NULL);
    UPDATE work_items SET
        worker_id = CASE WHEN EXISTS ({_sqlite_raw("worker_id", path_id)})
                         THEN {_sqlite_meta("worker_id", path_id)} ELSE worker_id END,
        started_at = CASE WHEN EXISTS ({_sqlite_raw("started_at", path_id)})
                          THEN {_sqlite_meta("started_at", path_id)} ELSE started_at END
    WHERE path_id = {path_id} AND ({when});
    UPDATE file_metadata SET value = {SQLITE_ROUTED}
    WHERE path_id = {path_id} AND ({when}) AND key IN ('status', 'worker_id', 'started_at')
      AND value IS NOT {SQLITE_ROUTED} AND {_sqlite_routable("key", "value")}
      AND EXISTS (SELECT 1 FROM work_items x WHERE x.path_id = {path_id})
      AND EXISTS (SELECT 1 FROM file_paths x WHERE x.path_id = {path_id}
                  AND x.deleted_at IS NULL);"""


def _sqlite_raw(key: str, path_id: str) -> str:
    return (
        f"SELECT 1 FROM file_metadata r WHERE r.path_id = {path_id} AND r.key = '{key}'"
        f" AND r.value IS NOT {SQLITE_ROUTED}"
    )


def _sqlite_routed_json(key: str, row: str) -> str:
    if key == "started_at":
        return f"json_quote(strftime('%Y-%m-%dT%H:%M:%f', {row}.started_at) || '+00:00')"
    return f"json_quote({row}.{key})"


def _sqlite_unroute(path_id: str, when: str) -> str:
    """Give the routed keys of ``path_id`` back to file_metadata and drop its work row."""
    statements = [
        f"""
    INSERT INTO file_metadata (path_id, key, value, created_at, updated_at)
    SELECT w.path_id, '{key}', {_sqlite_routed_json(key, "w")}, {SQLITE_NOW}, {SQLITE_NOW}
    FROM work_items w WHERE w.path_id = {path_id} AND w.{key} IS NOT NULL AND ({when})
    ON CONFLICT (path_id, key) DO UPDATE SET value = excluded.value,
        updated_at = excluded.updated_at;"""
        for key in ROUTED_KEYS
    ]
    statements.append(f"\n    DELETE FROM work_items WHERE path_id = {path_id} AND ({when});")
    return "".join(statements)


def _sqlite_refresh_projected(path_id: str) -> str:
    return f"""
    UPDATE work_items SET priority = {_sqlite_meta("priority", path_id)},
        tags = {_sqlite_meta("tags", path_id)}
    WHERE path_id = {path_id};"""


def _sqlite_rebuild_edges(path_id: str) -> str:
    return f"""
    DELETE FROM work_dependencies WHERE path_id = {path_id};
    INSERT INTO work_dependencies (path_id, depends_on_ref, tenant_id)
    SELECT DISTINCT m.path_id, e.value, p.tenant_id
    FROM file_metadata m JOIN file_paths p ON p.path_id = m.path_id, json_each(m.value) e
    WHERE m.path_id = {path_id} AND m.key = 'depends_on'
      AND json_type(m.value) IN ('text', 'array') AND e.type = 'text';
    UPDATE work_items SET unresolved_count = {_sqlite_blockers("work_items.path_id")}
    WHERE path_id = {path_id};"""


def _sqlite_resolve(refs: str, tenants: str) -> str:
    """Recount the dependents of the references ``refs`` inside the tenants ``tenants``."""
    return f"""
    UPDATE work_items SET unresolved_count = {_sqlite_blockers("work_items.path_id")}
    WHERE path_id IN (SELECT d.path_id FROM work_dependencies d
                      WHERE d.depends_on_ref IN ({refs}) AND d.tenant_id IN ({tenants}));"""


COUNTERS = (
    *("ready", "pending", "blocked", "in_progress", "completed", "failed"),
    "eligible",
    "waiting",
)


def _sqlite_count(row: str, sign: str) -> str:
    """Add ``sign`` to the status and class counters of ``row`` (rows made by
    :func:`_sqlite_counter_rows`): plain primary-key updates, the cheapest statement here."""
    return f"""
    UPDATE work_counters SET n = n {sign} 1
    WHERE tenant_id = {row}.tenant_id AND counter = {row}.status AND shard = 0;
    UPDATE work_counters SET n = n {sign} 1
    WHERE tenant_id = {row}.tenant_id AND counter = {_class_of(row)} AND shard = 0;"""


def _sqlite_counter_rows(row: str) -> str:
    # Missing rows only, never a conflict: inside a trigger an INSERT OR IGNORE takes the
    # outer statement's conflict handling (an upsert's would abort on the duplicate).
    values = " UNION ALL ".join(f"SELECT '{name}' AS name" for name in COUNTERS)
    return f"""
    INSERT INTO work_counters (tenant_id, counter, shard, n)
    SELECT {row}.tenant_id, c.name, 0, 0 FROM ({values}) AS c
    WHERE NOT EXISTS (SELECT 1 FROM work_counters x WHERE x.tenant_id = {row}.tenant_id
                      AND x.counter = c.name AND x.shard = 0);"""


def _sqlite_triggers() -> dict[str, str]:
    same_row = "OLD.key = NEW.key AND OLD.path_id = NEW.path_id"
    refs_of_new = "NEW.path_id, (SELECT virtual_path FROM file_paths WHERE path_id = NEW.path_id)"
    refs_of_old = "OLD.path_id, (SELECT virtual_path FROM file_paths WHERE path_id = OLD.path_id)"
    completed_changed = "(OLD.status = 'completed') IS NOT (NEW.status = 'completed')"
    routed = "('status', 'worker_id', 'started_at')"
    # Only live paths are routed: a soft-deleted path keeps its keys in file_metadata.
    live = "(SELECT deleted_at FROM file_paths WHERE path_id = NEW.path_id) IS NULL"
    triggers = {
        # ---- route: status/worker_id/started_at -> work_items
        "trg_nexus_route_insert": f"""AFTER INSERT ON file_metadata
        WHEN NEW.key IN {routed} AND NEW.value IS NOT {SQLITE_ROUTED} AND {live}
        BEGIN {_sqlite_route("NEW.path_id")} END""",
        "trg_nexus_route_update": f"""AFTER UPDATE OF value ON file_metadata
        WHEN NEW.key IN {routed} AND {same_row} AND OLD.value IS NOT NEW.value
             AND NEW.value IS NOT {SQLITE_ROUTED} AND {live}
        BEGIN {_sqlite_route("NEW.path_id")} END""",
        # Deleting a routed key's pointer (plain SQL) deletes the key.
        "trg_nexus_route_delete": f"""AFTER DELETE ON file_metadata
        WHEN OLD.key IN {routed} AND OLD.value IS {SQLITE_ROUTED}
        BEGIN
        DELETE FROM work_items WHERE OLD.key = 'status' AND path_id = OLD.path_id;
        UPDATE work_items SET worker_id = NULL
        WHERE OLD.key = 'worker_id' AND path_id = OLD.path_id;
        UPDATE work_items SET started_at = NULL
        WHERE OLD.key = 'started_at' AND path_id = OLD.path_id;
        END""",
        # ---- project: priority/tags -> work_items; depends_on -> work_dependencies
        "trg_nexus_project_deps_insert": f"""AFTER INSERT ON file_metadata
        WHEN NEW.key = 'depends_on'
        BEGIN {_sqlite_rebuild_edges("NEW.path_id")} END""",
        "trg_nexus_project_deps_update": f"""AFTER UPDATE OF value ON file_metadata
        WHEN NEW.key = 'depends_on' AND {same_row} AND OLD.value IS NOT NEW.value
        BEGIN {_sqlite_rebuild_edges("NEW.path_id")} END""",
        "trg_nexus_project_deps_delete": f"""AFTER DELETE ON file_metadata
        WHEN OLD.key = 'depends_on'
        BEGIN {_sqlite_rebuild_edges("OLD.path_id")} END""",
        # A row moved to another key or path (plain SQL only): refresh both sides.
        "trg_nexus_project_move": f"""AFTER UPDATE OF key, path_id ON file_metadata
        WHEN OLD.key IS NOT NEW.key OR OLD.path_id IS NOT NEW.path_id
        BEGIN {_sqlite_rebuild_edges("OLD.path_id")} {_sqlite_refresh_projected("OLD.path_id")}
        {_sqlite_rebuild_edges("NEW.path_id")} {_sqlite_refresh_projected("NEW.path_id")}
        {_sqlite_route("NEW.path_id", f"NEW.key IN {routed} AND {live}")}
        END""",
        # ---- path: soft delete, restore, rename, tenant move
        "trg_nexus_path_update": f"""
        AFTER UPDATE OF deleted_at, virtual_path, tenant_id, created_at ON file_paths
        WHEN OLD.deleted_at IS NOT NEW.deleted_at OR OLD.virtual_path IS NOT NEW.virtual_path
             OR OLD.tenant_id IS NOT NEW.tenant_id OR OLD.created_at IS NOT NEW.created_at
        BEGIN
        UPDATE work_dependencies SET tenant_id = NEW.tenant_id
        WHERE path_id = NEW.path_id AND tenant_id IS NOT NEW.tenant_id;
        {_sqlite_unroute("NEW.path_id", "NEW.deleted_at IS NOT NULL")}
        UPDATE work_items SET tenant_id = NEW.tenant_id, created_at = NEW.created_at
        WHERE path_id = NEW.path_id
          AND (tenant_id IS NOT NEW.tenant_id OR created_at IS NOT NEW.created_at);
        {_sqlite_route("NEW.path_id", "OLD.deleted_at IS NOT NULL AND NEW.deleted_at IS NULL")}
        UPDATE work_items SET unresolved_count = {_sqlite_blockers("work_items.path_id")}
        WHERE path_id = NEW.path_id;
        {
            _sqlite_resolve(
                "NEW.path_id, OLD.virtual_path, NEW.virtual_path", "OLD.tenant_id, NEW.tenant_id"
            )
        }
        END""",
        "trg_nexus_path_delete": f"""AFTER DELETE ON file_paths
        BEGIN
        DELETE FROM file_metadata WHERE path_id = OLD.path_id;
        DELETE FROM work_items WHERE path_id = OLD.path_id;
        DELETE FROM work_dependencies WHERE path_id = OLD.path_id;
        {_sqlite_resolve("OLD.path_id, OLD.virtual_path", "OLD.tenant_id")}
        END""",
        # ---- deleting a key through path_metadata deletes it wherever it lives
        "trg_nexus_path_metadata_delete": """INSTEAD OF DELETE ON path_metadata
        BEGIN
        DELETE FROM file_metadata WHERE path_id = OLD.path_id AND key = OLD.key;
        DELETE FROM work_items WHERE OLD.key = 'status' AND path_id = OLD.path_id;
        UPDATE work_items SET worker_id = NULL
        WHERE OLD.key = 'worker_id' AND path_id = OLD.path_id;
        UPDATE work_items SET started_at = NULL
        WHERE OLD.key = 'started_at' AND path_id = OLD.path_id;
        END""",
        # ---- resolve: completed-ness -> dependents' counts
        "trg_nexus_resolve_update": f"""AFTER UPDATE OF status ON work_items
        WHEN {completed_changed}
        BEGIN {_sqlite_resolve(refs_of_new, "NEW.tenant_id")} END""",
        "trg_nexus_resolve_insert": f"""AFTER INSERT ON work_items
        WHEN NEW.status = 'completed'
        BEGIN {_sqlite_resolve(refs_of_new, "NEW.tenant_id")} END""",
        "trg_nexus_resolve_delete": f"""AFTER DELETE ON work_items
        WHEN OLD.status = 'completed'
        BEGIN {_sqlite_resolve(refs_of_old, "OLD.tenant_id")} END""",
        # ---- promote: blocked with every blocker resolved -> ready
        "trg_nexus_promote": f"""AFTER UPDATE OF unresolved_count ON work_items
        WHEN NEW.unresolved_count = 0 AND OLD.unresolved_count > 0 AND NEW.status = 'blocked'
        BEGIN
        INSERT INTO work_history (path_id, tenant_id, event, at)
        VALUES (NEW.path_id, NEW.tenant_id, 'promoted', {SQLITE_NOW});
        UPDATE work_items SET status = 'ready' WHERE path_id = NEW.path_id;
        END""",
        # ---- count: work_items -> work_counters
        # A tenant's counter rows are made with its first item (a BEFORE trigger, so the
        # counting below finds them; its WHEN is one primary-key look-up per insert).
        "trg_nexus_count_first": f"""BEFORE INSERT ON work_items
        WHEN NOT EXISTS (SELECT 1 FROM work_counters WHERE tenant_id = NEW.tenant_id
                         AND counter = 'ready' AND shard = 0)
        BEGIN {_sqlite_counter_rows("NEW")} END""",
        "trg_nexus_count_insert": f"""AFTER INSERT ON work_items
        BEGIN {_sqlite_count("NEW", "+")} END""",
        "trg_nexus_count_update": f"""AFTER UPDATE OF status, unresolved_count, tenant_id
        ON work_items
        WHEN OLD.status IS NOT NEW.status OR OLD.tenant_id IS NOT NEW.tenant_id
             OR ({_class_of("OLD")}) IS NOT ({_class_of("NEW")})
        BEGIN {_sqlite_count("OLD", "-")} {_sqlite_count("NEW", "+")} END""",
        # A tenant seen for the first time through an update (plain SQL) gets its rows first.
        "trg_nexus_count_tenant": f"""BEFORE UPDATE OF tenant_id ON work_items
        WHEN OLD.tenant_id IS NOT NEW.tenant_id
        BEGIN {_sqlite_counter_rows("NEW")} END""",
        "trg_nexus_count_delete": f"""AFTER DELETE ON work_items
        BEGIN {_sqlite_count("OLD", "-")} END""",
        # ---- enqueued: a new work row is recorded
        "trg_nexus_enqueued": f"""AFTER INSERT ON work_items
        BEGIN
        INSERT INTO work_history (path_id, tenant_id, event, at, detail)
        VALUES (NEW.path_id, NEW.tenant_id, 'enqueued', {SQLITE_NOW},
                json_object('status', NEW.status));
        END""",
    }
    for key in PROJECTED_KEYS:
        typed = _sqlite_typed(key, "NEW.value")
        # A value the row already holds (an enqueue writes both) changes nothing.
        update = (
            f"UPDATE work_items SET {key} = {typed}"
            f" WHERE path_id = NEW.path_id AND {key} IS NOT {typed};"
        )
        triggers[f"trg_nexus_project_{key}_insert"] = f"""AFTER INSERT ON file_metadata
        WHEN NEW.key = '{key}'
        BEGIN {update} END"""
        triggers[f"trg_nexus_project_{key}_update"] = f"""AFTER UPDATE OF value ON file_metadata
        WHEN NEW.key = '{key}' AND {same_row} AND OLD.value IS NOT NEW.value
        BEGIN {update} END"""
        triggers[f"trg_nexus_project_{key}_delete"] = f"""AFTER DELETE ON file_metadata
        WHEN OLD.key = '{key}'
        BEGIN UPDATE work_items SET {key} = NULL WHERE path_id = OLD.path_id; END"""
    return triggers


def _path_metadata_view(pg: bool) -> str:
    """Every current key of every path: file_metadata plus the keys routed to work_items."""
    if pg:
        status, worker = "to_jsonb(w.status)", "to_jsonb(w.worker_id)"
        started = (
            "to_jsonb(to_char(w.started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS')"
            " || '+00:00')"
        )
    else:
        status, worker = _sqlite_routed_json("status", "w"), _sqlite_routed_json("worker_id", "w")
        started = _sqlite_routed_json("started_at", "w")
    changed = "coalesce(w.finished_at, w.started_at, w.created_at)"
    routed = PG_ROUTED if pg else SQLITE_ROUTED
    return f"""CREATE VIEW path_metadata AS
    SELECT m.path_id, m.key, m.value, m.created_at, m.updated_at FROM file_metadata m
    WHERE m.value <> {routed}
    UNION ALL
    SELECT w.path_id, 'status', {status}, w.created_at, {changed} FROM work_items w
    UNION ALL
    SELECT w.path_id, 'worker_id', {worker}, w.created_at, {changed} FROM work_items w
    WHERE w.worker_id IS NOT NULL
    UNION ALL
    SELECT w.path_id, 'started_at', {started}, w.created_at, {changed} FROM work_items w
    WHERE w.started_at IS NOT NULL"""


# ============================================================================================
# PostgreSQL
# ============================================================================================

PG_TYPED_FUNCTIONS = [
    f"""CREATE FUNCTION nexus_status_of(v jsonb) RETURNS text
    LANGUAGE sql IMMUTABLE AS $$
        SELECT CASE WHEN jsonb_typeof(v) = 'string' AND (v #>> '{{}}') IN {STATUSES}
                    THEN v #>> '{{}}' END
    $$""",
    r"""CREATE FUNCTION nexus_priority_of(v jsonb) RETURNS bigint
    LANGUAGE sql IMMUTABLE AS $$
        SELECT CASE WHEN jsonb_typeof(v) = 'number' AND (v #>> '{}') ~ '^-?\d{1,19}$'
                         AND (v #>> '{}')::numeric
                             BETWEEN -9223372036854775808 AND 9223372036854775807
                    THEN (v #>> '{}')::bigint END
    $$""",
    """CREATE FUNCTION nexus_tags_of(v jsonb) RETURNS jsonb
    LANGUAGE sql IMMUTABLE AS $$
        SELECT CASE WHEN jsonb_typeof(v) = 'array'
                         AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements(v) e
                                         WHERE jsonb_typeof(e) <> 'string')
                    THEN v END
    $$""",
    """CREATE FUNCTION nexus_text_of(v jsonb) RETURNS text
    LANGUAGE sql IMMUTABLE AS $$
        SELECT CASE WHEN jsonb_typeof(v) = 'string' THEN v #>> '{}' END
    $$""",
    """CREATE FUNCTION nexus_ts_of(v jsonb) RETURNS timestamptz
    LANGUAGE sql STABLE AS $$
        SELECT CASE WHEN jsonb_typeof(v) = 'string' THEN nexus_parse_ts(v #>> '{}') END
    $$""",
]


def _pg_meta(key: str, path_id: str) -> str:
    function = {
        "priority": "nexus_priority_of",
        "tags": "nexus_tags_of",
        "worker_id": "nexus_text_of",
        "started_at": "nexus_ts_of",
    }[key]
    return (
        f"(SELECT {function}(m.value) FROM file_metadata m"
        f" WHERE m.path_id = {path_id} AND m.key = '{key}')"
    )


def _pg_count(rows: list[tuple[str, str]]) -> str:
    """Add ``sign`` to the counters of the rows of each (transition table, sign)."""
    parts = []
    for table, sign in rows:
        parts.append(f"SELECT r.tenant_id AS t, r.status AS c, {sign} AS d FROM {table} r")
        parts.append(f"SELECT r.tenant_id, {_class_of('r')}, {sign} FROM {table} r")
    union = "\n                UNION ALL ".join(parts)
    return f"""INSERT INTO work_counters (tenant_id, counter, shard, n)
            SELECT t, c, my_shard, sum(d) FROM ({union}) deltas
            WHERE c IS NOT NULL
            GROUP BY t, c HAVING sum(d) <> 0
            ORDER BY t, c
            ON CONFLICT (tenant_id, counter, shard) DO UPDATE SET n = work_counters.n + excluded.n;"""


PG_RULE_FUNCTIONS = [
    f"""CREATE FUNCTION nexus_lock_refs(p_refs text[]) RETURNS void
    LANGUAGE plpgsql VOLATILE AS $$
    BEGIN
        -- Serialises a change of a dependency target's completed-ness with concurrent
        -- writers of edges naming it, so neither counts from a stale snapshot. Bucketed:
        -- a bulk transaction holds at most {DEPENDENCY_LOCK_BUCKETS} locks, taken in bucket
        -- order. PL/pgSQL keeps the plan (a SQL function would plan it at every call).
        PERFORM pg_advisory_xact_lock({DEPENDENCY_LOCK_NS}, h) FROM (
            SELECT DISTINCT abs(hashtext(r) % {DEPENDENCY_LOCK_BUCKETS}) AS h
            FROM unnest(p_refs) AS r WHERE r IS NOT NULL ORDER BY 1) AS locks;
    END $$""",
    """CREATE FUNCTION nexus_blocker_count(p_path_id text) RETURNS integer
    LANGUAGE sql STABLE AS $$
        -- A reference resolves only to a completed item of the edge's own tenant.
        SELECT count(*)::integer FROM work_dependencies d
        WHERE d.path_id = p_path_id
          AND NOT EXISTS (SELECT 1 FROM work_items tw
                          WHERE tw.path_id = d.depends_on_ref AND tw.tenant_id = d.tenant_id
                            AND tw.status = 'completed')
          AND NOT EXISTS (SELECT 1 FROM file_paths tp JOIN work_items tw ON tw.path_id = tp.path_id
                          WHERE tp.tenant_id = d.tenant_id AND tp.virtual_path = d.depends_on_ref
                            AND tw.status = 'completed')
    $$""",
    f"""CREATE FUNCTION nexus_route(p_ids text[]) RETURNS void
    LANGUAGE plpgsql VOLATILE AS $$
    BEGIN
        -- Route the routed keys of p_ids found in file_metadata into their work rows: a
        -- valid status updates or creates the row (built from the path's metadata), an
        -- invalid one removes it; routed rows then hold the pointer (ROUTED).
        -- Every statement is driven by unnest(p_ids) joined on primary keys: a plan that
        -- stays right when a bulk load has left the tables without statistics.
        UPDATE work_items w SET status = nexus_status_of(s.value)
        FROM unnest(p_ids) AS t(id)
        JOIN file_metadata s ON s.path_id = t.id AND s.key = 'status'
        WHERE w.path_id = t.id AND nexus_status_of(s.value) IS NOT NULL
          AND w.status IS DISTINCT FROM nexus_status_of(s.value);
        INSERT INTO work_items (path_id, tenant_id, created_at, status, priority, tags,
                                worker_id, started_at, attempts, unresolved_count)
        SELECT p.path_id, p.tenant_id, p.created_at, nexus_status_of(s.value),
               {_pg_meta("priority", "p.path_id")}, {_pg_meta("tags", "p.path_id")},
               {_pg_meta("worker_id", "p.path_id")}, {_pg_meta("started_at", "p.path_id")},
               0, nexus_blocker_count(p.path_id)
        FROM unnest(p_ids) AS t(id)
        JOIN file_paths p ON p.path_id = t.id
        JOIN file_metadata s ON s.path_id = t.id AND s.key = 'status'
        WHERE p.deleted_at IS NULL AND nexus_status_of(s.value) IS NOT NULL
        ORDER BY p.path_id
        ON CONFLICT (path_id) DO NOTHING;
        DELETE FROM work_items w USING unnest(p_ids) AS t(id), file_metadata s
        WHERE w.path_id = t.id AND s.path_id = t.id AND s.key = 'status'
          AND nexus_status_of(s.value) IS NULL AND s.value <> {PG_ROUTED};
        -- A worker_id/started_at row present is the value (NULL when it has the wrong type).
        UPDATE work_items w SET worker_id = nexus_text_of(m.value)
        FROM unnest(p_ids) AS t(id)
        JOIN file_metadata m ON m.path_id = t.id AND m.key = 'worker_id'
        WHERE w.path_id = t.id AND m.value <> {PG_ROUTED}
          AND w.worker_id IS DISTINCT FROM nexus_text_of(m.value);
        UPDATE work_items w SET started_at = nexus_ts_of(m.value)
        FROM unnest(p_ids) AS t(id)
        JOIN file_metadata m ON m.path_id = t.id AND m.key = 'started_at'
        WHERE w.path_id = t.id AND m.value <> {PG_ROUTED}
          AND w.started_at IS DISTINCT FROM nexus_ts_of(m.value);
        UPDATE file_metadata m SET value = {PG_ROUTED}
        FROM unnest(p_ids) AS t(id)
        WHERE m.path_id = t.id AND m.key IN ('status', 'worker_id', 'started_at')
          AND m.value <> {PG_ROUTED}
          AND EXISTS (SELECT 1 FROM work_items w WHERE w.path_id = t.id)
          AND EXISTS (SELECT 1 FROM file_paths p WHERE p.path_id = t.id
                      AND p.deleted_at IS NULL)
          AND ((m.key = 'status' AND nexus_status_of(m.value) IS NOT NULL)
               OR (m.key = 'worker_id' AND nexus_text_of(m.value) IS NOT NULL)
               OR (m.key = 'started_at' AND nexus_ts_of(m.value) IS NOT NULL));
    END $$""",
    """CREATE FUNCTION nexus_unroute(p_path_id text) RETURNS void
    LANGUAGE plpgsql VOLATILE AS $$
    BEGIN
        -- A path leaving the live set: its routed keys go back to file_metadata.
        INSERT INTO file_metadata (path_id, key, value, created_at, updated_at)
        SELECT w.path_id, k.key, k.value, now(), now()
        FROM work_items w CROSS JOIN LATERAL (VALUES
            ('status', to_jsonb(w.status)),
            ('worker_id', to_jsonb(w.worker_id)),
            ('started_at', to_jsonb(to_char(w.started_at AT TIME ZONE 'UTC',
                                            'YYYY-MM-DD"T"HH24:MI:SS.MS') || '+00:00'))
        ) AS k(key, value)
        WHERE w.path_id = p_path_id AND k.value IS NOT NULL AND k.value <> 'null'::jsonb
        ON CONFLICT (path_id, key) DO UPDATE
            SET value = excluded.value, updated_at = excluded.updated_at;
        DELETE FROM work_items WHERE path_id = p_path_id;
    END $$""",
    f"""CREATE FUNCTION nexus_refresh_projected(p_ids text[]) RETURNS void
    LANGUAGE plpgsql VOLATILE AS $$
    BEGIN
        UPDATE work_items w SET priority = {_pg_meta("priority", "w.path_id")},
                                tags = {_pg_meta("tags", "w.path_id")}
        FROM unnest(p_ids) AS t(id)
        WHERE w.path_id = t.id
          AND (w.priority, w.tags) IS DISTINCT FROM
              ({_pg_meta("priority", "w.path_id")}, {_pg_meta("tags", "w.path_id")});
    END $$""",
    """CREATE FUNCTION nexus_rebuild_edges(p_ids text[]) RETURNS void
    LANGUAGE plpgsql VOLATILE AS $$
    BEGIN
        DELETE FROM work_dependencies d USING unnest(p_ids) AS t(id) WHERE d.path_id = t.id;
        INSERT INTO work_dependencies (path_id, depends_on_ref, tenant_id)
        SELECT DISTINCT m.path_id, r.ref, p.tenant_id
        FROM unnest(p_ids) AS t(id)
        JOIN file_metadata m ON m.path_id = t.id AND m.key = 'depends_on'
        JOIN file_paths p ON p.path_id = m.path_id,
        LATERAL (
            SELECT m.value #>> '{}' AS ref WHERE jsonb_typeof(m.value) = 'string'
            UNION ALL
            SELECT e #>> '{}' FROM jsonb_array_elements(
                CASE WHEN jsonb_typeof(m.value) = 'array' THEN m.value ELSE '[]'::jsonb END) e
            WHERE jsonb_typeof(e) = 'string'
        ) r
        WHERE true;
        PERFORM nexus_lock_refs(ARRAY(SELECT d.depends_on_ref
                                      FROM unnest(p_ids) AS t(id)
                                      JOIN work_dependencies d ON d.path_id = t.id));
        UPDATE work_items w SET unresolved_count = nexus_blocker_count(w.path_id)
        FROM unnest(p_ids) AS t(id)
        WHERE w.path_id = t.id
          AND w.unresolved_count IS DISTINCT FROM nexus_blocker_count(w.path_id);
    END $$""",
    """CREATE FUNCTION nexus_resolve(p_refs text[], p_tenants text[]) RETURNS void
    LANGUAGE plpgsql VOLATILE AS $$
    BEGIN
        IF coalesce(array_length(p_refs, 1), 0) = 0 THEN
            RETURN;
        END IF;
        PERFORM nexus_lock_refs(p_refs);
        -- A new statement, so a fresh snapshot: it sees edges committed while we waited.
        -- Most items have no dependents: then no UPDATE (whose triggers would run for
        -- nothing) is issued at all.
        PERFORM 1 FROM unnest(p_refs) AS r(ref)
        JOIN work_dependencies d ON d.depends_on_ref = r.ref LIMIT 1;
        IF NOT FOUND THEN
            RETURN;
        END IF;
        UPDATE work_items w SET unresolved_count = nexus_blocker_count(w.path_id)
        WHERE w.path_id IN (SELECT d.path_id FROM unnest(p_refs) AS r(ref)
                            JOIN work_dependencies d ON d.depends_on_ref = r.ref
                            WHERE d.tenant_id = ANY (p_tenants))
          AND w.unresolved_count IS DISTINCT FROM nexus_blocker_count(w.path_id);
    END $$""",
    # ---- route and project: file_metadata -> work_items, work_dependencies
    """CREATE FUNCTION nexus_project_metadata() RETURNS trigger
    LANGUAGE plpgsql AS $$
    DECLARE
        routed text[];
        projected text[];
        edges text[];
    BEGIN
        -- Writes made by nexus's own rules (routing, a path's soft delete) are final.
        IF pg_trigger_depth() > 1 THEN
            RETURN NULL;
        END IF;
        IF TG_OP = 'DELETE' THEN
            SELECT array_agg(DISTINCT path_id) FILTER (WHERE key IN ('priority', 'tags')),
                   array_agg(DISTINCT path_id) FILTER (WHERE key = 'depends_on')
            INTO projected, edges FROM old_rows;
            -- Deleting a routed key's pointer (plain SQL) deletes the key.
            DELETE FROM work_items w USING old_rows o
            WHERE o.key = 'status' AND o.value = '{"$nexus":"work_items"}'::jsonb
              AND w.path_id = o.path_id;
            UPDATE work_items w SET worker_id = NULL FROM old_rows o
            WHERE o.key = 'worker_id' AND o.value = '{"$nexus":"work_items"}'::jsonb
              AND w.path_id = o.path_id;
            UPDATE work_items w SET started_at = NULL FROM old_rows o
            WHERE o.key = 'started_at' AND o.value = '{"$nexus":"work_items"}'::jsonb
              AND w.path_id = o.path_id;
        ELSE
            SELECT array_agg(DISTINCT path_id)
                       FILTER (WHERE key IN ('status', 'worker_id', 'started_at')
                               AND value <> '{"$nexus":"work_items"}'::jsonb),
                   array_agg(DISTINCT path_id) FILTER (WHERE key IN ('priority', 'tags')),
                   array_agg(DISTINCT path_id) FILTER (WHERE key = 'depends_on')
            INTO routed, projected, edges FROM new_rows;
            IF TG_OP = 'UPDATE' THEN
                -- Rows moved away from a key or path (plain SQL only) leave it too.
                SELECT array_cat(projected, array_agg(DISTINCT o.path_id)
                                 FILTER (WHERE o.key IN ('priority', 'tags'))),
                       array_cat(edges, array_agg(DISTINCT o.path_id)
                                 FILTER (WHERE o.key = 'depends_on'))
                INTO projected, edges
                FROM old_rows o
                WHERE NOT EXISTS (SELECT 1 FROM new_rows n
                                  WHERE n.path_id = o.path_id AND n.key = o.key);
            END IF;
        END IF;
        IF edges IS NOT NULL THEN
            PERFORM nexus_rebuild_edges(edges);
        END IF;
        IF projected IS NOT NULL AND TG_OP = 'INSERT' THEN
            -- New rows carry the values: no look-up (an enqueue's rows change nothing).
            UPDATE work_items w SET priority = nexus_priority_of(n.value)
            FROM new_rows n
            WHERE n.key = 'priority' AND w.path_id = n.path_id
              AND w.priority IS DISTINCT FROM nexus_priority_of(n.value);
            UPDATE work_items w SET tags = nexus_tags_of(n.value)
            FROM new_rows n
            WHERE n.key = 'tags' AND w.path_id = n.path_id
              AND w.tags IS DISTINCT FROM nexus_tags_of(n.value);
        ELSIF projected IS NOT NULL THEN
            PERFORM nexus_refresh_projected(projected);
        END IF;
        IF routed IS NOT NULL THEN
            PERFORM nexus_route(routed);
        END IF;
        RETURN NULL;
    END $$""",
    """CREATE FUNCTION nexus_project_path() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'DELETE' THEN
            DELETE FROM work_items WHERE path_id = OLD.path_id;
            -- No foreign key (its check would lock the path at every history row).
            DELETE FROM work_history WHERE path_id = OLD.path_id;
            PERFORM nexus_resolve(ARRAY[OLD.path_id, OLD.virtual_path], ARRAY[OLD.tenant_id]);
            RETURN NULL;
        END IF;
        IF NEW.tenant_id IS DISTINCT FROM OLD.tenant_id THEN
            UPDATE work_dependencies SET tenant_id = NEW.tenant_id WHERE path_id = NEW.path_id;
        END IF;
        IF NEW.deleted_at IS NOT NULL THEN
            PERFORM nexus_unroute(NEW.path_id);
        ELSE
            UPDATE work_items SET tenant_id = NEW.tenant_id, created_at = NEW.created_at
            WHERE path_id = NEW.path_id
              AND (tenant_id, created_at) IS DISTINCT FROM (NEW.tenant_id, NEW.created_at);
            IF OLD.deleted_at IS NOT NULL THEN
                PERFORM nexus_route(ARRAY[NEW.path_id]);
            END IF;
            UPDATE work_items SET unresolved_count = nexus_blocker_count(path_id)
            WHERE path_id = NEW.path_id;
        END IF;
        PERFORM nexus_resolve(ARRAY[NEW.path_id, OLD.virtual_path, NEW.virtual_path],
                              ARRAY[OLD.tenant_id, NEW.tenant_id]);
        RETURN NULL;
    END $$""",
    """CREATE FUNCTION nexus_delete_path_metadata() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        -- Deleting a key through path_metadata deletes it wherever it lives.
        DELETE FROM file_metadata WHERE path_id = OLD.path_id AND key = OLD.key;
        IF OLD.key = 'status' THEN
            DELETE FROM work_items WHERE path_id = OLD.path_id;
        ELSIF OLD.key = 'worker_id' THEN
            UPDATE work_items SET worker_id = NULL WHERE path_id = OLD.path_id;
        ELSIF OLD.key = 'started_at' THEN
            UPDATE work_items SET started_at = NULL WHERE path_id = OLD.path_id;
        ELSIF OLD.key IN ('priority', 'tags') THEN
            -- Made inside a trigger, the DELETE above is not projected by itself.
            PERFORM nexus_refresh_projected(ARRAY[OLD.path_id]);
        ELSIF OLD.key = 'depends_on' THEN
            PERFORM nexus_rebuild_edges(ARRAY[OLD.path_id]);
        END IF;
        RETURN OLD;
    END $$""",
    # ---- resolve: completed-ness -> dependents' counts
    """CREATE FUNCTION nexus_resolve_work() RETURNS trigger
    LANGUAGE plpgsql AS $$
    DECLARE
        refs text[];
        tenants text[];
    BEGIN
        -- Statement triggers fire for statements that changed no row: nothing to do then.
        IF TG_OP = 'DELETE' THEN
            PERFORM 1 FROM old_rows LIMIT 1;
        ELSE
            PERFORM 1 FROM new_rows LIMIT 1;
        END IF;
        IF NOT FOUND THEN
            RETURN NULL;
        END IF;
        IF TG_OP = 'INSERT' THEN
            SELECT array_agg(r.ref), array_agg(DISTINCT c.tenant_id) INTO refs, tenants
            FROM (SELECT path_id, tenant_id FROM new_rows WHERE status = 'completed') c
            JOIN file_paths p ON p.path_id = c.path_id,
            LATERAL (VALUES (c.path_id), (p.virtual_path)) AS r(ref);
        ELSIF TG_OP = 'DELETE' THEN
            SELECT array_agg(r.ref), array_agg(DISTINCT c.tenant_id) INTO refs, tenants
            FROM (SELECT path_id, tenant_id FROM old_rows WHERE status = 'completed') c
            LEFT JOIN file_paths p ON p.path_id = c.path_id,
            LATERAL (VALUES (c.path_id), (p.virtual_path)) AS r(ref);
        ELSE
            SELECT array_agg(r.ref), array_agg(DISTINCT c.tenant_id) INTO refs, tenants
            FROM (SELECT n.path_id, n.tenant_id FROM new_rows n
                  JOIN old_rows o ON o.path_id = n.path_id
                  WHERE (n.status = 'completed') IS DISTINCT FROM (o.status = 'completed')) c
            JOIN file_paths p ON p.path_id = c.path_id,
            LATERAL (VALUES (c.path_id), (p.virtual_path)) AS r(ref);
        END IF;
        IF refs IS NOT NULL THEN
            PERFORM nexus_resolve(refs, tenants);
        END IF;
        RETURN NULL;
    END $$""",
    # ---- promote: blocked with every blocker resolved -> ready
    """CREATE FUNCTION nexus_promote_work() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        -- A row trigger whose WHEN clause (evaluated without calling this function) admits
        -- only a blocked row whose last blocker just resolved: claims and completions pay
        -- nothing for it.
        UPDATE work_items SET status = 'ready'
        WHERE path_id = NEW.path_id AND status = 'blocked' AND unresolved_count = 0;
        IF FOUND THEN
            INSERT INTO work_history (path_id, tenant_id, event, at)
            VALUES (NEW.path_id, NEW.tenant_id, 'promoted', date_trunc('milliseconds', now()));
        END IF;
        RETURN NULL;
    END $$""",
    # ---- count: work_items -> work_counters
    f"""CREATE FUNCTION nexus_count_work() RETURNS trigger
    LANGUAGE plpgsql AS $$
    DECLARE
        -- One shard per backend: concurrent transactions update different counter rows.
        my_shard integer := pg_backend_pid() % {COUNTER_SHARDS};
    BEGIN
        -- Statement triggers fire for statements that changed no row: nothing to do then.
        IF TG_OP = 'DELETE' THEN
            PERFORM 1 FROM old_rows LIMIT 1;
        ELSE
            PERFORM 1 FROM new_rows LIMIT 1;
        END IF;
        IF NOT FOUND THEN
            RETURN NULL;
        END IF;
        IF TG_OP = 'INSERT' THEN
            {_pg_count([("new_rows", "1")])}
        ELSIF TG_OP = 'DELETE' THEN
            {_pg_count([("old_rows", "-1")])}
        ELSE
            {_pg_count([("old_rows", "-1"), ("new_rows", "1")])}
        END IF;
        RETURN NULL;
    END $$""",
    # ---- enqueued: a new work row is recorded
    """CREATE FUNCTION nexus_record_enqueued() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        -- Statement triggers fire for statements that changed no row: nothing to do then.
        IF TG_OP = 'DELETE' THEN
            PERFORM 1 FROM old_rows LIMIT 1;
        ELSE
            PERFORM 1 FROM new_rows LIMIT 1;
        END IF;
        IF NOT FOUND THEN
            RETURN NULL;
        END IF;
        INSERT INTO work_history (path_id, tenant_id, event, at, detail)
        SELECT path_id, tenant_id, 'enqueued', date_trunc('milliseconds', now()),
               jsonb_build_object('status', status)
        FROM new_rows ORDER BY path_id;
        RETURN NULL;
    END $$""",
]

PG_FUNCTION_SIGNATURES = [
    "nexus_delete_path_metadata()",
    "nexus_refresh_projected(text[])",
    "nexus_unroute(text)",
    "nexus_route(text[])",
    "nexus_record_enqueued()",
    "nexus_count_work()",
    "nexus_promote_work()",
    "nexus_resolve_work()",
    "nexus_project_path()",
    "nexus_project_metadata()",
    "nexus_resolve(text[], text[])",
    "nexus_rebuild_edges(text[])",
    "nexus_blocker_count(text)",
    "nexus_lock_refs(text[])",
    "nexus_ts_of(jsonb)",
    "nexus_parse_ts(text)",
    "nexus_text_of(jsonb)",
    "nexus_tags_of(jsonb)",
    "nexus_priority_of(jsonb)",
    "nexus_status_of(jsonb)",
]


def _pg_statement_triggers(
    name: str, table: str, function: str, events: tuple[str, ...]
) -> dict[str, str]:
    """One statement trigger per event (a trigger with transition tables has one event)."""
    referencing = {
        "INSERT": "REFERENCING NEW TABLE AS new_rows",
        "UPDATE": "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows",
        "DELETE": "REFERENCING OLD TABLE AS old_rows",
    }
    return {
        f"{name}_{event.lower()}": f"""CREATE TRIGGER {name}_{event.lower()}
        AFTER {event} ON {table} {referencing[event]}
        FOR EACH STATEMENT EXECUTE FUNCTION {function}()"""
        for event in events
    }


def _pg_triggers() -> dict[str, tuple[str, str]]:
    """trigger name -> (table, CREATE TRIGGER statement)."""
    triggers: dict[str, tuple[str, str]] = {}
    specs = [
        ("trg_nexus_project", "file_metadata", "nexus_project_metadata",
         ("INSERT", "UPDATE", "DELETE")),
        ("trg_nexus_resolve", "work_items", "nexus_resolve_work", ("INSERT", "UPDATE", "DELETE")),
        ("trg_nexus_count", "work_items", "nexus_count_work", ("INSERT", "UPDATE", "DELETE")),
        ("trg_nexus_enqueued", "work_items", "nexus_record_enqueued", ("INSERT",)),
    ]  # fmt: skip
    for name, table, function, events in specs:
        for trigger, statement in _pg_statement_triggers(name, table, function, events).items():
            triggers[trigger] = (table, statement)
    triggers["trg_nexus_project_path_update"] = (
        "file_paths",
        """CREATE TRIGGER trg_nexus_project_path_update
        AFTER UPDATE OF deleted_at, virtual_path, tenant_id, created_at ON file_paths
        FOR EACH ROW WHEN (OLD.deleted_at IS DISTINCT FROM NEW.deleted_at
            OR OLD.virtual_path IS DISTINCT FROM NEW.virtual_path
            OR OLD.tenant_id IS DISTINCT FROM NEW.tenant_id
            OR OLD.created_at IS DISTINCT FROM NEW.created_at)
        EXECUTE FUNCTION nexus_project_path()""",
    )
    triggers["trg_nexus_promote"] = (
        "work_items",
        """CREATE TRIGGER trg_nexus_promote AFTER UPDATE OF unresolved_count ON work_items
        FOR EACH ROW WHEN (NEW.unresolved_count = 0 AND OLD.unresolved_count > 0
                           AND NEW.status = 'blocked')
        EXECUTE FUNCTION nexus_promote_work()""",
    )
    triggers["trg_nexus_path_metadata_delete"] = (
        "path_metadata",
        """CREATE TRIGGER trg_nexus_path_metadata_delete INSTEAD OF DELETE ON path_metadata
        FOR EACH ROW EXECUTE FUNCTION nexus_delete_path_metadata()""",
    )
    triggers["trg_nexus_project_path_delete"] = (
        "file_paths",
        """CREATE TRIGGER trg_nexus_project_path_delete AFTER DELETE ON file_paths
        FOR EACH ROW EXECUTE FUNCTION nexus_project_path()""",
    )
    return triggers


# ============================================================================================
# Objects of revision 0002 replaced here
# ============================================================================================

OLD_SQLITE_TRIGGERS = [
    "trg_file_metadata_status_insert",
    "trg_file_metadata_status_update",
    "trg_file_metadata_status_delete",
    "trg_file_metadata_deps_insert",
    "trg_file_metadata_deps_update",
    "trg_file_metadata_deps_delete",
    "trg_file_metadata_work_move",
    "trg_file_paths_work_update",
    "trg_file_paths_work_delete",
    *[
        f"trg_file_metadata_{key}_{event}"
        for key in ("priority", "tags", "worker_id", "started_at", "queue")
        for event in ("insert", "update", "delete")
    ],
]
OLD_PG_TRIGGERS = {
    "trg_file_metadata_work_insert": "file_metadata",
    "trg_file_metadata_work_update": "file_metadata",
    "trg_file_metadata_work_delete": "file_metadata",
    "trg_file_paths_work_update": "file_paths",
    "trg_file_paths_work_delete": "file_paths",
}
OLD_PG_FUNCTIONS = [
    "nexus_file_paths_trigger()",
    "nexus_file_metadata_trigger()",
    "nexus_metadata_changed(text, text, jsonb, jsonb)",
    "nexus_rebuild_dependencies(text)",
    "nexus_refresh_dependents(text[])",
    "nexus_refresh_work_key(text, text)",
    "nexus_rebuild_work_item(text)",
    "nexus_lock_refs(text[])",
    "nexus_unresolved_count(text)",
]
# nexus_parse_ts of 0002 stays: the timestamp rule is unchanged, so it is not written twice.
NEW_COLUMNS = ("lease_seconds", "last_error", "finished_at")


def _revision_0002() -> ModuleType:
    """Revision 0002 itself, whose trigger definitions the downgrade puts back."""
    path = Path(__file__).with_name("0002_work_items_projection.py")
    spec = importlib.util.spec_from_file_location("nexus_revision_0002", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _drop_old_objects(pg: bool) -> None:
    if pg:
        for name, table in OLD_PG_TRIGGERS.items():
            op.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
        for signature in OLD_PG_FUNCTIONS:
            op.execute(f"DROP FUNCTION IF EXISTS {signature}")
    else:
        for name in OLD_SQLITE_TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
        op.drop_table("nexus_projection_bypass")


def upgrade() -> None:
    pg = op.get_context().dialect.name == "postgresql"
    ts: sa.types.TypeEngine[object] = postgresql.TIMESTAMP(timezone=True) if pg else sa.Text()
    _drop_old_objects(pg)
    op.add_column("work_items", sa.Column("lease_seconds", sa.Float(), nullable=True))
    op.add_column("work_items", sa.Column("last_error", sa.Text(), nullable=True))
    op.add_column("work_items", sa.Column("finished_at", ts, nullable=True))
    op.create_table(
        "work_counters",
        sa.Column("tenant_id", sa.String(255), nullable=False),
        sa.Column("counter", sa.String(16), nullable=False),
        sa.Column("shard", sa.Integer(), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "counter", "shard", name="pk_work_counters"),
    )
    # Queue state moves from the 'queue' metadata object into typed columns.
    if pg:
        op.execute(
            r"""UPDATE work_items w SET
                lease_seconds = CASE WHEN jsonb_typeof(q.value -> 'lease_seconds') = 'number'
                                     THEN (q.value ->> 'lease_seconds')::double precision END,
                last_error = q.value ->> 'last_error'
            FROM file_metadata q
            WHERE q.path_id = w.path_id AND q.key = 'queue' AND jsonb_typeof(q.value) = 'object'"""
        )
        op.execute(
            "UPDATE work_items SET finished_at = now() WHERE status IN ('completed', 'failed')"
        )
    else:
        op.execute(
            """UPDATE work_items SET
                lease_seconds = (SELECT CASE WHEN json_type(q.value, '$.lease_seconds')
                                                  IN ('integer', 'real')
                                             THEN json_extract(q.value, '$.lease_seconds') END
                                 FROM file_metadata q
                                 WHERE q.path_id = work_items.path_id AND q.key = 'queue'
                                   AND json_type(q.value) = 'object'),
                last_error = (SELECT json_extract(q.value, '$.last_error')
                              FROM file_metadata q
                              WHERE q.path_id = work_items.path_id AND q.key = 'queue'
                                AND json_type(q.value) = 'object')"""
        )
        op.execute(
            f"UPDATE work_items SET finished_at = {SQLITE_NOW}"
            " WHERE status IN ('completed', 'failed')"
        )
    op.execute("DELETE FROM file_metadata WHERE key = 'queue'")
    # Counters start from the rows as they are (shard 0).
    op.execute(
        f"""INSERT INTO work_counters (tenant_id, counter, shard, n)
        SELECT t, c, 0, count(*) FROM (
            SELECT w.tenant_id AS t, w.status AS c FROM work_items w
            UNION ALL
            SELECT w.tenant_id, {_class_of("w")} FROM work_items w
        ) rows WHERE c IS NOT NULL GROUP BY t, c"""
    )
    names = " UNION ALL ".join(f"SELECT '{name}' AS name" for name in COUNTERS)
    op.execute(
        f"""INSERT INTO work_counters (tenant_id, counter, shard, n)
        SELECT t.tenant_id, c.name, 0, 0
        FROM (SELECT DISTINCT tenant_id FROM work_items) t CROSS JOIN ({names}) c
        WHERE true
        ON CONFLICT (tenant_id, counter, shard) DO NOTHING"""
    )
    # The stats count deferred ready items through this index instead of a scan, and no
    # longer need the covering counts index every status change had to maintain.
    op.drop_index("ix_work_items_counts", table_name="work_items")
    op.execute(
        """CREATE INDEX ix_work_items_deferred ON work_items (tenant_id, run_after)
        WHERE status = 'ready' AND unresolved_count = 0 AND run_after IS NOT NULL"""
    )
    # Fewer index pages per transition: the rescue scans the (few) in-progress rows through
    # the in-progress index, and the history's analytics views scan anyway.
    op.drop_index("ix_work_items_lease", table_name="work_items")
    op.drop_index("ix_work_history_event_at", table_name="work_history")
    if pg:
        # Every history row's foreign-key check took a KEY SHARE lock on its path (a write
        # to the path's row on every claim and completion); the path rule deletes a hard-
        # deleted path's history instead. (SQLite checks without locking: it keeps the key.)
        op.drop_constraint("work_history_path_id_fkey", "work_history", type_="foreignkey")
    # The routed keys of existing work rows are in work_items already (0002 projected them):
    # their metadata rows become pointers.
    op.execute(
        f"""UPDATE file_metadata SET value = {PG_ROUTED if pg else SQLITE_ROUTED}
        WHERE key IN ('status', 'worker_id', 'started_at')
          AND EXISTS (SELECT 1 FROM work_items w WHERE w.path_id = file_metadata.path_id
                      AND (file_metadata.key = 'status'
                           OR (file_metadata.key = 'worker_id' AND w.worker_id IS NOT NULL)
                           OR (file_metadata.key = 'started_at'
                               AND w.started_at IS NOT NULL)))"""
    )
    op.execute(_path_metadata_view(pg))
    if pg:
        for statement in PG_TYPED_FUNCTIONS + PG_RULE_FUNCTIONS:
            op.execute(statement)
        for _table, statement in _pg_triggers().values():
            op.execute(statement)
    else:
        for name, body in _sqlite_triggers().items():
            op.execute(f"CREATE TRIGGER {name} {body}")


def downgrade() -> None:
    pg = op.get_context().dialect.name == "postgresql"
    old = _revision_0002()
    if pg:
        for name, (table, _statement) in _pg_triggers().items():
            op.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
        for signature in PG_FUNCTION_SIGNATURES:
            op.execute(f"DROP FUNCTION IF EXISTS {signature}")
    else:
        for name in _sqlite_triggers():
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    op.execute("DROP VIEW IF EXISTS path_metadata")
    # The routed keys go back into file_metadata, where 0002 keeps them.
    if pg:
        op.execute(
            """INSERT INTO file_metadata (path_id, key, value, created_at, updated_at)
            SELECT w.path_id, k.key, k.value, now(), now()
            FROM work_items w CROSS JOIN LATERAL (VALUES
                ('status', to_jsonb(w.status)),
                ('worker_id', to_jsonb(w.worker_id)),
                ('started_at', to_jsonb(to_char(w.started_at AT TIME ZONE 'UTC',
                                                'YYYY-MM-DD"T"HH24:MI:SS.MS') || '+00:00'))
            ) AS k(key, value)
            WHERE k.value IS NOT NULL AND k.value <> 'null'::jsonb
            ON CONFLICT (path_id, key) DO UPDATE SET value = excluded.value"""
        )
    else:
        for key in ROUTED_KEYS:
            op.execute(
                f"""INSERT OR REPLACE INTO file_metadata (path_id, key, value, created_at,
                                                         updated_at)
                SELECT w.path_id, '{key}', {_sqlite_routed_json(key, "w")}, {SQLITE_NOW},
                       {SQLITE_NOW}
                FROM work_items w WHERE w.{key} IS NOT NULL"""
            )
    routed = PG_ROUTED if pg else SQLITE_ROUTED
    op.execute(f"DELETE FROM file_metadata WHERE value = {routed}")
    op.drop_index("ix_work_items_deferred", table_name="work_items")
    op.execute(
        "CREATE INDEX ix_work_items_lease ON work_items (lease_expires_at)"
        " WHERE status = 'in_progress'"
    )
    op.create_index("ix_work_history_event_at", "work_history", ["event", "at"])
    # Queue state goes back into the 'queue' metadata object, before 0002's triggers return
    # (they would project the object onto the very columns it is made from).
    if pg:
        op.execute(
            """INSERT INTO file_metadata (path_id, key, value, created_at, updated_at)
            SELECT w.path_id, 'queue', jsonb_strip_nulls(jsonb_build_object(
                'attempts', w.attempts,
                'max_attempts', coalesce(w.max_attempts, 3),
                'run_after', to_char(w.run_after AT TIME ZONE 'UTC',
                                     'YYYY-MM-DD"T"HH24:MI:SS.MS') || '+00:00',
                'lease_token', w.lease_token,
                'lease_expires_at', to_char(w.lease_expires_at AT TIME ZONE 'UTC',
                                            'YYYY-MM-DD"T"HH24:MI:SS.MS') || '+00:00',
                'lease_seconds', w.lease_seconds,
                'last_error', w.last_error)), now(), now()
            FROM work_items w
            ON CONFLICT (path_id, key) DO UPDATE SET value = excluded.value"""
        )
    else:
        op.execute(
            f"""INSERT INTO file_metadata (path_id, key, value, created_at, updated_at)
            SELECT w.path_id, 'queue', json_patch('{{}}', json_object(
                'attempts', w.attempts,
                'max_attempts', coalesce(w.max_attempts, 3),
                'run_after', strftime('%Y-%m-%dT%H:%M:%f', w.run_after) || '+00:00',
                'lease_token', w.lease_token,
                'lease_expires_at', strftime('%Y-%m-%dT%H:%M:%f', w.lease_expires_at)
                                    || '+00:00',
                'lease_seconds', w.lease_seconds,
                'last_error', w.last_error)), {SQLITE_NOW}, {SQLITE_NOW}
            FROM work_items w WHERE true
            ON CONFLICT (path_id, key) DO UPDATE SET value = excluded.value"""
        )
    op.execute(
        "CREATE INDEX ix_work_items_counts ON work_items"
        " (tenant_id, status, unresolved_count, run_after)"
    )
    op.drop_table("work_counters")
    if pg:
        op.create_foreign_key(
            "work_history_path_id_fkey",
            "work_history",
            "file_paths",
            ["path_id"],
            ["path_id"],
            ondelete="CASCADE",
        )
    for column in reversed(NEW_COLUMNS):
        op.drop_column("work_items", column)
    if pg:
        for statement in old.PG_FUNCTIONS + old.PG_TRIGGERS:
            op.execute(statement)
    else:
        op.create_table("nexus_projection_bypass", sa.Column("id", sa.Integer(), primary_key=True))
        for name, body in old._sqlite_triggers().items():
            op.execute(f"CREATE TRIGGER {name} {body}")
