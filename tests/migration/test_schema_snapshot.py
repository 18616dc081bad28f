"""The checked-in descriptions of the schema at head (``schema/sqlite.sql``,
``schema/postgresql.sql``) are what the revisions build: each test migrates a scratch database
to head, describes it and compares. On drift the failure shows the unified diff and the
command that regenerates the files (``python -m nexus.storage.schema_dump --write``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from nexus.storage import migrate, schema_dump
from nexus.storage.engine import create_engine
from tests.conftest import PostgresServer


def _compare(dialect: str, generated: str) -> None:
    message = schema_dump.difference(dialect, generated)
    if message is not None:
        pytest.fail(message, pytrace=False)


def test_sqlite_file_is_the_schema_at_head() -> None:
    _compare("sqlite", schema_dump.dump_sqlite())


@pytest.mark.postgresql
def test_postgresql_file_is_the_schema_at_head(pg_server: PostgresServer) -> None:
    url = pg_server.create_database()
    _compare("postgresql", schema_dump.dump_database(url))

    # An object the dump cannot print yet is refused, not left out of the file.
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TYPE nexus_mood AS ENUM ('calm', 'busy')")
        with pytest.raises(schema_dump.UnsupportedSchemaObject, match="nexus_mood"):
            schema_dump.describe(engine)
    finally:
        engine.dispose()


def test_both_files_name_the_head_revision() -> None:
    """A new revision cannot pass without regenerating: the header names head."""
    head = migrate.head_revision()
    for dialect in schema_dump.DIALECTS:
        first = schema_dump.snapshot_path(dialect).read_text(encoding="utf-8").splitlines()[0]
        assert f"at revision {head} (head)" in first, (dialect, first)


def test_the_command_reports_drift_with_a_diff(tmp_path: Path) -> None:
    lines: list[str] = []
    argv = ["--dialect", "sqlite", "--dir", str(tmp_path)]
    assert schema_dump.main([*argv, "--write"], out=lines.append) == 0
    written = tmp_path / "sqlite.sql"
    assert lines == [f"{written}: written ({len(written.read_text().splitlines())} lines)"]

    text = written.read_text(encoding="utf-8")
    written.write_text(text.replace("CREATE TABLE work_items", "CREATE TABLE work_itemz"))
    lines.clear()
    assert schema_dump.main(argv, out=lines.append) == 1
    report = "\n".join(lines)
    assert "is out of date" in report
    assert "-CREATE TABLE work_itemz (" in report
    assert "+CREATE TABLE work_items (" in report
    assert schema_dump.REGENERATE_COMMAND in report

    lines.clear()
    assert schema_dump.main([*argv, "--write"], out=lines.append) == 0
    assert schema_dump.main(argv, out=lines.append) == 0
    assert lines[-1].endswith("sqlite.sql: up to date")


def test_the_postgresql_file_needs_a_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(schema_dump.POSTGRES_URL_ENV, raising=False)
    with pytest.raises(SystemExit) as exited:
        schema_dump.main(["--dialect", "postgresql"])
    assert exited.value.code == 2
