"""A migration that fails half way leaves the database at the revision it started from, on
SQLite and PostgreSQL: the packaged revisions are copied into a temporary script directory with
one more revision after head that creates a table, adds a column, writes a row and then fails
(bad SQL, or a Python exception). nexus's migrate runner, pointed at that directory, raises
MigrationError; afterwards the version is the old head, none of the revision's changes exist,
and the database still works (a store opens on it). From an empty database, a failure in the
last revision leaves nothing behind: every revision of the run is rolled back with it.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from nexus.errors import MigrationError
from nexus.storage import migrate
from nexus.storage.engine import create_engine
from nexus.storage.metadata_store import SQLAlchemyMetadataStore

FAILING_REVISION = '''"""deliberately failing revision (tests only)

Revision ID: 9001
Revises: {head}
"""

import sqlalchemy as sa
from alembic import op

revision = "9001"
down_revision = "{head}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("half_made", sa.Column("id", sa.Integer(), primary_key=True))
    op.add_column("work_items", sa.Column("half_made_column", sa.Integer(), nullable=True))
    op.execute(
        "INSERT INTO file_paths (path_id, tenant_id, virtual_path, size_bytes)"
        " VALUES ('00000000-0000-7000-8000-000000000001', 'default', '/half-made', 0)"
    )
    {failure}


def downgrade() -> None:
    op.drop_column("work_items", "half_made_column")
    op.drop_table("half_made")
'''

FAILURES = {
    "bad-sql": 'op.execute("SELECT no_such_column FROM no_such_table")',
    "exception": 'raise RuntimeError("revision 9001 fails on purpose")',
}


@pytest.fixture(params=list(FAILURES))
def failing_scripts(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """The packaged revisions plus a failing revision 9001 after head."""
    target = tmp_path / "scripts"
    shutil.copytree(
        migrate.migrations_directory(), target, ignore=shutil.ignore_patterns("__pycache__")
    )
    text = FAILING_REVISION.format(head=migrate.head_revision(), failure=FAILURES[request.param])
    (target / "versions" / "9001_fails_half_way.py").write_text(text)
    return target


@pytest.fixture
def engine(fresh_db_url: str) -> Iterator[sa.Engine]:
    made = create_engine(fresh_db_url)
    yield made
    made.dispose()


def leftovers(engine: sa.Engine) -> dict[str, object]:
    """What revision 9001 would have changed."""
    with engine.connect() as conn:
        inspector = sa.inspect(conn)
        columns = {c["name"] for c in inspector.get_columns("work_items")}
        row = conn.execute(
            sa.text("SELECT count(*) FROM file_paths WHERE virtual_path = '/half-made'")
        ).scalar()
        return {
            "half_made table": inspector.has_table("half_made"),
            "half_made_column": "half_made_column" in columns,
            "row": row,
        }


NOTHING_LEFT = {"half_made table": False, "half_made_column": False, "row": 0}


def test_the_failing_revision_is_after_head(failing_scripts: Path) -> None:
    assert migrate.head_revision(failing_scripts) == "9001"
    assert migrate.head_revision() != "9001"


def test_a_revision_failing_half_way_leaves_the_previous_revision(
    engine: sa.Engine, fresh_db_url: str, failing_scripts: Path
) -> None:
    migrate.upgrade(engine)
    head = migrate.head_revision()
    with SQLAlchemyMetadataStore(fresh_db_url) as store:
        store.put("/kept")

    with pytest.raises(MigrationError, match="migration failed"):
        migrate.upgrade(engine, script_location=failing_scripts)

    assert migrate.current_revision(engine) == head
    assert leftovers(engine) == NOTHING_LEFT
    with SQLAlchemyMetadataStore(fresh_db_url) as store:
        assert [r.virtual_path for r in store.list()] == ["/kept"]
        store.put("/after")


def test_a_failure_in_the_last_revision_of_a_fresh_upgrade_leaves_nothing(
    engine: sa.Engine, failing_scripts: Path
) -> None:
    with pytest.raises(MigrationError):
        migrate.upgrade(engine, script_location=failing_scripts)
    assert migrate.current_revision(engine) is None
    with engine.connect() as conn:
        assert set(sa.inspect(conn).get_table_names()) <= {"alembic_version"}
