"""``nexus work graph`` on SQLite and PostgreSQL: the Mermaid, DOT and JSON drawings of one
diamond-shaped DAG carry exactly its edges (parsed back from each format), in each direction
and depth; dependencies written as path_ids, missing and deleted targets appear as nodes;
quotes in paths are escaped; ``--max-nodes`` truncates; ``--tag`` draws a tag's items."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from click.testing import CliRunner

from nexus.cli.main import cli
from nexus.storage.metadata_store import SQLAlchemyMetadataStore
from nexus.work import WorkQueue

Edges = set[tuple[str, str]]

DIAMOND: Edges = {
    ("/g/a", "/g/b"),
    ("/g/a", "/g/c"),
    ("/g/b", "/g/d"),
    ("/g/c", "/g/d"),
    ("/g/d", "/g/e"),
}


@pytest.fixture
def diamond(db_url: str) -> str:
    with SQLAlchemyMetadataStore(db_url) as store:
        queue = WorkQueue(store)
        [a] = queue.enqueue_many([{"path": "/g/a", "tags": ["t"]}])
        queue.enqueue_many(
            [
                {"path": "/g/b", "depends_on": a["path_id"], "tags": ["t"]},  # by path_id
                {"path": "/g/c", "depends_on": "/g/a", "status": "blocked"},
                {"path": "/g/d", "depends_on": ["/g/b", "/g/c"], "tags": ["t"]},
                {"path": "/g/e", "depends_on": "/g/d"},
                {"path": "/g/other", "tags": ["u"]},
            ]
        )
        queue.close()
    return db_url


def graph(db_url: str, *args: str) -> str:
    result = CliRunner().invoke(cli, ["work", "graph", *args, "--db", db_url])
    assert result.exit_code == 0, result.output
    return result.stdout


def mermaid_edges(text: str) -> tuple[dict[str, str], Edges]:
    lines = text.splitlines()
    assert lines[0] == "flowchart TD"
    labels = dict(re.findall(r'^\s+(n\d+)\["(.*)"\]$', text, flags=re.MULTILINE))
    paths = {
        node: label.rsplit(" (", 1)[0].replace("#quot;", '"') for node, label in labels.items()
    }
    edges = re.findall(r"^\s+(n\d+) --> (n\d+)$", text, flags=re.MULTILINE)
    return paths, {(paths[a], paths[b]) for a, b in edges}


def dot_edges(text: str) -> Edges:
    assert text.startswith("digraph nexus {") and text.rstrip().endswith("}")
    quoted = r'"((?:[^"\\]|\\.)*)"'
    pairs = re.findall(rf"^\s+{quoted} -> {quoted};$", text, flags=re.MULTILINE)

    def unquote(s: str) -> str:
        return s.replace('\\"', '"').replace("\\\\", "\\")

    return {(unquote(a), unquote(b)) for a, b in pairs}


def json_graph(db_url: str, *args: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(graph(db_url, *args, "--format", "json"))
    return document


def json_edges(document: dict[str, Any]) -> Edges:
    return {(e["from"], e["to"]) for e in document["edges"]}


def test_the_three_formats_carry_the_same_edges(diamond: str) -> None:
    paths, edges = mermaid_edges(graph(diamond, "/g/d"))
    assert edges == DIAMOND
    assert set(paths.values()) == {"/g/a", "/g/b", "/g/c", "/g/d", "/g/e"}
    assert dot_edges(graph(diamond, "/g/d", "--format", "dot")) == DIAMOND
    document = json_graph(diamond, "/g/d")
    assert json_edges(document) == DIAMOND
    assert document["root"] == "/g/d" and document["direction"] == "both"
    assert document["truncated"] is False
    assert json.loads(graph(diamond, "/g/d", "--json")) == document
    status = {n["path"]: n["status"] for n in document["nodes"]}
    assert status == {
        "/g/a": "ready",
        "/g/b": "ready",
        "/g/c": "blocked",
        "/g/d": "ready",
        "/g/e": "ready",
    }


def test_directions_and_depth(diamond: str) -> None:
    up = json_graph(diamond, "/g/d", "--up")
    assert json_edges(up) == DIAMOND - {("/g/d", "/g/e")}
    down = json_graph(diamond, "/g/a", "--down")
    assert json_edges(down) == DIAMOND
    one = json_graph(diamond, "/g/d", "--up", "--depth", "1")
    assert json_edges(one) == {("/g/b", "/g/d"), ("/g/c", "/g/d")}
    assert {n["path"] for n in one["nodes"]} == {"/g/b", "/g/c", "/g/d"}
    leaf = json_graph(diamond, "/g/e", "--down")
    assert leaf["edges"] == [] and [n["path"] for n in leaf["nodes"]] == ["/g/e"]


def test_missing_and_deleted_dependencies_are_nodes(db_url: str) -> None:
    with SQLAlchemyMetadataStore(db_url) as store:
        queue = WorkQueue(store)
        queue.enqueue_many(
            [{"path": "/m/gone"}, {"path": "/m/x", "depends_on": ["/m/gone", "/m/never"]}]
        )
        store.delete("/m/gone")
        queue.close()
    document = json_graph(db_url, "/m/x")
    status = {n["path"]: n["status"] for n in document["nodes"]}
    assert status == {"/m/x": "ready", "/m/gone": "deleted", "/m/never": "missing"}
    assert json_edges(document) == {("/m/gone", "/m/x"), ("/m/never", "/m/x")}
    assert "stroke-dasharray" in graph(db_url, "/m/x")
    assert "style=dashed" in graph(db_url, "/m/x", "--format", "dot")


def test_quotes_and_backslashes_in_paths_are_escaped(db_url: str) -> None:
    odd = '/q/say "hi" \\ there'
    with SQLAlchemyMetadataStore(db_url) as store:
        queue = WorkQueue(store)
        queue.enqueue_many([{"path": odd}, {"path": "/q/next", "depends_on": odd}])
        queue.close()
    expected = {(odd, "/q/next")}
    assert mermaid_edges(graph(db_url, "/q/next"))[1] == expected
    assert dot_edges(graph(db_url, "/q/next", "--format", "dot")) == expected
    assert json_edges(json_graph(db_url, "/q/next")) == expected


def test_max_nodes_truncates(diamond: str) -> None:
    document = json_graph(diamond, "/g/e", "--max-nodes", "2")
    assert len(document["nodes"]) == 2 and document["truncated"] is True
    assert json_edges(document) == {("/g/d", "/g/e")}


def test_a_tag_draws_its_items_and_their_dependencies(diamond: str) -> None:
    document = json_graph(diamond, "--tag", "t")
    assert document["root"] is None and document["tag"] == "t"
    assert {n["path"] for n in document["nodes"]} == {"/g/a", "/g/b", "/g/c", "/g/d"}
    assert json_edges(document) == {("/g/a", "/g/b"), ("/g/b", "/g/d"), ("/g/c", "/g/d")}


def test_a_missing_root_is_refused(diamond: str) -> None:
    result = CliRunner().invoke(cli, ["work", "graph", "/g/nope", "--db", diamond])
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: NexusFileNotFoundError")
