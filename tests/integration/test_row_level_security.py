"""Row-level security keyed on the tenant holds against raw SQL (PostgreSQL), and the store
still works under it.

On a throwaway database with row-level security switched on, two roles created for the test
(neither superuser nor owner nor BYPASSRLS) use it: ``app`` with the ordinary grants, and
``pinned``, pinned to tenant ``a`` in ``nexus_role_tenants``. Two tenants' data, written by
stores opened as ``app``, fill every table and view. Then raw SQL as ``app``:

* with ``nexus.tenant_id`` set sees, updates and deletes exactly its tenant's rows in every
  table and view, and cannot write a row into (or move one to) another tenant;
* without the setting sees nothing and changes nothing;
* as ``pinned``, naming another tenant changes nothing: the pin wins.

The store opened as ``app`` runs enqueue, claim, completion with promotion, failure with retry,
views, metadata, history and ``work_stats`` inside its tenant. The switch itself is explicit
and reversible, covers every table and view at head, and downgrading the revision removes
every object it made. On SQLite the switches refuse: a file has no roles.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from nexus.errors import NexusConfigError, NexusDatabaseError
from nexus.storage import migrate, security
from nexus.storage.engine import create_engine
from nexus.storage.metadata_store import SQLAlchemyMetadataStore
from nexus.storage.schema import VIEW_NAMES
from nexus.work import WorkQueue
from tests.conftest import PostgresServer

# A statement per table that touches every row it can see and changes nothing.
TOUCH = {
    "file_paths": "UPDATE file_paths SET updated_at = updated_at",
    "file_metadata": "UPDATE file_metadata SET updated_at = updated_at",
    "work_items": "UPDATE work_items SET priority = priority",
    "work_dependencies": "UPDATE work_dependencies SET depends_on_ref = depends_on_ref",
    "work_history": "UPDATE work_history SET worker_id = worker_id",
    "work_idempotency": "UPDATE work_idempotency SET path_id = path_id",
    "work_counters": "UPDATE work_counters SET n = n",
    "work_event_counts": "UPDATE work_event_counts SET n = n",
    "work_event_hourly": "UPDATE work_event_hourly SET n = n",
}
TABLES = tuple(TOUCH)
# Every table but file_metadata has a tenant_id column.
TENANT_TABLES = tuple(t for t in TABLES if t != "file_metadata")
TENANT_VIEWS = VIEW_NAMES  # the five work views, each with a tenant_id column
# What tenant :t must see in each relation, computed by the owner (who bypasses the
# policies) from the tables: (expression read as the role, the owner's expected value).
OF_PATH = "(SELECT p.tenant_id FROM file_paths p WHERE p.path_id = r.path_id)"
EXPECTED: dict[str, tuple[str, str]] = {
    **{
        t: ("SELECT count(*) FROM {t} r", "SELECT count(*) FROM {t} r WHERE tenant_id = :t")
        for t in TENANT_TABLES + TENANT_VIEWS
    },
    "file_metadata": (
        "SELECT count(*) FROM file_metadata r",
        f"SELECT count(*) FROM file_metadata r WHERE {OF_PATH} = :t",
    ),
    "path_metadata": (
        "SELECT count(*) FROM path_metadata r",
        f"SELECT count(*) FROM path_metadata r WHERE {OF_PATH} = :t",
    ),
    # One row per counter and shard: the tenants differ in the counts, not in the rows.
    **{
        t: (
            f"SELECT coalesce(sum(n), 0) FROM {t} r",
            f"SELECT coalesce(sum(n), 0) FROM {t} r WHERE tenant_id = :t",
        )
        for t in ("work_counters", "work_event_counts", "work_event_hourly")
    },
    "work_throughput_hourly": (
        "SELECT coalesce(sum(completed), 0) FROM work_throughput_hourly",
        "SELECT count(*) FROM work_history WHERE event = 'completed' AND tenant_id = :t",
    ),
    "work_failures_by_error": (
        "SELECT coalesce(sum(failures), 0) FROM work_failures_by_error",
        "SELECT count(*) FROM work_history WHERE event IN ('failed', 'retried') AND tenant_id = :t",
    ),
    "work_timing_hourly": (
        "SELECT coalesce(sum(claims), 0) FROM work_timing_hourly",
        "SELECT count(*) FROM work_history WHERE event = 'claimed' AND tenant_id = :t",
    ),
}


@dataclass
class RlsDatabase:
    owner_url: str
    app_url: str
    pinned_url: str
    owner: sa.Engine
    app: sa.Engine
    pinned: sa.Engine


def _role_url(url: str, role: str) -> str:
    return sa.engine.make_url(url).set(username=role, password=None).render_as_string(False)


@pytest.fixture(scope="module")
def rls_db(pg_server: PostgresServer) -> Iterator[RlsDatabase]:
    owner_url = pg_server.create_database()
    suffix = uuid.uuid4().hex[:8]
    app_role, pinned_role = f"nexus_rls_app_{suffix}", f"nexus_rls_pinned_{suffix}"
    owner = create_engine(owner_url)
    migrate.upgrade(owner)
    with owner.begin() as conn:
        for role in (app_role, pinned_role):
            # Role names are made here, not taken from input; the grants are docs/security.md's.
            conn.exec_driver_sql(f'CREATE ROLE "{role}" LOGIN NOSUPERUSER NOBYPASSRLS')
            conn.exec_driver_sql(
                f'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO "{role}"'
            )
            conn.exec_driver_sql(f'GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO "{role}"')
        conn.execute(
            sa.text("INSERT INTO nexus_role_tenants VALUES (:me, 'a'), ('someone_else', 'b')"),
            {"me": pinned_role},
        )
    security.enable_row_level_security(owner)
    made = RlsDatabase(
        owner_url=owner_url,
        app_url=_role_url(owner_url, app_role),
        pinned_url=_role_url(owner_url, pinned_role),
        owner=owner,
        app=create_engine(_role_url(owner_url, app_role)),
        pinned=create_engine(_role_url(owner_url, pinned_role)),
    )
    yield made
    for engine in (made.app, made.pinned, made.owner):
        engine.dispose()
    admin = pg_server.admin
    with admin.connect() as conn:
        name = sa.engine.make_url(owner_url).database
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        for role in (app_role, pinned_role):
            conn.exec_driver_sql(f'DROP ROLE IF EXISTS "{role}"')


def _fill(url: str, tenant: str, extra: int) -> None:
    """Rows in every table and view for ``tenant``, through a store opened as ``url``'s role;
    ``extra`` more completed items make the tenants' counts differ."""
    with SQLAlchemyMetadataStore(db_url=url, tenant_id=tenant) as store:
        queue = WorkQueue(store)
        store.put(f"/{tenant}/plain")
        store.set_file_metadata(f"/{tenant}/plain", "note", tenant)
        queue.enqueue(f"/{tenant}/parent", priority=1)
        queue.enqueue(f"/{tenant}/child", status="blocked", depends_on=f"/{tenant}/parent")
        queue.enqueue(f"/{tenant}/later", status="pending", idempotency_key="later")
        queue.enqueue(f"/{tenant}/waits", status="blocked", depends_on=f"/{tenant}/later")
        queue.enqueue(f"/{tenant}/flaky", priority=2)
        queue.enqueue(f"/{tenant}/running", priority=3)
        [parent] = queue.claim_ready_work("w", path_prefix=f"/{tenant}/parent")
        promoted = queue.complete_work(parent["path_id"], parent["lease_token"] or "")
        assert promoted == [f"/{tenant}/child"]
        for n in range(extra):
            path = f"/{tenant}/extra/{n}"
            queue.enqueue(path, depends_on=f"/{tenant}/parent", idempotency_key=path)
            [item] = queue.claim_ready_work("w", path_prefix=path)
            queue.complete_work(item["path_id"], item["lease_token"] or "")
        [flaky] = queue.claim_ready_work("w", path_prefix=f"/{tenant}/flaky")
        # Not retried: a retry's back-off would make it ready while a test compares counts.
        queue.fail_work(flaky["path_id"], flaky["lease_token"] or "", "boom", retry=False)
        queue.claim_ready_work("w", path_prefix=f"/{tenant}/running")


