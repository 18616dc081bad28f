"""``nexus.connect`` as a user sees it, on SQLite (the data_dir default) and PostgreSQL
(``database_url``): write/read/exists/delete/list, content stored content-addressed under
``data_dir`` whatever the database, the metadata store behind ``nx.metadata``, the context
manager, and which database wins (explicit config beats ``NEXUS_DATABASE_URL``)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import sqlalchemy as sa

import nexus
from nexus.errors import (
    InvalidArgumentError,
    InvalidPathError,
    NexusError,
    NexusFileNotFoundError,
)
from nexus.storage.metadata_store import SQLAlchemyMetadataStore


@pytest.fixture(autouse=True)
def _no_database_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NEXUS_DATABASE_URL", raising=False)


@pytest.fixture
def config(db_url: str, tmp_path: Path) -> dict[str, str]:
    return {"data_dir": str(tmp_path / "data"), "database_url": db_url}


def blobs(data_dir: Path) -> dict[str, bytes]:
    return {
        p.name: p.read_bytes()
        for p in data_dir.rglob("*")
        if p.is_file() and p.name != "metadata.db" and not p.name.startswith("metadata.db-")
    }


def test_write_read_exists_delete_list(config: dict[str, str]) -> None:
    with nexus.connect(config=config) as nx:
        assert isinstance(nx.metadata, SQLAlchemyMetadataStore)
        record = nx.write("/jobs/a.json", b'{"task": "a"}')
        assert record.size_bytes == len(b'{"task": "a"}')
        assert record.content_hash == hashlib.sha256(b'{"task": "a"}').hexdigest()
        nx.write("/jobs/b.json", b"")
        nx.write("/other/c.bin", bytes(range(256)), file_type="bin")
        assert nx.read("/jobs/a.json") == b'{"task": "a"}'
        assert nx.read("/jobs/b.json") == b""
        assert nx.read("/other/c.bin") == bytes(range(256))
        assert nx.read(record.path_id) == b'{"task": "a"}'
        assert nx.exists("/jobs/a.json") and not nx.exists("/jobs/zzz")
        assert nx.list("/jobs") == ["/jobs/a.json", "/jobs/b.json"]
        assert nx.list() == ["/jobs/a.json", "/jobs/b.json", "/other/c.bin"]
        # Overwrite: same path, new content.
        again = nx.write("/jobs/a.json", b"v2")
        assert again.path_id == record.path_id
        assert nx.read("/jobs/a.json") == b"v2"
        nx.delete("/jobs/a.json")
        assert not nx.exists("/jobs/a.json")
        assert nx.list("/jobs") == ["/jobs/b.json"]
        with pytest.raises(NexusFileNotFoundError):
            nx.read("/jobs/a.json")
        with pytest.raises(NexusFileNotFoundError):
            nx.delete("/jobs/a.json")


def test_content_is_stored_under_data_dir(config: dict[str, str]) -> None:
    data_dir = Path(config["data_dir"])
    with nexus.connect(config=config) as nx:
        nx.write("/a", b"same bytes")
        nx.write("/b", b"same bytes")
        nx.write("/c", b"other bytes")
        stored = blobs(data_dir)
    assert stored == {
        hashlib.sha256(b"same bytes").hexdigest(): b"same bytes",
        hashlib.sha256(b"other bytes").hexdigest(): b"other bytes",
    }
    # With a database URL the database is not in data_dir.
    assert not (data_dir / "metadata.db").exists()


def test_default_database_is_metadata_db_in_data_dir(tmp_path: Path) -> None:
    data_dir = tmp_path / "nested" / "data"
    with nexus.connect(config={"data_dir": str(data_dir)}) as nx:
        nx.write("/x", b"x")
        assert nx.metadata.url == f"sqlite:///{(data_dir / 'metadata.db').resolve()}"
    assert (data_dir / "metadata.db").is_file()
    with nexus.connect(config={"data_dir": str(data_dir)}) as nx:
        assert nx.read("/x") == b"x"


def test_relative_data_dir_is_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with nexus.connect() as nx:
        nx.write("/x", b"x")
    assert (tmp_path / "nexus-data" / "metadata.db").is_file()


def test_context_manager_closes(config: dict[str, str]) -> None:
    with nexus.connect(config=config) as nx:
        nx.write("/a", b"a")
    with pytest.raises(NexusError):
        nx.write("/b", b"b")
    with pytest.raises(NexusError):
        nx.metadata.get_ready_work()
    nx.close()  # closing twice is harmless
    reopened = nexus.connect(config=config)
    try:
        assert reopened.read("/a") == b"a"
    finally:
        reopened.close()


def test_bad_input_raises_typed_errors(config: dict[str, str]) -> None:
    with nexus.connect(config=config) as nx:
        with pytest.raises(InvalidArgumentError):
            nx.write("/a", "text, not bytes")  # type: ignore[arg-type]
        with pytest.raises(InvalidPathError):
            nx.write("relative", b"x")
        with pytest.raises(InvalidPathError):
            nx.write("/a/../b", b"x")
        assert nx.list() == []
        nx.write("/ok", bytearray(b"ba"))
        nx.write("/mv", memoryview(b"mv"))
        assert (nx.read("/ok"), nx.read("/mv")) == (b"ba", b"mv")


def test_explicit_database_url_beats_the_environment(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoy = tmp_path / "decoy.db"
    monkeypatch.setenv("NEXUS_DATABASE_URL", f"sqlite:///{decoy}")
    with nexus.connect(config={"data_dir": str(tmp_path / "d"), "database_url": db_url}) as nx:
        nx.write("/here", b"1")
    with SQLAlchemyMetadataStore(db_url=db_url) as store:
        assert store.exists("/here")
    assert not decoy.exists()


def test_store_arguments_and_environment(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEXUS_DATABASE_URL", db_url)
    with SQLAlchemyMetadataStore() as store:  # no argument: the environment
        store.put("/from-env")
    other = tmp_path / "explicit.db"
    with SQLAlchemyMetadataStore(db_url=f"sqlite:///{other}") as store:  # keyword beats env
        assert not store.exists("/from-env")
    with SQLAlchemyMetadataStore(str(other)) as store:  # positional beats env too
        assert not store.exists("/from-env")
    with SQLAlchemyMetadataStore(db_url) as store:
        assert store.exists("/from-env")


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_connect_with_a_postgresql_url_keeps_content_local(config: dict[str, str]) -> None:
    with nexus.connect(config=config) as nx:
        nx.write("/pg.json", b"pg")
        assert nx.metadata.dialect == "postgresql"
    engine = sa.create_engine(config["database_url"])
    try:
        with engine.connect() as conn:
            assert (
                conn.execute(
                    sa.text("SELECT content_hash FROM file_paths WHERE virtual_path = '/pg.json'")
                ).scalar()
                == hashlib.sha256(b"pg").hexdigest()
            )
    finally:
        engine.dispose()
    assert list(blobs(Path(config["data_dir"])).values()) == [b"pg"]
