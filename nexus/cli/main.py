"""The ``nexus`` command line.

The CLI sits on top: it imports ``nexus.storage`` and ``nexus.work``, never the other way.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from nexus.connect import DEFAULT_DATA_DIR, connect
from nexus.errors import NexusError
from nexus.storage import migrate
from nexus.storage.engine import create_engine, resolve_database_url
from nexus.storage.metadata_store import SQLAlchemyMetadataStore
from nexus.storage.validation import STATUSES
from nexus.work import Worker, WorkItem, WorkQueue

VIEW_GETTERS = {
    "ready": ("ready_work_items", "get_ready_work"),
    "pending": ("pending_work_items", "get_pending_work"),
    "blocked": ("blocked_work_items", "get_blocked_work"),
    "priority": ("work_by_priority", "get_work_by_priority"),
    "in-progress": ("in_progress_work", "get_in_progress_work"),
}
VIEW_COLUMNS = {
    "ready_work_items": ["virtual_path", "status", "priority"],
    "pending_work_items": ["virtual_path", "status", "priority"],
    "blocked_work_items": ["virtual_path", "status", "priority", "blocker_count"],
    "work_by_priority": ["virtual_path", "status", "priority", "tags"],
    "in_progress_work": ["virtual_path", "priority", "worker_id", "started_at"],
}

db_option = click.option(
    "--db",
    "db",
    envvar="NEXUS_DATABASE_URL",
    default=None,
    help="SQLite path or database URL [env NEXUS_DATABASE_URL; default ./nexus-data/metadata.db]",
)


def _database(db: str | None) -> str:
    return db or os.path.join(DEFAULT_DATA_DIR, "metadata.db")


def _open_store(db: str | None) -> SQLAlchemyMetadataStore:
    return SQLAlchemyMetadataStore(_database(db))


@contextmanager
def _open_queue(db: str | None) -> Iterator[WorkQueue]:
    """A work queue over the store at ``db``; closes both (the queue first)."""
    with _open_store(db) as store:
        queue = WorkQueue(store)
        try:
            yield queue
        finally:
            queue.close()


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    if hasattr(value, "isoformat"):
        return str(value.isoformat(timespec="seconds"))
    return str(value)


def render_rows(
    console: Console, title: str, columns: Sequence[str], rows: Iterable[dict[str, Any]]
) -> None:
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column)
    count = 0
    for row in rows:
        table.add_row(*(_fmt(row.get(column)) for column in columns))
        count += 1
    if count == 0:
        table.add_row(*(["(none)"] + [""] * (len(columns) - 1)))
    console.print(table)


def print_views(console: Console, store: SQLAlchemyMetadataStore, limit: int | None = None) -> None:
    for view, getter in VIEW_GETTERS.values():
        render_rows(console, view, VIEW_COLUMNS[view], getattr(store, getter)(limit=limit))


class NexusGroup(click.Group):
    """Turns nexus errors into a one-line message and exit code 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except NexusError as exc:
            raise click.ClickException(f"{type(exc).__name__}: {exc}") from exc


@click.group(cls=NexusGroup)
@click.version_option(package_name="nexus-workqueue")
def cli() -> None:
    """nexus: file paths with metadata, as a dependency-aware work queue."""


