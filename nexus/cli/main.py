"""The ``nexus`` command line (click + rich); every command is described in docs/cli.md.

The CLI sits on top: it uses the public store and queue API (``nexus.storage``,
``nexus.work``, ``nexus.web``), has no SQL of its own, and nothing below imports it.
Commands live by topic: :mod:`nexus.cli.db` (schema), :mod:`nexus.cli.files` (paths and
metadata), :mod:`nexus.cli.work` (the queue), :mod:`nexus.cli.worker` (running commands);
shared options and output in :mod:`nexus.cli.common`, the ``--json`` keys in
:mod:`nexus.cli.keys`.
"""

from __future__ import annotations

from typing import Any

import click

from nexus.cli import files, retention, serve
from nexus.cli.common import NexusGroup, console, table
from nexus.cli.db import db
from nexus.cli.work import work
from nexus.cli.worker import worker
from nexus.connect import DEFAULT_DATA_DIR, connect

DEMO_VIEWS = (
    ("ready_work_items", "get_ready_work", ["virtual_path", "status", "priority"]),
    ("pending_work_items", "get_pending_work", ["virtual_path", "status", "priority"]),
    (
        "blocked_work_items",
        "get_blocked_work",
        ["virtual_path", "status", "priority", "blocker_count"],
    ),
    ("work_by_priority", "get_work_by_priority", ["virtual_path", "status", "priority", "tags"]),
    (
        "in_progress_work",
        "get_in_progress_work",
        ["virtual_path", "priority", "worker_id", "started_at"],
    ),
)

DEMO_GRAPH: list[dict[str, Any]] = [
    {"path": "/demo/extract.json", "priority": 1, "tags": ["etl"]},
    {
        "path": "/demo/clean.json",
        "priority": 2,
        "tags": ["etl"],
        "depends_on": "/demo/extract.json",
        "status": "blocked",
    },
    {"path": "/demo/train.json", "priority": 3, "tags": ["ml"], "depends_on": "/demo/clean.json"},
    {
        "path": "/demo/report.json",
        "status": "pending",
        "depends_on": ["/demo/train.json", "/demo/clean.json"],
    },
    {"path": "/demo/thumbnails.json", "priority": 5, "tags": ["media"]},
    {"path": "/demo/index.json", "priority": 4, "tags": ["search"]},
]


@click.group(cls=NexusGroup)
@click.version_option(package_name="nexus-workqueue")
def cli() -> None:
    """nexus: file paths with metadata, as a dependency-aware work queue.

    Every command takes --db (a SQLite path or database URL; else $NEXUS_DATABASE_URL, else
    ./nexus-data/metadata.db). Exit codes: 0 ok, 1 refused (not found, lease lost, nothing
    to claim...), 2 usage error.
    """


cli.add_command(db)
cli.add_command(files.put)
cli.add_command(files.get)
cli.add_command(files.ls)
cli.add_command(files.rm)
cli.add_command(files.meta)
cli.add_command(work)
work.add_command(retention.prune)
cli.add_command(worker)
cli.add_command(serve.web)
cli.add_command(serve.metrics)


def _print_views(store: Any, names: tuple[str, ...] | None = None) -> None:
    for view, getter, columns in DEMO_VIEWS:
        if names is None or view in names:
            table(view, columns, getattr(store, getter)())


@cli.command()
@click.option("--data-dir", default=DEFAULT_DATA_DIR, show_default=True, help="Where data lives.")
@click.option(
    "--db",
    default=None,
    metavar="PATH_OR_URL",
    help="Database for the metadata [env NEXUS_DATABASE_URL; default <data-dir>/metadata.db].",
)
@click.option("--tenant", envvar="NEXUS_TENANT", default="default", show_default=True)
def demo(data_dir: str, db: str | None, tenant: str) -> None:
    """Build a small dependency graph and print the five work views."""
    from rich.markup import escape

    config: dict[str, Any] = {"data_dir": data_dir, "tenant_id": tenant}
    if db:
        config["database_url"] = db
    with connect(config) as nx:
        out = console()
        store, queue = nx.metadata, nx.queue
        for spec in DEMO_GRAPH:
            nx.write(spec["path"], f'{{"task": "{spec["path"]}"}}'.encode())
        queue.enqueue_many(DEMO_GRAPH)
        # Put one item in progress, as a worker would.
        queue.claim_ready_work("worker-1", path_prefix="/demo/index.json")
        out.print(f"[bold]nexus demo[/bold] database: {escape(store.url)}", soft_wrap=True)
        _print_views(store)
        out.print(
            "\nA worker claims /demo/extract.json and completes it; its blocked dependent "
            "/demo/clean.json is promoted to ready in the same transaction:"
        )
        claimed = queue.claim_ready_work("worker-2", path_prefix="/demo/extract.json")
        if not claimed:
            out.print("(already done by an earlier run of the demo in this data dir)")
        for item in claimed:
            promoted = queue.complete_work(item["virtual_path"], str(item["lease_token"]))
            out.print(f"promoted: {escape(', '.join(promoted)) or '(none)'}", soft_wrap=True)
        _print_views(store, ("ready_work_items", "blocked_work_items"))


if __name__ == "__main__":  # pragma: no cover
    cli()
