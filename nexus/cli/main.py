"""The ``nexus`` command line.

The CLI sits on top: it imports ``nexus.storage`` and ``nexus.work``, never the other way.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from nexus.connect import DEFAULT_DATA_DIR, connect
from nexus.errors import NexusError
from nexus.storage import migrate
from nexus.storage.engine import create_engine, resolve_database_url
from nexus.storage.metadata_store import SQLAlchemyMetadataStore

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
        store = nx.metadata
        graph: list[tuple[str, str, int | None, list[str], list[str]]] = [
            ("/demo/extract.json", "ready", 1, [], ["etl"]),
            ("/demo/clean.json", "blocked", 2, ["/demo/extract.json"], ["etl"]),
            ("/demo/train.json", "blocked", 3, ["/demo/clean.json"], ["ml"]),
            ("/demo/report.json", "pending", None, ["/demo/train.json", "/demo/clean.json"], []),
            ("/demo/thumbnails.json", "ready", 5, [], ["media"]),
            ("/demo/index.json", "in_progress", 4, [], ["search"]),
            ("/demo/archive.json", "completed", 9, [], []),
        ]
        for path, status, priority, deps, tags in graph:
            nx.write(path, f'{{"task": "{path}"}}'.encode())
            store.set_file_metadata(path, "status", status)
            store.set_file_metadata(path, "priority", priority)
            store.set_file_metadata(path, "tags", tags)
            store.set_file_metadata(path, "depends_on", deps or None)
        store.set_file_metadata("/demo/index.json", "worker_id", "worker-1")
        store.set_file_metadata("/demo/index.json", "started_at", "2026-01-01T12:00:00+00:00")
        console.print(f"[bold]nexus demo[/bold] database: {store.url}")
        print_views(console, store)
        console.print(
            "Completing /demo/extract.json resolves the only dependency of /demo/clean.json:"
        )
        store.set_file_metadata("/demo/extract.json", "status", "completed")
        render_rows(
            console,
            "blocked_work_items",
            VIEW_COLUMNS["blocked_work_items"],
            store.get_blocked_work(),
        )


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


if __name__ == "__main__":  # pragma: no cover
    cli()
