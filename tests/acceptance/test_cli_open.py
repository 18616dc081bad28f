"""A mistyped --db creates nothing: every command that only reads or changes what exists
refuses a missing SQLite file, a missing directory and a malformed URL with exit code 1 and a
message naming the value, and leaves no file or directory behind. Only the commands that
put something new into the database (put, work enqueue, db upgrade, demo) create a SQLite
file. The real ``nexus`` entry point runs in subprocesses; the file system is checked."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
import sqlalchemy as sa

from nexus.cli.main import cli

BIN = Path(sys.executable).with_name("nexus")
NEXUS = [str(BIN)] if BIN.exists() else [sys.executable, "-m", "nexus.cli.main"]

#: Arguments that get each command past click's parsing to the point where it opens --db.
#: Every leaf command is here or in CREATORS (checked below), so a new command must choose.
OPENERS: dict[str, list[str]] = {
    "db current": [],
    "db check": [],
    "db downgrade": ["--revision", "base"],
    "db enable-rls": [],
    "db disable-rls": [],
    "get": ["/a"],
    "ls": [],
    "rm": ["/a"],
    "meta get": ["/a"],
    "meta set": ["/a", "k", "1"],
    "meta rm": ["/a", "k"],
    "work ready": [],
    "work pending": [],
    "work blocked": [],
    "work in-progress": [],
    "work by-priority": [],
    "work show": ["/a"],
    "work claim": [],
    "work complete": ["/a", "--token", "x"],
    "work fail": ["/a", "--token", "x", "--error", "e"],
    "work release": ["/a", "--token", "x"],
    "work cancel": ["/a"],
    "work retry": ["/a"],
    "work reclaim": [],
    "work prune": ["--older-than", "1d"],
    "work explain": ["/a"],
    "work history": ["/a"],
    "work graph": ["/a"],
    "work stats": [],
    "worker run": ["--until-idle", "--", "true"],
    "web": ["--port", "1"],
    "metrics": [],
}
CREATORS: dict[str, list[str]] = {
    "put": ["/a"],
    "work enqueue": ["/a"],
    "db upgrade": [],
    "demo": [],
}
MALFORMED = "postgresql:/postgres@127.0.0.1/x"


def leaf_commands(group: click.Group, prefix: tuple[str, ...] = ()) -> set[str]:
    names: set[str] = set()
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            names |= leaf_commands(command, (*prefix, name))
        else:
            names.add(" ".join((*prefix, name)))
    return names


def start(command: str, args: list[str], db: str, cwd: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NEXUS_DATABASE_URL", "NEXUS_TENANT")}
    return subprocess.Popen(
        [*NEXUS, *command.split(), "--db", db, *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=120)
    return process.returncode, out, err


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_every_command_is_classified() -> None:
    assert leaf_commands(cli) == set(OPENERS) | set(CREATORS)


@pytest.mark.slow
@pytest.mark.parametrize("command", sorted(OPENERS))
def test_a_command_that_needs_a_database_creates_nothing(command: str, tmp_path: Path) -> None:
    # (--db, what the message must name); each case runs in a directory of its own.
    cases = {
        "missing-file": ("typo.db", str(tmp_path / "missing-file" / "typo.db")),
        "missing-directory": ("no/such/dir/x.db", str(tmp_path / "missing-directory" / "no")),
        "malformed-url": (MALFORMED, repr(MALFORMED)),
    }
    running = {}
    for name, (db, _) in cases.items():
        (tmp_path / name).mkdir()
        running[name] = start(command, OPENERS[command], db, tmp_path / name)
    for name, process in running.items():
        code, out, err = finish(process)
        assert code == 1, (name, out, err)
        assert err.startswith("Error: ") and err.count("\n") == 1, (name, err)
        assert cases[name][1] in err, (name, err)
        assert tree(tmp_path / name) == [], name


@pytest.mark.slow
def test_the_malformed_url_names_the_expected_form(tmp_path: Path) -> None:
    code, _, err = finish(start("work stats", [], MALFORMED, tmp_path))
    assert code == 1
    assert err == (
        f"Error: NexusConfigError: not a database URL: {MALFORMED!r}; expected a SQLite file"
        " path, sqlite:///relative/path.db, sqlite:////absolute/path.db or"
        " postgresql://user[:password]@host[:port]/database\n"
    )
    code, _, err = finish(start("ls", [], "sqlite://typo.db", tmp_path))
    assert code == 1 and "a SQLite URL has no host" in err
    assert tree(tmp_path) == []


@pytest.mark.slow
@pytest.mark.parametrize("command", sorted(CREATORS))
def test_only_the_commands_that_add_something_create_a_database(
    command: str, tmp_path: Path
) -> None:
    refused = tmp_path / "refused"
    refused.mkdir()
    code, _, err = finish(start(command, CREATORS[command], MALFORMED, refused))
    assert code == 1 and repr(MALFORMED) in err
    assert tree(refused) == []
    created = tmp_path / "created"
    created.mkdir()
    code, out, err = finish(start(command, CREATORS[command], "new/x.db", created))
    assert code == 0, (out, err)
    assert (created / "new" / "x.db").is_file()


@pytest.mark.slow
def test_a_reading_command_does_not_give_an_empty_database_a_schema(
    fresh_db_url: str, tmp_path: Path
) -> None:
    database = sa.engine.make_url(fresh_db_url).database
    if fresh_db_url.startswith("sqlite") and database is not None:
        Path(database).touch()  # an existing, empty SQLite file
    code, _, err = finish(start("work stats", [], fresh_db_url, tmp_path))
    assert code == 1
    assert "DatabaseNotFoundError" in err and "it has no nexus schema" in err, err
    engine = sa.create_engine(fresh_db_url)
    try:
        with engine.connect() as conn:
            assert sa.inspect(conn).get_table_names() == []
    finally:
        engine.dispose()
    code, _, err = finish(start("work enqueue", ["/a"], fresh_db_url, tmp_path))
    assert code == 0, err
    code, out, err = finish(start("work stats", ["--json"], fresh_db_url, tmp_path))
    assert code == 0, err
    assert '"ready": 1' in out or '"ready":1' in out, out
