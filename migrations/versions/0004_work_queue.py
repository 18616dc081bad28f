"""work queue: history, idempotency keys, analytics views, ready notifications

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24

* ``work_history``: one row per transition (enqueued, claimed, heartbeat, completed, failed,
  retried, reclaimed, released, cancelled, promoted), written in the transaction that makes it.
* ``work_idempotency``: a unique (tenant_id, idempotency_key) so concurrent enqueues with the
  same key create one item.
* Analytics views over the history: ``work_throughput_hourly``, ``work_failures_by_error``,
  ``work_timing_hourly``.
* PostgreSQL: a trigger on ``work_items`` sends ``NOTIFY nexus_work_ready`` when an item
  becomes ready, for ``wait_for_ready_work``.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

NOTIFY_CHANNEL = "nexus_work_ready"


def _views(dialect: str) -> dict[str, str]:
    if dialect == "postgresql":
        hour = "date_trunc('hour', h.at)"
        error = "h.detail ->> 'error'"
        wait = "(h.detail ->> 'wait_seconds')::double precision"
        run = "(h.detail ->> 'run_seconds')::double precision"
    else:
        hour = "strftime('%Y-%m-%d %H:00:00', h.at)"
        error = "json_extract(h.detail, '$.error')"
        wait = "json_extract(h.detail, '$.wait_seconds')"
        run = "json_extract(h.detail, '$.run_seconds')"
    return {
        "work_throughput_hourly": f"""
            SELECT {hour} AS hour,
                   sum(CASE WHEN h.event = 'completed' THEN 1 ELSE 0 END) AS completed,
                   sum(CASE WHEN h.event = 'failed' THEN 1 ELSE 0 END) AS failed,
                   sum(CASE WHEN h.event = 'retried' THEN 1 ELSE 0 END) AS retried
            FROM work_history h
            WHERE h.event IN ('completed', 'failed', 'retried')
            GROUP BY {hour}
            ORDER BY 1""",
        "work_failures_by_error": f"""
            SELECT {error} AS error, count(*) AS failures, max(h.at) AS last_at
            FROM work_history h
            WHERE h.event IN ('failed', 'retried')
            GROUP BY {error}
            ORDER BY 2 DESC, 1""",
        "work_timing_hourly": f"""
            SELECT {hour} AS hour,
                   sum(CASE WHEN h.event = 'claimed' THEN 1 ELSE 0 END) AS claims,
                   avg(CASE WHEN h.event = 'claimed' THEN {wait} END) AS mean_wait_seconds,
                   sum(CASE WHEN h.event = 'completed' THEN 1 ELSE 0 END) AS completions,
                   avg(CASE WHEN h.event = 'completed' THEN {run} END) AS mean_run_seconds
            FROM work_history h
            WHERE h.event IN ('claimed', 'completed')
            GROUP BY {hour}
            ORDER BY 1""",
    }


def upgrade() -> None:
    dialect = op.get_context().dialect.name
    pg = dialect == "postgresql"
    ts: sa.types.TypeEngine[object] = postgresql.TIMESTAMP(timezone=True) if pg else sa.Text()
    detail: sa.types.TypeEngine[object] = postgresql.JSONB() if pg else sa.Text()
    op.create_table(
        "work_history",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column(
            "path_id",
            sa.String(36),
            sa.ForeignKey("file_paths.path_id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("tenant_id", sa.String(255), nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("at", ts, nullable=False),
        sa.Column("worker_id", sa.Text(), nullable=True),
        sa.Column("detail", detail, nullable=True),
    )
    op.create_index("ix_work_history_path", "work_history", ["path_id", "id"])
    op.create_index("ix_work_history_event_at", "work_history", ["event", "at"])
    op.create_table(
        "work_idempotency",
        sa.Column("tenant_id", sa.String(255), nullable=False),
        sa.Column("idempotency_key", sa.String(255), nullable=False),
        sa.Column(
            "path_id",
            sa.String(36),
            sa.ForeignKey("file_paths.path_id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("tenant_id", "idempotency_key", name="pk_work_idempotency"),
    )
    for name, body in _views(dialect).items():
        op.execute(f"CREATE VIEW {name} AS {body}")
    if pg:
        op.execute(
            f"""CREATE FUNCTION nexus_notify_ready() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                PERFORM pg_notify('{NOTIFY_CHANNEL}', '');
                RETURN NULL;
            END $$"""
        )
        # Identical notifications in one transaction are folded into one by PostgreSQL.
        op.execute(
            """CREATE TRIGGER trg_work_items_notify_insert AFTER INSERT ON work_items
            FOR EACH ROW WHEN (NEW.status = 'ready' AND NEW.unresolved_count = 0)
            EXECUTE FUNCTION nexus_notify_ready()"""
        )
        op.execute(
            """CREATE TRIGGER trg_work_items_notify_update
            AFTER UPDATE OF status, unresolved_count, run_after ON work_items
            FOR EACH ROW WHEN (NEW.status = 'ready' AND NEW.unresolved_count = 0
                AND (OLD.status <> 'ready' OR OLD.unresolved_count <> 0
                     OR OLD.run_after IS DISTINCT FROM NEW.run_after))
            EXECUTE FUNCTION nexus_notify_ready()"""
        )


def downgrade() -> None:
    dialect = op.get_context().dialect.name
    if dialect == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS trg_work_items_notify_update ON work_items")
        op.execute("DROP TRIGGER IF EXISTS trg_work_items_notify_insert ON work_items")
        op.execute("DROP FUNCTION IF EXISTS nexus_notify_ready()")
    for name in reversed(list(_views(dialect))):
        op.execute(f"DROP VIEW IF EXISTS {name}")
    op.drop_table("work_idempotency")
    op.drop_index("ix_work_history_event_at", table_name="work_history")
    op.drop_index("ix_work_history_path", table_name="work_history")
    op.drop_table("work_history")
