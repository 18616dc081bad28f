"""The ``--json`` contract, on SQLite and PostgreSQL: every command that has ``--json`` is run
against a seeded database and must print exactly one JSON document whose keys are the
documented ones (``nexus.cli.keys``), lists as ``{"items", "returned", "next_cursor"}`` with
every item carrying its documented keys and datetimes as ISO 8601 strings; the set of
commands with ``--json`` must equal the documented set, and docs/cli.md must name each key in
the command's section (so a key added in code but not in the docs fails)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

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
                if code == 1:
                    assert result.exit_code == 1 and result.stdout == "", result.output
                    assert "NexusConfigError" in result.stderr
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
