"""event counters: maintained counts of history events, run-time buckets, two indexes

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01

Metrics and the dashboard read these instead of scanning ``work_history``:

* ``work_event_counts`` (tenant, counter, shard, n, total): a row per counter, kept by a
  trigger on every ``work_history`` insert (SQLite: a row trigger; PostgreSQL: a statement
  trigger over the transition table, sharded by backend like ``work_counters`` so concurrent
  claimers do not queue on one row). Counters:

  ``<event>``            every history event (claimed, completed, retried, failed, ...);
  ``dead_letter``        items that ran out of attempts (``failed``, or ``reclaimed`` to failed);
  ``run_seconds``        completions carrying ``run_seconds`` (n) and their sum (total);
  ``run_le:<bound>``     those completions by run-time bucket (not cumulative).

* ``work_event_hourly`` (tenant, hour, event, shard, n): completed / failed / retried per UTC
  hour (the dashboard's sparkline), kept by a second trigger on the same inserts.

  Both start from the history as it is (one scan at upgrade) and only grow: pruning the
  history does not lower them (Prometheus counters are monotonic).
* ``ix_work_items_ready_since``: the oldest ready item is the first entry of this index
  (ready since ``coalesce(run_after, created_at)``).
* ``ix_work_items_failed``: failed items, most recently finished first, for keyset pages.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

COUNTER_SHARDS = 64
# Upper bounds (seconds) of the claim-to-complete buckets; frozen with this revision.
RUN_BUCKETS = ("0.01", "0.05", "0.1", "0.5", "1", "5", "10", "30", "60", "300", "1800", "3600")
HOURLY_EVENTS = "('completed', 'failed', 'retried')"


def _bucket(run: str) -> str:
    cases = " ".join(f"WHEN {run} <= {bound} THEN '{bound}'" for bound in RUN_BUCKETS)
    return f"'run_le:' || CASE {cases} ELSE '+Inf' END"


def _sqlite_detail(row: str, key: str) -> str:
    """A key of the row's detail; NULL for rows without (or with malformed) detail."""
    return f"CASE WHEN json_valid({row}.detail) THEN json_extract({row}.detail, '$.{key}') END"


def _sqlite_run(row: str) -> str:
    return (
        f"CASE WHEN json_valid({row}.detail) AND json_type({row}.detail, '$.run_seconds')"
        f" IN ('integer', 'real') THEN json_extract({row}.detail, '$.run_seconds') END"
    )


def _sqlite_counters(row: str, source: str = "") -> str:
    """(tenant, counter, v) of the history row ``row`` (read ``source``, e.g. ``FROM
    work_history h``; nothing for a trigger's NEW): v is what a counter's total adds."""
    run = _sqlite_run(row)
    return f"""
        SELECT {row}.tenant_id AS tenant_id, {row}.event AS counter, NULL AS v {source}
        UNION ALL SELECT {row}.tenant_id, 'dead_letter', NULL {source}
            WHERE {row}.event = 'failed'
               OR ({row}.event = 'reclaimed' AND {_sqlite_detail(row, "to")} = 'failed')
        UNION ALL SELECT {row}.tenant_id, 'run_seconds', {run} {source}
            WHERE {row}.event = 'completed' AND {run} IS NOT NULL
        UNION ALL SELECT {row}.tenant_id, {_bucket(run)}, NULL {source}
            WHERE {row}.event = 'completed' AND {run} IS NOT NULL"""


def _pg_counters(rows: str) -> str:
    """(tenant, counter, v) of every row of ``rows`` (a table or transition table)."""
    run = "(r.detail ->> 'run_seconds')::double precision"
    has_run = "r.event = 'completed' AND jsonb_typeof(r.detail -> 'run_seconds') = 'number'"
    return f"""
        SELECT r.tenant_id, r.event AS counter, NULL::double precision AS v FROM {rows} r
        UNION ALL SELECT r.tenant_id, 'dead_letter', NULL FROM {rows} r
            WHERE r.event = 'failed' OR (r.event = 'reclaimed' AND r.detail ->> 'to' = 'failed')
        UNION ALL SELECT r.tenant_id, 'run_seconds', {run} FROM {rows} r WHERE {has_run}
        UNION ALL SELECT r.tenant_id, {_bucket(run)}, NULL FROM {rows} r WHERE {has_run}"""


SQLITE_TRIGGER = f"""CREATE TRIGGER trg_nexus_event_counts AFTER INSERT ON work_history
BEGIN
    -- Missing rows first (never a conflict: see 0005 on conflict handling in triggers).
    INSERT INTO work_event_counts (tenant_id, counter, shard, n, total)
    SELECT c.tenant_id, c.counter, 0, 0, 0 FROM ({_sqlite_counters("NEW")}) c
    WHERE NOT EXISTS (SELECT 1 FROM work_event_counts x WHERE x.tenant_id = c.tenant_id
                      AND x.counter = c.counter AND x.shard = 0);
    UPDATE work_event_counts
    SET n = n + 1, total = total + CASE WHEN counter = 'run_seconds' THEN {_sqlite_run("NEW")}
                                        ELSE 0 END
    WHERE tenant_id = NEW.tenant_id AND shard = 0
      AND counter IN (SELECT c.counter FROM ({_sqlite_counters("NEW")}) c);
END"""

