"""The ``nexus`` command as a whole, through click's CliRunner: every command has help text,
a ``--db`` option (leaf commands) and an entry in docs/cli.md (the click tree is walked, so a
new command without docs fails); ``demo`` builds a graph and prints the five views;
``db upgrade|downgrade|current|check`` move and report the schema on SQLite and PostgreSQL;
the database comes from ``--db``, else ``NEXUS_DATABASE_URL``, else ./nexus-data; a NexusError
is one line on stderr with exit code 1 and no traceback; usage errors exit 2."""

from __future__ import annotations

import json
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
DOC = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.delenv("NEXUS_DATABASE_URL", raising=False)
    return CliRunner()


def walk(group: click.Group, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every command path under ``group``: ("db",), ("db", "upgrade"), ..."""
    for name, command in group.commands.items():
        path = (*prefix, name)
        yield path
        if isinstance(command, click.Group):
            yield from walk(command, path)


def command_at(path: tuple[str, ...]) -> click.Command:
    command: click.Command = cli
    for name in path:
        assert isinstance(command, click.Group)
        command = command.commands[name]
    return command


COMMANDS = list(walk(cli))


def doc_headings() -> list[str]:
    return [line for line in DOC.splitlines() if line.startswith("#")]


def test_the_tree_has_the_issue_s_commands() -> None:
    names = {" ".join(path) for path in COMMANDS}
    expected = {
        "db upgrade", "db downgrade", "db current", "db check", "db enable-rls", "db disable-rls",
        "put", "get", "ls", "rm", "meta get", "meta set", "meta rm",
        "work enqueue", "work ready", "work pending", "work blocked", "work in-progress",
        "work by-priority", "work show", "work claim", "work complete", "work fail",
        "work release", "work cancel", "work retry", "work explain", "work history",
        "work graph", "work stats", "work prune", "worker run", "web", "metrics", "demo",
    }  # fmt: skip
    assert expected <= names


@pytest.mark.parametrize("path", COMMANDS, ids=[" ".join(p) for p in COMMANDS])
def test_every_command_has_help_and_a_docs_entry(runner: CliRunner, path: tuple[str, ...]) -> None:
    result = runner.invoke(cli, [*path, "--help"])
    assert result.exit_code == 0, result.output
    command = command_at(path)
    assert command.help and command.help.strip(), f"nexus {' '.join(path)} has no help text"
    assert "Usage: " in result.output
    name = re.escape("nexus " + " ".join(path))
    headings = [h for h in doc_headings() if re.search(rf"{name}(?![\w-])", h)]
    assert headings, f"docs/cli.md has no heading for nexus {' '.join(path)}"


@pytest.mark.parametrize("path", COMMANDS, ids=[" ".join(p) for p in COMMANDS])
def test_every_leaf_command_takes_db(path: tuple[str, ...]) -> None:
    command = command_at(path)
    if isinstance(command, click.Group):
        return
    assert "--db" in {opt for param in command.params for opt in getattr(param, "opts", [])}


def test_version_and_top_level_help(runner: CliRunner) -> None:
    version = runner.invoke(cli, ["--version"])
    assert version.exit_code == 0 and "0.1.0" in version.output
    helped = runner.invoke(cli, ["--help"])
    assert helped.exit_code == 0
    for name in cli.commands:
        assert name in helped.output


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
    again = runner.invoke(cli, ["demo", "--data-dir", str(data_dir)])
    assert again.exit_code == 0, again.output
    assert "already done" in again.output


def test_demo_leaves_the_documented_graph(runner: CliRunner, tmp_path: Path) -> None:
    data_dir = tmp_path / "demo-data"
    assert runner.invoke(cli, ["demo", "--data-dir", str(data_dir)]).exit_code == 0
    with SQLAlchemyMetadataStore(data_dir / "metadata.db") as store:
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
    assert "/demo/clean.json" not in blocked
    assert blocked.get("/demo/report.json") == 2
    assert running == ["/demo/index.json"]


def test_demo_on_the_parametrized_backend(runner: CliRunner, db_url: str, tmp_path: Path) -> None:
    result = runner.invoke(cli, ["demo", "--data-dir", str(tmp_path / "d"), "--db", db_url])
    assert result.exit_code == 0, result.output
    with SQLAlchemyMetadataStore(db_url) as store:
        assert store.exists("/demo/extract.json")


def revision(runner: CliRunner, url: str, command: str = "current") -> dict[str, object]:
    result = runner.invoke(cli, ["db", command, "--db", url, "--json"])
    document: dict[str, object] = json.loads(result.stdout)
    return document


def test_db_upgrade_downgrade_current_check(runner: CliRunner, fresh_db_url: str) -> None:
    head = migrate.head_revision()
    database = sa.engine.make_url(fresh_db_url).database
    if fresh_db_url.startswith("sqlite") and database is not None:
        # Only db upgrade creates a SQLite file; the reading commands need one (empty here).
        assert runner.invoke(cli, ["db", "current", "--db", fresh_db_url]).exit_code == 1
        assert not Path(database).exists()
        Path(database).touch()
    assert revision(runner, fresh_db_url) == {"revision": None, "head": head, "up_to_date": False}
    check = runner.invoke(cli, ["db", "check", "--db", fresh_db_url])
    assert check.exit_code == 1
    assert "nexus db upgrade" in check.stderr and check.stdout == ""
    result = runner.invoke(cli, ["db", "upgrade", "--db", fresh_db_url, "--revision", "0001"])
    assert result.exit_code == 0 and result.stdout == "at revision 0001\n"
    assert runner.invoke(cli, ["db", "check", "--db", fresh_db_url]).exit_code == 1
    assert runner.invoke(cli, ["db", "upgrade", "--db", fresh_db_url]).exit_code == 0
    check = runner.invoke(cli, ["db", "check", "--db", fresh_db_url])
    assert check.exit_code == 0 and head in check.stdout
    current = runner.invoke(cli, ["db", "current", "--db", fresh_db_url])
    assert current.stdout == f"{head} (head {head})\n"
    engine = sa.create_engine(fresh_db_url)
    try:
        with engine.connect() as conn:
            assert set(VIEW_NAMES) <= set(sa.inspect(conn).get_view_names())
        down = runner.invoke(cli, ["db", "downgrade", "--revision", "base", "--db", fresh_db_url])
        assert down.exit_code == 0 and down.stdout == "at revision base\n"
        with engine.connect() as conn:
            assert sa.inspect(conn).get_view_names() == []
    finally:
        engine.dispose()
    assert revision(runner, fresh_db_url)["revision"] is None


def test_the_database_comes_from_db_then_environment_then_nexus_data(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    from_env = tmp_path / "env.db"
    explicit = tmp_path / "explicit.db"
    assert runner.invoke(cli, ["work", "enqueue", "/default"]).exit_code == 0
    monkeypatch.setenv("NEXUS_DATABASE_URL", str(from_env))
    assert runner.invoke(cli, ["work", "enqueue", "/env"]).exit_code == 0
    assert (
        runner.invoke(cli, ["work", "enqueue", "/explicit", "--db", str(explicit)]).exit_code == 0
    )
    for db_file, path in [
        (tmp_path / "nexus-data" / "metadata.db", "/default"),
        (from_env, "/env"),
        (explicit, "/explicit"),
    ]:
        with SQLAlchemyMetadataStore(db_file) as store:
            assert [r.virtual_path for r in store.list()] == [path]


@pytest.mark.parametrize(
    "args",
    [
        ["work", "ready", "--db", "mysql://user@host/db"],
        ["db", "upgrade", "--db", "oracle://host/db"],
        ["db", "downgrade", "--revision", "base", "--db", "mssql://host/db"],
        ["demo", "--data-dir", "{tmp}", "--db", "mysql://user@host/db"],
    ],
)
def test_nexus_errors_are_one_line_on_stderr_exit_1(
    runner: CliRunner, tmp_path: Path, args: list[str]
) -> None:
    result = runner.invoke(cli, [a.replace("{tmp}", str(tmp_path)) for a in args])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith("Error: NexusConfigError") and "unsupported database" in line


def test_unknown_revision_is_a_clean_error(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(
        cli, ["db", "upgrade", "--db", str(tmp_path / "x.db"), "--revision", "9999"]
    )
    assert result.exit_code == 1
    [line] = result.stderr.splitlines()
    assert line.startswith("Error: MigrationError: ")


@pytest.mark.parametrize(
    "args",
    [
        ["nonsense"],
        ["work", "ready", "--limit", "0"],
        ["work", "ready", "--nope"],
        ["work", "enqueue"],
        ["work", "enqueue", "/x", "--status", "weird"],
        ["work", "claim", "--lease", "soon"],
        ["work", "claim", "--lease", "99999999999d"],
        ["work", "prune", "--older-than", "9999999d"],
        ["work", "complete", "/x"],
        ["work", "graph"],
        ["work", "graph", "/x", "--tag", "t"],
        ["work", "stats", "--watch", "--json"],
        ["db", "downgrade"],
        ["worker", "run"],
    ],
)
def test_usage_errors_exit_2(runner: CliRunner, tmp_path: Path, args: list[str]) -> None:
    result = runner.invoke(cli, [*args, "--db", str(tmp_path / "u.db")])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output


def test_tenant_comes_from_the_option_or_the_environment(
    runner: CliRunner, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert (
        runner.invoke(cli, ["work", "enqueue", "/a", "--db", db_url, "--tenant", "a"]).exit_code
        == 0
    )
    monkeypatch.setenv("NEXUS_TENANT", "b")
    assert runner.invoke(cli, ["work", "enqueue", "/b", "--db", db_url]).exit_code == 0
    monkeypatch.delenv("NEXUS_TENANT")

    def ready(*tenant: str) -> list[str]:
        result = runner.invoke(cli, ["work", "ready", "--db", db_url, "--json", *tenant])
        return [item["virtual_path"] for item in json.loads(result.stdout)["items"]]

    assert ready("--tenant", "a") == ["/a"]
    assert ready("--tenant", "b") == ["/b"]
    assert ready() == []  # the default tenant has nothing
    with SQLAlchemyMetadataStore(db_url, tenant_id="a") as store:
        assert [r.virtual_path for r in store.list()] == ["/a"]


def test_row_level_security_switch(runner: CliRunner, db_url: str) -> None:
    if not db_url.startswith("postgresql"):
        result = runner.invoke(cli, ["db", "enable-rls", "--db", db_url])
        assert result.exit_code == 1
        [line] = result.stderr.splitlines()
        assert line.startswith("Error: NexusConfigError")
        return
    engine = sa.create_engine(db_url)
    try:
        on = runner.invoke(cli, ["db", "enable-rls", "--db", db_url])
        assert on.exit_code == 0 and on.stdout == "row-level security on\n", on.output
        with engine.connect() as conn:
            protected = conn.exec_driver_sql(
                "SELECT count(*) FROM pg_class WHERE relname = 'work_items' AND relrowsecurity"
            ).scalar()
        assert protected == 1
        again = runner.invoke(cli, ["db", "enable-rls", "--db", db_url, "--json"])
        assert json.loads(again.stdout) == {"row_level_security": True}
    finally:
        off = runner.invoke(cli, ["db", "disable-rls", "--db", db_url, "--json"])
        engine.dispose()
    assert off.exit_code == 0 and json.loads(off.stdout) == {"row_level_security": False}
