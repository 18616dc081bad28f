"""The Alembic revisions on SQLite and PostgreSQL (each test starts from an empty database):
one linear history with a single head, every step can go up, down and up again (stairway),
data written at head survives a downgrade to the source tables and is re-projected by the
upgrade, and ``downgrade base`` leaves nothing but ``alembic_version``."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory

from nexus.storage import migrate
from nexus.storage.engine import create_engine
from nexus.storage.metadata_store import SQLAlchemyMetadataStore
from nexus.storage.schema import VIEW_NAMES

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
            "function": "SELECT p.proname FROM pg_proc p JOIN pg_namespace n"
            " ON n.oid = p.pronamespace WHERE n.nspname = 'public'",
            "sequence": "SELECT sequencename FROM pg_sequences WHERE schemaname = 'public'",
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
