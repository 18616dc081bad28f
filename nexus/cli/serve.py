"""``nexus web`` and ``nexus metrics``: the dashboard and the Prometheus text of
:mod:`nexus.web` (the ``web`` extra), imported when the command runs so that the rest of the
CLI works without it."""

from __future__ import annotations

import click

from nexus.cli.common import database, db_option, open_queue, tenant
from nexus.errors import NexusConfigError

MISSING_EXTRA = "nexus metrics needs the 'web' extra: pip install 'nexus-workqueue[web]'"


@click.command()
@db_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", type=click.IntRange(1, 65535), default=8765, show_default=True)
@click.option("--admin", is_flag=True, help="Enable the retry/cancel/release buttons.")
def web(db: str | None, host: str, port: int, admin: bool) -> None:
    """Serve the web dashboard of the database (read-only unless --admin) until Ctrl-C."""
    from nexus.web import serve

    serve(database(db), host=host, port=port, admin=admin, tenant=tenant(), create=False)


@click.command()
@db_option
def metrics(db: str | None) -> None:
    """Print the queue's metrics in the Prometheus text format (what /metrics serves)."""
    try:
        from nexus.web.metrics import render_metrics
    except ImportError as exc:
        raise NexusConfigError(MISSING_EXTRA) from exc
    with open_queue(db) as queue:
        click.echo(render_metrics(queue), nl=False)
