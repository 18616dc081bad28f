"""The ``--json`` contract, on SQLite and PostgreSQL: every command that has ``--json`` is run
against a seeded database and must print exactly one JSON document whose keys are the
documented ones (``nexus.cli.keys``), lists as ``{"items", "returned", "next_cursor"}`` with
every item carrying its documented keys and datetimes as ISO 8601 strings; the set of
commands with ``--json`` must equal the documented set, and docs/cli.md must name each key in
the command's section (so a key added in code but not in the docs fails).

Failures too: every such command, made to fail (a nexus error or a refusal, exit 1; a usage
error, exit 2), prints exactly one JSON document on stdout with the error keys
(``nexus.cli.common.ERROR_KEYS``) and nothing on stderr; the exit codes are checked through
the real ``nexus`` entry point in a subprocess as well."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from nexus.cli.common import ERROR_KEYS
from nexus.cli.keys import DOCUMENT_KEYS, GRAPH_EDGE_KEYS, GRAPH_NODE_KEYS, ITEM_KEYS
from nexus.cli.main import cli
from nexus.storage import migrate
from nexus.storage.metadata_store import SQLAlchemyMetadataStore
from nexus.work import RetryPolicy, WorkQueue

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?[+-]\d\d:\d\d$")


def json_commands(group: click.Group, prefix: str = "") -> Iterator[str]:
    for name, command in group.commands.items():
        full = f"{prefix}{name}"
        if isinstance(command, click.Group):
            yield from json_commands(command, f"{full} ")
        elif any(getattr(p, "name", None) == "as_json" for p in command.params):
            yield full


def seed(queue: WorkQueue) -> None:
    queue.enqueue_many(
        [
            {"path": "/s/extract", "priority": 1, "tags": ["etl"]},
            {"path": "/s/load", "priority": 2, "tags": ["etl"]},
            {"path": "/s/clean", "depends_on": "/s/extract", "status": "blocked", "tags": ["etl"]},
            {"path": "/s/report", "depends_on": ["/s/clean", "/s/missing"], "status": "pending"},
            {"path": "/s/parked", "status": "pending"},
            {"path": "/s/spare", "priority": 9},
            {"path": "/s/running", "priority": 0},
            {"path": "/s/dead", "priority": 0, "max_attempts": 1},
        ]
    )
    [dead] = queue.claim_ready_work("seed", path_prefix="/s/dead")
    queue.fail_work(dead["virtual_path"], str(dead["lease_token"]), "boom")
    queue.claim_ready_work("seed", path_prefix="/s/running")
    queue.store.put("/f/plain", size=3, file_type="text/plain")
    queue.store.put("/f/other")
    queue.store.set_file_metadata("/f/plain", "owner", {"team": "data"})


def token(queue: WorkQueue, prefix: str) -> str:
    [item] = queue.claim_ready_work("contract", path_prefix=prefix)
    return str(item["lease_token"])


Args = Callable[[WorkQueue], list[str]]
POSTGRESQL_ONLY = -1  # exit 0 on PostgreSQL, 1 on SQLite

# Run in this order on one seeded database; each entry: command, arguments (built when it
# runs, e.g. with a fresh lease token), exit code.
SCENARIOS: list[tuple[str, Args, int]] = [
    ("db current", lambda q: [], 0),
    ("db check", lambda q: [], 0),
    ("db upgrade", lambda q: [], 0),
    ("db downgrade", lambda q: ["--revision", migrate.head_revision()], 0),
    # Row-level security is PostgreSQL's: refused on SQLite (exit 1, nothing on stdout).
    ("db enable-rls", lambda q: [], POSTGRESQL_ONLY),
    ("db disable-rls", lambda q: [], POSTGRESQL_ONLY),
    ("put", lambda q: ["/f/new", "--size", "5"], 0),
    ("get", lambda q: ["/f/plain"], 0),
    ("ls", lambda q: ["/f/", "--limit", "1"], 0),
    ("rm", lambda q: ["/f/new"], 0),
    ("meta get", lambda q: ["/f/plain"], 0),
    ("meta set", lambda q: ["/f/plain", "n", "42"], 0),
    ("meta rm", lambda q: ["/f/plain", "n"], 0),
    ("work ready", lambda q: ["--limit", "1"], 0),
    ("work pending", lambda q: ["--limit", "1"], 0),
    ("work blocked", lambda q: ["--limit", "1"], 0),
    ("work in-progress", lambda q: ["--limit", "1"], 0),
    ("work by-priority", lambda q: ["--limit", "2", "--tag", "etl"], 0),
    ("work enqueue", lambda q: ["/s/new", "--tag", "x", "--depends-on", "/s/load"], 0),
    ("work show", lambda q: ["/s/running"], 0),
    ("work explain", lambda q: ["/s/report"], 0),
    ("work history", lambda q: ["/s/dead"], 0),
    ("work graph", lambda q: ["/s/clean"], 0),
    ("work stats", lambda q: [], 0),
    ("work claim", lambda q: ["--prefix", "/s/extract", "--worker-id", "c1"], 0),
    ("work complete", lambda q: ["/s/load", "--token", token(q, "/s/load")], 0),
    ("work fail", lambda q: ["/s/new", "--token", token(q, "/s/new"), "--error", "e"], 0),
    ("work release", lambda q: ["/s/spare", "--token", token(q, "/s/spare")], 0),
    ("work cancel", lambda q: ["/s/parked"], 0),
    ("work retry", lambda q: ["/s/dead"], 0),
    ("work reclaim", lambda q: [], 0),
    ("work prune", lambda q: ["--older-than", "0s", "--status", "completed"], 0),
    ("worker run", lambda q: ["--until-idle", "--", "true"], 0),
]


def test_every_json_command_has_a_scenario_and_documented_keys() -> None:
    assert set(json_commands(cli)) == set(DOCUMENT_KEYS)
    assert [name for name, _, _ in SCENARIOS] == list(dict.fromkeys(n for n, _, _ in SCENARIOS))
    assert {name for name, _, _ in SCENARIOS} == set(DOCUMENT_KEYS)


def section(command: str) -> str:
    """The docs/cli.md text under the heading naming ``nexus <command>``, up to the next
    heading."""
    lines = DOC.splitlines()
    pattern = re.compile(rf"^#+ .*nexus {re.escape(command)}(?![\w-])")
    for start, line in enumerate(lines):
        if pattern.match(line):
            end = next(
                (i for i in range(start + 1, len(lines)) if lines[i].startswith("#")), len(lines)
            )
            return "\n".join(lines[start:end])
    raise AssertionError(f"docs/cli.md has no section for nexus {command}")


@pytest.mark.parametrize("command", sorted(DOCUMENT_KEYS))
def test_docs_name_every_json_key(command: str) -> None:
    text = section(command)
    keys = list(DOCUMENT_KEYS[command]) + list(ITEM_KEYS.get(command, ()))
    if command == "work graph":
        keys += [*GRAPH_NODE_KEYS, *GRAPH_EDGE_KEYS]
    missing = [key for key in keys if f"`{key}`" not in text]
    assert missing == [], f"nexus {command}: keys not in docs/cli.md: {missing}"


def check_values(value: Any) -> None:
    """No value is a Python repr of a datetime; strings that look like times are ISO 8601."""
    if isinstance(value, dict):
        for inner in value.values():
            check_values(inner)
    elif isinstance(value, list):
        for inner in value:
            check_values(inner)
    elif isinstance(value, str) and re.match(r"^\d{4}-\d\d-\d\d[T ]\d\d:", value):
        assert ISO.match(value), value
        datetime.fromisoformat(value)


def test_json_documents_carry_their_documented_keys(db_url: str) -> None:
    runner = CliRunner()
    with SQLAlchemyMetadataStore(db_url) as store:
        queue = WorkQueue(store, retry_policy=RetryPolicy(base_seconds=0, jitter=0))
        seed(queue)
        for command, args, code in SCENARIOS:
            argv = [*command.split(), "--db", db_url, "--json", *args(queue)]
            result = runner.invoke(cli, argv)
            if code == POSTGRESQL_ONLY:
                code = 0 if store.dialect == "postgresql" else 1
                if code == 1:  # refused: the one document is the error
                    assert result.exit_code == 1 and result.stderr == "", result.output
                    assert json.loads(result.stdout)["error"] == "NexusConfigError"
                    continue
            assert result.exit_code == code, (command, result.output)
            document = json.loads(result.stdout)  # exactly one document, nothing else
            assert isinstance(document, dict), command
            assert list(document) == list(DOCUMENT_KEYS[command]), command
            check_values(document)
            if "items" in document:
                assert document["returned"] == len(document["items"]), command
                assert document["items"], f"{command}: the seed should give it items"
                for item in document["items"]:
                    assert list(item) == list(ITEM_KEYS[command]), command
            if command == "work graph":
                assert document["nodes"] and document["edges"]
                for node in document["nodes"]:
                    assert list(node) == list(GRAPH_NODE_KEYS)
                for edge in document["edges"]:
                    assert list(edge) == list(GRAPH_EDGE_KEYS)
        queue.close()


def test_a_page_cursor_walks_the_whole_view(db_url: str) -> None:
    runner = CliRunner()
    with SQLAlchemyMetadataStore(db_url) as store:
        queue = WorkQueue(store)
        queue.enqueue_many([{"path": f"/p/{i:02}", "priority": i} for i in range(7)])
        queue.close()
    for command in (["work", "ready"], ["work", "by-priority"], ["ls", "/p/"]):
        seen: list[str] = []
        after: list[str] = []
        while True:
            result = runner.invoke(
                cli, [*command, "--db", db_url, "--json", "--limit", "3", *after]
            )
            assert result.exit_code == 0, result.output
            page = json.loads(result.stdout)
            seen += [item["virtual_path"] for item in page["items"]]
            if page["next_cursor"] is None:
                break
            after = ["--after", page["next_cursor"]]
        assert seen == [f"/p/{i:02}" for i in range(7)], command


# ------------------------------------------------------------------------------ failures

NOT_A_DATABASE = ["--db", "mysql://user@host/db"]  # the last --db given wins

# Each command made to fail, on the seeded database: command, arguments (built when it runs),
# exit code, the error's type.
ERROR_SCENARIOS: list[tuple[str, Args, int, str]] = [
    ("db current", lambda q: NOT_A_DATABASE, 1, "NexusConfigError"),
    ("db check", lambda q: NOT_A_DATABASE, 1, "NexusConfigError"),
    ("db upgrade", lambda q: NOT_A_DATABASE, 1, "NexusConfigError"),
    ("db downgrade", lambda q: ["--revision", "base", *NOT_A_DATABASE], 1, "NexusConfigError"),
    ("db enable-rls", lambda q: NOT_A_DATABASE, 1, "NexusConfigError"),
    ("db disable-rls", lambda q: NOT_A_DATABASE, 1, "NexusConfigError"),
    ("put", lambda q: ["f/relative"], 1, "InvalidPathError"),
    ("get", lambda q: ["/f/missing"], 1, "NexusFileNotFoundError"),
    ("ls", lambda q: ["/f/", "--after", "garbage"], 1, "InvalidCursorError"),
    ("rm", lambda q: ["/f/missing"], 1, "NexusFileNotFoundError"),
    ("meta get", lambda q: ["/f/plain", "unset"], 1, "Refused"),
    ("meta set", lambda q: ["/f/plain", "priority", "high"], 1, "InvalidMetadataError"),
    ("meta rm", lambda q: ["/f/plain", "unset"], 1, "Refused"),
    ("work ready", lambda q: ["--after", "garbage"], 1, "InvalidCursorError"),
    ("work pending", lambda q: ["--after", "garbage"], 1, "InvalidCursorError"),
    ("work blocked", lambda q: ["--after", "garbage"], 1, "InvalidCursorError"),
    ("work in-progress", lambda q: ["--after", "garbage"], 1, "InvalidCursorError"),
    ("work by-priority", lambda q: ["--after", "garbage"], 1, "InvalidCursorError"),
    ("work enqueue", lambda q: ["s/relative"], 1, "InvalidPathError"),
    ("work show", lambda q: ["/f/plain"], 1, "WorkItemNotFoundError"),
    ("work explain", lambda q: ["/s/nowhere"], 1, "NexusFileNotFoundError"),
    ("work history", lambda q: ["/s/nowhere"], 1, "NexusFileNotFoundError"),
    ("work graph", lambda q: ["/s/nowhere"], 1, "NexusFileNotFoundError"),
    ("work stats", lambda q: NOT_A_DATABASE, 1, "NexusConfigError"),
    ("work claim", lambda q: ["--prefix", "/nothing/"], 1, "Refused"),
    ("work complete", lambda q: ["/s/parked", "--token", "t"], 1, "WorkItemStateError"),
    ("work fail", lambda q: ["/s/dead", "--token", "t", "--error", "e"], 1, "LeaseLostError"),
    ("work release", lambda q: ["/s/running", "--token", "t"], 1, "LeaseLostError"),
    ("work cancel", lambda q: ["/f/plain"], 1, "WorkItemNotFoundError"),
    ("work retry", lambda q: ["/s/spare"], 1, "WorkItemStateError"),
    ("work reclaim", lambda q: NOT_A_DATABASE, 1, "NexusConfigError"),
    ("work prune", lambda q: ["--older-than", "1d", *NOT_A_DATABASE], 1, "NexusConfigError"),
    ("worker run", lambda q: ["--prefix", "s/relative", "--", "true"], 1, "InvalidPathError"),
]


def test_every_json_command_has_a_failure_scenario() -> None:
    names = [name for name, *_ in ERROR_SCENARIOS]
    assert names == list(dict.fromkeys(names))
    assert set(names) == set(DOCUMENT_KEYS)


def check_error(result: Any, code: int, error: str) -> dict[str, Any]:
    """Exit ``code``, one JSON error document on stdout, nothing on stderr."""
    assert result.exit_code == code, result.output
    assert result.stderr == "", result.stderr
    document = json.loads(result.stdout)
    assert list(document) == list(ERROR_KEYS), document
    assert document["error"] == error, document
    assert isinstance(document["message"], str) and "\n" not in document["message"]
    assert document["message"] and isinstance(document["details"], dict)
    return dict(document)


def test_json_failures_are_one_error_document(db_url: str) -> None:
    runner = CliRunner()
    with SQLAlchemyMetadataStore(db_url) as store:
        queue = WorkQueue(store, retry_policy=RetryPolicy(base_seconds=0, jitter=0))
        seed(queue)
        for command, args, code, error in ERROR_SCENARIOS:
            argv = [*command.split(), "--db", db_url, "--json", *args(queue)]
            document = check_error(runner.invoke(cli, argv), code, error)
            assert document["value"] is not None or error == "Refused", document
        queue.close()


def test_error_documents_carry_the_offending_values(db_url: str) -> None:
    runner = CliRunner()
    with SQLAlchemyMetadataStore(db_url) as store:
        queue = WorkQueue(store)
        seed(queue)
        queue.close()

    def fails(code: int, error: str, *args: str) -> dict[str, Any]:
        return check_error(runner.invoke(cli, [*args, "--db", db_url, "--json"]), code, error)

    state = fails(1, "WorkItemStateError", "work", "retry", "/s/spare")
    assert state["value"] == "/s/spare"
    assert state["details"] == {
        "path": "/s/spare",
        "status": "ready",
        "required": ["failed"],
        "operation": "retry_work",
    }
    lost = fails(1, "LeaseLostError", "work", "release", "/s/running", "--token", "t")
    assert lost["details"] == {"path": "/s/running", "lease_token": "t", "status": "in_progress"}
    bad = fails(1, "InvalidMetadataError", "meta", "set", "/f/plain", "priority", "high")
    assert (bad["value"], bad["details"]["key"]) == ("high", "priority")
    # A value no JSON text can hold as it is (bytes of no encoding arrive as lone surrogates)
    odd = fails(1, "InvalidPathError", "put", "/f/\udcff")
    assert odd["value"] == "/f/\udcff"
    unset = fails(1, "Refused", "meta", "rm", "/f/plain", "unset")
    assert (unset["value"], unset["details"]) == ("unset", {"path": "/f/plain"})
    usage = fails(2, "BadParameter", "work", "ready", "--limit", "0")
    assert (usage["value"], usage["details"]) == ("0", {"param": "--limit"})
    # --json before or after the bad option alike
    before = runner.invoke(cli, ["work", "claim", "--json", "--lease", "soon", "--db", db_url])
    assert check_error(before, 2, "BadParameter")["value"] == "soon"
    choice = fails(2, "BadParameter", "work", "enqueue", "/x", "--status", "done")
    assert choice["value"] == "done" and choice["details"] == {"param": "--status"}
    fails(2, "MissingParameter", "work", "complete", "/s/running")
    fails(2, "UsageError", "work", "graph", "/s/clean", "--tag", "etl")
    fails(2, "UsageError", "work", "stats", "--watch")


def test_an_old_schema_is_refused_with_its_revision_document(tmp_path: Path) -> None:
    runner = CliRunner()
    db = str(tmp_path / "old.db")
    assert runner.invoke(cli, ["db", "upgrade", "--db", db, "--revision", "0001"]).exit_code == 0
    document = check_error(runner.invoke(cli, ["db", "check", "--db", db, "--json"]), 1, "Refused")
    assert document["value"] == "0001"
    assert document["details"] == {
        "revision": "0001",
        "head": migrate.head_revision(),
        "up_to_date": False,
    }


@pytest.mark.parametrize("command", sorted(DOCUMENT_KEYS))
def test_a_usage_error_with_json_is_one_error_document(command: str, tmp_path: Path) -> None:
    """Parsed before anything is opened: no database file appears."""
    db = tmp_path / "never.db"
    # worker run passes unknown options on to its command: a bad value of its own instead
    bad, error, value = ["--no-such-option"], "NoSuchOption", "--no-such-option"
    if command == "worker run":
        bad, error, value = ["--concurrency", "0"], "BadParameter", "0"
    args = [*command.split(), "--db", str(db), "--json", *bad]
    document = check_error(CliRunner().invoke(cli, args), 2, error)
    assert document["value"] == value
    assert not db.exists()


def test_without_json_or_with_it_after_a_double_dash_errors_stay_text(tmp_path: Path) -> None:
    """``--json`` after ``--`` belongs to the worker's command, not to nexus."""
    runner = CliRunner()
    db = str(tmp_path / "t.db")
    plain = runner.invoke(cli, ["work", "ready", "--limit", "0", "--db", db])
    assert plain.exit_code == 2 and plain.stdout == ""
    assert "Error: Invalid value for '--limit'" in plain.stderr
    passed_on = runner.invoke(
        cli, ["worker", "run", "--lease", "soon", "--db", db, "--", "echo", "--json"]
    )
    assert passed_on.exit_code == 2 and passed_on.stdout == ""
    assert "Error: Invalid value for '--lease'" in passed_on.stderr