@pytest.fixture
def filled(rls_db: RlsDatabase) -> RlsDatabase:
    with rls_db.owner.begin() as conn:
        conn.exec_driver_sql(f"TRUNCATE {', '.join(TABLES)}")
    _fill(rls_db.app_url, "a", extra=0)
    _fill(rls_db.app_url, "b", extra=2)
    return rls_db


def _expected(db: RlsDatabase, tenant: str) -> dict[str, int]:
    with db.owner.connect() as conn:
        return {
            name: int(conn.execute(sa.text(owner_sql.format(t=name)), {"t": tenant}).scalar_one())
            for name, (_role_sql, owner_sql) in EXPECTED.items()
        }


def _seen(conn: sa.Connection) -> dict[str, int]:
    return {
        name: int(conn.execute(sa.text(role_sql.format(t=name))).scalar_one())
        for name, (role_sql, _owner_sql) in EXPECTED.items()
    }


def _as_tenant(conn: sa.Connection, tenant: str) -> None:
    conn.execute(sa.text("SELECT set_config('nexus.tenant_id', :t, true)"), {"t": tenant})


def test_the_tenants_fill_every_relation_differently(filled: RlsDatabase) -> None:
    a, b = _expected(filled, "a"), _expected(filled, "b")
    assert all(a.values()), a
    assert all(b.values()), b
    differing = {name for name in EXPECTED if a[name] != b[name]}
    # Each table and the views over history differ, so a leak shows in the counts.
    assert set(TABLES) <= differing


