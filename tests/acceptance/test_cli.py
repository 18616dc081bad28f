"""The ``nexus`` command, through click's CliRunner: ``demo`` builds a graph and prints the
five views, ``show`` prints views of an existing database, ``migrate``/``downgrade`` move the
schema (on SQLite and PostgreSQL), a NexusError becomes a one-line message and exit code 1,
and every command is documented in docs/cli.md."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from nexus.cli.main import cli
from nexus.storage import migrate
from nexus.storage.metadata_store import SQLAlchemyMetadataStore
from nexus.storage.schema import VIEW_NAMES
from nexus.work import WorkQueue

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.delenv("NEXUS_DATABASE_URL", raising=False)
    return CliRunner()


def sqlite_views(db_file: Path) -> set[str]:
    with sqlite3.connect(db_file) as conn:
        return {n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type='view'")}


def test_demo_prints_the_five_views(runner: CliRunner, tmp_path: Path) -> None:
    data_dir = tmp_path / "demo-data"
    result = runner.invoke(cli, ["demo", "--data-dir", str(data_dir)])
    assert result.exit_code == 0, result.output
    for name in VIEW_NAMES:
        assert name in result.output
    for path in ("/demo/extract.json", "/demo/clean.json", "/demo/index.json"):
        assert path in result.output
    assert (data_dir / "metadata.db").is_file()
    assert set(VIEW_NAMES) <= sqlite_views(data_dir / "metadata.db")
    # Running it again on the same data is fine.
    again = runner.invoke(cli, ["demo", "--data-dir", str(data_dir)])
    assert again.exit_code == 0, again.output


def test_demo_leaves_the_documented_graph(runner: CliRunner, tmp_path: Path) -> None:
    data_dir = tmp_path / "demo-data"
    assert runner.invoke(cli, ["demo", "--data-dir", str(data_dir)]).exit_code == 0
    with SQLAlchemyMetadataStore(data_dir / "metadata.db") as store:
        assert store.get_file_metadata("/demo/extract.json", "status") == "completed"
        ready = [r["virtual_path"] for r in store.get_ready_work()]
        blocked = {r["virtual_path"]: r["blocker_count"] for r in store.get_blocked_work()}
        running = [r["virtual_path"] for r in store.get_in_progress_work()]
        queue = WorkQueue(store)
        index = queue.get_work_item("/demo/index.json")
        extract = queue.get_work_item("/demo/extract.json")
        queue.close()
    assert index is not None and index["status"] == "in_progress"
    assert index["worker_id"] == "worker-1"
    assert extract is not None and extract["status"] == "completed"
    assert "/demo/thumbnails.json" in ready
    assert "/demo/clean.json" not in blocked  # its only dependency was completed
    assert blocked.get("/demo/report.json") == 2
    assert running == ["/demo/index.json"]


def test_demo_on_the_parametrized_backend(runner: CliRunner, db_url: str, tmp_path: Path) -> None:
    result = runner.invoke(cli, ["demo", "--data-dir", str(tmp_path / "d"), "--db", db_url])
    assert result.exit_code == 0, result.output
    for name in VIEW_NAMES:
        assert name in result.output
    with SQLAlchemyMetadataStore(db_url) as store:
        assert store.exists("/demo/extract.json")


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[Path]:
    db_file = tmp_path / "cli.db"
    with SQLAlchemyMetadataStore(db_file) as store:
        for path, status, priority in [
            ("/a", "ready", 2),
            ("/b", "ready", 1),
            ("/c", "pending", None),
            ("/d", "in_progress", 3),
        ]:
            store.put(path)
            store.set_file_metadata(path, "status", status)
            store.set_file_metadata(path, "priority", priority)
        store.put("/e")
        store.set_file_metadata("/e", "status", "blocked")
        store.set_file_metadata("/e", "depends_on", "/c")
    yield db_file


def test_show_one_view(runner: CliRunner, sqlite_db: Path) -> None:
    result = runner.invoke(cli, ["show", "ready", "--db", str(sqlite_db)])
    assert result.exit_code == 0, result.output
    assert "ready_work_items" in result.output
    assert result.output.index("/b") < result.output.index("/a")
    assert "/c" not in result.output
    limited = runner.invoke(cli, ["show", "ready", "--db", str(sqlite_db), "--limit", "1"])
    assert limited.exit_code == 0
    assert "/b" in limited.output and "/a" not in limited.output
    blocked = runner.invoke(cli, ["show", "blocked", "--db", str(sqlite_db)])
    assert "/e" in blocked.output and "blocker_count" in blocked.output


def test_show_all_views_and_environment_database(
    runner: CliRunner, sqlite_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEXUS_DATABASE_URL", str(sqlite_db))
    result = runner.invoke(cli, ["show"])
    assert result.exit_code == 0, result.output
    for name in VIEW_NAMES:
        assert name in result.output
    for path in ("/a", "/b", "/c", "/d", "/e"):
        assert path in result.output


def test_show_rejects_bad_arguments(runner: CliRunner, sqlite_db: Path) -> None:
    assert runner.invoke(cli, ["show", "nonsense", "--db", str(sqlite_db)]).exit_code == 2
    assert (
        runner.invoke(cli, ["show", "ready", "--db", str(sqlite_db), "--limit", "-1"]).exit_code
        == 2
    )


def test_migrate_and_downgrade_sqlite(runner: CliRunner, tmp_path: Path) -> None:
    db_file = tmp_path / "m.db"
    result = runner.invoke(cli, ["migrate", "--db", str(db_file)])
    assert result.exit_code == 0, result.output
    assert migrate.head_revision() in result.output
    assert set(VIEW_NAMES) <= sqlite_views(db_file)
    result = runner.invoke(cli, ["downgrade", "--revision", "base", "--db", str(db_file)])
    assert result.exit_code == 0, result.output
    assert "base" in result.output
    assert sqlite_views(db_file) == set()
    result = runner.invoke(cli, ["migrate", "--db", str(db_file), "--revision", "0001"])
    assert result.exit_code == 0, result.output
    assert "0001" in result.output
    assert sqlite_views(db_file) == set()


def test_migrate_and_downgrade_on_each_backend(runner: CliRunner, fresh_db_url: str) -> None:
    assert runner.invoke(cli, ["migrate", "--db", fresh_db_url]).exit_code == 0
    engine = sa.create_engine(fresh_db_url)
    try:
        with engine.connect() as conn:
            assert set(VIEW_NAMES) <= set(sa.inspect(conn).get_view_names())
        result = runner.invoke(cli, ["downgrade", "--revision", "base", "--db", fresh_db_url])
        assert result.exit_code == 0, result.output
        with engine.connect() as conn:
            assert sa.inspect(conn).get_view_names() == []
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    "args",
    [
        ["show", "--db", "mysql://user@host/db"],
        ["migrate", "--db", "oracle://host/db"],
        ["downgrade", "--revision", "base", "--db", "mssql://host/db"],
        ["demo", "--data-dir", "{tmp}", "--db", "mysql://user@host/db"],
    ],
)
def test_nexus_errors_exit_1_with_a_message(
    runner: CliRunner, tmp_path: Path, args: list[str]
) -> None:
    result = runner.invoke(cli, [a.replace("{tmp}", str(tmp_path)) for a in args])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    [line] = [line for line in result.output.splitlines() if line.strip()]
    assert line.startswith("Error: NexusConfigError")
    assert "unsupported database" in line


def test_unknown_revision_is_a_clean_error(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(cli, ["migrate", "--db", str(tmp_path / "x.db"), "--revision", "9999"])
    assert result.exit_code == 1
    assert result.output.startswith("Error: ")
    assert "Traceback" not in result.output


def test_version_and_help(runner: CliRunner) -> None:
    version = runner.invoke(cli, ["--version"])
    assert version.exit_code == 0 and "0.1.0" in version.output
    helped = runner.invoke(cli, ["--help"])
    assert helped.exit_code == 0
    for name in cli.commands:
        assert name in helped.output


def _command_names(group: click.Group, prefix: str = "") -> list[str]:
    names = []
    for name, command in group.commands.items():
        full = f"{prefix}{name}"
        names.append(full)
        if isinstance(command, click.Group):
            names += _command_names(command, prefix=f"{full} ")
    return names


def test_every_command_is_documented_in_docs_cli_md() -> None:
    doc = ROOT / "docs" / "cli.md"
    assert doc.is_file(), "docs/cli.md is missing"
    text = doc.read_text(encoding="utf-8")
    names = _command_names(cli)
    assert names
    missing = [name for name in names if not re.search(rf"nexus {re.escape(name)}(?![\w-])", text)]
    assert missing == []
