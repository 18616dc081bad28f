"""indexes that select the rows of a view's tag and path-prefix filters (PostgreSQL)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01

The work views page through their order indexes (0002); a filter that keeps few rows would
make such a walk read most of the view. On PostgreSQL these indexes find a filter's rows
directly, and the store reads them by primary key and sorts them when they are few
(``nexus.storage.metadata_store``, ``_few_filtered``):

* path prefix: ``ix_file_paths_prefix``, live paths by ``(tenant_id, virtual_path COLLATE
  "C")``, so a prefix is a range of code points whatever the database's collation;
* tags: ``ix_work_items_tags``, GIN on ``work_items.tags`` (the ``?|`` operator).

SQLite gets nothing: its views name their order index (``INDEXED BY``, 0003), which forbids
the primary-key reads such a plan needs, and without the hints SQLite (no statistics) walks
the wrong index: ``ix_work_items_ready_since`` (0006, leading with tenant_id) and sorts every
ready row, or the full ``ix_work_items_priority`` instead of a view's partial index. SQLite
checks both filters on the walk in the view's order.
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# Nothing on SQLite (see above); the migration tests know it.
POSTGRESQL_ONLY = True


def upgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return  # SQLite: nothing (see above)
    op.execute(
        """CREATE INDEX ix_file_paths_prefix ON file_paths
           (tenant_id, virtual_path COLLATE "C") WHERE deleted_at IS NULL"""
    )
    op.execute("CREATE INDEX ix_work_items_tags ON work_items USING gin (tags)")


def downgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    op.execute("DROP INDEX IF EXISTS ix_work_items_tags")
    op.execute("DROP INDEX IF EXISTS ix_file_paths_prefix")
