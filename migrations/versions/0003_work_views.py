"""the five work views

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24

Each view reads the ``work_items`` projection through one of its partial indexes and joins
``file_paths`` by primary key for the file columns, so ``LIMIT n`` costs O(n) whatever the
size of the database. Ordering, identical on both databases: priority ascending with NULL
last, then created_at, then path_id (blocked: blocker_count descending first; in progress:
newest started_at first, missing started_at last).
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

COLUMNS = """w.path_id, p.virtual_path, w.tenant_id, w.status, w.priority, w.created_at,
    p.updated_at, p.size_bytes, p.content_hash"""


def _from(dialect: str, index: str) -> str:
    # SQLite without ANALYZE statistics may prefer an index with more equality columns and
    # sort every match; each view names the partial index that yields its order.
    hint = f" INDEXED BY {index}" if dialect == "sqlite" else ""
    return f"FROM work_items w{hint} JOIN file_paths p ON p.path_id = w.path_id"


def _views(dialect: str) -> dict[str, str]:
    if dialect == "postgresql":
        by_priority = "w.priority ASC NULLS LAST, w.created_at, w.path_id"
        now = "now()"
        newest_start = "w.started_at DESC NULLS LAST, w.path_id"
    else:
        by_priority = "w.priority IS NULL, w.priority, w.created_at, w.path_id"
        now = "strftime('%Y-%m-%d %H:%M:%f', 'now')"
        # SQLite sorts NULL lowest, so DESC already puts missing started_at last.
        newest_start = "w.started_at DESC, w.path_id"
    return {
        "ready_work_items": f"""
            SELECT {COLUMNS} {_from(dialect, "ix_work_items_ready")}
            WHERE w.status = 'ready' AND w.unresolved_count = 0 AND p.deleted_at IS NULL
              AND (w.run_after IS NULL OR w.run_after <= {now})
            ORDER BY {by_priority}""",
        "pending_work_items": f"""
            SELECT {COLUMNS} {_from(dialect, "ix_work_items_pending")}
            WHERE w.status = 'pending' AND p.deleted_at IS NULL
            ORDER BY {by_priority}""",
        "blocked_work_items": f"""
            SELECT {COLUMNS}, w.unresolved_count AS blocker_count
            {_from(dialect, "ix_work_items_blocked")}
            WHERE w.unresolved_count > 0 AND w.status IN ('ready', 'pending', 'blocked')
              AND p.deleted_at IS NULL
            ORDER BY w.unresolved_count DESC, {by_priority}""",
        "work_by_priority": f"""
            SELECT {COLUMNS}, w.tags {_from(dialect, "ix_work_items_priority")}
            WHERE p.deleted_at IS NULL
            ORDER BY {by_priority}""",
        "in_progress_work": f"""
            SELECT {COLUMNS}, w.worker_id, w.started_at
            {_from(dialect, "ix_work_items_in_progress")}
            WHERE w.status = 'in_progress' AND p.deleted_at IS NULL
            ORDER BY {newest_start}""",
    }


def upgrade() -> None:
    for name, body in _views(op.get_context().dialect.name).items():
        op.execute(f"CREATE VIEW {name} AS {body}")


def downgrade() -> None:
    for name in reversed(list(_views(op.get_context().dialect.name))):
        op.execute(f"DROP VIEW IF EXISTS {name}")