@pytest.mark.parametrize("tenant", ["a", "b"])
def test_raw_select_sees_only_its_tenant_in_every_table_and_view(
    filled: RlsDatabase, tenant: str
) -> None:
    with filled.app.begin() as conn:
        _as_tenant(conn, tenant)
        assert _seen(conn) == _expected(filled, tenant)
        for name in TENANT_TABLES + TENANT_VIEWS:
            others = conn.execute(
                sa.text(f"SELECT count(*) FROM {name} WHERE tenant_id <> :t"), {"t": tenant}
            ).scalar_one()
            assert others == 0, name


def _rows_of(db: RlsDatabase, tenant: str) -> list[tuple[object, ...]]:
    with db.owner.connect() as conn:
        return [
            tuple(row)
            for row in conn.execute(
                sa.text(
                    "SELECT p.virtual_path, p.size_bytes, w.status, m.key"
                    " FROM file_paths p LEFT JOIN work_items w ON w.path_id = p.path_id"
                    " LEFT JOIN file_metadata m ON m.path_id = p.path_id"
                    " WHERE p.tenant_id = :t ORDER BY 1, 4"
                ),
                {"t": tenant},
            )
        ]


def _row_counts(db: RlsDatabase, tenant: str) -> dict[str, int]:
    """Rows of ``tenant`` in each table, counted by the owner."""
    with db.owner.connect() as conn:
        return {
            table: int(
                conn.execute(
                    sa.text(
                        f"SELECT count(*) FROM {table} r WHERE"
                        f" {OF_PATH if table == 'file_metadata' else 'tenant_id'} = :t"
                    ),
                    {"t": tenant},
                ).scalar_one()
            )
            for table in TABLES
        }


def test_raw_update_and_delete_reach_only_its_tenant(filled: RlsDatabase) -> None:
    a = _row_counts(filled, "a")
    for table, statement in TOUCH.items():
        with filled.app.connect() as conn, conn.begin() as transaction:
            _as_tenant(conn, "a")
            assert conn.execute(sa.text(statement)).rowcount == a[table], table
            assert conn.execute(sa.text(f"DELETE FROM {table}")).rowcount == a[table], table
            transaction.rollback()
    b_counts, b_rows = _expected(filled, "b"), _rows_of(filled, "b")
    with filled.app.begin() as conn:
        _as_tenant(conn, "a")
        conn.execute(sa.text("UPDATE file_paths SET size_bytes = 42"))
        conn.execute(sa.text("UPDATE work_items SET status = 'failed'"))
        conn.execute(sa.text("DELETE FROM path_metadata WHERE key = 'note'"))
    assert {row[1] for row in _rows_of(filled, "a")} == {42}
    assert {row[2] for row in _rows_of(filled, "a")} == {"failed", None}
    assert "note" not in {row[3] for row in _rows_of(filled, "a")}
    assert (_expected(filled, "b"), _rows_of(filled, "b")) == (b_counts, b_rows)
    with filled.app.begin() as conn:
        _as_tenant(conn, "a")
        conn.execute(sa.text("DELETE FROM file_paths"))
    assert _expected(filled, "a")["file_paths"] == 0
    assert (_expected(filled, "b"), _rows_of(filled, "b")) == (b_counts, b_rows)


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO file_paths (tenant_id, virtual_path) VALUES ('b', '/smuggled')",
        "UPDATE file_paths SET tenant_id = 'b'",
        "UPDATE work_items SET tenant_id = 'b'",
        "INSERT INTO file_metadata (path_id, key, value) VALUES (:b_path, 'smuggled', '1')",
        "INSERT INTO work_history (path_id, tenant_id, event, at)"
        " VALUES (:b_path, 'b', 'completed', now())",
        "INSERT INTO work_counters (tenant_id, counter, shard, n) VALUES ('b', 'ready', 99, 5)",
        "INSERT INTO nexus_role_tenants VALUES (current_user, 'b')",
    ],
)
def test_raw_writes_into_another_tenant_are_refused(filled: RlsDatabase, statement: str) -> None:
    b_counts, b_rows = _expected(filled, "b"), _rows_of(filled, "b")
    with filled.owner.connect() as conn:
        b_path = conn.exec_driver_sql(
            "SELECT path_id FROM file_paths WHERE tenant_id = 'b' LIMIT 1"
        ).scalar()
    with filled.app.connect() as conn, conn.begin():
        _as_tenant(conn, "a")
        with pytest.raises(sa.exc.ProgrammingError) as raised:
            conn.execute(sa.text(statement), {"b_path": b_path})
        # 42501: "new row violates row-level security policy"
        assert getattr(raised.value.orig, "sqlstate", None) == "42501"
    assert (_expected(filled, "b"), _rows_of(filled, "b")) == (b_counts, b_rows)


