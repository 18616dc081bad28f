"""``create=False``: a store (or ``nexus.connect``) used read-only leaves nothing behind. A
missing SQLite file, given as a path or a ``sqlite:///`` URL, raises DatabaseNotFoundError
naming it, and no file or directory appears; an existing database without the nexus schema
is refused and not given one; an existing nexus database opens (and one below head is still
migrated). The default, ``create=True``, creates as before."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

import nexus
from nexus.errors import DatabaseNotFoundError, NexusConnectionError, NexusDatabaseError
from nexus.storage import migrate
from nexus.storage.engine import create_engine, resolve_database_url
from nexus.storage.metadata_store import SQLAlchemyMetadataStore


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize("form", ["path", "relative path", "sqlite URL", "sqlite URI"])
@pytest.mark.parametrize("where", ["missing file", "missing directory"])
def test_a_missing_sqlite_database_is_not_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, form: str, where: str
) -> None:
    monkeypatch.chdir(tmp_path)
    relative = "typo.db" if where == "missing file" else "no/such/dir/typo.db"
    path = tmp_path / relative
    target = {
        "path": str(path),
        "relative path": relative,
        "sqlite URL": f"sqlite:///{path}",
        "sqlite URI": f"sqlite:///file:{path}?uri=true",
    }[form]
    with pytest.raises(DatabaseNotFoundError) as caught:
        SQLAlchemyMetadataStore(target, create=False)
    assert caught.value.url == str(path)
    assert str(caught.value) == f"no nexus database at {path}: no such file"
    assert isinstance(caught.value, NexusConnectionError)
    assert isinstance(caught.value, NexusDatabaseError)
    assert tree(tmp_path) == []
    with pytest.raises(DatabaseNotFoundError):
        SQLAlchemyMetadataStore(target, create=False, run_migrations=False)
    assert tree(tmp_path) == []


def test_connect_with_create_false_creates_no_directory(tmp_path: Path) -> None:
    data_dir = tmp_path / "nexus-data"
    with pytest.raises(DatabaseNotFoundError, match=r"no nexus database at .*metadata\.db"):
        nexus.connect(config={"data_dir": str(data_dir), "create": False})
    assert tree(tmp_path) == []
    with nexus.connect(config={"data_dir": str(data_dir)}) as nx:  # the default creates
        nx.write("/a", b"x")
    with nexus.connect(config={"data_dir": str(data_dir), "create": False}) as nx:
        assert nx.read("/a") == b"x"


def test_create_must_be_a_bool(tmp_path: Path) -> None:
    with pytest.raises(nexus.NexusConfigError, match="create must be True or False"):
        nexus.connect(config={"data_dir": str(tmp_path / "d"), "create": "no"})
    assert tree(tmp_path) == []


def test_an_existing_nexus_database_opens_without_create(db_url: str) -> None:
    with SQLAlchemyMetadataStore(db_url) as store:
        store.put("/kept")
    with SQLAlchemyMetadataStore(db_url, create=False) as store:
        assert store.exists("/kept")


def test_a_database_without_the_nexus_schema_is_not_given_one(fresh_db_url: str) -> None:
    database = sa.engine.make_url(fresh_db_url).database
    if fresh_db_url.startswith("sqlite") and database is not None:
        Path(database).touch()  # an existing, empty SQLite file
    with pytest.raises(DatabaseNotFoundError, match="it has no nexus schema"):
        SQLAlchemyMetadataStore(fresh_db_url, create=False)
    engine = sa.create_engine(fresh_db_url)
    try:
        with engine.connect() as conn:
            assert sa.inspect(conn).get_table_names() == []
    finally:
        engine.dispose()


def test_a_nexus_database_below_head_is_still_migrated(fresh_db_url: str) -> None:
    engine = create_engine(resolve_database_url(fresh_db_url))
    try:
        migrate.upgrade(engine, "0001")
        with SQLAlchemyMetadataStore(fresh_db_url, create=False):
            pass
        assert migrate.current_revision(engine) == migrate.head_revision()
    finally:
        engine.dispose()
