"""Retention: :meth:`WorkQueue.prune <nexus.work.queue.WorkQueue.prune>`, the deletion of
finished items in short batches."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from nexus.errors import InvalidArgumentError
from nexus.storage.calls import Body
from nexus.storage.types import to_utc, truncate_to_ms, utcnow
from nexus.storage.validation import MAX_LIMIT, validate_positive_int
from nexus.work.context import QueueContext
from nexus.work.items import FINISHED_STATUSES

#: Longest pause between two prune batches on SQLite (seconds), for other writers.
PRUNE_MAX_PAUSE = 0.25


class Retention:
    """prune."""

    def __init__(self, ctx: QueueContext) -> None:
        self.ctx = ctx
        self.driver = ctx.driver

    def prune(self, older_than: Any, statuses: Sequence[str], batch_size: int) -> int:
        cutoff = prune_cutoff(older_than)
        wanted = prune_statuses(statuses)
        batch = min(validate_positive_int("batch_size", batch_size), MAX_LIMIT)
        delete = self.driver.call(
            "prune",
            {
                "tenant": self.ctx.tenant_id,
                "first": wanted[0],
                "second": wanted[-1],
                "cutoff": self.driver.timestamp(cutoff),
                "batch": batch,
            },
        )

        def body() -> Body[int]:
            return int((yield delete).rowcount)

        total = 0
        while True:
            # Until a batch finds nothing: a batch can free items for the next one (a failed
            # dependent pruned lets its completed dependency go).
            started = time.monotonic()
            deleted = self.ctx.run(body)
            if deleted == 0:
                return total
            total += deleted
            if self.driver.serialises_writers:
                # One writer at a time, and a claimer waiting in its busy handler polls every
                # few ms: without a pause the next batch would always win the lock. Pausing
                # as long as the batch took leaves writers at least half the time.
                time.sleep(min(time.monotonic() - started, PRUNE_MAX_PAUSE))


def prune_cutoff(older_than: Any) -> datetime:
    if isinstance(older_than, timedelta):
        if older_than < timedelta(0):
            raise InvalidArgumentError("older_than", older_than, "must not be negative")
        try:
            return truncate_to_ms(utcnow() - older_than)
        except OverflowError as exc:
            raise InvalidArgumentError(
                "older_than", older_than, "reaches back before the year 1"
            ) from exc
    if isinstance(older_than, datetime):
        return truncate_to_ms(to_utc(older_than))
    raise InvalidArgumentError("older_than", older_than, "must be a timedelta or a datetime")


def prune_statuses(statuses: Any) -> tuple[str, ...]:
    given = (statuses,) if isinstance(statuses, str) else statuses
    if not isinstance(given, (list, tuple)) or not given:
        raise InvalidArgumentError("statuses", statuses, "must be a non-empty sequence of statuses")
    for status in given:
        if status not in FINISHED_STATUSES or not isinstance(status, str):
            raise InvalidArgumentError(
                "statuses",
                statuses,
                f"only finished items can be pruned: {', '.join(FINISHED_STATUSES)}"
                " (cancelled items are failed)",
            )
    return tuple(sorted(set(given)))