def test_without_the_setting_raw_sql_sees_and_changes_nothing(filled: RlsDatabase) -> None:
    before = _expected(filled, "a"), _expected(filled, "b")
    with filled.app.begin() as conn:
        assert set(_seen(conn).values()) == {0}
        for table, statement in TOUCH.items():
            assert conn.execute(sa.text(statement)).rowcount == 0, table
            assert conn.execute(sa.text(f"DELETE FROM {table}")).rowcount == 0, table
    # A setting left empty by an earlier transaction of the session is no tenant either.
    with filled.app.connect() as conn:
        with conn.begin():
            _as_tenant(conn, "a")
        with conn.begin():
            assert conn.exec_driver_sql("SELECT current_setting('nexus.tenant_id')").scalar() == ""
            assert set(_seen(conn).values()) == {0}
    assert (_expected(filled, "a"), _expected(filled, "b")) == before


def test_a_pinned_role_sees_its_pinned_tenant_whatever_it_sets(filled: RlsDatabase) -> None:
    for setting in (None, "a", "b"):
        with filled.pinned.begin() as conn:
            if setting is not None:
                _as_tenant(conn, setting)
            assert _seen(conn) == _expected(filled, "a"), setting
            # Its own pin only: the other roles' pins are not shown.
            assert conn.exec_driver_sql("SELECT count(*) FROM nexus_role_tenants").scalar() == 1


def test_the_store_works_end_to_end_as_a_role_bound_by_the_policies(
    filled: RlsDatabase,
) -> None:
    with SQLAlchemyMetadataStore(db_url=filled.app_url, tenant_id="a") as store:
        assert store.row_level_security
        queue = WorkQueue(store)
        assert [r["virtual_path"] for r in store.get_ready_work()] == ["/a/child"]
        assert [r["virtual_path"] for r in store.get_pending_work()] == ["/a/later"]
        assert [r["virtual_path"] for r in store.get_blocked_work()] == ["/a/waits"]
        assert [r["virtual_path"] for r in store.get_in_progress_work()] == ["/a/running"]
        assert len(store.get_work_by_priority()) == 6
        stats = queue.work_stats()
        assert stats["by_status"] == {
            "ready": 1,
            "pending": 1,
            "blocked": 1,
            "in_progress": 1,
            "completed": 1,
            "failed": 1,
        }
        assert [e["event"] for e in queue.get_work_history("/a/parent")] == [
            "enqueued",
            "claimed",
            "completed",
        ]
        assert store.get_all_file_metadata("/a/plain") == {"note": "a"}
        assert [(e["path"], e["status"]) for e in queue.explain_blocked("/a/waits")] == [
            ("/a/later", "pending")
        ]
        # A new chain inside the tenant: enqueue, claim, complete, promotion.
        queue.enqueue("/a/next", status="blocked", depends_on="/a/child")
        [child] = queue.claim_ready_work("w2", path_prefix="/a/child")
        assert queue.complete_work(child["path_id"], child["lease_token"] or "") == ["/a/next"]
        assert store.delete_file_metadata("/a/plain", "note")
        assert store.get_all_file_metadata("/a/plain") == {}
        # Another tenant's path is not there for this store.
        assert store.get("/b/plain") is None
        assert queue.get_work_item("/b/parent") is None
        # Retention inside the tenant: /a/parent and /a/child are finished and nothing
        # unfinished depends on /a/parent any more... but /a/next (blocked, now ready) on
        # /a/child keeps it; the future cutoff takes every finished item it may.
        pruned = queue.prune(datetime.now(UTC) + timedelta(days=1))
        assert pruned >= 1
        assert store.get("/a/parent") is None
    with SQLAlchemyMetadataStore(db_url=filled.app_url, tenant_id="b") as store:
        assert WorkQueue(store).work_stats()["by_status"]["completed"] == 3
        assert store.get_all_file_metadata("/b/plain") == {"note": "b"}


