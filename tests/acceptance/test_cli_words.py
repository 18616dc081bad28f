"""The words of ``nexus work stats`` and ``nexus work blocked`` (CliRunner, SQLite and
PostgreSQL): "ready now" and "waiting on dependencies" (the views) are told apart from the
status counts, each with the number the store's views and ``work_stats()`` give, and a row
waiting on dependencies shows its status and how many dependencies it waits on."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from click.testing import CliRunner

from nexus.cli.main import cli
from nexus.storage.metadata_store import SQLAlchemyMetadataStore
from nexus.storage.types import utcnow
from nexus.work import WorkQueue


def run(db_url: str, *args: str) -> str:
    result = CliRunner().invoke(cli, [*args, "--db", db_url])
    assert result.exit_code == 0, result.output
    return result.stdout


def tables(out: str) -> dict[str, list[dict[str, str]]]:
    """Rich's tables in ``out`` by title: each a list of {heading: cell}."""
    found: dict[str, list[dict[str, str]]] = {}
    title, headings = "", []
    for line in out.splitlines():
        if line.startswith("┃"):
            headings = [cell.strip() for cell in line.strip("┃").split("┃")]
        elif line.startswith("│"):
            cells = [cell.strip() for cell in line.strip("│").split("│")]
            found.setdefault(title, []).append(dict(zip(headings, cells, strict=True)))
        elif line and line[0] not in "┏┡└":
            title = line.strip()
    return found


def _queue_where_the_words_differ(db_url: str) -> tuple[dict[str, Any], dict[str, int]]:
    """Status counts and view counts that differ: an item of status ready waiting on two
    dependencies, one of status blocked waiting on none, one of status pending waiting on
    one, one deferred (status ready, run_after ahead), one ready now."""
    with SQLAlchemyMetadataStore(db_url) as store:
        queue = WorkQueue(store)
        queue.enqueue("/w/first")
        queue.enqueue("/w/second", depends_on=["/w/first", "/w/nowhere"])
        queue.enqueue("/w/parked", status="pending", depends_on="/w/first")
        queue.enqueue("/w/held", status="blocked")
        queue.enqueue("/w/later", run_after=utcnow() + timedelta(hours=1))
        stats = queue.work_stats()
        views = {
            "ready now": len(store.get_ready_work()),
            "waiting on dependencies": len(store.get_blocked_work()),
        }
        queue.close()
    assert views == {"ready now": 1, "waiting on dependencies": 2}
    assert (stats["by_status"]["ready"], stats["by_status"]["blocked"]) == (3, 1)
    return stats, views


def test_stats_prints_the_views_and_the_status_counts_apart(db_url: str) -> None:
    stats, views = _queue_where_the_words_differ(db_url)
    shown = tables(run(db_url, "work", "stats"))
    assert shown["work views"] == [{name: str(n) for name, n in views.items()}]
    assert shown["status counts"] == [{s: str(n) for s, n in stats["by_status"].items()}]
    document = json.loads(run(db_url, "work", "stats", "--json"))
    assert document["ready_now"] == document["ready"] == views["ready now"]
    assert document["waiting_on_dependencies"] == document["blocked"] == 2
    assert document["by_status"] == stats["by_status"]


def test_blocked_rows_show_status_and_how_many_they_wait_on(db_url: str) -> None:
    _queue_where_the_words_differ(db_url)
    waiting = tables(run(db_url, "work", "blocked"))["waiting on dependencies"]
    assert [(r["virtual_path"], r["status"], r["waits on"]) for r in waiting] == [
        ("/w/second", "ready", "2 dependencies"),
        ("/w/parked", "pending", "1 dependency"),
    ]
    ready_now = tables(run(db_url, "work", "ready"))["ready now"]
    assert [row["virtual_path"] for row in ready_now] == ["/w/first"]
