"""What every room of the queue shares: the store, its database, the driver, the tenant,
the one way to run a transaction, and the few transaction-level reads several rooms need.

:meth:`QueueContext.run` is the queue's only transaction path: a body (a generator of
statements, :mod:`nexus.storage.calls`) runs on the thread's driver connection through
:meth:`Database.transaction <nexus.storage.database.Database.transaction>`, which begins,
commits, retries PostgreSQL deadlocks and serialisation failures (calling the factory again
for a fresh body), and raises driver errors as NexusDatabaseError.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, TypeVar

from nexus.errors import NexusFileNotFoundError, WorkItemNotFoundError, WorkItemStateError
from nexus.storage.calls import Body, drive
from nexus.storage.metadata_store import SQLAlchemyMetadataStore
from nexus.storage.types import truncate_to_ms, utcnow
from nexus.storage.validation import is_path_id
from nexus.work.drivers import driver_for
from nexus.work.items import WorkItem, item_from_row
from nexus.work.retry import RetryPolicy

T = TypeVar("T")

#: A history row to append: (path_id, event, worker_id, detail).
Event = tuple[str, str, "str | None", "Mapping[str, Any] | None"]


class QueueContext:
    """The queue's shared state and transaction-level helpers (held by every room)."""

    def __init__(self, store: SQLAlchemyMetadataStore, retry_policy: RetryPolicy) -> None:
        self.store = store
        self.db = store.database
        self.driver = driver_for(self.db.dialect)
        self.tenant_id = store.tenant_id
        self.retry_policy = retry_policy

    def run(self, body: Callable[[], Body[T]], *, write: bool = True) -> T:
        """Run ``body()`` in one transaction (a new body per attempt)."""
        return self.db.transaction(lambda cursor: drive(body(), cursor), write=write)

    def now(self) -> datetime:
        """The current moment at the precision the queue stores (milliseconds)."""
        return truncate_to_ms(utcnow())

    # ------------------------------------------------------------------ bodies

    def record(self, events: list[Event], now: Any) -> Body[None]:
        """Append history rows."""
        if events:
            yield self.driver.call(
                "record",
                [
                    {
                        "path_id": path_id,
                        "tenant": self.tenant_id,
                        "event": event,
                        "now": now,
                        "worker_id": worker_id,
                        "detail": self.driver.json_param(detail),
                    }
                    for path_id, event, worker_id, detail in events
                ],
                many=True,
            )

    def path_id(self, ref: str) -> Body[str | None]:
        """The path_id of a live path of the tenant (by virtual path or path_id), or None."""
        name = "path_id_by_id" if is_path_id(ref) else "path_id_by_path"
        row = (yield self.driver.call(name, {"ref": ref, "tenant": self.tenant_id})).first()
        return None if row is None else str(row["path_id"])

    def item(self, ref: str) -> Body[dict[str, Any] | None]:
        """The item's row (the item columns), or None."""
        name = "item_by_id" if is_path_id(ref) else "item_by_path"
        return (yield self.driver.call(name, {"ref": ref, "tenant": self.tenant_id})).first()

    def require_item(self, ref: str) -> Body[WorkItem]:
        """The work item, or NexusFileNotFoundError (no such path) / WorkItemNotFoundError."""
        row = yield from self.item(ref)
        if row is None:
            if (yield from self.path_id(ref)) is None:
                raise NexusFileNotFoundError(ref)
            raise WorkItemNotFoundError(ref)
        return item_from_row(self.driver, row)

    def wrong_state(
        self, ref: str, required: tuple[str, ...], operation: str
    ) -> Body[WorkItemStateError]:
        """The refusal of an operation whose statement changed nothing: the item's status
        (read now, after the statement) is not among ``required``. The statement decides,
        not an earlier read, so an item that changes status in between is refused too."""
        item = yield from self.require_item(ref)
        return WorkItemStateError(ref, item["status"], required, operation)