PG_HOURLY = f"""
    INSERT INTO work_event_hourly (tenant_id, hour, event, shard, n)
    SELECT r.tenant_id, date_trunc('hour', r.at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC',
           r.event, my_shard, count(*)
    FROM new_rows r WHERE r.event IN {HOURLY_EVENTS}
    GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
    ON CONFLICT (tenant_id, hour, event, shard) DO UPDATE
        SET n = work_event_hourly.n + excluded.n;"""

PG_FUNCTION = f"""CREATE FUNCTION nexus_count_events() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    my_shard integer := pg_backend_pid() % {COUNTER_SHARDS};
BEGIN
    INSERT INTO work_event_counts (tenant_id, counter, shard, n, total)
    SELECT d.tenant_id, d.counter, my_shard, count(*), coalesce(sum(d.v), 0)
    FROM ({_pg_counters("new_rows")}) d
    GROUP BY d.tenant_id, d.counter
    ORDER BY d.tenant_id, d.counter
    ON CONFLICT (tenant_id, counter, shard) DO UPDATE
        SET n = work_event_counts.n + excluded.n, total = work_event_counts.total + excluded.total;
    {PG_HOURLY}
    RETURN NULL;
END $$"""

PG_TRIGGER = """CREATE TRIGGER trg_nexus_event_counts AFTER INSERT ON work_history
REFERENCING NEW TABLE AS new_rows
FOR EACH STATEMENT EXECUTE FUNCTION nexus_count_events()"""

SQLITE_HOUR = "substr(NEW.at, 1, 13) || ':00:00.000'"
SQLITE_HOURLY_TRIGGER = f"""CREATE TRIGGER trg_nexus_event_hourly AFTER INSERT ON work_history
WHEN NEW.event IN {HOURLY_EVENTS}
BEGIN
    INSERT INTO work_event_hourly (tenant_id, hour, event, shard, n)
    SELECT NEW.tenant_id, {SQLITE_HOUR}, NEW.event, 0, 0
    WHERE NOT EXISTS (SELECT 1 FROM work_event_hourly x WHERE x.tenant_id = NEW.tenant_id
                      AND x.hour = {SQLITE_HOUR} AND x.event = NEW.event AND x.shard = 0);
    UPDATE work_event_hourly SET n = n + 1
    WHERE tenant_id = NEW.tenant_id AND hour = {SQLITE_HOUR} AND event = NEW.event
      AND shard = 0;
END"""

READY_SINCE_INDEX = """CREATE INDEX ix_work_items_ready_since
ON work_items (tenant_id, coalesce(run_after, created_at))
WHERE status = 'ready' AND unresolved_count = 0"""

FAILED_INDEX = """CREATE INDEX ix_work_items_failed
ON work_items (tenant_id, coalesce(finished_at, created_at) DESC, path_id DESC)
WHERE status = 'failed'"""


def upgrade() -> None:
    pg = op.get_context().dialect.name == "postgresql"
    op.create_table(
        "work_event_counts",
        sa.Column("tenant_id", sa.String(255), nullable=False),
        sa.Column("counter", sa.String(64), nullable=False),
        sa.Column("shard", sa.Integer(), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.Column("total", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "counter", "shard", name="pk_work_event_counts"),
    )
    ts: sa.types.TypeEngine[object] = postgresql.TIMESTAMP(timezone=True) if pg else sa.Text()
    op.create_table(
        "work_event_hourly",
        sa.Column("tenant_id", sa.String(255), nullable=False),
        sa.Column("hour", ts, nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("shard", sa.Integer(), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "hour", "event", "shard", name="pk_work_event_hourly"),
    )
    # The counters start from the history as it is (shard 0).
    source = _pg_counters("work_history") if pg else _sqlite_counters("h", "FROM work_history h")
    op.execute(
        f"""INSERT INTO work_event_counts (tenant_id, counter, shard, n, total)
        SELECT d.tenant_id, d.counter, 0, count(*), coalesce(sum(d.v), 0)
        FROM ({source}) d GROUP BY d.tenant_id, d.counter"""
    )
    hour = (
        "date_trunc('hour', h.at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"
        if pg
        else "substr(h.at, 1, 13) || ':00:00.000'"
    )
    op.execute(
        f"""INSERT INTO work_event_hourly (tenant_id, hour, event, shard, n)
        SELECT h.tenant_id, {hour}, h.event, 0, count(*) FROM work_history h
        WHERE h.event IN {HOURLY_EVENTS} GROUP BY 1, 2, 3"""
    )
    op.execute(READY_SINCE_INDEX)
    op.execute(FAILED_INDEX)
    if pg:
        op.execute(PG_FUNCTION)
        op.execute(PG_TRIGGER)
    else:
        op.execute(SQLITE_TRIGGER)
        op.execute(SQLITE_HOURLY_TRIGGER)


def downgrade() -> None:
    pg = op.get_context().dialect.name == "postgresql"
    if pg:
        op.execute("DROP TRIGGER trg_nexus_event_counts ON work_history")
        op.execute("DROP FUNCTION nexus_count_events()")
    else:
        op.execute("DROP TRIGGER trg_nexus_event_hourly")
        op.execute("DROP TRIGGER trg_nexus_event_counts")
    op.drop_index("ix_work_items_failed", table_name="work_items")
    op.drop_index("ix_work_items_ready_since", table_name="work_items")
    op.drop_table("work_event_hourly")
    op.drop_table("work_event_counts")
