"""The Alembic revisions on SQLite and PostgreSQL (each test starts from an empty database):
one linear history with a single head, every step can go up, down and up again (stairway),
data written at head survives a downgrade to the source tables and is re-projected by the
upgrade, and ``downgrade base`` leaves nothing but ``alembic_version``."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory

from nexus.storage import migrate
from nexus.storage.engine import create_engine
from nexus.storage.metadata_store import SQLAlchemyMetadataStore
from nexus.storage.schema import VIEW_NAMES
from nexus.work import RetryPolicy, WorkQueue

GETTERS = [
    "get_ready_work",
    "get_pending_work",
    "get_blocked_work",
    "get_work_by_priority",
    "get_in_progress_work",
]


@pytest.fixture
def engine(fresh_db_url: str) -> Iterator[sa.Engine]:
    made = create_engine(fresh_db_url)
    yield made
    made.dispose()


def revisions_base_to_head() -> list[Any]:
    script = ScriptDirectory.from_config(migrate.alembic_config())
    return list(reversed(list(script.walk_revisions())))


def schema_objects(engine: sa.Engine) -> set[tuple[str, str]]:
    """Every user-visible schema object but Alembic's own version table: tables, views,
    indexes, triggers (and functions, sequences and types on PostgreSQL)."""
    return {obj for obj in _all_objects(engine) if not obj[1].startswith("alembic_version")}


def _all_objects(engine: sa.Engine) -> set[tuple[str, str]]:
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            rows = conn.execute(
                sa.text("SELECT type, name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'")
            ).all()
            return {(kind, name) for kind, name in rows}
        queries = {
            "table": "SELECT tablename FROM pg_tables WHERE schemaname = 'public'",
            "view": "SELECT viewname FROM pg_views WHERE schemaname = 'public'",
            "index": "SELECT indexname FROM pg_indexes WHERE schemaname = 'public'",
            "trigger": "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal",
            # A function by its name and definition: a revision that only rewrites a body
            # (0007) changes it, and its downgrade must bring the old body back.
            "function": "SELECT p.proname || ' ' || md5(pg_get_functiondef(p.oid))"
            " FROM pg_proc p JOIN pg_namespace n"
            " ON n.oid = p.pronamespace WHERE n.nspname = 'public'",
            "sequence": "SELECT sequencename FROM pg_sequences WHERE schemaname = 'public'",
            "policy": "SELECT tablename || '.' || policyname FROM pg_policies"
            " WHERE schemaname = 'public'",
            "type": "SELECT t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace"
            " WHERE n.nspname = 'public' AND t.typtype IN ('e', 'd')",
        }
        return {
            (kind, name)
            for kind, sql in queries.items()
            for name in conn.execute(sa.text(sql)).scalars()
        }


def view_names(engine: sa.Engine) -> set[str]:
    return {name for kind, name in schema_objects(engine) if kind == "view"}


def snapshot(db_url: str) -> list[list[dict[str, Any]]]:
    with SQLAlchemyMetadataStore(db_url, run_migrations=False) as store:
        return [getattr(store, getter)() for getter in GETTERS]


def test_single_linear_history() -> None:
    script = ScriptDirectory.from_config(migrate.alembic_config())
    heads = script.get_heads()
    assert len(heads) == 1
    assert heads == [migrate.head_revision()]
    assert script.get_bases() == ["0001"]
    revisions = revisions_base_to_head()
    assert revisions[0].down_revision is None
    for previous, current in itertools.pairwise(revisions):
        assert current.down_revision == previous.revision
    assert [r.revision for r in revisions][:3] == ["0001", "0002", "0003"]


def test_migrations_ship_with_the_package() -> None:
    directory = migrate.migrations_directory()
    assert (directory / "env.py").is_file()
    assert (directory / "versions").is_dir()
    assert directory.name == "migrations"


def test_stairway_every_revision_up_down_up_then_base(engine: sa.Engine, fresh_db_url: str) -> None:
    assert migrate.current_revision(engine) is None
    for revision in revisions_base_to_head():
        before = schema_objects(engine)
        migrate.upgrade(engine, revision.revision)
        assert migrate.current_revision(engine) == revision.revision
        after = schema_objects(engine)
        # Most revisions only add; 0005 also drops what it replaces (0002's triggers, the
        # projection bypass, three indexes); a PostgreSQL-only one adds nothing to SQLite;
        # one that rewrites function bodies (0009) replaces their definitions.
        if engine.dialect.name == "sqlite" and getattr(revision.module, "POSTGRESQL_ONLY", False):
            assert after == before, revision.revision
        elif revision.revision == "0005" or getattr(revision.module, "REWRITES_FUNCTIONS", False):
            assert after != before, revision.revision
        else:
            assert after > before, revision.revision
        migrate.downgrade(engine, revision.down_revision or "base")
        assert migrate.current_revision(engine) == revision.down_revision
        assert schema_objects(engine) == before, revision.revision
        migrate.upgrade(engine, revision.revision)
        assert schema_objects(engine) == after, revision.revision
    assert migrate.current_revision(engine) == migrate.head_revision()
    assert set(VIEW_NAMES) <= view_names(engine)

    # downgrade base, with data in the tables, removes everything but alembic_version.
    with SQLAlchemyMetadataStore(fresh_db_url) as store:
        store.put("/a")
        store.set_file_metadata("/a", "status", "ready")
        store.set_file_metadata("/a", "depends_on", "/b")
    migrate.downgrade(engine, "base")
    assert schema_objects(engine) == set()
    assert migrate.current_revision(engine) is None
    # And it all comes back, empty.
    migrate.upgrade(engine)
    assert set(VIEW_NAMES) <= view_names(engine)
    assert snapshot(fresh_db_url) == [[], [], [], [], []]


def test_upgrade_with_data_in_place_reprojects_the_same_views(
    engine: sa.Engine, fresh_db_url: str
) -> None:
    with SQLAlchemyMetadataStore(fresh_db_url) as store:
        done = store.put("/done").path_id
        store.set_file_metadata(done, "status", "completed")
        rows = [
            ("/ready", "ready", 2, ["a"], done, None),
            ("/ready-none", "ready", None, [], None, None),
            ("/pending", "pending", 1, None, None, None),
            ("/blocked", "blocked", 3, ["b", "c"], ["/pending", "/missing", done], None),
            ("/waiting", "ready", 0, None, "/pending", None),
            ("/running", "in_progress", 5, None, None, "2026-01-01T12:00:00+00:00"),
            ("/failed", "failed", 4, ["x"], None, None),
        ]
        for path, status, priority, tags, depends_on, started_at in rows:
            store.put(path, size=len(path), content_hash=f"hash-{path}")
            store.set_file_metadata(path, "status", status)
            store.set_file_metadata(path, "priority", priority)
            store.set_file_metadata(path, "tags", tags)
            store.set_file_metadata(path, "depends_on", depends_on)
            if started_at:
                store.set_file_metadata(path, "worker_id", "w1")
                store.set_file_metadata(path, "started_at", started_at)
        store.put("/deleted")
        store.set_file_metadata("/deleted", "status", "ready")
        store.delete("/deleted")
        store.put("/plain")
        store.set_file_metadata("/plain", "note", {"kept": [1, 2]})
    before = snapshot(fresh_db_url)
    assert all(before), "every view should hold something"

    migrate.downgrade(engine, "0001")
    assert migrate.current_revision(engine) == "0001"
    assert view_names(engine) == set()
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM file_paths")).scalar() == 10
        assert conn.execute(sa.text("SELECT count(*) FROM file_metadata")).scalar() > 20

    migrate.upgrade(engine)
    assert migrate.current_revision(engine) == migrate.head_revision()
    assert snapshot(fresh_db_url) == before
    with SQLAlchemyMetadataStore(fresh_db_url) as store:
        assert store.get_file_metadata("/plain", "note") == {"kept": [1, 2]}
        # The projection is live again after the upgrade.
        store.set_file_metadata("/pending", "status", "completed")
        assert [r["virtual_path"] for r in store.get_ready_work()][:2] == ["/waiting", "/ready"]


def test_run_migrations_false_then_opening_migrates_once(
    fresh_db_url: str, engine: sa.Engine
) -> None:
    SQLAlchemyMetadataStore(fresh_db_url, run_migrations=False).close()
    assert migrate.current_revision(engine) is None
    assert schema_objects(engine) == set()
    for _ in range(3):
        SQLAlchemyMetadataStore(fresh_db_url).close()
    with engine.connect() as conn:
        versions = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all()
    assert versions == [migrate.head_revision()]
    assert set(VIEW_NAMES) <= view_names(engine)


def _names(engine: sa.Engine, kind: str) -> set[str]:
    return {name for k, name in schema_objects(engine) if k == kind}


def test_0005_moves_queue_state_out_of_metadata_and_back(
    engine: sa.Engine, fresh_db_url: str
) -> None:
    """At 0004 an item is in flight: its lease, attempts and last error are in the old
    'queue' metadata object, and it has history. 0005 moves that state into typed columns
    (the lease stays valid), drops the 'queue' key, counts the items; 0004 puts it all back."""
    migrate.upgrade(engine, "0004")
    pg = engine.dialect.name == "postgresql"
    now = "2026-01-01T12:00:00.000+00:00"
    queue_object = {
        "attempts": 2,
        "max_attempts": 5,
        "lease_token": "tok-in-flight",
        "lease_expires_at": "2099-01-01T00:00:00.000+00:00",
        "lease_seconds": 60,
        "last_error": "boom 1",
    }
    rows = {
        "/m/running": {
            "status": "in_progress",
            "worker_id": "w-old",
            "started_at": now,
            "queue": queue_object,
        },
        "/m/done": {"status": "completed"},
        "/m/dependent": {"status": "blocked", "depends_on": "/m/running"},
        "/m/plain": {"note": "kept"},
    }
    with engine.begin() as conn:
        for i, (path, meta) in enumerate(rows.items()):
            path_id = f"00000000-0000-7000-8000-00000000000{i}"
            conn.execute(
                sa.text(
                    "INSERT INTO file_paths (path_id, tenant_id, virtual_path, size_bytes,"
                    " created_at, updated_at) VALUES (:id, 'default', :path, 0, :now, :now)"
                ),
                {"id": path_id, "path": path, "now": now},
            )
            for key, value in meta.items():
                conn.execute(
                    sa.text(
                        "INSERT INTO file_metadata (path_id, key, value, created_at, updated_at)"
                        f" VALUES (:id, :key, {'CAST(:value AS jsonb)' if pg else ':value'},"
                        " :now, :now)"
                    ),
                    {"id": path_id, "key": key, "value": json.dumps(value), "now": now},
                )
            if "status" in meta:
                conn.execute(
                    sa.text(
                        "INSERT INTO work_history (path_id, tenant_id, event, at)"
                        " VALUES (:id, 'default', 'enqueued', :now)"
                    ),
                    {"id": path_id, "now": now},
                )
        running_id = "00000000-0000-7000-8000-000000000000"
        conn.execute(
            sa.text(
                "INSERT INTO work_history (path_id, tenant_id, event, at, worker_id)"
                " VALUES (:id, 'default', 'claimed', :now, 'w-old')"
            ),
            {"id": running_id, "now": now},
        )
        # 0004's projection took the lease from the object.
        assert conn.execute(
            sa.text("SELECT lease_token, attempts FROM work_items WHERE path_id = :id"),
            {"id": running_id},
        ).one() == ("tok-in-flight", 2)

    migrate.upgrade(engine, "0005")
    assert "work_counters" in _names(engine, "table")
    assert "nexus_projection_bypass" not in _names(engine, "table")
    indexes = _names(engine, "index")
    assert "ix_work_items_deferred" in indexes
    assert not {"ix_work_items_lease", "ix_work_items_counts", "ix_work_history_event_at"} & indexes
    with SQLAlchemyMetadataStore(fresh_db_url, run_migrations=False) as store:
        queue = WorkQueue(store)
        item = queue.get_work_item("/m/running")
        assert item is not None
        assert (item["status"], item["worker_id"], item["attempts"], item["max_attempts"]) == (
            "in_progress",
            "w-old",
            2,
            5,
        )
        assert item["last_error"] == "boom 1" and item["lease_expires_at"] is not None
        # No metadata read returns queue state any more; the other keys are as they were.
        assert store.get_file_metadata("/m/running", "queue") is None
        assert store.get_file_metadata("/m/plain", "note") == "kept"
        assert store.get_file_metadata("/m/running", "status") == "in_progress"
        # The counters start from the migrated rows.
        stats = queue.work_stats()
        assert stats["by_status"]["in_progress"] == 1 and stats["by_status"]["completed"] == 1
        assert stats["blocked"] == len(store.get_blocked_work()) == 1
        # The history is kept (0005 writes no new rows for items that already existed).
        events = [e["event"] for e in queue.get_work_history("/m/running")]
        assert events == ["enqueued", "claimed"]
        # The in-flight lease is still held by its token: heartbeat it, then complete it;
        # the blocked dependent is promoted by the database.
        queue.heartbeat("/m/running", "tok-in-flight")
        assert queue.complete_work("/m/running", "tok-in-flight") == ["/m/dependent"]
        assert [e["event"] for e in queue.get_work_history("/m/running")] == [
            "enqueued",
            "claimed",
            "heartbeat",
            "completed",
        ]
        # 'queue' is an ordinary key now.
        store.set_file_metadata("/m/plain", "queue", {"lease_token": "mine"})
        assert store.get_file_metadata("/m/plain", "queue") == {"lease_token": "mine"}
        assert queue.get_work_item("/m/plain") is None
        # A new in-flight lease with a failed attempt, to take back down.
        store.delete_file_metadata("/m/plain", "queue")
        queue.close()
        queue = WorkQueue(store, retry_policy=RetryPolicy(base_seconds=0.01, jitter=0.0))
        queue.enqueue("/m/again", max_attempts=4)
        [claimed] = queue.claim_ready_work("w-new", path_prefix="/m/again")
        assert queue.fail_work("/m/again", claimed["lease_token"], "boom 2") == "ready"
        time.sleep(0.05)
        [claimed] = queue.claim_ready_work("w-new", path_prefix="/m/again", lease_seconds=0.01)
        queue.close()

    migrate.downgrade(engine, "0004")
    assert migrate.current_revision(engine) == "0004"
    assert "work_counters" not in _names(engine, "table")
    assert "ix_work_items_lease" in _names(engine, "index")
    with engine.connect() as conn:
        values = {
            path: json.loads(value) if not pg else value
            for path, value in conn.execute(
                sa.text(
                    "SELECT p.virtual_path, m.value FROM file_metadata m"
                    " JOIN file_paths p ON p.path_id = m.path_id WHERE m.key = 'queue'"
                )
            )
        }
        assert values["/m/again"]["attempts"] == 2
        assert values["/m/again"]["max_attempts"] == 4
        assert values["/m/again"]["last_error"] == "boom 2"
        assert values["/m/again"]["lease_token"] == claimed["lease_token"]
        assert values["/m/running"]["attempts"] == 2 and "lease_token" not in values["/m/running"]
        statuses = dict(
            conn.execute(
                sa.text(
                    "SELECT p.virtual_path, w.status FROM work_items w"
                    " JOIN file_paths p ON p.path_id = w.path_id"
                )
            ).all()
        )
        assert statuses == {
            "/m/running": "completed",
            "/m/done": "completed",
            "/m/dependent": "ready",
            "/m/again": "in_progress",
        }
        # 0004's projection (and its own view of the status) is live again.
        status_rows = dict(
            conn.execute(
                sa.text(
                    "SELECT p.virtual_path, m.value FROM file_metadata m"
                    " JOIN file_paths p ON p.path_id = m.path_id WHERE m.key = 'status'"
                )
            ).all()
        )
        assert {k: json.loads(v) if not pg else v for k, v in status_rows.items()} == statuses
        history = conn.execute(sa.text("SELECT count(*) FROM work_history")).scalar()
        assert history is not None and history >= 9
    migrate.downgrade(engine, "base")
    assert schema_objects(engine) == set()