@cli.command()
@click.option("--data-dir", default=DEFAULT_DATA_DIR, show_default=True, help="Where data lives.")
@click.option("--db", default=None, help="Database URL (default: SQLite in the data dir).")
def demo(data_dir: str, db: str | None) -> None:
    """Build a small dependency graph and print the five work views."""
    console = Console()
    config: dict[str, Any] = {"data_dir": data_dir}
    if db:
        config["database_url"] = db
    with connect(config) as nx:
        store, queue = nx.metadata, nx.queue
        graph: list[dict[str, Any]] = [
            {"path": "/demo/extract.json", "priority": 1, "tags": ["etl"]},
            {
                "path": "/demo/clean.json",
                "priority": 2,
                "tags": ["etl"],
                "depends_on": "/demo/extract.json",
                "status": "blocked",
            },
            {
                "path": "/demo/train.json",
                "priority": 3,
                "tags": ["ml"],
                "depends_on": "/demo/clean.json",
            },
            {
                "path": "/demo/report.json",
                "status": "pending",
                "depends_on": ["/demo/train.json", "/demo/clean.json"],
            },
            {"path": "/demo/thumbnails.json", "priority": 5, "tags": ["media"]},
            {"path": "/demo/index.json", "priority": 4, "tags": ["search"]},
        ]
        for spec in graph:
            nx.write(spec["path"], f'{{"task": "{spec["path"]}"}}'.encode())
        queue.enqueue_many(graph)
        # Put one item in progress, as a worker would.
        queue.claim_ready_work("worker-1", path_prefix="/demo/index.json")
        console.print(f"[bold]nexus demo[/bold] database: {store.url}")
        print_views(console, store)
        console.print(
            "\nA worker claims /demo/extract.json and completes it; its blocked dependent "
            "/demo/clean.json is promoted to ready in the same transaction:"
        )
        claimed = queue.claim_ready_work("worker-2", path_prefix="/demo/extract.json")
        if not claimed:
            console.print("(already done by an earlier run of the demo in this data dir)")
        for item in claimed:
            promoted = queue.complete_work(item["virtual_path"], str(item["lease_token"]))
            console.print(f"promoted: {', '.join(promoted) or '(none)'}")
        for view in ("ready_work_items", "blocked_work_items"):
            getter = dict(VIEW_GETTERS.values())[view]
            render_rows(console, view, VIEW_COLUMNS[view], getattr(store, getter)())


@cli.command()
@db_option
@click.option("--revision", default="head", show_default=True)
def migrate_cmd(db: str | None, revision: str) -> None:
    """Upgrade the database schema (the same revisions as `alembic upgrade`)."""
    engine = create_engine(resolve_database_url(_database(db)))
    try:
        migrate.upgrade(engine, revision)
        click.echo(f"at revision {migrate.current_revision(engine)}")
    finally:
        engine.dispose()


migrate_cmd.name = "migrate"


@cli.command()
@db_option
@click.option("--revision", required=True, help='Target revision; "base" removes everything.')
def downgrade(db: str | None, revision: str) -> None:
    """Downgrade the database schema."""
    engine = create_engine(resolve_database_url(_database(db)))
    try:
        migrate.downgrade(engine, revision)
        click.echo(f"at revision {migrate.current_revision(engine) or 'base'}")
    finally:
        engine.dispose()


@cli.command()
@db_option
@click.argument("view", type=click.Choice(list(VIEW_GETTERS)), required=False)
@click.option("--limit", type=click.IntRange(min=0), default=20, show_default=True)
def show(db: str | None, view: str | None, limit: int) -> None:
    """Print one work view (or all five)."""
    console = Console()
    with _open_store(db) as store:
        if view is None:
            print_views(console, store, limit)
            return
        name, getter = VIEW_GETTERS[view]
        render_rows(console, name, VIEW_COLUMNS[name], getattr(store, getter)(limit=limit))


@cli.command()
@db_option
@click.argument("path")
@click.option("--priority", type=int, default=None, help="Lower runs first.")
@click.option("--depends-on", "depends_on", multiple=True, help="A path or path_id (repeatable).")
@click.option("--tag", "tags", multiple=True, help="A tag (repeatable).")
@click.option("--status", type=click.Choice(STATUSES), default="ready", show_default=True)
@click.option("--max-attempts", type=click.IntRange(min=1), default=3, show_default=True)
def enqueue(
    db: str | None,
    path: str,
    priority: int | None,
    depends_on: tuple[str, ...],
    tags: tuple[str, ...],
    status: str,
    max_attempts: int,
) -> None:
    """Make PATH a work item (creating the path if needed)."""
    with _open_queue(db) as queue:
        item = queue.enqueue(
            path,
            priority=priority,
            depends_on=list(depends_on) or None,
            tags=list(tags) or None,
            status=status,
            max_attempts=max_attempts,
        )
        if item["blocker_count"] is None:
            # A newly created item: the database counted its blockers; read them back.
            item = queue.get_work_item(item["path_id"]) or item
    click.echo(f"{item['virtual_path']} {item['status']} blockers={item['blocker_count']}")


def print_stats(console: Console, queue: WorkQueue) -> None:
    stats = queue.work_stats()
    table = Table(title="work_stats", title_justify="left")
    for name in ("ready", "pending", "blocked", "in_progress"):
        table.add_column(name, justify="right")
    table.add_row(*(str(stats[name]) for name in ("ready", "pending", "blocked", "in_progress")))
    console.print(table)
    by_status = Table(title="by status", title_justify="left")
    for name in STATUSES:
        by_status.add_column(name, justify="right")
    by_status.add_row(*(str(stats["by_status"][name]) for name in STATUSES))
    console.print(by_status)