def _tenant_inside_transactions(store: SQLAlchemyMetadataStore) -> tuple[object, object]:
    """nexus.tenant_id as seen inside a driver-level and a SQLAlchemy transaction."""
    read = "SELECT current_setting('nexus.tenant_id', true)"

    def driver(cursor: object) -> object:
        cursor.execute(read)  # type: ignore[attr-defined]
        return cursor.fetchone()[0]  # type: ignore[attr-defined]

    with store.engine.connect() as conn:
        through_sqlalchemy = conn.exec_driver_sql(read).scalar()
    return store.database.transaction(driver, write=False), through_sqlalchemy


def test_the_store_names_its_tenant_in_each_transaction_only_when_rls_is_on(
    rls_db: RlsDatabase,
) -> None:
    tenant = "t-1'); SELECT set_config('nexus.tenant_id', 'b', false); --"
    with SQLAlchemyMetadataStore(db_url=rls_db.owner_url, tenant_id=tenant) as store:
        assert _tenant_inside_transactions(store) == (tenant, tenant)
        # Transaction-local: a connection back in the pool keeps no tenant.
        raw = store.engine.raw_connection()
        try:
            cursor = raw.cursor()
            cursor.execute("SELECT current_setting('nexus.tenant_id', true)")
            assert cursor.fetchone()[0] in (None, "")
        finally:
            raw.close()
    security.disable_row_level_security(rls_db.owner)
    try:
        with SQLAlchemyMetadataStore(db_url=rls_db.owner_url, tenant_id="t-1") as store:
            assert _tenant_inside_transactions(store) == (None, None)
    finally:
        security.enable_row_level_security(rls_db.owner)


