"""``nexus work prune``: retention of finished work (``WorkQueue.prune``)."""

from __future__ import annotations

from datetime import timedelta

import click

from nexus.cli.common import db_option, emit, json_option, open_queue
from nexus.cli.keys import PRUNE_KEYS
from nexus.cli.work import DURATION
from nexus.storage.clock import utcnow


@click.command()
@db_option
@click.option(
    "--older-than",
    type=DURATION,
    required=True,
    help="Finished longer ago than this (7d, 12h, 30m...).",
)
@click.option(
    "--status",
    "statuses",
    type=click.Choice(["completed", "failed"]),
    multiple=True,
    default=("completed",),
    show_default=True,
    help="Which finished items go (repeatable; failed includes cancelled).",
)
@click.option("--batch-size", type=click.IntRange(min=1), default=1000, show_default=True)
@json_option
def prune(
    db: str | None,
    older_than: timedelta,
    statuses: tuple[str, ...],
    batch_size: int,
    as_json: bool,
) -> None:
    """Delete finished items (with their paths, metadata and history) that finished before
    now - --older-than, in batches; items unfinished work depends on are kept."""
    try:
        cutoff = utcnow() - older_than
    except OverflowError:
        ctx = click.get_current_context()
        param = next(p for p in ctx.command.params if p.name == "older_than")
        raise click.BadParameter("reaches back before the year 1", ctx, param) from None
    with open_queue(db) as queue:
        pruned = queue.prune(cutoff, list(statuses), batch_size=batch_size)
    values = {"pruned": pruned, "statuses": list(statuses), "cutoff": cutoff}
    emit({key: values[key] for key in PRUNE_KEYS}, as_json, f"pruned {pruned}")