@cli.command()
@db_option
def stats(db: str | None) -> None:
    """Counts of the work views and of each status (cheap: no lists are fetched)."""
    with _open_queue(db) as queue:
        print_stats(Console(), queue)


@cli.command()
@db_option
@click.argument("path")
def history(db: str | None, path: str) -> None:
    """Every recorded transition of the work item at PATH."""
    with _open_queue(db) as queue:
        render_rows(
            Console(),
            f"history of {path}",
            ["at", "event", "worker_id", "detail"],
            queue.get_work_history(path),
        )


@cli.command()
@db_option
@click.argument("path")
def explain(db: str | None, path: str) -> None:
    """Why PATH is blocked: its chain of unresolved dependencies."""
    with _open_queue(db) as queue:
        chain = queue.explain_blocked(path)
    if not chain:
        click.echo(f"{path} has no unresolved dependencies")
        return
    render_rows(
        Console(), f"blockers of {path}", ["depth", "path", "status", "why", "blocks"], chain
    )


@cli.command()
@db_option
def reclaim(db: str | None) -> None:
    """Return items whose lease expired to ready (or failed when out of attempts)."""
    with _open_queue(db) as queue:
        click.echo(f"reclaimed {queue.reclaim_expired_leases()}")


@cli.command(context_settings={"ignore_unknown_options": True})
@db_option
@click.option("--worker-id", default=None, help="Default: host-pid-random.")
@click.option("--concurrency", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--lease-seconds", type=click.FloatRange(min=0.1), default=300, show_default=True)
@click.option("--tag", "tags", multiple=True, help="Only items with one of these tags.")
@click.option("--prefix", "path_prefix", default=None, help="Only paths under this prefix.")
@click.option("--until-idle", is_flag=True, help="Stop when no work is ready.")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def worker(
    db: str | None,
    worker_id: str | None,
    concurrency: int,
    lease_seconds: float,
    tags: tuple[str, ...],
    path_prefix: str | None,
    until_idle: bool,
    command: tuple[str, ...],
) -> None:
    """Run COMMAND once per claimed item (NEXUS_PATH and NEXUS_PATH_ID in its environment).

    Exit code 0 completes the item; anything else fails it (retried with back-off until
    max_attempts). SIGTERM/SIGINT finish the running items, then stop.
    """

    def run_command(item: WorkItem) -> dict[str, Any]:
        env = {**os.environ, "NEXUS_PATH": item["virtual_path"], "NEXUS_PATH_ID": item["path_id"]}
        done = subprocess.run(list(command), env=env, capture_output=True, text=True)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip()[-500:]
            raise RuntimeError(f"exit code {done.returncode}: {tail}")
        return {"exit_code": 0}

    with _open_queue(db) as queue:
        stats = Worker(
            queue,
            run_command,
            worker_id=worker_id,
            concurrency=concurrency,
            lease_seconds=lease_seconds,
            tags=list(tags) or None,
            path_prefix=path_prefix,
        ).run(stop_when_idle=until_idle)
    click.echo(f"completed {stats.completed} failed {stats.failed} lost {stats.lost}")


@cli.command()
@db_option
@click.option("--interval", type=click.FloatRange(min=0.2), default=2.0, show_default=True)
@click.option("--once", is_flag=True, help="Print one frame and exit.")
@click.option("--limit", type=click.IntRange(min=1), default=10, show_default=True)
def dashboard(db: str | None, interval: float, once: bool, limit: int) -> None:
    """Live counts, the next ready items and what is in progress (Ctrl-C to leave)."""
    console = Console()
    with _open_queue(db) as queue:
        store = queue.store
        while True:
            if not once:
                console.clear()
            print_stats(console, queue)
            render_rows(
                console,
                "next ready",
                VIEW_COLUMNS["ready_work_items"],
                store.get_ready_work(limit=limit),
            )
            render_rows(
                console,
                "in progress",
                VIEW_COLUMNS["in_progress_work"],
                store.get_in_progress_work(limit=limit),
            )
            if once:
                return
            try:
                time.sleep(interval)
            except KeyboardInterrupt:
                return


if __name__ == "__main__":  # pragma: no cover
    cli()
