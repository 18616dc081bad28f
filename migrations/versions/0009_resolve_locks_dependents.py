"""resolve locks the dependents before recounting them (PostgreSQL)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01

Two transactions completing two dependencies of the same item at once each recounted the
item from a snapshot taken before the other committed: the second one's UPDATE waited for the
first's row lock, then re-checked its row against that old snapshot, and the item kept one
unresolved dependency forever (found by benchmarks/soak.py: dependents that never ran).
``nexus_resolve`` now locks the dependents' rows first (in path_id order) and recounts them in
the next statement, whose fresh snapshot includes every transaction that held those rows.

SQLite serialises writers (``BEGIN IMMEDIATE``): nothing changes there.
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# Nothing changes on SQLite; on PostgreSQL a function body is rewritten (the stairway test).
POSTGRESQL_ONLY = True
REWRITES_FUNCTIONS = True

_HEAD = """CREATE OR REPLACE FUNCTION nexus_resolve(p_refs text[], p_tenants text[]) RETURNS void
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
"""

_RECOUNT = """        UPDATE work_items w SET unresolved_count = nexus_blocker_count(w.path_id)
        WHERE w.path_id IN (SELECT d.path_id FROM unnest(p_refs) AS r(ref)
                            JOIN work_dependencies d ON d.depends_on_ref = r.ref
                            WHERE d.tenant_id = ANY (p_tenants))
          AND w.unresolved_count IS DISTINCT FROM nexus_blocker_count(w.path_id);
    END $$"""

_LOCK_DEPENDENTS = """        -- Lock the dependents first: a concurrent resolution of another of their
        -- dependencies is then committed before the recount below, which runs in a new
        -- statement (a fresh snapshot) and so counts it.
        PERFORM 1 FROM work_items w
        WHERE w.path_id IN (SELECT d.path_id FROM unnest(p_refs) AS r(ref)
                            JOIN work_dependencies d ON d.depends_on_ref = r.ref
                            WHERE d.tenant_id = ANY (p_tenants))
        ORDER BY w.path_id
        FOR UPDATE OF w;
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_HEAD + _LOCK_DEPENDENTS + _RECOUNT)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_HEAD + _RECOUNT)  # revision 0005's function