def nexus_command() -> list[str]:
    """The installed ``nexus`` entry point of this environment."""
    script = Path(sys.executable).with_name("nexus")
    assert script.exists(), f"no nexus entry point next to {sys.executable}"
    return [str(script)]


def test_the_nexus_entry_point_exits_with_the_documented_codes(db_url: str) -> None:
    with SQLAlchemyMetadataStore(db_url) as store:
        queue = WorkQueue(store)
        seed(queue)
        queue.close()
    env = {k: v for k, v in os.environ.items() if k != "NEXUS_DATABASE_URL"}

    def nexus(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*nexus_command(), *args, "--db", db_url],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )

    cases = [
        (["work", "retry", "/s/spare", "--json"], 1, "WorkItemStateError"),
        (["work", "claim", "--prefix", "/nothing/", "--json"], 1, "Refused"),
        (["work", "ready", "--limit", "0", "--json"], 2, "BadParameter"),
        (["meta", "set", "/f/plain", "priority", "-", "--json", "--nope"], 2, "NoSuchOption"),
    ]
    for args, code, error in cases:
        done = nexus(*args)
        assert (done.returncode, done.stderr) == (code, ""), (args, done.stderr)
        [line] = done.stdout.splitlines()
        assert json.loads(line)["error"] == error, args
    # Without --json the same failure is one line on stderr, stdout empty.
    done = nexus("work", "release", "/s/spare", "--token", "t")
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr.splitlines() == [
        "Error: WorkItemStateError: '/s/spare' is ready; release_work needs in_progress"
    ]


def test_docs_name_the_error_keys() -> None:
    conventions = DOC[DOC.index("## Conventions") : DOC.index("## nexus db")]
    missing = [key for key in ERROR_KEYS if f"`{key}`" not in conventions]
    assert missing == [], f"docs/cli.md Conventions does not name {missing}"
