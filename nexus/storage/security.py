"""Row-level security keyed on the tenant (PostgreSQL), switched on per database.

Revision 0007 creates a policy ``nexus_tenant_isolation`` on every nexus table and makes every
view ``security_invoker``; the policies stay dormant until :func:`enable_row_level_security`
turns row-level security on for those tables. From then on a role that neither owns the tables
nor is a superuser (or ``BYPASSRLS``) sees and writes only the rows of
``nexus_current_tenant()``: its pinned tenant (``nexus_role_tenants``) or the
``nexus.tenant_id`` setting of the transaction. A store opened on such a database sets that
setting at the start of every transaction (:data:`SET_TENANT_SQL`, a bound parameter); on a
database without row-level security it sends nothing extra.

SQLite has no row-level security, so both switches raise :class:`NexusConfigError` there.
See docs/security.md for the threat model.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from nexus.errors import NexusConfigError, NexusDatabaseError
from nexus.storage.migrate import MIGRATION_LOCK_KEY

#: The setting the policies read; the store sets it per transaction.
TENANT_SETTING = "nexus.tenant_id"
#: The one statement the store adds to a transaction while row-level security is on (psycopg
#: placeholder; the tenant is always a bound parameter, never part of the text).
SET_TENANT_SQL = "SELECT set_config('nexus.tenant_id', %s, true)"
POLICY = "nexus_tenant_isolation"
SECURITY_INVOKER_SINCE = 150000  # server_version_num of PostgreSQL 15

_PROTECTED_TABLES = sa.text(
    """
    SELECT c.relname FROM pg_policies p
    JOIN pg_class c ON c.relname = p.tablename
     AND c.relnamespace = to_regnamespace(p.schemaname)
    WHERE p.policyname = :policy AND p.schemaname = current_schema() AND c.relkind = 'r'
    ORDER BY c.relname
    """
)
_ENABLED = sa.text(
    """
    SELECT c.relrowsecurity FROM pg_class c
    WHERE c.relname = 'file_paths' AND c.relnamespace = to_regnamespace(current_schema())
    """
)


def _require_postgresql(engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        raise NexusConfigError(
            "row-level security needs PostgreSQL: a SQLite file has no roles, and whoever "
            "can open it can read and write all of it",
            value=engine.dialect.name,
        )


def _protected_tables(conn: Connection) -> list[str]:
    tables = [str(name) for name in conn.execute(_PROTECTED_TABLES, {"policy": POLICY}).scalars()]
    if not tables:
        raise NexusConfigError(
            "this database has no nexus row-level security policies: upgrade it to revision "
            "0007 or later first",
            value=POLICY,
        )
    return tables


def _switch(engine: Engine, on: bool) -> None:
    _require_postgresql(engine)
    if on:
        with engine.connect() as conn:
            version = int(str(conn.exec_driver_sql("SHOW server_version_num").scalar()))
        if version < SECURITY_INVOKER_SINCE:
            # Views would run with their owner's rights, which bypass the policies.
            raise NexusConfigError(
                "row-level security needs PostgreSQL 15 or later (security_invoker views); "
                "on this server every view would show every tenant",
                value=version,
            )
    quote = engine.dialect.identifier_preparer.quote
    action = "ENABLE" if on else "DISABLE"
    try:
        with engine.begin() as conn:
            # Not while a migration runs (it takes the same lock).
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            # The names come from the catalog (the tables holding the nexus policy), never
            # from input.
            tables = _protected_tables(conn)
            for table in tables:
                conn.exec_driver_sql(f"ALTER TABLE {quote(table)} {action} ROW LEVEL SECURITY")
        if on:
            # The policies' tenant comparison is planned from the statistics: without any (a
            # fresh bulk load) a lookup by path_id can become a scan of the tenant's rows.
            # Roles bound by RLS do not own the tables, so they cannot ANALYZE them. After
            # the commit: ANALYZE blocks no reader or writer, the ALTERs above do.
            with engine.begin() as conn:
                for table in tables:
                    conn.exec_driver_sql(f"ANALYZE {quote(table)}")
    except sa.exc.DBAPIError as exc:
        raise NexusDatabaseError(
            f"cannot {action.lower()} row-level security (only the tables' owner can): {exc.orig}"
        ) from exc


def enable_row_level_security(engine: Engine) -> None:
    """Switch row-level security on for every nexus table of the engine's database.

    Run it as the tables' owner (the role that migrated the database). Idempotent. Stores
    opened before the switch do not set the tenant: reopen them.
    """
    _switch(engine, True)


def disable_row_level_security(engine: Engine) -> None:
    """Switch row-level security off again (the policies stay, dormant). Idempotent."""
    _switch(engine, False)


def row_level_security_enabled(engine: Engine) -> bool:
    """Whether row-level security is on for this database (always False on SQLite)."""
    if engine.dialect.name != "postgresql":
        return False
    try:
        with engine.connect() as conn:
            return bool(conn.execute(_ENABLED).scalar())
    except sa.exc.DBAPIError as exc:
        raise NexusDatabaseError(f"database read failed: {exc.orig}") from exc
