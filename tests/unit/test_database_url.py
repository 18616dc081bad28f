"""Choosing the database without opening it: ``resolve_database_url`` turns SQLite paths and
URLs into SQLAlchemy URLs (PostgreSQL always through psycopg 3), rejects other databases with
NexusConfigError, and the store refuses to open without a database."""

from __future__ import annotations

from pathlib import Path

import pytest

import nexus
from nexus.errors import NexusConfigError
from nexus.storage.engine import resolve_database_url
from nexus.storage.metadata_store import SQLAlchemyMetadataStore


def test_plain_path_becomes_an_absolute_sqlite_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve_database_url("metadata.db") == f"sqlite:///{tmp_path.resolve()}/metadata.db"
    assert resolve_database_url(tmp_path / "x.db") == f"sqlite:///{tmp_path.resolve()}/x.db"


def test_parent_directory_of_a_sqlite_file_is_created(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "er" / "metadata.db"
    url = resolve_database_url(str(target))
    assert url == f"sqlite:///{target.resolve()}"
    assert target.parent.is_dir()
    assert not target.exists()


def test_sqlite_urls_pass_through(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/a.db"
    assert resolve_database_url(url) == url
    assert resolve_database_url(":memory:") == "sqlite://"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgres://u@h:5433/db", "postgresql+psycopg://u@h:5433/db"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgresql://u:secret@h/db", "postgresql+psycopg://u:secret@h/db"),
    ],
)
def test_postgresql_urls_use_psycopg(given: str, expected: str) -> None:
    assert resolve_database_url(given) == expected


@pytest.mark.parametrize(
    "url", ["mysql://u@h/db", "mssql+pyodbc://h/db", "oracle://h/db", "duckdb:///x.db"]
)
def test_unsupported_schemes_raise_config_error(url: str) -> None:
    with pytest.raises(NexusConfigError) as info:
        resolve_database_url(url)
    assert info.value.value == url
    assert isinstance(info.value, ValueError)


def test_empty_target_raises_config_error() -> None:
    with pytest.raises(NexusConfigError):
        resolve_database_url("")


def test_store_without_database_or_environment_raises_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("NEXUS_DATABASE_URL", raising=False)
    with pytest.raises(NexusConfigError):
        SQLAlchemyMetadataStore()


def test_store_rejects_both_path_and_url(tmp_path: Path) -> None:
    with pytest.raises(NexusConfigError):
        SQLAlchemyMetadataStore(tmp_path / "a.db", db_url=f"sqlite:///{tmp_path}/b.db")
    assert not (tmp_path / "a.db").exists()


def test_store_rejects_an_unsupported_url_before_connecting() -> None:
    with pytest.raises(NexusConfigError):
        SQLAlchemyMetadataStore("mysql://u@h/db")


@pytest.mark.parametrize("tenant", ["", None, 1])
def test_store_rejects_a_bad_tenant(tmp_path: Path, tenant: object) -> None:
    with pytest.raises(NexusConfigError):
        SQLAlchemyMetadataStore(tmp_path / "a.db", tenant_id=tenant)  # type: ignore[arg-type]


def test_connect_rejects_unknown_config_keys(tmp_path: Path) -> None:
    with pytest.raises(NexusConfigError) as info:
        nexus.connect(config={"data_dir": str(tmp_path), "datadir": "typo"})
    assert "datadir" in str(info.value)