def test_servers_before_postgresql_15_are_refused(
    rls_db: RlsDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A server that cannot make views security_invoker: pretend this one is such a server.
    monkeypatch.setattr(security, "SECURITY_INVOKER_SINCE", 10**9)
    with pytest.raises(NexusConfigError, match="PostgreSQL 15"):
        security.enable_row_level_security(rls_db.owner)


def test_switching_is_explicit_reversible_and_covers_every_table_and_view(
    rls_db: RlsDatabase,
) -> None:
    def protected() -> tuple[set[str], set[str]]:
        """(the tables that must be protected, those with row-level security on); checks
        that each has the policy and that every view is security_invoker."""
        relations = (
            "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace"
            " AND relname NOT IN ('alembic_version', 'nexus_role_tenants') AND relkind = "
        )
        with rls_db.owner.connect() as conn:
            tables = _names(conn, relations + "'r'")
            enabled = _names(conn, relations + "'r' AND relrowsecurity")
            not_invoker = _names(
                conn,
                relations + "'v' AND NOT coalesce('security_invoker=true' = ANY (reloptions),"
                " false)",
            )
            with_policy = _names(
                conn,
                "SELECT tablename FROM pg_policies WHERE policyname = 'nexus_tenant_isolation'",
            )
        assert with_policy == tables, "every table needs the nexus_tenant_isolation policy"
        assert not_invoker == set(), "every view must be security_invoker"
        return tables, enabled

    tables, enabled = protected()
    assert enabled == tables
    assert security.row_level_security_enabled(rls_db.owner)
    try:
        security.disable_row_level_security(rls_db.owner)
        security.disable_row_level_security(rls_db.owner)  # idempotent
        assert protected()[1] == set()
        assert not security.row_level_security_enabled(rls_db.owner)
        opened_while_off = SQLAlchemyMetadataStore(db_url=rls_db.app_url, tenant_id="x")
        assert not opened_while_off.row_level_security
        with rls_db.app.connect() as conn:  # off: the app role sees every tenant again
            conn.exec_driver_sql(
                "INSERT INTO file_paths (tenant_id, virtual_path) VALUES ('x', '/off')"
            )
            conn.commit()
            assert (
                conn.exec_driver_sql(
                    "SELECT count(*) FROM file_paths WHERE virtual_path = '/off'"
                ).scalar()
                == 1
            )
    finally:
        security.enable_row_level_security(rls_db.owner)
        security.enable_row_level_security(rls_db.owner)  # idempotent
    assert protected()[1] == tables
    # A store opened before the switch names no tenant: it sees nothing now (reopen it).
    with opened_while_off as store:
        assert store.get("/off") is None
    with SQLAlchemyMetadataStore(db_url=rls_db.app_url, tenant_id="x") as store:
        assert store.get("/off") is not None
    with rls_db.app.connect() as conn:
        assert (
            conn.exec_driver_sql(
                "SELECT count(*) FROM file_paths WHERE virtual_path = '/off'"
            ).scalar()
            == 0
        )


def _names(conn: sa.Connection, sql: str) -> set[str]:
    return {str(name) for name in conn.execute(sa.text(sql)).scalars()}


def test_only_the_owner_can_switch(rls_db: RlsDatabase) -> None:
    with pytest.raises(NexusDatabaseError, match="owner"):
        security.disable_row_level_security(rls_db.app)
    assert security.row_level_security_enabled(rls_db.owner)


def test_downgrade_removes_every_object_of_the_revision(pg_server: PostgresServer) -> None:
    engine = create_engine(pg_server.create_database())
    try:
        migrate.upgrade(engine, "0006")
        before = _security_objects(engine)
        migrate.upgrade(engine, "0007")
        never_analyzed = "SELECT reltuples FROM pg_class WHERE relname = 'file_paths'"
        with engine.connect() as conn:
            assert conn.exec_driver_sql(never_analyzed).scalar() == -1
        security.enable_row_level_security(engine)
        assert _security_objects(engine) != before
        # The switch gave the planner statistics (the roles it binds cannot ANALYZE).
        with engine.connect() as conn:
            assert conn.exec_driver_sql(never_analyzed).scalar() >= 0
        migrate.downgrade(engine, "0006")
        assert _security_objects(engine) == before
        with pytest.raises(NexusConfigError, match="upgrade"):
            security.enable_row_level_security(engine)
        migrate.upgrade(engine)
        assert _security_objects(engine) != before
    finally:
        engine.dispose()


def _security_objects(engine: sa.Engine) -> dict[str, object]:
    with engine.connect() as conn:
        return {
            "policies": conn.execute(
                sa.text("SELECT tablename, policyname FROM pg_policies ORDER BY 1, 2")
            ).all(),
            "rls": conn.execute(
                sa.text(
                    "SELECT relname FROM pg_class WHERE relrowsecurity OR relforcerowsecurity"
                    " ORDER BY 1"
                )
            ).all(),
            "options": conn.execute(
                sa.text(
                    "SELECT relname, reloptions FROM pg_class WHERE reloptions IS NOT NULL"
                    " AND relnamespace = 'public'::regnamespace ORDER BY 1"
                )
            ).all(),
            "functions": conn.execute(
                sa.text("SELECT proname FROM pg_proc WHERE proname = 'nexus_current_tenant'")
            ).all(),
            "tables": conn.execute(
                sa.text("SELECT relname FROM pg_class WHERE relname = 'nexus_role_tenants'")
            ).all(),
        }


def test_sqlite_has_no_row_level_security_to_switch(tmp_path: Path) -> None:
    with SQLAlchemyMetadataStore(f"{tmp_path}/metadata.db") as store:
        assert not store.row_level_security
        assert not security.row_level_security_enabled(store.engine)
        for switch in (security.enable_row_level_security, security.disable_row_level_security):
            with pytest.raises(NexusConfigError, match="PostgreSQL"):
                switch(store.engine)
