"""The dependency DAG around a path (or of a tag), drawn as Mermaid, Graphviz DOT or JSON.

Built only from the public queue API: ``get_dependencies`` (up: what a path waits for),
``get_dependents`` (down: what waits for it), ``get_work_item`` and the paged
``work_by_priority`` view (for a tag). An edge runs from a dependency to its dependent: it
must complete first.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nexus.cli.common import plain
from nexus.cli.keys import GRAPH_KEYS, GRAPH_NODE_KEYS
from nexus.errors import NexusFileNotFoundError

if TYPE_CHECKING:
    from nexus.work import WorkQueue

DIRECTIONS = ("up", "down", "both")
FORMATS = ("mermaid", "dot", "json")

# Pseudo-statuses of nodes that are no work item.
MISSING = "missing"
DELETED = "deleted"


@dataclass
class Graph:
    root: str | None
    tag: str | None
    direction: str
    max_nodes: int
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    edges: dict[tuple[str, str], None] = field(default_factory=dict)  # ordered set
    truncated: bool = False

    def add_node(self, node: dict[str, Any]) -> bool:
        """Add ``node`` unless it is known; False (and truncated) when the graph is full."""
        if node["path"] in self.nodes:
            return True
        if len(self.nodes) >= self.max_nodes:
            self.truncated = True
            return False
        self.nodes[node["path"]] = node
        return True

    def add_edge(self, dependency: str, dependent: str) -> None:
        if dependency in self.nodes and dependent in self.nodes:
            self.edges[(dependency, dependent)] = None

    def document(self) -> dict[str, Any]:
        values = {
            "root": self.root,
            "tag": self.tag,
            "direction": self.direction,
            "nodes": list(self.nodes.values()),
            "edges": [{"from": a, "to": b} for a, b in self.edges],
            "truncated": self.truncated,
        }
        return {key: values[key] for key in GRAPH_KEYS}


def _node(queue: WorkQueue, path: str, path_id: str | None, status: str | None) -> dict[str, Any]:
    item = queue.get_work_item(path_id) if path_id is not None else None
    values: dict[str, Any] = {"path": path, "path_id": path_id, "status": status}
    if item is not None:
        values.update(status=item["status"], priority=item["priority"], tags=item["tags"])
    return {key: values.get(key) for key in GRAPH_NODE_KEYS}


def _dependency_node(queue: WorkQueue, dep: dict[str, Any]) -> dict[str, Any]:
    if dep["why"] == MISSING:
        return _node(queue, dep["path"], None, MISSING)
    if dep["why"] == DELETED:
        return _node(queue, dep["path"], None, DELETED)
    return _node(queue, dep["path"], dep["path_id"], dep["status"])


def around(
    queue: WorkQueue, path: str, *, direction: str, depth: int | None, max_nodes: int
) -> Graph:
    """The nodes ``depth`` steps (None: all) up, down or both ways from ``path``."""
    record = queue.store.get(path)
    if record is None:
        raise NexusFileNotFoundError(path)
    graph = Graph(record.virtual_path, None, direction, max_nodes)
    graph.add_node(_node(queue, record.virtual_path, record.path_id, None))
    if direction in ("up", "both"):
        _walk(queue, graph, record.virtual_path, record.path_id, depth, up=True)
    if direction in ("down", "both"):
        _walk(queue, graph, record.virtual_path, record.path_id, depth, up=False)
    return graph


def _walk(
    queue: WorkQueue, graph: Graph, path: str, path_id: str, depth: int | None, *, up: bool
) -> None:
    frontier = [(path, path_id)]
    seen = {path}
    level = 0
    while frontier and (depth is None or level < depth):
        level += 1
        next_frontier: list[tuple[str, str]] = []
        for holder, holder_id in frontier:
            if up:
                found = [(_dependency_node(queue, d), d) for d in queue.get_dependencies(holder_id)]
            else:
                found = [
                    (_node(queue, d["path"], d["path_id"], d["status"]), d)
                    for d in queue.get_dependents(holder_id)
                ]
            for node, _ in found:
                if not graph.add_node(node):
                    continue
                if up:
                    graph.add_edge(node["path"], holder)
                else:
                    graph.add_edge(holder, node["path"])
                if node["path_id"] is not None and node["path"] not in seen:
                    seen.add(node["path"])
                    next_frontier.append((node["path"], node["path_id"]))
        frontier = next_frontier


def of_tag(queue: WorkQueue, tag: str, *, max_nodes: int) -> Graph:
    """Every work item with ``tag`` and its direct dependencies."""
    graph = Graph(None, tag, "up", max_nodes)
    tagged: list[dict[str, Any]] = []
    after: str | None = None
    while not graph.truncated:
        page = queue.store.page_work_by_priority(
            limit=min(100, max_nodes + 1), tags=[tag], after=after
        )
        for row in page.items:
            node = {key: row.get(key) for key in GRAPH_NODE_KEYS}
            node["path"] = row["virtual_path"]
            if graph.add_node(node):
                tagged.append(node)
        after = page.next_cursor
        if after is None:
            break
    for node in tagged:
        for dep in queue.get_dependencies(node["path_id"]):
            if graph.add_node(_dependency_node(queue, dep)):
                graph.add_edge(dep["path"], node["path"])
    return graph


# ----------------------------------------------------------------------------- rendering

_MERMAID_CLASSES = {
    "completed": "fill:#d4edda,stroke:#2e7d32",
    "failed": "fill:#f8d7da,stroke:#c62828",
    "in_progress": "fill:#d6e9ff,stroke:#1565c0",
    "blocked": "fill:#fff3cd,stroke:#ef6c00",
    "pending": "fill:#eeeeee,stroke:#616161",
    "ready": "fill:#ffffff,stroke:#2e7d32",
    MISSING: "fill:#ffffff,stroke:#9e9e9e,stroke-dasharray:4 4",
    DELETED: "fill:#ffffff,stroke:#9e9e9e,stroke-dasharray:4 4",
}


def _label(node: dict[str, Any]) -> str:
    return f"{node['path']} ({node['status'] or 'no status'})"


def _ids(graph: Graph) -> dict[str, str]:
    return {path: f"n{i}" for i, path in enumerate(graph.nodes)}


def to_mermaid(graph: Graph) -> str:
    ids = _ids(graph)
    lines = ["flowchart TD"]
    for path, node in graph.nodes.items():
        label = _label(node).replace('"', "#quot;")
        lines.append(f'    {ids[path]}["{label}"]')
    lines.extend(f"    {ids[a]} --> {ids[b]}" for a, b in graph.edges)
    used = {node["status"] for node in graph.nodes.values()}
    for status, style in _MERMAID_CLASSES.items():
        if status in used:
            lines.append(f"    classDef {status} {style}")
            members = ",".join(ids[p] for p, n in graph.nodes.items() if n["status"] == status)
            lines.append(f"    class {members} {status}")
    return "\n".join(lines)


def _dot_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


_DOT_COLORS = {
    "completed": "darkgreen",
    "failed": "red",
    "in_progress": "blue",
    "blocked": "orange",
    MISSING: "gray",
    DELETED: "gray",
}


def to_dot(graph: Graph) -> str:
    lines = ["digraph nexus {", "    rankdir=LR;", "    node [shape=box];"]
    for path, node in graph.nodes.items():
        attrs = f"label={_dot_string(_label(node))}"
        color = _DOT_COLORS.get(node["status"] or "")
        if color:
            attrs += f", color={color}"
        if node["status"] in (MISSING, DELETED):
            attrs += ", style=dashed"
        lines.append(f"    {_dot_string(path)} [{attrs}];")
    lines.extend(f"    {_dot_string(a)} -> {_dot_string(b)};" for a, b in graph.edges)
    lines.append("}")
    return "\n".join(lines)


def render(graph: Graph, fmt: str) -> str:
    if fmt == "mermaid":
        return to_mermaid(graph)
    if fmt == "dot":
        return to_dot(graph)
    return json.dumps(plain(graph.document()), ensure_ascii=False)
