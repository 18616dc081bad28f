"""row-level security keyed on the tenant (PostgreSQL; dormant until switched on)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01

What this revision creates on PostgreSQL (see docs/security.md):

* The tenant of a statement (``CURRENT_TENANT``, also callable as ``nexus_current_tenant()``):
  a role listed in ``nexus_role_tenants`` is *pinned* to its tenant whatever it sets; any
  other role gets the ``nexus.tenant_id`` setting, which the store sets per transaction with
  ``set_config('nexus.tenant_id', ..., true)``. No setting: NULL, which matches no row.
* ``nexus_role_tenants (role_name, tenant_id)``: the pins, managed by the owner with plain
  SQL. Its own row-level security is always on: a role reads only its own pin.
* One policy ``nexus_tenant_isolation`` per table (``file_paths``, ``file_metadata`` through
  its path, ``work_items``, ``work_dependencies``, ``work_history``, ``work_idempotency``,
  ``work_counters``, and 0006's ``work_event_counts`` and ``work_event_hourly``), for reads
  and writes (``WITH CHECK``: no row can be written into, or moved to, another tenant).
* Every view gets ``security_invoker = true`` (PostgreSQL 15+), so it reads the tables with
  the rights -- and the policies -- of whoever queries it, not of its owner.

Policies do nothing while a table's row-level security is off, and this revision leaves it off:
``nexus.storage.security.enable_row_level_security(engine)`` switches it on per database
(``disable_row_level_security`` switches it off again). The rules of revision 0005 run with the
rights of the writer and stay inside the writer's tenant (routing, projection, resolution,
promotion and counting all touch rows of the written row's tenant), so they need no
SECURITY DEFINER: the policies bind them too.

SQLite has no row-level security: on SQLite this revision creates nothing (anyone who can open
the file can read and write all of it).
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

#: Creates nothing on SQLite (the migration tests read this).
POSTGRESQL_ONLY = True

POLICY = "nexus_tenant_isolation"
# The tenant of the transaction: the role's pin, else the setting ('' once a transaction that
# set it has ended, so nullif). The policies carry it inline: called through
# nexus_current_tenant() (a SQL function with a subquery, which PostgreSQL cannot inline) it
# cost ~80 us per statement (a claim took 3x as long); inline, the subquery is an InitPlan run
# once per statement (~3 us).
CURRENT_TENANT = (
    "coalesce((SELECT r.tenant_id FROM nexus_role_tenants r WHERE r.role_name = current_user),"
    " nullif(current_setting('nexus.tenant_id', true), ''))"
)
# The tables with a tenant_id column; file_metadata is tied to a tenant through its path.
TENANT_TABLES = (
    "file_paths",
    "work_items",
    "work_dependencies",
    "work_history",
    "work_idempotency",
    "work_counters",
    "work_event_counts",
    "work_event_hourly",
)
VIEWS = (
    "ready_work_items",
    "pending_work_items",
    "blocked_work_items",
    "work_by_priority",
    "in_progress_work",
    "work_throughput_hourly",
    "work_failures_by_error",
    "work_timing_hourly",
    "path_metadata",
)
SECURITY_INVOKER_SINCE = 150000  # server_version_num of PostgreSQL 15


def _policies() -> dict[str, str]:
    """table -> its policy's USING/WITH CHECK expression."""
    # The tenant is computed once per statement (an InitPlan), not once per row.
    policies = {table: f"tenant_id = {CURRENT_TENANT}" for table in TENANT_TABLES}
    policies["file_metadata"] = (
        "EXISTS (SELECT 1 FROM file_paths p WHERE p.path_id = file_metadata.path_id"
        f" AND p.tenant_id = {CURRENT_TENANT})"
    )
    return policies


def _supports_security_invoker() -> bool:
    version = op.get_bind().exec_driver_sql("SHOW server_version_num").scalar()
    return int(str(version)) >= SECURITY_INVOKER_SINCE


def upgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return  # SQLite: nothing to create (see the module docstring)
    op.execute(
        """CREATE TABLE nexus_role_tenants (
            role_name text PRIMARY KEY,
            tenant_id varchar(255) NOT NULL
        )"""
    )
    op.execute("ALTER TABLE nexus_role_tenants ENABLE ROW LEVEL SECURITY")
    op.execute(
        "CREATE POLICY nexus_own_pin ON nexus_role_tenants FOR SELECT"
        " USING (role_name = current_user)"
    )
    # Every policy reads it with the rights of the querying role.
    op.execute("GRANT SELECT ON nexus_role_tenants TO PUBLIC")
    # For people and tools: which tenant the policies see for this session now.
    op.execute(
        "CREATE FUNCTION nexus_current_tenant() RETURNS text LANGUAGE sql STABLE"
        f" AS $$ SELECT {CURRENT_TENANT} $$"
    )
    for table, expression in _policies().items():
        op.execute(
            f"CREATE POLICY {POLICY} ON {table} USING ({expression}) WITH CHECK ({expression})"
        )
    if _supports_security_invoker():
        for view in VIEWS:
            op.execute(f"ALTER VIEW {view} SET (security_invoker = true)")


def downgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    if _supports_security_invoker():
        for view in VIEWS:
            op.execute(f"ALTER VIEW {view} RESET (security_invoker)")
    for table in _policies():
        # Row-level security left on without its policy would hide every row from a role
        # that is not the owner.
        op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
        op.execute(f"DROP POLICY IF EXISTS {POLICY} ON {table}")
    op.execute("DROP FUNCTION IF EXISTS nexus_current_tenant()")
    op.execute("DROP TABLE IF EXISTS nexus_role_tenants")
