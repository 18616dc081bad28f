"""What the queue hands out: :class:`WorkItem`, :class:`EnqueuedItem`, and the mapping of
rows (by column name) to them; plus the status sets and argument checks the rooms share."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, TypedDict

from nexus.errors import InvalidArgumentError
from nexus.storage.validation import validate_text
from nexus.work.drivers import Driver
from nexus.work.drivers.statements import DEFAULT_MAX_ATTEMPTS

STATUSES = ("ready", "pending", "blocked", "in_progress", "completed", "failed")
#: The statuses :meth:`WorkQueue.cancel_work` accepts: an item not yet completed.
CANCELLABLE = tuple(status for status in STATUSES if status != "completed")
#: The statuses :meth:`WorkQueue.prune` may delete: an item in them is finished.
FINISHED_STATUSES = ("completed", "failed")


class WorkItem(TypedDict):
    """The one shape of a work item returned by the queue.

    ``lease_token`` is set only in the items :meth:`WorkQueue.claim_ready_work` returns (the
    fencing secret goes to the claimer alone); ``blocker_count`` is None in the items
    :meth:`WorkQueue.enqueue_many` has just created (the database counts them).
    """

    path_id: str
    virtual_path: str
    status: str
    priority: int | None
    tags: list[str] | None
    depends_on: str | list[str] | None
    worker_id: str | None
    started_at: datetime | None
    run_after: datetime | None
    lease_token: str | None
    lease_expires_at: datetime | None
    attempts: int
    max_attempts: int
    blocker_count: int | None
    last_error: str | None
    created_at: datetime | None
    finished_at: datetime | None


class EnqueuedItem(WorkItem):
    """What :meth:`WorkQueue.enqueue` and :meth:`WorkQueue.enqueue_many` return: the item,
    plus what the call did.

    ``created`` is True when this call made the item; False when the path already was a work
    item, or the ``idempotency_key`` already named one, or an earlier entry of the same batch
    named the same path or key: that item is returned as it is, and the call's other fields
    are not applied. ``missing_dependencies`` lists the references of the item's
    ``depends_on`` (as written) that name no live path of the tenant when the call commits:
    such a dependency is kept, and blocks the item until a path of that name is enqueued and
    completed.
    """

    created: bool
    missing_dependencies: list[str]


def item_from_row(driver: Driver, row: Mapping[str, Any]) -> WorkItem:
    """A row of the item columns (``ITEM_COLUMNS``) as a WorkItem."""
    read = driver.read_timestamp
    return {
        "path_id": row["path_id"],
        "virtual_path": row["virtual_path"],
        "status": row["status"],
        "priority": row["priority"],
        "tags": driver.read_json(row["tags"]),
        "depends_on": driver.read_json(row["depends_on"]),
        "worker_id": row["worker_id"],
        "started_at": read(row["started_at"]),
        "run_after": read(row["run_after"]),
        "lease_token": None,
        "lease_expires_at": read(row["lease_expires_at"]),
        "attempts": row["attempts"],
        "max_attempts": row["max_attempts"] or DEFAULT_MAX_ATTEMPTS,
        "blocker_count": row["unresolved_count"],
        "last_error": row["last_error"],
        "created_at": read(row["created_at"]),
        "finished_at": read(row["finished_at"]),
    }


def claimed_item(driver: Driver, row: Mapping[str, Any], worker_id: str, now: datetime) -> WorkItem:
    """A row a claim returned as the claimer's WorkItem (with its lease token)."""
    return {
        "path_id": row["path_id"],
        "virtual_path": row["virtual_path"],
        "status": "in_progress",
        "priority": row["priority"],
        "tags": driver.read_json(row["tags"]),
        "depends_on": None,
        "worker_id": worker_id,
        "started_at": now,
        "run_after": None,
        "lease_token": row["lease_token"],
        "lease_expires_at": driver.read_timestamp(row["lease_expires_at"]),
        "attempts": row["attempts"],
        "max_attempts": row["max_attempts"] or DEFAULT_MAX_ATTEMPTS,
        "blocker_count": 0,
        "last_error": None,
        "created_at": driver.read_timestamp(row["created_at"]),
        "finished_at": None,
    }


def check_token(lease_token: Any) -> str:
    return validate_text("lease_token", lease_token, max_length=64)


def check_lease_seconds(lease_seconds: Any) -> float:
    if (
        isinstance(lease_seconds, bool)
        or not isinstance(lease_seconds, (int, float))
        or not 0 < lease_seconds <= 86_400 * 365
    ):
        raise InvalidArgumentError(
            "lease_seconds", lease_seconds, "must be a positive number of seconds"
        )
    return float(lease_seconds)
