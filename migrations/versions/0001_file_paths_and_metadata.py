"""file_paths and file_metadata

Revision ID: 0001
Revises:
Create Date: 2026-11-24

The two source tables. ``file_metadata`` has one row per (path_id, key) and values are JSON:
``jsonb`` on PostgreSQL, text checked by ``json_valid`` on SQLite.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# A uuid4-shaped default so rows inserted from the sqlite3 shell get a path_id too.
SQLITE_UUID4 = (
    "lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' || "
    "substr(hex(randomblob(2)), 2) || '-' || substr('89ab', 1 + (abs(random()) % 4), 1) || "
    "substr(hex(randomblob(2)), 2) || '-' || hex(randomblob(6)))"
)
SQLITE_NOW = "strftime('%Y-%m-%d %H:%M:%f', 'now')"


def upgrade() -> None:
    dialect = op.get_context().dialect.name
    if dialect == "postgresql":
        ts: sa.types.TypeEngine[object] = postgresql.TIMESTAMP(timezone=True)
        now = sa.text("now()")
        uuid_default = sa.text("gen_random_uuid()::text")
        json_type: sa.types.TypeEngine[object] = postgresql.JSONB()
    else:
        ts = sa.Text()
        now = sa.text(f"({SQLITE_NOW})")
        uuid_default = sa.text(f"({SQLITE_UUID4})")
        json_type = sa.Text()

    op.create_table(
        "file_paths",
        sa.Column("path_id", sa.String(36), primary_key=True, server_default=uuid_default),
        sa.Column("tenant_id", sa.String(255), nullable=False, server_default="default"),
        sa.Column("virtual_path", sa.Text(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("content_hash", sa.String(128), nullable=True),
        sa.Column("file_type", sa.String(255), nullable=True),
        sa.Column("created_at", ts, nullable=False, server_default=now),
        sa.Column("updated_at", ts, nullable=False, server_default=now),
        sa.Column("deleted_at", ts, nullable=True),
        sa.UniqueConstraint("tenant_id", "virtual_path", name="uq_file_paths_tenant_path"),
    )
    op.create_index("ix_file_paths_content_hash", "file_paths", ["content_hash"])

    checks = (
        []
        if dialect == "postgresql"
        else [sa.CheckConstraint("json_valid(value)", name="ck_file_metadata_value_is_json")]
    )
    op.create_table(
        "file_metadata",
        sa.Column(
            "path_id",
            sa.String(36),
            sa.ForeignKey("file_paths.path_id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("value", json_type, nullable=False),
        sa.Column("created_at", ts, nullable=False, server_default=now),
        sa.Column("updated_at", ts, nullable=False, server_default=now),
        sa.PrimaryKeyConstraint("path_id", "key", name="pk_file_metadata"),
        *checks,
        # Rows live in the primary-key B-tree: one page visit per (path_id, key) write.
        sqlite_with_rowid=False,
    )


def downgrade() -> None:
    op.drop_table("file_metadata")
    op.drop_index("ix_file_paths_content_hash", table_name="file_paths")
    op.drop_table("file_paths")
