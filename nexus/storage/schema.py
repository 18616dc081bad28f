"""SQLAlchemy Core descriptions of the tables and views the migrations create.

These are for building statements and typing results; the schema itself is owned by the
Alembic revisions in ``migrations/`` (``nexus.migrations`` once installed).
"""

from __future__ import annotations

import sqlalchemy as sa

from nexus.storage.types import JSONValue, UTCDateTime

metadata = sa.MetaData()

file_paths = sa.Table(
    "file_paths",
    metadata,
    sa.Column("path_id", sa.String(36), primary_key=True),
    sa.Column("tenant_id", sa.String(255), nullable=False),
    sa.Column("virtual_path", sa.Text(), nullable=False),
    sa.Column("size_bytes", sa.BigInteger(), nullable=False),
    sa.Column("content_hash", sa.String(128)),
    sa.Column("file_type", sa.String(255)),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Column("deleted_at", UTCDateTime()),
    sa.UniqueConstraint("tenant_id", "virtual_path"),
)

file_metadata = sa.Table(
    "file_metadata",
    metadata,
    sa.Column("path_id", sa.String(36), sa.ForeignKey("file_paths.path_id"), primary_key=True),
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("value", JSONValue, nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
)

work_items = sa.Table(
    "work_items",
    metadata,
    sa.Column("path_id", sa.String(36), primary_key=True),
    sa.Column("tenant_id", sa.String(255), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("priority", sa.BigInteger()),
    sa.Column("tags", JSONValue),
    sa.Column("worker_id", sa.Text()),
    sa.Column("started_at", UTCDateTime()),
    sa.Column("run_after", UTCDateTime()),
    sa.Column("lease_token", sa.String(64)),
    sa.Column("lease_expires_at", UTCDateTime()),
    sa.Column("attempts", sa.Integer(), nullable=False),
    sa.Column("max_attempts", sa.Integer()),
    sa.Column("unresolved_count", sa.Integer(), nullable=False),
    sa.Column("lease_seconds", sa.Float()),
    sa.Column("last_error", sa.Text()),
    sa.Column("finished_at", UTCDateTime()),
)

work_counters = sa.Table(
    "work_counters",
    metadata,
    sa.Column("tenant_id", sa.String(255), primary_key=True),
    sa.Column("counter", sa.String(16), primary_key=True),
    sa.Column("shard", sa.Integer(), primary_key=True),
    sa.Column("n", sa.BigInteger(), nullable=False),
)

work_dependencies = sa.Table(
    "work_dependencies",
    metadata,
    sa.Column("path_id", sa.String(36), primary_key=True),
    sa.Column("depends_on_ref", sa.Text(), primary_key=True),
    sa.Column("tenant_id", sa.String(255), nullable=False),
)

work_history = sa.Table(
    "work_history",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
    sa.Column("path_id", sa.String(36), nullable=False),
    sa.Column("tenant_id", sa.String(255), nullable=False),
    sa.Column("event", sa.String(32), nullable=False),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Column("worker_id", sa.Text()),
    sa.Column("detail", JSONValue),
)

work_idempotency = sa.Table(
    "work_idempotency",
    metadata,
    sa.Column("tenant_id", sa.String(255), primary_key=True),
    sa.Column("idempotency_key", sa.String(255), primary_key=True),
    sa.Column("path_id", sa.String(36), nullable=False),
)


def _view_columns() -> list[sa.Column[object]]:
    return [
        sa.Column("path_id", sa.String(36)),
        sa.Column("virtual_path", sa.Text()),
        sa.Column("tenant_id", sa.String(255)),
        sa.Column("status", sa.String(16)),
        sa.Column("priority", sa.BigInteger()),
        sa.Column("created_at", UTCDateTime()),
        sa.Column("updated_at", UTCDateTime()),
        sa.Column("size_bytes", sa.BigInteger()),
        sa.Column("content_hash", sa.String(128)),
    ]


views = sa.MetaData()
ready_work_items = sa.Table("ready_work_items", views, *_view_columns())
pending_work_items = sa.Table("pending_work_items", views, *_view_columns())
blocked_work_items = sa.Table(
    "blocked_work_items", views, *_view_columns(), sa.Column("blocker_count", sa.Integer())
)
work_by_priority = sa.Table(
    "work_by_priority", views, *_view_columns(), sa.Column("tags", JSONValue)
)
in_progress_work = sa.Table(
    "in_progress_work",
    views,
    *_view_columns(),
    sa.Column("worker_id", sa.Text()),
    sa.Column("started_at", UTCDateTime()),
)

# Every current key of every path: file_metadata plus the keys routed to work_items.
path_metadata = sa.Table(
    "path_metadata",
    views,
    sa.Column("path_id", sa.String(36)),
    sa.Column("key", sa.String(255)),
    sa.Column("value", JSONValue),
    sa.Column("created_at", UTCDateTime()),
    sa.Column("updated_at", UTCDateTime()),
)

work_throughput_hourly = sa.Table(
    "work_throughput_hourly",
    views,
    sa.Column("hour", UTCDateTime()),
    sa.Column("completed", sa.Integer()),
    sa.Column("failed", sa.Integer()),
    sa.Column("retried", sa.Integer()),
)
work_failures_by_error = sa.Table(
    "work_failures_by_error",
    views,
    sa.Column("error", sa.Text()),
    sa.Column("failures", sa.Integer()),
    sa.Column("last_at", UTCDateTime()),
)
work_timing_hourly = sa.Table(
    "work_timing_hourly",
    views,
    sa.Column("hour", UTCDateTime()),
    sa.Column("claims", sa.Integer()),
    sa.Column("mean_wait_seconds", sa.Float()),
    sa.Column("completions", sa.Integer()),
    sa.Column("mean_run_seconds", sa.Float()),
)

VIEW_NAMES = (
    "ready_work_items",
    "pending_work_items",
    "blocked_work_items",
    "work_by_priority",
    "in_progress_work",
)


def tenant_of_path_is(tenant_id: str) -> sa.ColumnElement[bool]:
    """``file_paths.tenant_id = tenant_id`` in a form no index can serve.

    For lookups by a list of path_ids: the primary key finds each row, and the tenant is only
    checked. Written plainly, a planner without statistics (SQLite by default) takes the
    ``(tenant_id, virtual_path)`` index for the tenant equality and scans every path of the
    tenant instead.
    """
    return sa.func.coalesce(file_paths.c.tenant_id, "") == tenant_id


def starts_with(column: sa.ColumnElement[str], prefix: str) -> sa.ColumnElement[bool]:
    """``column`` begins with ``prefix``, literally: no LIKE, so ``%`` and ``_`` match
    themselves (``substr`` counts characters on both databases)."""
    return sa.func.substr(column, 1, len(prefix)) == prefix
