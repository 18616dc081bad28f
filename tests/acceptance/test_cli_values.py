"""Values that look like options are values: a negative number in a positional argument of
any command (``nexus meta set /a.json priority -1``) is read as the value, not refused as
"No such option"; options keep taking negative values (``--priority -1``); an unknown option
is still refused (a typo writes nothing); a value starting with ``-`` that is no number goes
after ``--``. Checked with the real ``nexus`` in a subprocess, and for every command of the
tree through click's runner."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from nexus.cli.main import cli
from nexus.storage.metadata_store import SQLAlchemyMetadataStore


def nexus_command() -> list[str]:
    """The installed ``nexus`` script next to this Python (the real entry point)."""
    script = Path(sys.executable).with_name("nexus")
    return [str(script)] if script.exists() else [sys.executable, "-m", "nexus.cli.main"]


@pytest.fixture
def db(tmp_path: Path) -> str:
    path = str(tmp_path / "m.db")
    with SQLAlchemyMetadataStore(path) as store:
        store.put("/a.json")
    return path


def nexus(db: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "NEXUS_DATABASE_URL"}
    command = [*nexus_command(), *args[:2], "--db", db, *args[2:]]  # --db before any --
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)


def metadata(db: str, path: str = "/a.json") -> dict[str, object]:
    with SQLAlchemyMetadataStore(db) as store:
        return store.get_all_file_metadata(path)


@pytest.mark.parametrize(
    ("args", "key", "stored"),
    [
        (["priority", "-1"], "priority", -1),
        (["weight", "-0.5", "--json"], "weight", -0.5),
        (["--json", "ratio", "-1e3"], "ratio", -1000.0),
        (["offset", "-.25"], "offset", "-.25"),  # a value, though not JSON: a string
        (["code", "--string", "-5"], "code", "-5"),
        (["note", "--", "-x"], "note", "-x"),
        (["dash", "--", "--json"], "dash", "--json"),
    ],
)
def test_meta_set_takes_values_that_look_like_options(
    db: str, args: list[str], key: str, stored: object
) -> None:
    proc = nexus(db, "meta", "set", "/a.json", *args)
    assert proc.returncode == 0, proc.stderr
    assert metadata(db)[key] == stored


def test_options_still_take_negative_values(db: str) -> None:
    for args in (["--priority", "-3"], ["--priority=-2"]):
        path = f"/p{args[-1]}.json"
        proc = nexus(db, "work", "enqueue", path, *args)
        assert proc.returncode == 0, proc.stderr
        assert metadata(db, path)["priority"] == int(args[-1].split("=")[-1])


@pytest.mark.parametrize("typo", ["-x", "--strng", "--jsn"])
def test_an_unknown_option_is_still_refused_and_writes_nothing(db: str, typo: str) -> None:
    proc = nexus(db, "meta", "set", "/a.json", "note", typo)
    assert proc.returncode == 2
    assert f"No such option: {typo}" in proc.stderr or f"No such option '{typo}'" in proc.stderr
    assert "note" not in metadata(db)


def _leaf_commands(group: click.Group, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _leaf_commands(command, (*prefix, name))
        elif any(isinstance(p, click.Argument) for p in command.params):
            yield (*prefix, name)


def _command(path: tuple[str, ...]) -> click.Command:
    command: click.Command = cli
    for name in path:
        assert isinstance(command, click.Group)
        command = command.commands[name]
    return command


# worker run's arguments are a command line of their own, after --.
WITH_ARGUMENTS = [path for path in _leaf_commands(cli) if path != ("worker", "run")]


@pytest.mark.parametrize("path", WITH_ARGUMENTS, ids=" ".join)
def test_no_positional_argument_refuses_a_negative_number(db: str, path: tuple[str, ...]) -> None:
    """Every positional argument of every command, given ``-1``: whatever the command then
    says (no such path, not a work item...), it is not "No such option"."""
    arguments = [p for p in _command(path).params if isinstance(p, click.Argument)]
    args = [*path, *(["-1"] * len(arguments)), "--db", db]
    if path == ("work", "complete") or path[-1] in ("fail", "release"):
        args += ["--token", "t", "--error", "e"] if path[-1] == "fail" else ["--token", "t"]
    result = CliRunner().invoke(cli, args)
    assert "No such option" not in result.output, (args, result.output)
    assert result.exit_code in (0, 1), (args, result.output)
